//! Recordings while they upload: the tus state machine that makes every acknowledged byte
//! durable, the sniffing of a recording's first bytes, the background compaction of uploads
//! kept as pieces on an object store, and the expiry of abandoned uploads.

pub mod compaction;
pub mod expiry;
pub mod sniff;
pub mod tus;
