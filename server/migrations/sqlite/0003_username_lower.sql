-- Logins look names up with lower(username) on both databases (PostgreSQL has no NOCASE).
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
