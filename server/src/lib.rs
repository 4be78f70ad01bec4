//! Livekeep server: accounts, lives, tus uploads that survive crashes, feed and media.
//!
//! One recorded byte, by file name: `routes/uploads.rs` parses the tus PATCH, `tus.rs` checks
//! the offset and streams the body through `storage/local.rs` (append, `sync_data`) or
//! `storage/object.rs` (one piece object per PATCH), then commits the new offset in
//! `db/uploads.rs` before the 204. At the stop (`routes/lives.rs`)
//! or when the live goes silent (`sweeper.rs`), `recording.rs` checks size and SHA-256, has
//! `finalize.rs` rewrite the WebM with Duration and Cues, commits the file to storage, and
//! records the Media in `db/media.rs`; `routes/media.rs` serves it with Range support.
//!
//! While the live runs, each commit also reaches the live's room in `live/hub.rs`: viewers
//! following `live/stream.rs` get every cluster that became whole (`live/index.rs` knows
//! where they are), and `live/events.rs` carries counts, chat (`live/chat.rs`) and the end.
//! At start, `consistency.rs` makes storage and database agree before anything is served.

pub mod admin;
pub mod auth;
pub mod compaction;
pub mod config;
pub mod consistency;
pub mod db;
pub mod deletion;
pub mod domain;
pub mod error;
pub mod fault;
pub mod finalize;
pub mod live;
pub mod locks;
pub mod metrics;
pub mod poster;
pub mod rate_limit;
pub mod recording;
pub mod routes;
pub mod security;
pub mod serve;
pub mod startup;
pub mod state;
pub mod storage;
pub mod sweeper;
pub mod telemetry;
pub mod tus;
pub mod views;
