use super::ParseError;

/// The title a streamer gives a live: 1 to 500 characters after trimming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveContent(String);

impl LiveContent {
    /// Longest accepted title, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Parses a title, trimming surrounding whitespace.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("content must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::new("content must be at most 500 characters"));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The title as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(
            LiveContent::parse("  Mon live \n").unwrap().as_str(),
            "Mon live"
        );
    }

    #[test]
    fn blank_content_is_rejected() {
        assert!(LiveContent::parse("   ").is_err());
    }

    #[test]
    fn content_over_500_characters_is_rejected() {
        assert!(LiveContent::parse(&"é".repeat(501)).is_err());
        assert!(LiveContent::parse(&"é".repeat(500)).is_ok());
    }
}
