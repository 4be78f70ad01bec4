//! The checked-in recording and what tests compute over it, shared by the test binaries
//! (`#[path = "../common/fixtures.rs"] mod fixtures;` in each).

use std::path::Path;

use sha2::{Digest, Sha256};

/// The checked-in WebM fixture (3 s, VP8 + Opus, live-shaped).
pub fn fixture() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live.webm");
    std::fs::read(path).expect("the fixture is checked in")
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Offsets of each Cluster element in a WebM (by its id; fine for the fixtures).
pub fn cluster_starts(bytes: &[u8]) -> Vec<usize> {
    bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0x1F, 0x43, 0xB6, 0x75])
        .map(|(i, _)| i)
        .collect()
}
