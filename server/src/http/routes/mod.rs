//! One router per resource, each with its part of the OpenAPI document.

pub mod auth;
pub mod health;
pub mod lives;
pub mod media;
pub mod metrics;
pub mod posts;
pub mod room;
pub mod uploads;
