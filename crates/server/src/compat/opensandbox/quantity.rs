//! Kubernetes resource quantities as OpenSandbox's `resourceLimits` carry them: CPU in cores or
//! millicores (`"2"`, `"0.5"`, `"500m"`), memory in bytes with a decimal (`k`, `M`, `G`, `T`) or
//! binary (`Ki`, `Mi`, `Gi`, `Ti`) suffix.

use super::error::OsError;

/// Millicores of a CPU quantity.
pub fn cpu_millis(field: &str, text: &str) -> Result<u64, OsError> {
    let bad = || OsError::invalid(field, format!("{text:?} is not a CPU quantity such as \"500m\" or \"2\""));
    let text = text.trim();
    let millis = match text.strip_suffix('m') {
        Some(millis) => millis.parse::<u64>().map_err(|_| bad())?,
        None => {
            let cores = text.parse::<f64>().map_err(|_| bad())?;
            if !cores.is_finite() || !(0.0..=1e6).contains(&cores) {
                return Err(bad());
            }
            (cores * 1000.0).round() as u64
        }
    };
    if millis == 0 {
        return Err(OsError::invalid(field, "must be more than 0"));
    }
    Ok(millis)
}

/// Bytes of a memory quantity.
pub fn memory_bytes(field: &str, text: &str) -> Result<u64, OsError> {
    let bad =
        || OsError::invalid(field, format!("{text:?} is not a memory quantity such as \"512Mi\" or \"2G\""));
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "k" => 1000,
        "M" => 1000_u64.pow(2),
        "G" => 1000_u64.pow(3),
        "T" => 1000_u64.pow(4),
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return Err(bad()),
    };
    let number = number.parse::<f64>().map_err(|_| bad())?;
    let bytes = number * factor as f64;
    if !bytes.is_finite() || !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_cores_and_millicores() {
        assert_eq!(cpu_millis("cpu", "500m").unwrap(), 500);
        assert_eq!(cpu_millis("cpu", "2").unwrap(), 2000);
        assert_eq!(cpu_millis("cpu", "0.25").unwrap(), 250);
        for bad in ["", "m", "-1", "lots", "0", "1.5m"] {
            assert!(cpu_millis("resourceLimits.cpu", bad)
                .unwrap_err()
                .0
                .message
                .contains("resourceLimits.cpu"));
        }
    }

    #[test]
    fn memory_in_decimal_and_binary_units() {
        assert_eq!(memory_bytes("m", "512Mi").unwrap(), 512 << 20);
        assert_eq!(memory_bytes("m", "2Gi").unwrap(), 2 << 30);
        assert_eq!(memory_bytes("m", "1G").unwrap(), 1_000_000_000);
        assert_eq!(memory_bytes("m", "1.5Gi").unwrap(), 3 << 29);
        assert_eq!(memory_bytes("m", "4096").unwrap(), 4096);
        for bad in ["", "Mi", "12Q", "-5Mi", "0"] {
            assert!(memory_bytes("m", bad).is_err(), "{bad}");
        }
    }
}
