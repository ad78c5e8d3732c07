//! Allowed ranges of the numeric settings, shared by the configuration file and the
//! command-line flags so that both reject the same values with the same E1003 error.

use std::ops::RangeInclusive;

use super::error::ConfigError;
use super::quantity::{self, format_bytes, format_cpu_millis};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;
const TIB: u64 = 1024 * GIB;

/// What a numeric setting counts; decides how it is parsed and how its range is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes; parsed with [`quantity::parse_size`].
    Bytes,
    /// Milliseconds; a plain integer.
    Millis,
    /// Millicores; parsed with the CPU parser (`"0.5"`, `"2"`, `"500m"`).
    Millicores,
    /// A plain count (processes, files, shares, executions).
    Count,
}

/// A numeric setting with an allowed range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `timeout_ms`: wall-clock limit.
    TimeoutMs,
    /// `resources.memory_bytes`.
    MemoryBytes,
    /// `resources.cpu`, in millicores.
    Cpu,
    /// `resources.cpu_shares`.
    CpuShares,
    /// `resources.max_output_bytes`.
    MaxOutputBytes,
    /// `resources.max_pids`.
    MaxPids,
    /// `resources.max_cpu_time_ms`.
    MaxCpuTimeMs,
    /// `resources.max_file_bytes`.
    MaxFileBytes,
    /// `resources.max_open_files`.
    MaxOpenFiles,
    /// `resources.tmp_size_bytes`.
    TmpSizeBytes,
    /// `resources.workspace_size_bytes`.
    WorkspaceSizeBytes,
    /// `security.max_concurrent_executions`.
    MaxConcurrentExecutions,
}

impl Field {
    #[cfg(test)]
    /// Every field, in schema order.
    pub const ALL: [Field; 12] = [
        Field::TimeoutMs,
        Field::MemoryBytes,
        Field::Cpu,
        Field::CpuShares,
        Field::MaxOutputBytes,
        Field::MaxPids,
        Field::MaxCpuTimeMs,
        Field::MaxFileBytes,
        Field::MaxOpenFiles,
        Field::TmpSizeBytes,
        Field::WorkspaceSizeBytes,
        Field::MaxConcurrentExecutions,
    ];

    /// The key of the field in the configuration file (`"memory_bytes"`).
    pub fn key(self) -> &'static str {
        match self {
            Field::TimeoutMs => "timeout_ms",
            Field::MemoryBytes => "memory_bytes",
            Field::Cpu => "cpu",
            Field::CpuShares => "cpu_shares",
            Field::MaxOutputBytes => "max_output_bytes",
            Field::MaxPids => "max_pids",
            Field::MaxCpuTimeMs => "max_cpu_time_ms",
            Field::MaxFileBytes => "max_file_bytes",
            Field::MaxOpenFiles => "max_open_files",
            Field::TmpSizeBytes => "tmp_size_bytes",
            Field::WorkspaceSizeBytes => "workspace_size_bytes",
            Field::MaxConcurrentExecutions => "max_concurrent_executions",
        }
    }

    #[cfg(test)]
    /// The field with this configuration key, if any.
    pub fn from_key(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.key() == key)
    }

    /// What the field counts.
    pub fn unit(self) -> Unit {
        match self {
            Field::TimeoutMs | Field::MaxCpuTimeMs => Unit::Millis,
            Field::Cpu => Unit::Millicores,
            Field::MemoryBytes
            | Field::MaxOutputBytes
            | Field::MaxFileBytes
            | Field::TmpSizeBytes
            | Field::WorkspaceSizeBytes => Unit::Bytes,
            Field::CpuShares | Field::MaxPids | Field::MaxOpenFiles | Field::MaxConcurrentExecutions => {
                Unit::Count
            }
        }
    }

    /// The allowed values, bounds included.
    pub fn range(self) -> RangeInclusive<u64> {
        match self {
            Field::TimeoutMs | Field::MaxCpuTimeMs => 1..=86_400_000,
            Field::MemoryBytes => 4 * MIB..=TIB,
            Field::Cpu => 1..=quantity::MAX_CPU_MILLIS,
            Field::CpuShares => 2..=262_144,
            Field::MaxOutputBytes => 0..=GIB,
            Field::MaxPids => 1..=4_194_304,
            Field::MaxFileBytes => 1..=1 << 62,
            Field::MaxOpenFiles => 8..=1_048_576,
            Field::TmpSizeBytes | Field::WorkspaceSizeBytes => MIB..=TIB,
            Field::MaxConcurrentExecutions => 1..=10_000,
        }
    }

    /// The allowed range in words, e.g. `4194304..=1099511627776 bytes (4MiB..=1TiB)`.
    pub fn describe_range(self) -> String {
        let range = self.range();
        let (min, max) = (*range.start(), *range.end());
        match self.unit() {
            Unit::Bytes => format!("{min}..={max} bytes ({}..={})", format_bytes(min), format_bytes(max)),
            Unit::Millis => format!("{min}..={max} ms"),
            Unit::Millicores => format!(
                "{min}..={max} millicores ({}..={} cores)",
                format_cpu_millis(min),
                format_cpu_millis(max)
            ),
            Unit::Count => format!("{min}..={max}"),
        }
    }

    #[cfg(test)]
    /// Check `value` against the range, naming the field by its configuration key.
    pub fn check(self, value: u64) -> Result<u64, ConfigError> {
        self.check_named(self.key(), value)
    }

    /// Check `value` against the range, naming the field `name` in the error (a dotted
    /// configuration path such as `profiles.big.resources.memory_bytes`, or a flag such as
    /// `--memory`).
    pub fn check_named(self, name: &str, value: u64) -> Result<u64, ConfigError> {
        if self.range().contains(&value) {
            Ok(value)
        } else {
            Err(self.out_of_range(name, value.to_string()))
        }
    }

    /// The E1003 error for `value` (as written) of this field.
    pub(crate) fn out_of_range(self, name: &str, value: String) -> ConfigError {
        let range = self.range();
        ConfigError::OutOfRange {
            field: name.to_owned(),
            value,
            min: *range.start(),
            max: *range.end(),
            allowed: self.describe_range(),
        }
    }

    /// Parse a command-line value for this field (sizes with suffixes, CPU as cores or
    /// millicores, plain integers otherwise) and check its range. `name` is how the error
    /// names it, e.g. `--memory`.
    pub fn parse_flag(self, name: &str, text: &str) -> Result<u64, ConfigError> {
        let invalid = |reason: String| ConfigError::InvalidValue {
            field: name.to_owned(),
            value: text.to_owned(),
            reason,
            expected: self.expected().to_owned(),
        };
        let value = match self.unit() {
            Unit::Bytes => quantity::parse_size(text).map_err(|e| invalid(e.reason().into()))?,
            Unit::Millicores => {
                super::quantity::Quantity::Text(text.to_owned()).to_cpu_millis().map_err(|p| match p {
                    quantity::QuantityProblem::Negative => self.out_of_range(name, text.to_owned()),
                    quantity::QuantityProblem::Invalid(reason) => invalid(reason),
                })?
            }
            Unit::Millis | Unit::Count => {
                let trimmed = text.trim();
                if trimmed.starts_with('-') {
                    return Err(self.out_of_range(name, text.to_owned()));
                }
                trimmed.parse::<u64>().map_err(|_| invalid("expected a whole number".into()))?
            }
        };
        if self.range().contains(&value) {
            Ok(value)
        } else {
            Err(self.out_of_range(name, text.to_owned()))
        }
    }

    /// What a valid value looks like, for hints.
    pub fn expected(self) -> &'static str {
        match self.unit() {
            Unit::Bytes => "a number of bytes or a size such as \"256M\" or \"1G\" (1024-based)",
            Unit::Millis => "a whole number of milliseconds",
            Unit::Millicores => "cores such as \"0.5\" or \"2\", or millicores such as \"500m\"",
            Unit::Count => "a whole number",
        }
    }
}

#[cfg(test)]
/// Check `value` of `field` against its allowed range (E1003 naming the field's
/// configuration key and the range when it is outside).
pub fn check_range(field: Field, value: u64) -> Result<u64, ConfigError> {
    field.check(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_match_the_specification() {
        let table: &[(Field, u64, u64)] = &[
            (Field::TimeoutMs, 1, 86_400_000),
            (Field::MemoryBytes, 4 << 20, 1 << 40),
            (Field::Cpu, 1, 1_024_000),
            (Field::CpuShares, 2, 262_144),
            (Field::MaxOutputBytes, 0, 1 << 30),
            (Field::MaxPids, 1, 4_194_304),
            (Field::MaxCpuTimeMs, 1, 86_400_000),
            (Field::MaxFileBytes, 1, 1 << 62),
            (Field::MaxOpenFiles, 8, 1_048_576),
            (Field::TmpSizeBytes, 1 << 20, 1 << 40),
            (Field::WorkspaceSizeBytes, 1 << 20, 1 << 40),
            (Field::MaxConcurrentExecutions, 1, 10_000),
        ];
        assert_eq!(table.len(), Field::ALL.len());
        for &(field, min, max) in table {
            assert_eq!(field.range(), min..=max, "{field:?}");
            assert_eq!(check_range(field, min).unwrap(), min);
            assert_eq!(check_range(field, max).unwrap(), max);
            let e = check_range(field, max + 1).unwrap_err();
            assert_eq!(e.code(), "E1003");
            if min > 0 {
                assert_eq!(check_range(field, min - 1).unwrap_err().code(), "E1003");
            }
            assert_eq!(Field::from_key(field.key()), Some(field));
        }
    }

    #[test]
    fn out_of_range_reports_the_range() {
        let e = check_range(Field::MemoryBytes, 1024).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("memory_bytes"), "{msg}");
        assert!(msg.contains("1024"), "{msg}");
        assert!(msg.contains("4194304..=1099511627776 bytes (4MiB..=1TiB)"), "{msg}");
        let details = e.details();
        assert!(details.contains(&("min", "4194304".to_owned())));
        assert!(details.contains(&("max", "1099511627776".to_owned())));
    }

    #[test]
    fn flags_use_the_same_parsers_and_ranges() {
        assert_eq!(Field::MemoryBytes.parse_flag("--memory", "256M").unwrap(), 256 << 20);
        assert_eq!(Field::Cpu.parse_flag("--cpu", "0.5").unwrap(), 500);
        assert_eq!(Field::Cpu.parse_flag("--cpu", "250m").unwrap(), 250);
        assert_eq!(Field::TimeoutMs.parse_flag("--timeout", "5000").unwrap(), 5000);

        let e = Field::MemoryBytes.parse_flag("--memory", "1K").unwrap_err();
        assert_eq!(e.code(), "E1003");
        assert!(e.to_string().starts_with("--memory value '1K' is out of range"), "{e}");

        let e = Field::MemoryBytes.parse_flag("--memory", "lots").unwrap_err();
        assert_eq!(e.code(), "E1003");
        assert!(e.to_string().contains("invalid --memory 'lots'"), "{e}");

        assert_eq!(Field::Cpu.parse_flag("--cpu", "0").unwrap_err().code(), "E1003");
        assert_eq!(Field::Cpu.parse_flag("--cpu", "-1").unwrap_err().code(), "E1003");
        assert_eq!(Field::TimeoutMs.parse_flag("--timeout", "0").unwrap_err().code(), "E1003");
        assert_eq!(Field::TimeoutMs.parse_flag("--timeout", "-5").unwrap_err().code(), "E1003");
        assert!(Field::TimeoutMs
            .parse_flag("--timeout", "5s")
            .unwrap_err()
            .to_string()
            .contains("whole number"));
    }
}
