//! `WORKSPACE_PATH`: a directory on the host whose files every execution finds in its own
//! `/workspace`. Each execution gets a copy, read when it starts, so that no execution sees
//! another's writes and nothing it writes reaches the host.

use std::path::Path;

/// Most bytes copied into one execution.
pub const MAX_BYTES: u64 = 64 << 20;

/// Most files copied into one execution.
pub const MAX_FILES: usize = 10_000;

/// Directory levels followed below the workspace.
const MAX_DEPTH: usize = 32;

/// The regular files under `root`: path relative to it, and contents. Symbolic links and special
/// files are left out, so that the copy never reaches outside `root`.
pub fn read(root: &Path) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    let mut total = 0;
    visit(root, "", 0, &mut files, &mut total)?;
    Ok(files)
}

fn visit(
    dir: &Path,
    prefix: &str,
    depth: usize,
    files: &mut Vec<(String, Vec<u8>)>,
    total: &mut u64,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("WORKSPACE_PATH is deeper than {MAX_DEPTH} directories at {}", dir.display()));
    }
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            tracing::warn!(path = %entry.path().display(), "skipping a workspace file whose name is not UTF-8");
            continue;
        };
        let relative = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        // `file_type` does not follow symbolic links.
        let kind = entry.file_type().map_err(|e| format!("cannot stat {}: {e}", entry.path().display()))?;
        if kind.is_dir() {
            visit(&entry.path(), &relative, depth + 1, files, total)?;
        } else if kind.is_file() {
            let data = std::fs::read(entry.path())
                .map_err(|e| format!("cannot read {}: {e}", entry.path().display()))?;
            *total += data.len() as u64;
            files.push((relative, data));
            if *total > MAX_BYTES || files.len() > MAX_FILES {
                return Err(format!(
                    "WORKSPACE_PATH holds more than {} MiB or {MAX_FILES} files; each execution gets a copy",
                    MAX_BYTES >> 20
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn copies_regular_files_and_leaves_links_out() {
        let root = std::env::temp_dir().join(format!("airlock-ws-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("lib/deep")).unwrap();
        std::fs::write(root.join("data.txt"), "hello").unwrap();
        std::fs::write(root.join("lib/deep/util.py"), "X = 1").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", root.join("escape")).unwrap();
        let mut files = super::read(&root).unwrap();
        files.sort();
        assert_eq!(
            files,
            [("data.txt".to_owned(), b"hello".to_vec()), ("lib/deep/util.py".to_owned(), b"X = 1".to_vec())]
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
