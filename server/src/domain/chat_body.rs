use super::ParseError;

/// The text of a chat message: 1 to 500 characters after trimming, without control characters
/// or bidirectional overrides (which could disguise what others read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatBody(String);

impl ChatBody {
    /// Longest accepted message, in characters.
    pub const MAX_CHARS: usize = 500;

    /// Parses a message, trimming surrounding whitespace.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new("the message must not be empty"));
        }
        if trimmed.chars().count() > Self::MAX_CHARS {
            return Err(ParseError::new(
                "the message must be at most 500 characters",
            ));
        }
        if trimmed
            .chars()
            .any(|c| c.is_control() || is_bidi_control(c))
        {
            return Err(ParseError::new(
                "the message must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The message as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Embeddings, overrides and isolates of the Unicode bidirectional algorithm.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_trimmed() {
        assert_eq!(
            ChatBody::parse("  salut 👋 \n").unwrap().as_str(),
            "salut 👋"
        );
    }

    #[test]
    fn blank_and_too_long_messages_are_rejected() {
        assert!(ChatBody::parse(" \t ").is_err());
        assert!(ChatBody::parse(&"é".repeat(501)).is_err());
        assert!(ChatBody::parse(&"é".repeat(500)).is_ok());
    }

    #[test]
    fn control_characters_and_bidi_overrides_are_rejected() {
        for bad in [
            "a\u{0}b",
            "line\nbreak",
            "bell\u{7}",
            "rtl \u{202E}txt",
            "x\u{2066}y",
        ] {
            assert!(ChatBody::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
