//! A finished file described as new bytes around ranges of the upload.
//!
//! Finalizing rewrites only the head of a recording (and for MP4 an optional
//! tail); the media bytes stay where the upload put them. A [`Layout`] says
//! so explicitly: the head, the upload's ranges in order (with a few
//! fixed-size patches over them), then the tail. [`Layout::write_to`] copies
//! it into one file; a server can instead serve or assemble it without
//! copying the ranges (two extents on a local disk, server-side copies on an
//! object store).

use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::Error;

/// A range of the upload copied into the finished file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First byte in the upload.
    pub start: u64,
    /// Bytes.
    pub len: u64,
}

/// Eight bytes of the finished file that replace the upload's bytes at that place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Patch {
    /// Offset in the finished file (inside one extent).
    pub at: u64,
    /// The bytes written there.
    pub bytes: [u8; 8],
}

/// The finished file: `head`, then each extent of the upload (with `patches` applied), then `tail`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// New bytes written first.
    pub head: Vec<u8>,
    /// Ranges of the upload, in output order.
    pub extents: Vec<Extent>,
    /// Patches over the extents, sorted by offset, each inside one extent.
    pub patches: Vec<Patch>,
    /// New bytes written last.
    pub tail: Vec<u8>,
}

impl Layout {
    /// Length of the finished file.
    pub fn len(&self) -> u64 {
        self.head.len() as u64
            + self.extents.iter().map(|e| e.len).sum::<u64>()
            + self.tail.len() as u64
    }

    /// Whether the finished file would be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The finished file in order, as runs of the layout's own bytes (the head, each patch,
    /// the tail) and ranges of the input; empty runs left out. What [`Layout::write_to`]
    /// copies and what a server stores beside the upload to serve it without copying.
    ///
    /// An error if a patch does not lie inside one extent.
    pub fn parts(&self) -> Result<Vec<Part<'_>>, Error> {
        fn push<'a>(parts: &mut Vec<Part<'a>>, part: Part<'a>) {
            if !part.is_empty() {
                parts.push(part);
            }
        }
        let mut parts = Vec::with_capacity(2 + self.extents.len() + 2 * self.patches.len());
        push(&mut parts, Part::Own(&self.head));
        let mut at = self.head.len() as u64;
        let mut patches = self.patches.iter().peekable();
        for extent in &self.extents {
            let end = at + extent.len;
            let mut input_at = extent.start;
            while let Some(patch) = patches.next_if(|patch| patch.at < end) {
                if patch.at < at || patch.at + 8 > end {
                    return Err(Error::Invalid("a patch does not lie inside one extent"));
                }
                let len = patch.at - at;
                push(
                    &mut parts,
                    Part::Input {
                        start: input_at,
                        len,
                    },
                );
                push(&mut parts, Part::Own(&patch.bytes));
                input_at += patch.at + 8 - at;
                at = patch.at + 8;
            }
            let len = end - at;
            push(
                &mut parts,
                Part::Input {
                    start: input_at,
                    len,
                },
            );
            at = end;
        }
        if patches.next().is_some() {
            return Err(Error::Invalid("a patch does not lie inside one extent"));
        }
        push(&mut parts, Part::Own(&self.tail));
        Ok(parts)
    }

    /// Writes the finished file: its [parts](Layout::parts), the input's read from `input`.
    /// Returns the bytes written.
    ///
    /// Input ranges are copied with `std::io::copy`, which the standard library turns into
    /// `copy_file_range` between two files on Linux.
    pub fn write_to<R: Read + Seek, W: Write>(
        &self,
        input: &mut R,
        output: &mut W,
    ) -> Result<u64, Error> {
        let mut written = 0;
        for part in self.parts()? {
            match part {
                Part::Own(bytes) => output.write_all(bytes)?,
                Part::Input { start, len } => {
                    input.seek(SeekFrom::Start(start))?;
                    copy_exactly(input, output, len)?;
                }
            }
            written += part.len();
        }
        Ok(written)
    }
}

/// A run of a finished file (see [`Layout::parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part<'a> {
    /// Bytes of the layout's own.
    Own(&'a [u8]),
    /// `len` bytes of the input from `start`.
    Input {
        /// First byte in the input.
        start: u64,
        /// Bytes.
        len: u64,
    },
}

impl Part<'_> {
    /// Bytes of the finished file it makes.
    pub fn len(&self) -> u64 {
        match self {
            Part::Own(bytes) => bytes.len() as u64,
            Part::Input { len, .. } => *len,
        }
    }

    /// Whether it makes no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Copies exactly `n` bytes from `input`'s position to `output`.
fn copy_exactly<R: Read, W: Write>(input: &mut R, output: &mut W, n: u64) -> Result<(), Error> {
    let copied = io::copy(&mut input.take(n), output)?;
    if copied != n {
        return Err(Error::Invalid("the upload is shorter than its index says"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn extents_are_copied_between_head_and_tail_with_patches_applied() {
        let upload: Vec<u8> = (0..100).collect();
        let layout = Layout {
            head: b"HEAD".to_vec(),
            extents: vec![Extent { start: 10, len: 20 }, Extent { start: 50, len: 10 }],
            patches: vec![Patch {
                at: 4 + 5,
                bytes: *b"PATCHED!",
            }],
            tail: b"TAIL".to_vec(),
        };
        let mut out = Vec::new();
        let written = layout
            .write_to(&mut Cursor::new(&upload), &mut out)
            .unwrap();
        let mut expected = b"HEAD".to_vec();
        expected.extend(10..15u8);
        expected.extend_from_slice(b"PATCHED!");
        expected.extend(23..30u8);
        expected.extend(50..60u8);
        expected.extend_from_slice(b"TAIL");
        assert_eq!(out, expected);
        assert_eq!(written, layout.len());
        assert_eq!(layout.len(), out.len() as u64);
    }

    #[test]
    fn the_parts_are_the_written_file_run_by_run() {
        let upload: Vec<u8> = (0..100).collect();
        let layout = Layout {
            head: b"HEAD".to_vec(),
            extents: vec![Extent { start: 10, len: 20 }, Extent { start: 50, len: 10 }],
            // One at an extent's start, one ending at an extent's end.
            patches: vec![
                Patch {
                    at: 4,
                    bytes: *b"FIRST!!!",
                },
                Patch {
                    at: 4 + 20 - 8,
                    bytes: *b"LAST!!!!",
                },
            ],
            tail: Vec::new(),
        };
        let parts = layout.parts().unwrap();
        assert_eq!(
            parts,
            [
                Part::Own(b"HEAD"),
                Part::Own(b"FIRST!!!"),
                Part::Input { start: 18, len: 4 },
                Part::Own(b"LAST!!!!"),
                Part::Input { start: 50, len: 10 },
            ]
        );
        let mut joined = Vec::new();
        for part in &parts {
            match *part {
                Part::Own(bytes) => joined.extend_from_slice(bytes),
                Part::Input { start, len } => {
                    joined.extend_from_slice(&upload[start as usize..(start + len) as usize])
                }
            }
        }
        let mut written = Vec::new();
        layout
            .write_to(&mut Cursor::new(&upload), &mut written)
            .unwrap();
        assert_eq!(joined, written);
        assert_eq!(parts.iter().map(Part::len).sum::<u64>(), layout.len());
    }

    #[test]
    fn an_upload_shorter_than_the_extents_is_an_error() {
        let layout = Layout {
            extents: vec![Extent { start: 90, len: 20 }],
            ..Layout::default()
        };
        let result = layout.write_to(&mut Cursor::new(vec![0u8; 100]), &mut Vec::new());
        assert!(matches!(result, Err(Error::Invalid(_))));
    }

    #[test]
    fn a_patch_across_an_extent_boundary_is_an_error() {
        let layout = Layout {
            extents: vec![Extent { start: 0, len: 10 }, Extent { start: 20, len: 10 }],
            patches: vec![Patch {
                at: 6,
                bytes: [0; 8],
            }],
            ..Layout::default()
        };
        let result = layout.write_to(&mut Cursor::new(vec![0u8; 100]), &mut Vec::new());
        assert!(matches!(result, Err(Error::Invalid(_))));
        assert!(matches!(layout.parts(), Err(Error::Invalid(_))));
    }
}
