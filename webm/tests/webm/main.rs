//! Integration tests of `livekeep-webm`, in one binary.

mod browser;
mod fixtures;
mod hand_built;
mod memory;
mod mp4;
mod mutations;
mod support;
mod tools;
mod verbatim;

#[global_allocator]
static ALLOCATOR: memory::Counting = memory::Counting;
