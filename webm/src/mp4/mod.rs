//! Fragmented MP4 (Safari, Chromium's `video/mp4`): the fragment index, the finalizer, and checks.
//!
//! Recorders write a `moov` without durations, then a `moof` + `mdat` pair per
//! fragment. [`Mp4Index`] learns the fragments from the bytes in order (the
//! server feeds it as uploads arrive; the finalizer runs it over the file),
//! [`plan_mp4`] turns it into the finished file's [`Layout`](crate::layout::Layout):
//! a new head (ftyp, moov with durations and an mehd, a sidx), then the
//! upload's fragments byte for byte, and [`finalize_mp4`](crate::finalize_mp4)
//! writes that layout.

pub mod boxes;
mod finalize;
mod fragment;
mod index;
mod movie;
mod plan;
mod probe;

pub use finalize::finalize;
pub use fragment::{BaseOffset, TrackSpan};
pub use index::{Fragment, Mp4Index, Mp4Status, MAX_FRAGMENTS, MAX_MOOF, MAX_MOOV, MAX_SPANS};
pub use movie::{Movie, Track, TrackDefaults, MAX_TRACKS};
pub use plan::{plan_mp4, plan_mp4_with, IndexBoxes, Mp4Plan, Sidx};
pub use probe::{probe, Mp4Info};
