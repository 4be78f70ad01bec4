use std::collections::HashMap;

use base64::{engine::general_purpose::STANDARD, Engine};

use super::ParseError;

/// A decoded tus `Upload-Metadata` header: comma-separated `key base64value` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadMetadata(HashMap<String, String>);

impl UploadMetadata {
    /// Parses the header; a key may come without a value, and values must be UTF-8.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let mut pairs = HashMap::new();
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut parts = pair.splitn(2, ' ');
            let key = parts.next().unwrap_or_default();
            if key.is_empty() || !key.is_ascii() {
                return Err(ParseError::new("Upload-Metadata has an invalid key"));
            }
            let value = match parts.next() {
                Some(encoded) => {
                    let bytes = STANDARD.decode(encoded.trim()).map_err(|_| {
                        ParseError::new(format!("Upload-Metadata value of {key:?} is not base64"))
                    })?;
                    String::from_utf8(bytes).map_err(|_| {
                        ParseError::new(format!("Upload-Metadata value of {key:?} is not UTF-8"))
                    })?
                }
                None => String::new(),
            };
            if pairs.insert(key.to_owned(), value).is_some() {
                return Err(ParseError::new(format!("Upload-Metadata repeats {key:?}")));
            }
        }
        Ok(Self(pairs))
    }

    /// The decoded value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_bare_keys_are_decoded() {
        let meta =
            UploadMetadata::parse("live_id NDI=, filetype dmlkZW8vd2VibQ==,is_live").unwrap();
        assert_eq!(meta.get("live_id"), Some("42"));
        assert_eq!(meta.get("filetype"), Some("video/webm"));
        assert_eq!(meta.get("is_live"), Some(""));
        assert_eq!(meta.get("missing"), None);
    }

    #[test]
    fn invalid_base64_and_repeated_keys_are_rejected() {
        assert!(UploadMetadata::parse("live_id ***").is_err());
        assert!(UploadMetadata::parse("a YQ==,a Yg==").is_err());
    }
}
