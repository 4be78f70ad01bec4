-- The live room: who watched, when the recording's timeline started, and a poster.

-- When the recording's media time 0 happened on the server's clock (Unix ms), estimated from
-- the first bytes received; chat offsets are measured from it. NULL until bytes arrive.
ALTER TABLE posts ADD COLUMN recording_started_at BIGINT;

-- A poster uploaded while the live runs; it moves to the Media when the live ends.
ALTER TABLE posts ADD COLUMN poster_key TEXT;

-- Each distinct viewer of a live, so `viewer_count` survives reconnections and restarts.
CREATE TABLE live_viewers (
    post_id       BIGINT NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    viewer_id     TEXT   NOT NULL,
    first_seen_at BIGINT NOT NULL,
    PRIMARY KEY (post_id, viewer_id)
);
