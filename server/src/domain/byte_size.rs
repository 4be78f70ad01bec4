use std::{fmt, str::FromStr};

use super::ParseError;

/// A size in bytes written like `8GiB`, `500MB`, `1024` (config flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let raw = raw.trim();
        let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
        let (digits, unit) = raw.split_at(split);
        let value: u64 = digits
            .parse()
            .map_err(|_| ParseError::new(format!("{raw:?} is not a size like 8GiB")))?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            other => return Err(ParseError::new(format!("unknown size unit {other:?}"))),
        };
        value
            .checked_mul(multiplier)
            .map(Self)
            .ok_or_else(|| ParseError::new(format!("{raw:?} is too large")))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_decimal_units_are_understood() {
        assert_eq!("8GiB".parse::<ByteSize>().unwrap().bytes(), 8 << 30);
        assert_eq!("500MB".parse::<ByteSize>().unwrap().bytes(), 500_000_000);
        assert_eq!("64 mib".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!("1024".parse::<ByteSize>().unwrap().bytes(), 1024);
    }

    #[test]
    fn garbage_units_and_overflow_are_rejected() {
        assert!("8 parsecs".parse::<ByteSize>().is_err());
        assert!("GiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }
}
