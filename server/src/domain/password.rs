use super::ParseError;

/// A password of at least 8 characters; its `Debug` never shows the secret.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Shortest accepted password, in characters.
    pub const MIN_CHARS: usize = 8;
    /// Longest accepted password, in bytes: bounds the hashing work an attacker can request.
    pub const MAX_BYTES: usize = 1024;

    /// Parses a password, refusing one that is too short or absurdly long.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(ParseError::new("password must be at least 8 characters"));
        }
        if raw.len() > Self::MAX_BYTES {
            return Err(ParseError::new("password must be at most 1024 bytes"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The secret, for hashing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_of_seven_characters_is_rejected() {
        assert!(Password::parse("1234567").is_err());
    }

    #[test]
    fn a_password_of_eight_multibyte_characters_is_accepted() {
        assert!(Password::parse("éééééééé").is_ok());
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let password = Password::parse("hunter22hunter22").unwrap();
        assert!(!format!("{password:?}").contains("hunter22"));
    }
}
