//! Integration tests: the real server on a random port with a temporary data directory.

mod admin;
mod auth;
// Azure Blob Storage is compiled in by default; without the feature, only S3 is tested.
#[cfg(feature = "azure")]
mod azure;
mod bad_input;
mod consistency;
mod crash;
mod delete_post;
#[path = "../common/emulator.rs"]
mod emulator;
mod faults;
mod feed;
#[path = "../common/fixtures.rs"]
mod fixtures;
mod fuzz;
mod helpers;
mod host_identity;
mod interrupted;
mod lives;
mod media;
#[path = "../common/media_tools.rs"]
mod media_tools;
mod metrics;
mod mp4;
mod openapi;
mod poster;
#[path = "../common/process.rs"]
mod process;
mod proxies;
mod public_url;
#[allow(dead_code)] // Shared with the scale-out tests, which use more of it.
#[path = "../common/receiver.rs"]
mod receiver;
mod room;
mod s3;
mod schema;
mod security_headers;
mod slow_clients;
#[path = "../common/sse.rs"]
mod sse;
mod stop_from_index;
mod storage;
#[path = "../common/stream_body.rs"]
mod stream_body;
mod structure;
mod uploads;
#[path = "../common/verifier.rs"]
mod verifier;
mod webhooks;
