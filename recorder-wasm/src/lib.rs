//! Livekeep's browser recorder: records a live with MediaRecorder, sends every chunk to the
//! server with tus 1.0 while the live runs, journals unsent chunks locally, and stops the
//! live with the `video_data` the server checks.
#![deny(missing_docs)]

pub mod backoff;
pub mod clock;
pub mod error;
pub mod hash;
pub mod journal;
pub mod mime;
pub mod model;
pub mod options;
pub mod poster;
pub mod signal;
pub mod state;
pub mod token;
pub mod ts_types;
pub mod tus;
pub mod upload;

#[cfg(target_arch = "wasm32")]
pub mod recorder;

#[cfg(target_arch = "wasm32")]
pub mod http;

#[cfg(target_arch = "wasm32")]
pub mod opfs;

#[cfg(target_arch = "wasm32")]
pub mod idb;

#[cfg(target_arch = "wasm32")]
pub mod journal_store;

#[cfg(target_arch = "wasm32")]
pub mod locks;

#[cfg(target_arch = "wasm32")]
pub mod live;

#[cfg(target_arch = "wasm32")]
mod api;
#[cfg(target_arch = "wasm32")]
pub use api::LiveRecorder;
