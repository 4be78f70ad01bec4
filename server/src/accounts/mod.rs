//! Accounts: creating users, their passwords, the sessions behind bearer tokens, the host
//! app's users signed in with its JWTs, and the rate limits that hold for the whole cluster
//! (failed logins, chat messages).

pub mod host;
pub mod passwords;
pub mod rate_limit;
pub mod sessions;

use anyhow::Context;

use crate::{
    config::AuthMode,
    db::{self, users::UserRow, Db},
    domain::{now_millis, Password, Username},
};

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Another account has this name (names are compared case-insensitively).
    #[error("the name {0:?} is already taken")]
    NameTaken(String),
    /// No account has this name and password.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// The token is missing, unknown or signed out.
    #[error("authentication required")]
    Unauthenticated,
    /// Too many failed logins; retry after this many seconds.
    #[error("too many requests; retry in {0} s")]
    RateLimited(u64),
    /// A bearer token was refused, for the reason given.
    #[error(transparent)]
    TokenRefused(#[from] host::TokenError),
    /// A session token, while only the host app's JWTs are accepted (`--auth jwt`).
    #[error("session tokens are refused: this server accepts only the host app's JWTs")]
    SessionsDisabled,
    /// Registering, signing in or out with a password, while only the host app's JWTs are
    /// accepted (`--auth jwt`).
    #[error("this server signs people in through its host app; its own accounts are off")]
    BuiltinDisabled,
    /// The database or a task failed.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AccountError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(err.into())
    }
}

impl From<rate_limit::RateLimitError> for AccountError {
    fn from(err: rate_limit::RateLimitError) -> Self {
        match err {
            rate_limit::RateLimitError::Exceeded(seconds) => Self::RateLimited(seconds),
            rate_limit::RateLimitError::Database(err) => err.into(),
        }
    }
}

/// Creates an account (the work behind `POST /api/auth/register` and `livekeep admin
/// create-user`): the password is hashed off the async workers; a taken name is refused.
pub async fn create_user(
    db: &Db,
    username: &Username,
    password: Password,
) -> Result<UserRow, AccountError> {
    let hash = tokio::task::spawn_blocking(move || passwords::hash(&password))
        .await
        .context("hashing task")??;
    match db::users::insert(db, username.as_str(), &hash, now_millis()).await {
        Err(err) if db::users::is_name_taken(&err) => {
            Err(AccountError::NameTaken(username.as_str().to_owned()))
        }
        inserted => Ok(inserted?),
    }
}

/// Who sent a request: the user, and whether a host token made them an admin.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user.
    pub user: UserRow,
    /// A host JWT with `role: admin`: may delete any post.
    pub admin: bool,
}

/// Turns bearer tokens into callers, as `--auth` says.
#[derive(Debug)]
pub struct Authenticator {
    mode: AuthMode,
    host: Option<host::HostTokens>,
}

impl Authenticator {
    /// `mode`, with the host app's tokens when `jwt` or `both` needs them.
    pub fn new(mode: AuthMode, host: Option<host::HostTokens>) -> anyhow::Result<Self> {
        anyhow::ensure!(
            mode == AuthMode::Builtin || host.is_some(),
            "--auth jwt and --auth both need --auth-jwt-secret or --auth-jwt-public-key"
        );
        Ok(Self { mode, host })
    }

    /// The sign-in mode.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Refuses register, login and logout when only host tokens are accepted.
    pub fn check_builtin_accounts(&self) -> Result<(), AccountError> {
        match self.mode {
            AuthMode::Jwt => Err(AccountError::BuiltinDisabled),
            AuthMode::Builtin | AuthMode::Both => Ok(()),
        }
    }

    /// The caller behind `token`: a session's user, or a verified host JWT's.
    pub async fn authenticate(&self, db: &Db, token: &str) -> Result<Caller, AccountError> {
        // A session token is hex; a JWT always has dots.
        let is_jwt = token.contains('.');
        let host = match self.mode {
            AuthMode::Builtin => None,
            AuthMode::Both if !is_jwt => None,
            AuthMode::Jwt if !is_jwt => return Err(AccountError::SessionsDisabled),
            AuthMode::Jwt | AuthMode::Both => self.host.as_ref(),
        };
        let Some(host) = host else {
            let user = sessions::authenticate(db, token).await?;
            return Ok(Caller { user, admin: false });
        };
        let claims = host.verify(token)?;
        let user = host.user(db, &claims).await?;
        Ok(Caller {
            user,
            admin: claims.admin,
        })
    }
}
