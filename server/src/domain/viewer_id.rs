use std::fmt;

use super::ParseError;

/// The random id a viewer's page keeps, so that its reconnections count as one viewer.
///
/// 8 to 64 characters of `[A-Za-z0-9_-]` (a UUID fits); it never reaches a file path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViewerId(String);

impl ViewerId {
    /// Parses the `viewer_id` query parameter.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let ok = (8..=64).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ParseError::new(
                "viewer_id must be 8 to 64 characters of A-Z, a-z, 0-9, '_' and '-'",
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ViewerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uuid_is_a_viewer_id() {
        let id = "0b6f6a1e-4a8e-4c43-9f51-1f2d3c4b5a69";
        assert_eq!(ViewerId::parse(id).unwrap().as_str(), id);
    }

    #[test]
    fn short_long_and_odd_ids_are_rejected() {
        for bad in [
            "short",
            &"a".repeat(65),
            "../../etc/passwd",
            "abc def ghi",
            "abcdefgh%00",
        ] {
            assert!(ViewerId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
