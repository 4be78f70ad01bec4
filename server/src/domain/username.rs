use super::ParseError;

/// A login name: 1 to 32 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Longest accepted name, in characters.
    pub const MAX_LEN: usize = 32;

    /// Parses a name, refusing anything outside the allowed alphabet or length.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN {
            return Err(ParseError::new("username must be 1 to 32 characters"));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(ParseError::new(
                "username may contain only letters, digits, '_', '.' and '-'",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_name_is_accepted() {
        assert_eq!(
            Username::parse("alice_01.b-c").unwrap().as_str(),
            "alice_01.b-c"
        );
    }

    #[test]
    fn an_empty_name_is_rejected() {
        assert!(Username::parse("").is_err());
    }

    #[test]
    fn a_name_of_33_characters_is_rejected_and_32_is_accepted() {
        assert!(Username::parse(&"a".repeat(33)).is_err());
        assert!(Username::parse(&"a".repeat(32)).is_ok());
    }

    #[test]
    fn a_name_with_spaces_slashes_or_accents_is_rejected() {
        for bad in ["a b", "a/b", "élodie", "../x", "a\0b"] {
            assert!(Username::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
