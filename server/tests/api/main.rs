//! Integration tests: the real server on a random port with a temporary data directory.

mod admin;
mod auth;
// Azure Blob Storage is compiled in by default; without the feature, only S3 is tested.
#[cfg(feature = "azure")]
mod azure;
mod bad_input;
mod consistency;
mod crash;
#[path = "../common/emulator.rs"]
mod emulator;
mod faults;
mod feed;
#[path = "../common/fixtures.rs"]
mod fixtures;
mod fuzz;
mod helpers;
mod interrupted;
mod lives;
mod media;
mod metrics;
mod openapi;
mod poster;
#[path = "../common/process.rs"]
mod process;
mod room;
mod s3;
mod schema;
mod security_headers;
mod slow_clients;
#[path = "../common/sse.rs"]
mod sse;
mod storage;
#[path = "../common/stream_body.rs"]
mod stream_body;
mod uploads;
