//! Livekeep server: accounts, lives, tus uploads that survive crashes, feed and media.

pub mod auth;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod finalize;
pub mod locks;
pub mod recording;
pub mod routes;
pub mod startup;
pub mod state;
pub mod storage;
pub mod sweeper;
pub mod telemetry;
pub mod tus;
pub mod views;
