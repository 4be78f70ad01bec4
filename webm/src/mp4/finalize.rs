//! The two passes over an MP4: index it (reading box headers and moofs only), then write its plan.

use std::io::{Read, Seek, SeekFrom, Write};

use super::index::{Mp4Index, Mp4Status};
use super::plan::{plan_mp4_with, IndexBoxes};
use super::probe::probe;
use crate::layout::{Extent, Layout};
use crate::{Container, Error, FinalizePath, Finalized};

/// Smallest read: a moof header read this way usually brings the whole moof and the mdat's header.
const MIN_READ: usize = 4 << 10;
/// Largest read while the index needs bytes (a large moof comes in several).
const MAX_READ: usize = 1 << 20;

/// Finalizes `input` into `output`; see [`crate::finalize_mp4`].
pub fn finalize<R: Read + Seek, W: Write>(mut input: R, mut output: W) -> Result<Finalized, Error> {
    let len = input.seek(SeekFrom::End(0))?;
    let index = index_file(&mut input, len)?;
    if index.status() == Mp4Status::NotFragmented {
        return keep_as_uploaded(input, len, output);
    }
    let plan = plan_mp4_with(&index, IndexBoxes::DEFAULT)?;
    let written = plan.layout.write_to(&mut input, &mut output)?;
    output.flush()?;
    debug_assert_eq!(written, plan.layout.len());
    Ok(Finalized {
        container: Container::Mp4,
        path: FinalizePath::Verbatim,
        duration_secs: index.duration_secs(),
        cue_points: plan.sidx_references,
        dropped_tail_bytes: len - index.used_end(),
    })
}

/// Pass 1: runs the index over the file, jumping over what it does not need (sample data).
pub(crate) fn index_file<R: Read + Seek>(input: &mut R, len: u64) -> Result<Mp4Index, Error> {
    let mut index = Mp4Index::new();
    let mut buffer = Vec::new();
    let mut file_at = None;
    let mut pos = 0u64;
    while pos < len {
        match index.status() {
            Mp4Status::Head | Mp4Status::Fragments => {}
            Mp4Status::NotFragmented | Mp4Status::Stopped(_) | Mp4Status::Refused(_) => break,
        }
        let skip = index.skippable().min(len - pos);
        if skip > 0 {
            pos += index.skip(skip);
            continue;
        }
        let want = usize::try_from(index.needed())
            .unwrap_or(MAX_READ)
            .clamp(MIN_READ, MAX_READ)
            .min(usize::try_from(len - pos).unwrap_or(MAX_READ));
        if file_at != Some(pos) {
            input.seek(SeekFrom::Start(pos))?;
        }
        buffer.resize(want, 0);
        input.read_exact(&mut buffer)?;
        index.push(&buffer)?;
        pos += want as u64;
        file_at = Some(pos);
    }
    Ok(index)
}

/// A progressive MP4 (sample tables in its moov) is already seekable: it is checked and kept.
fn keep_as_uploaded<R: Read + Seek, W: Write>(
    mut input: R,
    len: u64,
    mut output: W,
) -> Result<Finalized, Error> {
    input.seek(SeekFrom::Start(0))?;
    let info = probe(&mut input)?;
    let layout = Layout {
        extents: vec![Extent { start: 0, len }],
        ..Layout::default()
    };
    layout.write_to(&mut input, &mut output)?;
    output.flush()?;
    Ok(Finalized {
        container: Container::Mp4,
        path: FinalizePath::AsUploaded,
        duration_secs: info.duration_secs,
        cue_points: 0,
        dropped_tail_bytes: 0,
    })
}
