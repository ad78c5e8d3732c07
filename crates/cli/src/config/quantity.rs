//! Sizes and CPU quantities as people write them: `"256M"`, `"1GiB"`, `"0.5"`, `"500m"`.
//!
//! Every size suffix is binary (1024-based), whatever its spelling: `K`, `KB`, `Ki` and `KiB`
//! all mean 1024 bytes, `M`/`MB`/`Mi`/`MiB` mean 1024², and so on up to `E` (1024⁶). This is
//! what capsule-run does for `K`, `M` and `G`, and Airlock extends it to every form so that a
//! configuration never means two different sizes depending on how a suffix is spelled.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// Largest CPU quantity accepted, in millicores (1024 cores).
pub const MAX_CPU_MILLIS: u64 = 1_024_000;

/// Most digits accepted after the decimal point of a size.
const MAX_FRACTION_DIGITS: usize = 18;

/// A string that is not a valid size or CPU quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {} '{input}': {reason}", kind.noun())]
pub struct QuantityError {
    kind: QuantityKind,
    input: String,
    reason: String,
}

/// What a [`QuantityError`] was trying to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantityKind {
    /// A byte size (`parse_size`).
    Size,
    /// A CPU quantity (`parse_cpu_millis`).
    Cpu,
}

impl QuantityKind {
    fn noun(self) -> &'static str {
        match self {
            QuantityKind::Size => "size",
            QuantityKind::Cpu => "cpu quantity",
        }
    }
}

impl QuantityError {
    fn new(kind: QuantityKind, input: &str, reason: impl Into<String>) -> QuantityError {
        QuantityError { kind, input: input.to_owned(), reason: reason.into() }
    }

    #[cfg(test)]
    /// Whether a size or a CPU quantity was being parsed.
    pub fn kind(&self) -> QuantityKind {
        self.kind
    }

    #[cfg(test)]
    /// The rejected input, as given.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// Why the input was rejected, without the input itself (for callers that name it).
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// A decimal number split into its integer digits and fraction digits (both ASCII digits only).
struct Decimal<'a> {
    int: &'a str,
    frac: &'a str,
}

/// Split `s` into a leading unsigned decimal number and the rest. `None` when `s` does not
/// start with a digit or the dot is not followed by a digit.
fn split_decimal(s: &str) -> Option<(Decimal<'_>, &str)> {
    let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
    if int_len == 0 {
        return None;
    }
    let (int, rest) = s.split_at(int_len);
    if let Some(after_dot) = rest.strip_prefix('.') {
        let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
        if frac_len == 0 {
            return None;
        }
        let (frac, rest) = after_dot.split_at(frac_len);
        Some((Decimal { int, frac }, rest))
    } else {
        Some((Decimal { int, frac: "" }, rest))
    }
}

/// Parse ASCII digits into a `u128`, `None` on overflow.
fn digits_u128(digits: &str) -> Option<u128> {
    digits.bytes().try_fold(0u128, |acc, b| acc.checked_mul(10)?.checked_add(u128::from(b - b'0')))
}

/// The power of 1024 a size suffix stands for, or `None` when the suffix is unknown.
fn suffix_shift(suffix: &str) -> Option<u32> {
    let lower = suffix.to_ascii_lowercase();
    let shift = match lower.as_str() {
        "" | "b" => 0,
        "k" | "kb" | "ki" | "kib" => 10,
        "m" | "mb" | "mi" | "mib" => 20,
        "g" | "gb" | "gi" | "gib" => 30,
        "t" | "tb" | "ti" | "tib" => 40,
        "p" | "pb" | "pi" | "pib" => 50,
        "e" | "eb" | "ei" | "eib" => 60,
        _ => return None,
    };
    Some(shift)
}

/// Parse a byte size: plain bytes (`"1048576"`) or a number with a binary suffix
/// (`"256M"`, `"256MB"`, `"256Mi"`, `"256MiB"`, `"1.5G"`, `"512k"`).
///
/// Suffixes are case-insensitive and all 1024-based (see the module documentation); a space
/// between number and suffix is allowed. A fraction is allowed only with a suffix and is
/// rounded down to whole bytes.
pub fn parse_size(s: &str) -> Result<u64, QuantityError> {
    let err = |reason: &str| QuantityError::new(QuantityKind::Size, s, reason);
    let text = s.trim();
    if text.is_empty() {
        return Err(err("expected a number of bytes, got an empty string"));
    }
    if text.starts_with('-') {
        return Err(err("a size cannot be negative"));
    }
    let Some((number, rest)) = split_decimal(text) else {
        return Err(err("expected a number of bytes, optionally with a K, M, G or T suffix"));
    };
    let suffix = rest.trim_start();
    let Some(shift) = suffix_shift(suffix) else {
        return Err(err(&format!(
            "unknown size suffix '{suffix}' (use K, M, G, T, P or E, optionally with B, i or iB)"
        )));
    };
    if shift == 0 && !number.frac.is_empty() {
        return Err(err("a byte count cannot have a fraction"));
    }
    if number.frac.len() > MAX_FRACTION_DIGITS {
        return Err(err("too many digits after the decimal point"));
    }
    let too_large = || err("too large (the maximum is 16 EiB - 1)");
    let int = digits_u128(number.int).ok_or_else(too_large)?;
    let frac = digits_u128(number.frac).ok_or_else(too_large)?;
    let multiplier = 1u128 << shift;
    // At most 18 fraction digits: frac * 2^60 < 10^18 * 2^60 < 2^120 fits in u128.
    let frac_bytes = frac * multiplier / 10u128.pow(number.frac.len() as u32);
    let bytes = int.checked_mul(multiplier).and_then(|b| b.checked_add(frac_bytes)).ok_or_else(too_large)?;
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Parse a CPU quantity without the range check: millicores, possibly 0.
fn parse_cpu_millis_unchecked(s: &str) -> Result<u64, QuantityError> {
    let err = |reason: &str| QuantityError::new(QuantityKind::Cpu, s, reason);
    let text = s.trim();
    if text.is_empty() {
        return Err(err("expected cores such as \"0.5\" or millicores such as \"500m\""));
    }
    if text.starts_with('-') {
        return Err(err("a cpu quantity cannot be negative"));
    }
    let Some((number, rest)) = split_decimal(text) else {
        return Err(err("expected cores such as \"0.5\" or millicores such as \"500m\""));
    };
    let too_large = || err("too large (the maximum is 1024 cores)");
    match rest.trim_start() {
        "m" => {
            if !number.frac.is_empty() {
                return Err(err("millicores must be a whole number"));
            }
            let millis = digits_u128(number.int).ok_or_else(too_large)?;
            u64::try_from(millis).map_err(|_| too_large())
        }
        "" => {
            let frac = number.frac.trim_end_matches('0');
            if frac.len() > 3 {
                return Err(err("finer than one millicore (at most 3 decimal places)"));
            }
            let int = digits_u128(number.int).ok_or_else(too_large)?;
            // Pad the fraction to exactly three digits: "5" -> 500, "25" -> 250.
            let frac_millis = digits_u128(frac).unwrap_or(0) * 10u128.pow(3 - frac.len() as u32);
            let millis =
                int.checked_mul(1000).and_then(|m| m.checked_add(frac_millis)).ok_or_else(too_large)?;
            u64::try_from(millis).map_err(|_| too_large())
        }
        other => Err(err(&format!(
            "unknown cpu suffix '{other}' (write cores such as \"0.5\" or millicores such as \"500m\")"
        ))),
    }
}

#[cfg(test)]
/// Parse a CPU quantity into millicores: cores (`"0.5"` → 500, `"2"` → 2000, `"1.25"` → 1250)
/// or millicores with a lowercase `m` (`"500m"` → 500).
///
/// Rejects zero, negative numbers, more than three decimal places, anything that is not a
/// number and more than 1024 cores ([`MAX_CPU_MILLIS`]).
pub fn parse_cpu_millis(s: &str) -> Result<u64, QuantityError> {
    let millis = parse_cpu_millis_unchecked(s)?;
    if millis == 0 || millis > MAX_CPU_MILLIS {
        return Err(QuantityError::new(QuantityKind::Cpu, s, "out of range (allowed 1m to 1024 cores)"));
    }
    Ok(millis)
}

/// A numeric setting as written in the configuration file, before it is parsed and checked:
/// TOML integers, floats and strings are all accepted here so that a bad value is reported
/// as an out-of-range or invalid value naming its field (E1003), not as a type error.
#[derive(Debug, Clone, PartialEq)]
pub enum Quantity {
    /// A TOML integer.
    Integer(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML string such as `"256M"` or `"500m"`.
    Text(String),
}

impl fmt::Display for Quantity {
    /// The value as it would be written in TOML (strings quoted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quantity::Integer(n) => write!(f, "{n}"),
            Quantity::Float(x) => write!(f, "{x}"),
            Quantity::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl Quantity {
    /// The value as written in the file, without quotes (`256M`, `1024`, `0.5`).
    pub fn as_written(&self) -> String {
        match self {
            Quantity::Integer(n) => n.to_string(),
            Quantity::Float(x) => x.to_string(),
            Quantity::Text(s) => s.clone(),
        }
    }
}

impl From<u64> for Quantity {
    fn from(n: u64) -> Quantity {
        // Values above i64::MAX cannot come from TOML; keep them as text so they stay exact.
        match i64::try_from(n) {
            Ok(n) => Quantity::Integer(n),
            Err(_) => Quantity::Text(n.to_string()),
        }
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Quantity {
        Quantity::Text(s.to_owned())
    }
}

/// Why a [`Quantity`] could not be turned into a number: unparsable or negative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum QuantityProblem {
    /// The value is negative (reported as out of range).
    Negative,
    /// The value cannot be parsed.
    Invalid(String),
}

impl Quantity {
    /// The size in bytes: an integer as is, a string through [`parse_size`]. Floats are
    /// refused (write `"1.5G"` instead).
    pub(crate) fn to_bytes(&self) -> Result<u64, QuantityProblem> {
        match self {
            Quantity::Integer(n) => u64::try_from(*n).map_err(|_| QuantityProblem::Negative),
            Quantity::Float(_) => Err(QuantityProblem::Invalid(
                "a size must be an integer number of bytes or a string such as \"1.5G\"".into(),
            )),
            Quantity::Text(s) => parse_size(s).map_err(|e| QuantityProblem::Invalid(e.reason().to_owned())),
        }
    }

    /// The CPU quantity in millicores: integers and floats are cores, strings go through the
    /// parser of [`parse_cpu_millis`]. Zero is returned as 0 (the range check rejects it).
    pub(crate) fn to_cpu_millis(&self) -> Result<u64, QuantityProblem> {
        let text = match self {
            Quantity::Integer(n) if *n < 0 => return Err(QuantityProblem::Negative),
            Quantity::Integer(n) => n.to_string(),
            Quantity::Float(x) if *x < 0.0 => return Err(QuantityProblem::Negative),
            // Display gives the shortest decimal form ("0.1", not 0.1000000000000000055),
            // so the exact-millicore rules of the string parser apply to floats too.
            Quantity::Float(x) => x.to_string(),
            Quantity::Text(s) => s.clone(),
        };
        parse_cpu_millis_unchecked(&text).map_err(|e| QuantityProblem::Invalid(e.reason().to_owned()))
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Quantity, D::Error> {
        struct QuantityVisitor;

        impl Visitor<'_> for QuantityVisitor {
            type Value = Quantity;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string such as \"256M\" or \"0.5\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity::Integer(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity::from(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity::Float(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(QuantityVisitor)
    }
}

/// Format a byte count with the largest binary unit that divides it exactly (`4MiB`,
/// `1TiB`), or as plain bytes.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [(u32, &str); 6] =
        [(60, "EiB"), (50, "PiB"), (40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        let m = 1u64 << shift;
        if n >= m && n % m == 0 {
            return format!("{}{unit}", n / m);
        }
    }
    format!("{n}B")
}

/// Format millicores as cores when whole (`"2"`), else with an `m` suffix (`"500m"`).
pub fn format_cpu_millis(millis: u64) -> String {
    if millis % 1000 == 0 {
        format!("{}", millis / 1000)
    } else {
        format!("{millis}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KI: u64 = 1024;
    const MI: u64 = 1024 * 1024;
    const GI: u64 = 1024 * 1024 * 1024;

    #[test]
    fn sizes() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("1", 1),
            ("1048576", MI),
            ("268435456", 256 * MI),
            ("512K", 512 * KI),
            ("512k", 512 * KI),
            ("1KB", KI),
            ("1kb", KI),
            ("1Ki", KI),
            ("1KiB", KI),
            ("1kib", KI),
            ("256M", 256 * MI),
            ("256MB", 256 * MI),
            ("256Mi", 256 * MI),
            ("256MiB", 256 * MI),
            ("256m", 256 * MI),
            ("1G", GI),
            ("1GB", GI),
            ("1Gi", GI),
            ("1gib", GI),
            ("2T", 2 << 40),
            ("1TiB", 1 << 40),
            ("1P", 1 << 50),
            ("15E", 15 << 60),
            ("1.5G", 3 * GI / 2),
            ("0.5K", 512),
            ("0.1K", 102), // 102.4 rounded down
            ("64 M", 64 * MI),
            ("  7  ", 7),
            ("10B", 10),
            ("18446744073709551615", u64::MAX),
        ];
        for (input, want) in table {
            assert_eq!(parse_size(input), Ok(*want), "parse_size({input:?})");
        }
    }

    #[test]
    fn bad_sizes() {
        let table: &[(&str, &str)] = &[
            ("", "empty"),
            ("   ", "empty"),
            ("-1", "negative"),
            ("-1M", "negative"),
            ("M", "expected a number"),
            ("abc", "expected a number"),
            (".5G", "expected a number"),
            ("1.G", "expected a number"),
            ("12Q", "unknown size suffix 'Q'"),
            ("1 M B", "unknown size suffix"),
            ("1MBB", "unknown size suffix"),
            ("1.5", "fraction"),
            ("16E", "too large"),
            ("18446744073709551616", "too large"),
            ("99999999999999999999999999999999999999999", "too large"),
            ("1.0000000000000000001K", "too many digits"),
            ("0x10", "unknown size suffix"),
        ];
        for (input, want) in table {
            let e = parse_size(input).expect_err(input);
            assert_eq!(e.kind(), QuantityKind::Size);
            assert_eq!(e.input(), *input);
            assert!(e.reason().contains(want), "parse_size({input:?}): {e}");
            assert!(e.to_string().starts_with("invalid size '"), "{e}");
        }
    }

    #[test]
    fn cpu() {
        let table: &[(&str, u64)] = &[
            ("0.5", 500),
            ("2", 2000),
            ("500m", 500),
            ("1.25", 1250),
            ("0.001", 1),
            ("1m", 1),
            ("1.500", 1500),
            ("1.2500000", 1250),
            (" 3 ", 3000),
            ("1024", 1_024_000),
            ("1024000m", 1_024_000),
            ("250 m", 250),
        ];
        for (input, want) in table {
            assert_eq!(parse_cpu_millis(input), Ok(*want), "parse_cpu_millis({input:?})");
        }
    }

    #[test]
    fn bad_cpu() {
        let table: &[(&str, &str)] = &[
            ("0", "out of range"),
            ("0m", "out of range"),
            ("0.0", "out of range"),
            ("1025", "out of range"),
            ("1024001m", "out of range"),
            ("99999999999999999999999999", "too large"),
            ("-1", "negative"),
            ("-500m", "negative"),
            ("", "expected cores"),
            ("abc", "expected cores"),
            ("half", "expected cores"),
            ("0.0005", "finer than one millicore"),
            ("1.5m", "whole number"),
            ("500M", "unknown cpu suffix 'M'"),
            ("2 cores", "unknown cpu suffix"),
        ];
        for (input, want) in table {
            let e = parse_cpu_millis(input).expect_err(input);
            assert_eq!(e.kind(), QuantityKind::Cpu);
            assert!(e.reason().contains(want), "parse_cpu_millis({input:?}): {e}");
            assert!(e.to_string().starts_with("invalid cpu quantity '"), "{e}");
        }
    }

    #[test]
    fn quantity_conversions() {
        assert_eq!(Quantity::Integer(1024).to_bytes(), Ok(1024));
        assert_eq!(Quantity::from("1K").to_bytes(), Ok(1024));
        assert_eq!(Quantity::Integer(-1).to_bytes(), Err(QuantityProblem::Negative));
        assert!(matches!(Quantity::Float(1.5).to_bytes(), Err(QuantityProblem::Invalid(_))));
        assert_eq!(Quantity::Float(0.5).to_cpu_millis(), Ok(500));
        assert_eq!(Quantity::Float(0.1).to_cpu_millis(), Ok(100));
        assert!(Quantity::Float(1e-7).to_cpu_millis().is_err());
        assert!(Quantity::Float(f64::NAN).to_cpu_millis().is_err());
        assert!(Quantity::Float(f64::INFINITY).to_cpu_millis().is_err());
        assert_eq!(Quantity::Float(-0.5).to_cpu_millis(), Err(QuantityProblem::Negative));
        assert_eq!(Quantity::Integer(2).to_cpu_millis(), Ok(2000));
        assert_eq!(Quantity::Integer(0).to_cpu_millis(), Ok(0));
        assert_eq!(Quantity::Integer(-2).to_cpu_millis(), Err(QuantityProblem::Negative));
        assert_eq!(Quantity::from("500m").to_cpu_millis(), Ok(500));
        assert_eq!(Quantity::from(u64::MAX).to_bytes(), Ok(u64::MAX));
    }

    #[test]
    fn quantity_deserializes_from_integer_float_and_string() {
        #[derive(Debug, serde::Deserialize)]
        struct T {
            a: Quantity,
            b: Quantity,
            c: Quantity,
        }
        let t: T = toml::from_str("a = 5\nb = 0.5\nc = \"256M\"").unwrap();
        assert_eq!(t.a, Quantity::Integer(5));
        assert_eq!(t.b, Quantity::Float(0.5));
        assert_eq!(t.c, Quantity::Text("256M".into()));
        let e = toml::from_str::<T>("a = true\nb = 1\nc = 1").unwrap_err();
        assert!(e.message().contains("an integer or a string"), "{e}");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(4 * MI), "4MiB");
        assert_eq!(format_bytes(1 << 40), "1TiB");
        assert_eq!(format_bytes(1 << 62), "4EiB");
        assert_eq!(format_bytes(1536), "1536B");
        assert_eq!(format_bytes(0), "0B");
        assert_eq!(format_cpu_millis(2000), "2");
        assert_eq!(format_cpu_millis(500), "500m");
    }
}
