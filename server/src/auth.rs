//! Password hashing, bearer tokens, and the extractor for authenticated requests.

use std::sync::OnceLock;

use anyhow::Context;
use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Argon2,
};
use axum::{extract::FromRequestParts, http::request::Parts};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use crate::{
    db::{self, users::UserRow},
    domain::Password,
    error::ApiError,
    state::AppState,
};

/// Creates an account (the work behind `POST /api/auth/register` and `livekeep admin
/// create-user`): the password is hashed off the async workers; a taken name is 409.
pub async fn create_user(
    state: &AppState,
    username: &crate::domain::Username,
    password: Password,
) -> Result<UserRow, ApiError> {
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .context("hashing task")??;
    let user = db::users::insert(
        &state.db,
        username.as_str(),
        &hash,
        crate::domain::now_millis(),
    )
    .await?;
    Ok(user)
}

/// Hashes a password with argon2id and a random salt (slow: call it in `spawn_blocking`).
pub fn hash_password(password: &Password) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
}

/// Whether `password` matches the stored PHC string (slow: call it in `spawn_blocking`).
pub fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Verifies against a throwaway hash so an unknown username costs as much as a wrong password.
pub fn burn_password_check(password: &str) {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        Password::parse("not-a-real-password")
            .ok()
            .and_then(|p| hash_password(&p).ok())
    });
    if let Some(hash) = dummy {
        verify_password(hash, password);
    }
}

/// A new random bearer token (256 bits, hex) and the hash under which it is stored.
pub fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token. Sessions are looked up by this SHA-256 in the database's
/// index, so no comparison ever runs on the raw token: its timing tells nothing about it.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token of an `Authorization: Bearer` header; 401 without one.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthenticated)
}

/// The user behind a valid `Authorization: Bearer` header; rejects with 401 otherwise.
#[derive(Debug, Clone)]
pub struct AuthUser(pub UserRow);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        let user = db::users::by_session(&state.db, &token_hash(token))
            .await
            .context("looking up a session")?
            .ok_or(ApiError::Unauthenticated)?;
        Ok(Self(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hashed_password_verifies_and_a_wrong_one_does_not() {
        let password = Password::parse("correct horse").unwrap();
        let hash = hash_password(&password).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse!"));
        assert!(!verify_password("garbage", "correct horse"));
    }

    #[test]
    fn tokens_are_random_and_stored_only_as_their_hash() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), hash_a);
        assert_ne!(hex::encode(hash_a), a);
    }
}
