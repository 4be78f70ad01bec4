use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};

use super::{ParseError, PostId};

/// The opaque feed cursor: the id of the last post of a page, so the next page is keyset-paginated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    /// Posts strictly older (smaller id) than this one come next.
    pub before_id: PostId,
}

impl FeedCursor {
    /// Encodes the cursor; clients must treat the text as opaque.
    pub fn encode(self) -> String {
        URL_SAFE_NO_PAD.encode(format!("p{}", self.before_id))
    }

    /// Decodes a cursor a client sent back.
    pub fn decode(raw: &str) -> Result<Self, ParseError> {
        let invalid = || ParseError::new("invalid cursor");
        let bytes = URL_SAFE_NO_PAD.decode(raw).map_err(|_| invalid())?;
        let text = std::str::from_utf8(&bytes).map_err(|_| invalid())?;
        let before_id = text
            .strip_prefix('p')
            .and_then(|id| id.parse::<i64>().ok())
            .filter(|id| *id > 0)
            .ok_or_else(invalid)?;
        Ok(Self {
            before_id: PostId::new(before_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips() {
        let cursor = FeedCursor {
            before_id: PostId::new(1234),
        };
        assert_eq!(FeedCursor::decode(&cursor.encode()).unwrap(), cursor);
    }

    #[test]
    fn a_forged_cursor_is_rejected() {
        assert!(FeedCursor::decode("12").is_err());
        assert!(FeedCursor::decode(&URL_SAFE_NO_PAD.encode("p-1")).is_err());
        assert!(FeedCursor::decode("!!!").is_err());
    }
}
