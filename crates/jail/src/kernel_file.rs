//! Reading the small files of `/proc`, `/sys` and cgroupfs in as few system calls as possible.
//!
//! They report a size of 0, so `std::fs::read_to_string` probes them with reads of 32 bytes
//! and up, a dozen calls for `/proc/self/status`. One 8 KiB read usually takes all of it.

use std::io::Read;
use std::path::Path;

/// The whole file as text (lossy UTF-8 is not needed: these files are ASCII).
pub(crate) fn read(path: impl AsRef<Path>) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_files_larger_than_one_chunk() {
        let path = std::env::temp_dir().join(format!("airlock-kernel-file-{}", std::process::id()));
        let text = "0123456789abcdef\n".repeat(1500);
        std::fs::write(&path, &text).unwrap();
        let read = super::read(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.unwrap(), text);
    }

    #[test]
    fn reads_proc_files() {
        let status = super::read("/proc/self/status").unwrap();
        assert!(status.contains("\nThreads:"), "{status}");
    }
}
