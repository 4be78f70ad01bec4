-- Each upload's index (its WebM clusters or MP4 fragments) and SHA-256, learnt as its bytes
-- arrive (`indexing/`), so a stop reads nothing back and another node resumes them.
--
-- The small state is rewritten in the transaction that commits the offset it describes; the
-- entries (a cluster, a cue point, a fragment: a few dozen bytes each) are appended, a row per
-- commit that learnt some, in the same transaction. NULL state: none saved (an upload from
-- before this migration, or one whose bytes were found shorter than its offset): the index is
-- rebuilt from the bytes when needed.
ALTER TABLE uploads ADD COLUMN index_state BYTEA;
ALTER TABLE uploads ADD COLUMN sha256_state BYTEA;

CREATE TABLE upload_index_entries (
    upload_id TEXT    NOT NULL REFERENCES uploads (id) ON DELETE CASCADE,
    -- Offset of these bytes in the upload's log of entries: rows concatenate in this order.
    start     BIGINT  NOT NULL,
    entries   BYTEA   NOT NULL,
    PRIMARY KEY (upload_id, start)
);
