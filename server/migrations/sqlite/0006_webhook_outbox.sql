-- Signed webhooks: one row per (event, receiver URL), written in the same transaction as the
-- change it reports, then sent by the delivery task of any node (webhooks/delivery.rs).
--
-- state: 'pending' (to send; due at next_attempt_at), 'delivered' (a 2xx came back) or
-- 'failed' (retried until give_up_at, or refused with 410 Gone; `livekeep admin redeliver`
-- sends it again). While a node attempts a row, lease_token holds that node's claim and
-- next_attempt_at the end of its lease: a node that dies mid-attempt leaves the row due again
-- once the lease runs out. No foreign key: a `post.deleted` event outlives its post.
CREATE TABLE webhook_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT    NOT NULL,
    event_type      TEXT    NOT NULL,
    url             TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                            CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    give_up_at      INTEGER NOT NULL,
    lease_token     TEXT,
    last_attempt_at INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    UNIQUE (webhook_id, url)
);

CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_at);
