//! Users of the host app: the JWTs it mints, verified with its key, and their users, created
//! on first sight and renamed when the token's `name` changes.
//!
//! Verification is `jsonwebtoken`'s (ring underneath); this module only picks the one algorithm
//! the configured key allows, reads the header first to say precisely why a token is refused,
//! and maps the claims to a user. A user is keyed by the token's issuer (`iss`, empty without
//! one) and `sub`; its id is remembered for [`CACHE_TTL`] by issuer, `sub` and `name`, so an
//! upload's PATCHes cost no database round trip beyond the first.

use std::{
    collections::HashMap,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use anyhow::Context;
use base64::Engine;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    db::{self, users::UserRow, Db},
    domain::now_millis,
};

/// Seconds a token is still accepted after its `exp` (and before its `nbf`): the clocks of
/// the host app and of Livekeep may disagree a little.
pub const LEEWAY_SECS: u64 = 30;
/// How long a host user's id is remembered for a given name.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// Users remembered at most; beyond it, the expired ones are forgotten, or all of them.
const CACHE_MAX: usize = 10_000;
/// The longest `sub` accepted.
pub const MAX_SUBJECT_CHARS: usize = 255;
/// Display names are cut to this many characters.
pub const MAX_NAME_CHARS: usize = 64;
/// The shortest HS256 secret: as long as the hash (RFC 7518, 3.2).
const MIN_SECRET_BYTES: usize = 32;

/// Why a bearer token was refused; the message says which check failed and never echoes
/// the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts with a JSON header, or claims of the wrong types.
    #[error("the token is not a well-formed JWT ({0})")]
    Malformed(String),
    /// `alg: none`.
    #[error("unsigned tokens (alg none) are refused")]
    Unsigned,
    /// Signed with another algorithm than the configured key's.
    #[error("the token is signed with {got}; this server accepts {expected} only")]
    WrongAlgorithm {
        /// The header's `alg`.
        got: String,
        /// The configured key's algorithm.
        expected: &'static str,
    },
    /// The signature does not verify with the configured key.
    #[error("the token's signature does not match the configured key")]
    BadSignature,
    /// `exp` is past (leeway included).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is ahead (leeway included).
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// A required claim is absent.
    #[error("the token has no {0} claim")]
    MissingClaim(String),
    /// `iss` is not the configured issuer.
    #[error("the token's issuer (iss) is not the one this server trusts")]
    WrongIssuer,
    /// `aud` does not name the configured audience, or names one while none is configured.
    #[error("the token's audience (aud) is not this server")]
    WrongAudience,
    /// `sub` is empty or too long.
    #[error("the token's sub must be 1 to 255 characters")]
    BadSubject,
    /// The configured key cannot verify anything (logged; a configuration error).
    #[error("the server's JWT key cannot verify this token")]
    Key,
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostClaims {
    /// `iss`, empty without one.
    pub issuer: String,
    /// `sub`: the user's stable id in the host app.
    pub subject: String,
    /// The display name: `name`, cleaned, else `sub`.
    pub name: String,
    /// `role` is `admin`: may delete any post.
    pub admin: bool,
}

/// The claims read from a token (`exp`, `nbf` and `aud` are checked by `jsonwebtoken`).
#[derive(Deserialize)]
struct RawClaims {
    // Optional here so that a missing `sub` is reported as such by the claim checks, which
    // `jsonwebtoken` runs after reading this struct.
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    role: Option<String>,
}

/// The key the host app signs with.
pub enum HostKey {
    /// An HS256 shared secret.
    Secret(Vec<u8>),
    /// A public key in PEM: RSA, EC P-256 or Ed25519.
    PublicPem(Vec<u8>),
}

struct Cached {
    id: i64,
    name: String,
    at: Instant,
}

/// Verifies the host app's tokens and finds their users.
pub struct HostTokens {
    key: DecodingKey,
    algorithm: Algorithm,
    validation: Validation,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl std::fmt::Debug for HostTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostTokens")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// The algorithm a public key is used with, and the key.
fn public_key(pem: &[u8]) -> anyhow::Result<(Algorithm, DecodingKey)> {
    let text = std::str::from_utf8(pem).context("the JWT public key is not a PEM text file")?;
    anyhow::ensure!(
        !text.contains("PRIVATE KEY"),
        "the JWT key file holds a private key; give the public key (openssl pkey -pubout)"
    );
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok((Algorithm::EdDSA, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        anyhow::ensure!(
            is_p256(text),
            "the JWT public key is an EC key on another curve than P-256 (ES256)"
        );
        return Ok((Algorithm::ES256, key));
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok((Algorithm::RS256, key));
    }
    anyhow::bail!("the JWT public key is not an RSA, EC P-256 or Ed25519 public key in PEM")
}

/// Whether a PEM public key names the P-256 curve (OID 1.2.840.10045.3.1.7).
fn is_p256(pem: &str) -> bool {
    const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let body: String = pem
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .is_ok_and(|der| der.windows(P256.len()).any(|w| w == P256))
}

fn algorithm_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        _ => "another algorithm",
    }
}

fn lock(
    cache: &Mutex<HashMap<(String, String), Cached>>,
) -> MutexGuard<'_, HashMap<(String, String), Cached>> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HostTokens {
    /// Tokens signed with `key`, whose `iss` must be `issuer` and whose `aud` must name
    /// `audience` when these are given.
    pub fn new(key: HostKey, issuer: Option<&str>, audience: Option<&str>) -> anyhow::Result<Self> {
        let (algorithm, key) = match key {
            HostKey::Secret(secret) => {
                anyhow::ensure!(
                    secret.len() >= MIN_SECRET_BYTES,
                    "--auth-jwt-secret must be at least {MIN_SECRET_BYTES} bytes"
                );
                (Algorithm::HS256, DecodingKey::from_secret(&secret))
            }
            HostKey::PublicPem(pem) => public_key(&pem)?,
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        if let Some(audience) = audience {
            validation.set_audience(&[audience]);
            validation.required_spec_claims.insert("aud".to_owned());
        }
        Ok(Self {
            key,
            algorithm,
            validation,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> &'static str {
        algorithm_name(self.algorithm)
    }

    /// Verifies `token`: header, signature, then claims.
    pub fn verify(&self, token: &str) -> Result<HostClaims, TokenError> {
        self.check_header(token)?;
        let claims = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(|err| match err.into_kind() {
                ErrorKind::InvalidSignature | ErrorKind::Crypto(_) => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim),
                ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                ErrorKind::InvalidAudience => TokenError::WrongAudience,
                ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm {
                    got: "another algorithm".to_owned(),
                    expected: self.algorithm(),
                },
                ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => {
                    tracing::error!("the configured JWT key cannot verify tokens");
                    TokenError::Key
                }
                ErrorKind::Json(err) => TokenError::Malformed(format!("claims: {err}")),
                _ => TokenError::Malformed("bad base64 or structure".to_owned()),
            })?
            .claims;
        let subject = claims
            .sub
            .ok_or_else(|| TokenError::MissingClaim("sub".to_owned()))?;
        if subject.is_empty() || subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(TokenError::BadSubject);
        }
        Ok(HostClaims {
            issuer: claims.iss.unwrap_or_default(),
            name: display_name(claims.name.as_deref(), &subject),
            subject,
            admin: claims.role.as_deref() == Some("admin"),
        })
    }

    /// Refuses `alg: none` and any algorithm but the key's before anything else is read.
    fn check_header(&self, token: &str) -> Result<(), TokenError> {
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed(
                "a JWT has three dot-separated parts".to_owned(),
            ));
        };
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header.trim_end_matches('='))
            .map_err(|_| TokenError::Malformed("the header is not base64url".to_owned()))?;
        let header: Header = serde_json::from_slice(&json)
            .map_err(|_| TokenError::Malformed("the header is not JSON with an alg".to_owned()))?;
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::Unsigned);
        }
        if header.alg != self.algorithm() {
            return Err(TokenError::WrongAlgorithm {
                got: header.alg.chars().take(16).collect(),
                expected: self.algorithm(),
            });
        }
        Ok(())
    }

    /// The user of verified `claims`: created on first sight, renamed when `name` changed.
    /// A user seen with the same name in the last [`CACHE_TTL`] costs no query.
    pub async fn user(&self, db: &Db, claims: &HostClaims) -> Result<UserRow, sqlx::Error> {
        let key = (claims.issuer.clone(), claims.subject.clone());
        let cached = lock(&self.cache)
            .get(&key)
            .filter(|c| c.name == claims.name && c.at.elapsed() < CACHE_TTL)
            .map(|c| c.id);
        let id = match cached {
            Some(id) => id,
            None => {
                let id = find_or_create(db, claims).await?;
                self.remember(key, id, &claims.name);
                id
            }
        };
        Ok(UserRow {
            id,
            username: claims.name.clone(),
            external_id: Some(claims.subject.clone()),
        })
    }

    fn remember(&self, key: (String, String), id: i64, name: &str) {
        let mut cache = lock(&self.cache);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, c| c.at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                id,
                name: name.to_owned(),
                at: Instant::now(),
            },
        );
    }
}

/// The host user's id, its row created or its display name updated when needed.
async fn find_or_create(db: &Db, claims: &HostClaims) -> Result<i64, sqlx::Error> {
    match db::users::by_external_id(db, &claims.issuer, &claims.subject).await? {
        Some((id, Some(name))) if name == claims.name => Ok(id),
        Some((id, _)) => {
            db::users::rename_external(db, id, &claims.name).await?;
            Ok(id)
        }
        None => {
            // Two first requests at once both insert; the conflict makes one rename the other.
            db::users::upsert_external(
                db,
                &claims.issuer,
                &claims.subject,
                &internal_handle(&claims.issuer, &claims.subject),
                &claims.name,
                now_millis(),
            )
            .await
        }
    }
}

/// The `username` stored for a host user: unique per (issuer, `sub`), and not a name a
/// built-in account can have (`:` is outside their alphabet).
pub fn internal_handle(issuer: &str, subject: &str) -> String {
    // The issuer's length first, so ("a:b", "c") and ("a", "b:c") differ.
    let digest = Sha256::digest(format!("{}:{issuer}{subject}", issuer.len()));
    format!("jwt:{}", hex::encode(digest))
}

/// `name` without control characters, trimmed and cut to [`MAX_NAME_CHARS`]; `sub` when that
/// leaves nothing.
fn display_name(name: Option<&str>, subject: &str) -> String {
    let clean = |text: &str| -> String {
        text.chars()
            .filter(|c| !c.is_control())
            .collect::<String>()
            .trim()
            .chars()
            .take(MAX_NAME_CHARS)
            .collect()
    };
    let name = name.map(clean).unwrap_or_default();
    if name.is_empty() {
        clean(subject)
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_cleaned_and_falls_back_to_the_subject() {
        assert_eq!(display_name(Some("  Ada\u{7}  L. "), "42"), "Ada  L.");
        assert_eq!(display_name(Some(" \n "), "42"), "42");
        assert_eq!(display_name(None, "42"), "42");
        assert_eq!(
            display_name(Some(&"é".repeat(100)), "42").chars().count(),
            MAX_NAME_CHARS
        );
    }

    #[test]
    fn handles_differ_per_issuer_and_subject_and_cannot_be_built_in_names() {
        let a = internal_handle("a:b", "c");
        let b = internal_handle("a", "b:c");
        assert_ne!(a, b);
        assert_eq!(a, internal_handle("a:b", "c"));
        assert!(crate::domain::Username::parse(&a).is_err());
    }

    #[test]
    fn a_short_secret_and_a_private_key_are_refused() {
        assert!(HostTokens::new(HostKey::Secret(b"short".to_vec()), None, None).is_err());
        let private =
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
        let err = HostTokens::new(HostKey::PublicPem(private.to_vec()), None, None).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
    }
}
