//! Integration tests of `livekeep-webm`, in one binary.

mod fixtures;
mod hand_built;
mod mutations;
mod support;
