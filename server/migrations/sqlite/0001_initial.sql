-- Times are Unix milliseconds (INTEGER) so comparisons and ordering are numeric.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL COLLATE NOCASE UNIQUE,
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- Bearer tokens are stored only as their SHA-256, so a database leak leaks no usable token.
CREATE TABLE sessions (
    token_hash BLOB    PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL
);

CREATE TABLE posts (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    author_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content            TEXT    NOT NULL,
    is_live            INTEGER NOT NULL DEFAULT 0,
    live_status        TEXT    CHECK (live_status IN ('live', 'ended', 'interrupted')),
    started_at         INTEGER,
    ended_at           INTEGER,
    viewer_count       INTEGER NOT NULL DEFAULT 0,
    peak_viewers       INTEGER NOT NULL DEFAULT 0,
    chat_message_count INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL
);

CREATE INDEX posts_live_status ON posts (live_status) WHERE live_status = 'live';

CREATE TABLE media (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id           INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title             TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    file_type         TEXT    NOT NULL DEFAULT 'video',
    storage_key       TEXT    NOT NULL UNIQUE,
    poster_key        TEXT,
    mime_type         TEXT    NOT NULL,
    duration          REAL    NOT NULL,
    size              INTEGER NOT NULL,
    original_sha256   TEXT    NOT NULL,
    is_live_recording INTEGER NOT NULL DEFAULT 0,
    -- UNIQUE: a live yields at most one recording, whatever races between stop and the sweeper.
    live_post_id      INTEGER UNIQUE REFERENCES posts (id) ON DELETE SET NULL,
    created_at        INTEGER NOT NULL
);

CREATE TABLE media_files (
    post_id  INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    media_id INTEGER NOT NULL REFERENCES media (id) ON DELETE CASCADE,
    position INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (post_id, media_id)
);

CREATE TABLE uploads (
    id               TEXT    PRIMARY KEY,
    owner_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id          INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    -- The committed offset: written only after the bytes below it were synced to disk.
    "offset"         INTEGER NOT NULL DEFAULT 0,
    -- NULL while the length is deferred (a live's size is unknown until it stops).
    length           INTEGER,
    state            TEXT    NOT NULL DEFAULT 'open'
                     CHECK (state IN ('open', 'finalized', 'terminated', 'expired', 'failed')),
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    last_activity_at INTEGER NOT NULL
);

CREATE INDEX uploads_post ON uploads (post_id);

CREATE TABLE chat_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    post_id     INTEGER NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    author_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    body        TEXT    NOT NULL,
    -- Seconds since the recording started, so a replay can show the message at its moment.
    offset_secs REAL    NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX chat_messages_post ON chat_messages (post_id, id);
