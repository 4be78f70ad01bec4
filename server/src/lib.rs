//! Livekeep server: accounts, lives, tus uploads that survive crashes, feed and media.
//!
//! One recorded byte, by folder and file: `http/routes/uploads.rs` parses the tus PATCH (its
//! headers into a `Patch`, its id into an `UploadId`) and hands the body, as a stream of bytes,
//! to `uploads/tus.rs`, which checks the offset, sniffs the first bytes (`uploads/sniff.rs`)
//! and streams the body into the `UploadStore` of `storage/`: `storage/local.rs` appends and
//! `sync_data`s, `storage/object.rs` puts one piece object per PATCH (merged later by
//! `uploads/compaction.rs`). Only then is the new offset committed (`db/offsets.rs`: on SQLite
//! one writer commits every offset pending at once in one transaction) and the 204 sent;
//! `http/error.rs` turns a refusal into its status and `error.code`.
//!
//! At the stop (`http/routes/lives.rs`) or when the live goes silent (`ops/sweeper.rs`),
//! `recording/mod.rs` checks size and SHA-256 — learnt as the bytes arrived, with the
//! container's index (`indexing/`) — and has `recording/finalize.rs` plan the new head (WebM
//! with Duration and Cues, MP4 with durations and a sidx) stored beside the upload's own bytes
//! as a layout in the `MediaStore` (or rewrite the whole file when it must), and records the
//! Media in `db/media.rs`; `http/routes/media.rs` serves it with Range support, from what
//! `media_cache.rs` remembers of it and, for local files, with `sendfile`
//! (`http/serve/zero_copy.rs`).
//!
//! While the live runs, each commit also reaches the live's room (`rooms/hub.rs`, and the
//! other nodes' rooms through `rooms/bus.rs` and `live/listener.rs`): viewers following
//! `live/stream.rs` get every cluster or fragment that became whole (the upload's index in
//! `indexing/` knows where they are, `live/view.rs` reads it for them), and `live/events.rs`
//! carries counts, chat (`live/chat.rs`) and the end.
//!
//! Around that path: `accounts/` (users, passwords, sessions, the cluster-wide rate limits),
//! `posts/` (the API's JSON shapes and who may act on a live), `domain/` (values parsed at the
//! edge), `ops/` (the admin commands, deletion, and `ops/consistency.rs`, which makes storage
//! and database agree at start before anything is served), and `startup.rs`, which wires them.
//! Each change a host app hears of (a live started, ended or interrupted, a recording
//! refinalized, a post deleted) writes its webhook into the outbox in the change's own
//! transaction (`webhooks/mod.rs`); `webhooks/delivery.rs` sends it, signed, from any node.
//! Only `http/` knows HTTP (`tests/api/structure.rs` checks it, and that the top-level modules
//! import each other without a cycle).

pub mod accounts;
pub mod config;
pub mod db;
pub mod domain;
pub mod fault;
pub mod http;
pub mod indexing;
pub mod live;
pub mod locks;
pub mod media_cache;
pub mod metrics;
pub mod ops;
pub mod posts;
pub mod recording;
pub mod rooms;
pub mod startup;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod uploads;
pub mod webhooks;
