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

    /// Writes the finished file: the head, the extents read from `input` with the patches
    /// applied, the tail. Returns the bytes written.
    ///
    /// Extents are copied with `std::io::copy`, which the standard library turns into
    /// `copy_file_range` between two files on Linux.
    pub fn write_to<R: Read + Seek, W: Write>(
        &self,
        input: &mut R,
        output: &mut W,
    ) -> Result<u64, Error> {
        output.write_all(&self.head)?;
        let mut at = self.head.len() as u64;
        let mut patches = self.patches.iter().peekable();
        for extent in &self.extents {
            input.seek(SeekFrom::Start(extent.start))?;
            let end = at + extent.len;
            while at < end {
                let next = patches.peek().filter(|patch| patch.at < end);
                let Some(patch) = next else {
                    copy_exactly(input, output, end - at)?;
                    at = end;
                    break;
                };
                if patch.at < at || patch.at + 8 > end {
                    return Err(Error::Invalid("a patch does not lie inside one extent"));
                }
                copy_exactly(input, output, patch.at - at)?;
                input.seek(SeekFrom::Current(8))?;
                output.write_all(&patch.bytes)?;
                at = patch.at + 8;
                patches.next();
            }
        }
        if patches.next().is_some() {
            return Err(Error::Invalid("a patch does not lie inside one extent"));
        }
        output.write_all(&self.tail)?;
        Ok(at + self.tail.len() as u64)
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
    }
}
