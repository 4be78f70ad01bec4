-- Users of the host app, who sign in with its JWTs (`--auth jwt|both`).
--
-- Such a user is keyed by the token's issuer ('' without `iss`) and `sub`; `display_name` is
-- the token's latest `name`, shown as the user's name. Display names are not logins: they are
-- neither unique nor reserved, so two host users may share one and a built-in account may
-- be called like a host user. Their `username` holds an internal handle, `jwt:` and a hash of
-- issuer and `sub`, which no built-in name can take (`:` is not allowed in those) and no login
-- can use (their `password_hash` is not a hash, and logins skip external users).
ALTER TABLE users ADD COLUMN external_issuer TEXT;
ALTER TABLE users ADD COLUMN external_id TEXT;
ALTER TABLE users ADD COLUMN display_name TEXT;

-- Built-in accounts have NULLs here, which a unique index never compares as equal.
CREATE UNIQUE INDEX users_external ON users (external_issuer, external_id);
