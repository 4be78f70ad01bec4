//! The soak runs alone in its own test binary: its memory bound reads this process's RSS, which
//! the other integration tests, running in parallel threads of one process, would distort.

#[path = "../common/emulator.rs"]
mod emulator;
#[allow(dead_code)] // The soak hashes what it sends itself.
#[path = "../common/fixtures.rs"]
mod fixtures;
#[allow(dead_code)] // The soak uses a few of the shared helpers.
#[path = "../api/helpers.rs"]
mod helpers;
#[allow(dead_code)] // helpers.rs honours LIVEKEEP_TEST_STORAGE=s3 through it.
#[path = "../api/s3.rs"]
mod s3;
mod soak;
#[allow(dead_code)] // The soak reads no events; helpers.rs names the type.
#[path = "../common/sse.rs"]
mod sse;
