//! Standard Webhooks signatures: the `whsec_` secret and the `v1` HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{body}` (standardwebhooks.com, "Signature scheme").

use std::{fmt, str::FromStr};

use base64::{engine::general_purpose::STANDARD, Engine};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix the specification gives symmetric secrets.
const PREFIX: &str = "whsec_";
/// The specification's bounds on a symmetric secret: 192 to 512 bits.
const MIN_KEY_BYTES: usize = 24;
const MAX_KEY_BYTES: usize = 64;

/// The key webhooks are signed with, parsed from `whsec_<base64>`; its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

/// Why a `--webhook-secret` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a webhook secret is `whsec_` followed by the base64 of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} \
     random bytes (e.g. `whsec_$(openssl rand -base64 32)`): {0}"
)]
pub struct SecretError(&'static str);

impl FromStr for WebhookSecret {
    type Err = SecretError;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let encoded = raw
            .trim()
            .strip_prefix(PREFIX)
            .ok_or(SecretError("it does not start with whsec_"))?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError("what follows whsec_ is not base64"))?;
        if key.len() < MIN_KEY_BYTES {
            return Err(SecretError("the key is too short"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(SecretError("the key is too long"));
        }
        Ok(Self(key))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

impl WebhookSecret {
    /// The `webhook-signature` header value of one attempt: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_specifications_reference_libraries() {
        // The test vector of the Standard Webhooks reference libraries (their test suites).
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn a_malformed_secret_is_refused_with_the_reason() {
        let error = |raw: &str| raw.parse::<WebhookSecret>().unwrap_err().0;
        assert_eq!(error("c2VjcmV0"), "it does not start with whsec_");
        assert_eq!(
            error("whsec_not base64!"),
            "what follows whsec_ is not base64"
        );
        assert_eq!(error("whsec_c2VjcmV0"), "the key is too short");
        let long = format!("whsec_{}", STANDARD.encode([7u8; 65]));
        assert_eq!(error(&long), "the key is too long");
        assert!(format!("whsec_{}", STANDARD.encode([7u8; 32]))
            .parse::<WebhookSecret>()
            .is_ok());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let secret: WebhookSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "WebhookSecret(***)");
    }
}
