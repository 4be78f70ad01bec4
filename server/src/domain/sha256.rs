use super::ParseError;

/// A SHA-256 digest as 64 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// Parses a hex digest; uppercase hex is accepted and normalized.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let lower = raw.trim().to_ascii_lowercase();
        if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(lower))
        } else {
            Err(ParseError::new("sha256 must be 64 hex characters"))
        }
    }

    /// Wraps a digest computed by the server.
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(hex::encode(digest))
    }

    /// The digest as lowercase hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uppercase_hex_is_normalized() {
        let upper = "AB".repeat(32);
        assert_eq!(Sha256Hex::parse(&upper).unwrap().as_str(), "ab".repeat(32));
    }

    #[test]
    fn a_short_or_non_hex_digest_is_rejected() {
        assert!(Sha256Hex::parse("abc").is_err());
        assert!(Sha256Hex::parse(&"zz".repeat(32)).is_err());
    }
}
