-- Names are unique regardless of case (SQLite's COLLATE NOCASE in 0001); logins look them up
-- with lower(username) on both databases.
CREATE UNIQUE INDEX users_username_lower ON users (lower(username));
