//! Sessions behind bearer tokens: signing in (rate limited), finding the user of a token,
//! signing out.
//!
//! A token is 256 random bits, stored only as its SHA-256: sessions are looked up by that hash
//! in the database's index, so no comparison ever runs on the raw token and its timing tells
//! nothing about it.

use std::net::IpAddr;

use anyhow::Context;
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::{passwords, rate_limit, AccountError};
use crate::{
    db::{self, users::UserRow, Db},
    domain::now_millis,
};

/// A signed-in user and the bearer token of the new session.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The account.
    pub user: UserRow,
    /// The token for `Authorization: Bearer`.
    pub token: String,
}

/// A new random bearer token (256 bits, hex) and the hash under which it is stored.
pub fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Opens a session for `user`.
pub async fn open(db: &Db, user: UserRow) -> Result<SignedIn, AccountError> {
    let (token, hash) = new_token();
    db::users::insert_session(db, &hash, user.id, now_millis()).await?;
    Ok(SignedIn { user, token })
}

/// Signs in with a name and a password, counted against the failed-login limits of the name
/// and of `ip` (when known).
pub async fn login(
    db: &Db,
    username: &str,
    password: String,
    ip: Option<IpAddr>,
) -> Result<SignedIn, AccountError> {
    let attempt = rate_limit::begin_login(db, username, ip).await?;
    let found = db::users::credentials(db, username).await?;
    let user = tokio::task::spawn_blocking(move || match found {
        Some(user) if passwords::verify(&user.password_hash, &password) => Some(user),
        Some(_) => None,
        None => {
            passwords::burn_check(&password);
            None
        }
    })
    .await
    .context("password check task")?;
    let Some(user) = user else {
        // The attempt stays counted as a failure.
        return Err(AccountError::InvalidCredentials);
    };
    attempt.succeeded(db).await?;
    let user = UserRow {
        id: user.id,
        username: user.username,
        external_id: None,
    };
    open(db, user).await
}

/// The user of the session `token` opened.
pub async fn authenticate(db: &Db, token: &str) -> Result<UserRow, AccountError> {
    db::users::by_session(db, &token_hash(token))
        .await
        .context("looking up a session")?
        .ok_or(AccountError::Unauthenticated)
}

/// Signs out: the session of `token` is deleted, and the token refused from then on.
pub async fn close(db: &Db, token: &str) -> Result<(), AccountError> {
    if db::users::delete_session(db, &token_hash(token)).await? {
        Ok(())
    } else {
        Err(AccountError::Unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_only_as_their_hash() {
        let (a, hash_a) = new_token();
        let (b, _) = new_token();
        assert_ne!(a, b);
        assert_eq!(token_hash(&a), hash_a);
        assert_ne!(hex::encode(hash_a), a);
    }
}
