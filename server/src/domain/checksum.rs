use base64::{engine::general_purpose::STANDARD, Engine};
use sha1::Digest;

use super::ParseError;

/// A checksum algorithm of the tus `checksum` extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    /// SHA-1, the one every tus client supports.
    Sha1,
    /// SHA-256.
    Sha256,
}

/// A parsed `Upload-Checksum` header: the algorithm and the expected digest of one PATCH body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadChecksum {
    algorithm: ChecksumAlgorithm,
    expected: Vec<u8>,
}

/// A running digest of one PATCH body, fed chunk by chunk as it streams to disk.
pub enum ChecksumHasher {
    /// Running SHA-1.
    Sha1(sha1::Sha1),
    /// Running SHA-256.
    Sha256(sha2::Sha256),
}

impl UploadChecksum {
    /// Algorithms advertised in `Tus-Checksum-Algorithm`.
    pub const ADVERTISED: &'static str = "sha1,sha256";

    /// Parses `<algorithm> <base64 digest>`.
    pub fn parse(raw: &str) -> Result<Self, ParseError> {
        let (name, digest) = raw
            .trim()
            .split_once(' ')
            .ok_or_else(|| ParseError::new("Upload-Checksum must be '<algorithm> <base64>'"))?;
        let (algorithm, len) = match name.to_ascii_lowercase().as_str() {
            "sha1" => (ChecksumAlgorithm::Sha1, 20),
            "sha256" => (ChecksumAlgorithm::Sha256, 32),
            other => {
                return Err(ParseError::new(format!(
                    "unsupported checksum algorithm {other:?}"
                )))
            }
        };
        let expected = STANDARD
            .decode(digest.trim())
            .map_err(|_| ParseError::new("Upload-Checksum digest is not base64"))?;
        if expected.len() != len {
            return Err(ParseError::new(
                "Upload-Checksum digest has the wrong length",
            ));
        }
        Ok(Self {
            algorithm,
            expected,
        })
    }

    /// A fresh hasher for this checksum's algorithm.
    pub fn hasher(&self) -> ChecksumHasher {
        match self.algorithm {
            ChecksumAlgorithm::Sha1 => ChecksumHasher::Sha1(sha1::Sha1::new()),
            ChecksumAlgorithm::Sha256 => ChecksumHasher::Sha256(sha2::Sha256::new()),
        }
    }

    /// Whether the hasher's digest is the expected one.
    pub fn matches(&self, hasher: ChecksumHasher) -> bool {
        let actual: Vec<u8> = match hasher {
            ChecksumHasher::Sha1(h) => h.finalize().to_vec(),
            ChecksumHasher::Sha256(h) => h.finalize().to_vec(),
        };
        actual == self.expected
    }
}

impl ChecksumHasher {
    /// Feeds the next bytes of the body.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correct_sha1_checksum_matches() {
        // sha1("hello") = aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d
        let checksum = UploadChecksum::parse("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").unwrap();
        let mut hasher = checksum.hasher();
        hasher.update(b"hel");
        hasher.update(b"lo");
        assert!(checksum.matches(hasher));
    }

    #[test]
    fn a_wrong_body_does_not_match() {
        let checksum = UploadChecksum::parse("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").unwrap();
        let mut hasher = checksum.hasher();
        hasher.update(b"hello!");
        assert!(!checksum.matches(hasher));
    }

    #[test]
    fn unknown_algorithms_and_bad_digests_are_rejected() {
        assert!(UploadChecksum::parse("md5 XUFAKrxLKna5cZ2REBfFkg==").is_err());
        assert!(UploadChecksum::parse("sha1 not-base64!").is_err());
        assert!(UploadChecksum::parse("sha256 qvTGHdzF6KLavt4PO0gs2a6pQ00=").is_err());
        assert!(UploadChecksum::parse("sha1").is_err());
    }
}
