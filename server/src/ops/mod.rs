//! Operating the server: the admin commands, the start-up consistency check, deleting a post,
//! and the background sweeper.

pub mod admin;
pub mod consistency;
pub mod deletion;
pub mod sweeper;
