-- Rate limits every node shares: counted from rows in the database, not in a node's memory.

-- The chat limit counts the author's messages of the last seconds.
CREATE INDEX chat_messages_author ON chat_messages (author_id, created_at);

-- Failed logins, and attempts whose password is being checked, per case-folded name
-- (scope 'name') and per client IP (scope 'ip'). Rows older than the login window are deleted
-- by the sweeper.
CREATE TABLE login_failures (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    scope     TEXT    NOT NULL CHECK (scope IN ('name', 'ip')),
    subject   TEXT    NOT NULL,
    failed_at INTEGER NOT NULL
);

CREATE INDEX login_failures_subject ON login_failures (scope, subject, failed_at);
CREATE INDEX login_failures_failed_at ON login_failures (failed_at);
