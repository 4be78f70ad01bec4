//! ISO BMFF boxes held in memory: headers, children, big-endian fields, and a writer.
//!
//! Nothing here trusts a declared size: every read is checked against the
//! bytes at hand and reports a reason instead of panicking.

/// A box type such as `*b"moov"`.
pub type FourCC = [u8; 4];

/// Bytes of a box header with a 32-bit size.
pub const HEADER_LEN: usize = 8;
/// Bytes of a box header with a 64-bit size (`size == 1`).
pub const LARGE_HEADER_LEN: usize = 16;

/// What the first bytes of a box say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRead {
    /// This many header bytes are needed in all (8 or 16).
    NeedMore(usize),
    /// A complete header; `size` is `None` for "extends to the end of the file" (size 0).
    Header {
        /// The box type.
        kind: FourCC,
        /// Header bytes (8 or 16).
        len: usize,
        /// Whole box size, header included.
        size: Option<u64>,
    },
}

/// Decodes the box header at the start of `bytes`.
pub fn read_header(bytes: &[u8]) -> HeaderRead {
    if bytes.len() < HEADER_LEN {
        return HeaderRead::NeedMore(HEADER_LEN);
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = [bytes[4], bytes[5], bytes[6], bytes[7]];
    match size {
        0 => HeaderRead::Header {
            kind,
            len: HEADER_LEN,
            size: None,
        },
        1 => match be_u64(bytes, 8) {
            Some(large) => HeaderRead::Header {
                kind,
                len: LARGE_HEADER_LEN,
                size: Some(large),
            },
            None => HeaderRead::NeedMore(LARGE_HEADER_LEN),
        },
        size => HeaderRead::Header {
            kind,
            len: HEADER_LEN,
            size: Some(u64::from(size)),
        },
    }
}

/// One box inside a parent held in memory.
#[derive(Debug, Clone, Copy)]
pub struct Child<'a> {
    /// Box type.
    pub kind: FourCC,
    /// Offset of the box within the slice iterated over.
    pub offset: usize,
    /// Header bytes (8 or 16).
    pub header_len: usize,
    /// The whole box, header included.
    pub raw: &'a [u8],
    /// The box's data, after the header.
    pub data: &'a [u8],
}

/// Iterates over the boxes laid end to end in `data`; a malformed one ends it with an error.
pub struct Children<'a> {
    data: &'a [u8],
    pos: usize,
}

/// Iterates over the boxes in `data` (a container's data).
pub fn children(data: &[u8]) -> Children<'_> {
    Children { data, pos: 0 }
}

impl<'a> Iterator for Children<'a> {
    type Item = Result<Child<'a>, &'static str>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..).filter(|rest| !rest.is_empty())?;
        let HeaderRead::Header { kind, len, size } = read_header(rest) else {
            self.pos = self.data.len();
            return Some(Err("a box header is cut short"));
        };
        // Size 0 inside a container: the box runs to the container's end.
        let size = size.unwrap_or(rest.len() as u64);
        if size < len as u64 || size > rest.len() as u64 {
            self.pos = self.data.len();
            return Some(Err("a box size does not fit its container"));
        }
        // size <= rest.len(), so it fits in usize.
        let size = size as usize;
        let child = Child {
            kind,
            offset: self.pos,
            header_len: len,
            raw: &rest[..size],
            data: &rest[len..size],
        };
        self.pos += size;
        Some(Ok(child))
    }
}

/// The data of the first child of `kind`, `Ok(None)` when there is none.
pub fn find<'a>(data: &'a [u8], kind: &FourCC) -> Result<Option<Child<'a>>, &'static str> {
    for child in children(data) {
        let child = child?;
        if &child.kind == kind {
            return Ok(Some(child));
        }
    }
    Ok(None)
}

/// Big-endian u16 at `at`.
pub fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

/// Big-endian u32 at `at`.
pub fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Big-endian u64 at `at`.
pub fn be_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Reads the fields of a box's data in order.
pub struct Fields<'a> {
    data: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Fields<'a> {
    /// Starts at the beginning of `data`; `what` is the error when a field is missing.
    pub fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, pos: 0, what }
    }

    /// Offset of the next field within the data.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    /// The next big-endian u32.
    pub fn u32(&mut self) -> Result<u32, &'static str> {
        let value = be_u32(self.data, self.pos).ok_or(self.what)?;
        self.pos += 4;
        Ok(value)
    }

    /// The next big-endian u64.
    pub fn u64(&mut self) -> Result<u64, &'static str> {
        let value = be_u64(self.data, self.pos).ok_or(self.what)?;
        self.pos += 8;
        Ok(value)
    }

    /// A full box's version and flags.
    pub fn version_flags(&mut self) -> Result<(u8, u32), &'static str> {
        let word = self.u32()?;
        Ok(((word >> 24) as u8, word & 0x00FF_FFFF))
    }

    /// A 32-bit field in version 0, 64-bit otherwise.
    pub fn versioned(&mut self, version: u8) -> Result<u64, &'static str> {
        if version == 0 {
            self.u32().map(u64::from)
        } else {
            self.u64()
        }
    }

    /// Skips `n` bytes, which must be there.
    pub fn skip(&mut self, n: usize) -> Result<(), &'static str> {
        if self.remaining() < n {
            return Err(self.what);
        }
        self.pos += n;
        Ok(())
    }
}

/// Starts a box in `out`; [`end_box`] writes its size once its data is written.
pub fn begin_box(out: &mut Vec<u8>, kind: &FourCC) -> usize {
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    at
}

/// Writes the size of the box begun at `at` (boxes we write stay far below 4 GiB).
pub fn end_box(out: &mut [u8], at: usize) {
    let size = u32::try_from(out.len() - at).unwrap_or(u32::MAX);
    out[at..at + 4].copy_from_slice(&size.to_be_bytes());
}

/// Starts a full box (version and flags after the header).
pub fn begin_full_box(out: &mut Vec<u8>, kind: &FourCC, version: u8, flags: u32) -> usize {
    let at = begin_box(out, kind);
    out.extend_from_slice(&((u32::from(version) << 24) | (flags & 0x00FF_FFFF)).to_be_bytes());
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_need_eight_or_sixteen_bytes() {
        assert_eq!(read_header(b"\0\0\0"), HeaderRead::NeedMore(8));
        assert_eq!(
            read_header(b"\0\0\0\x10moov"),
            HeaderRead::Header {
                kind: *b"moov",
                len: 8,
                size: Some(16)
            }
        );
        assert_eq!(read_header(b"\0\0\0\x01mdat\0\0"), HeaderRead::NeedMore(16));
        let large = [&[0, 0, 0, 1][..], b"mdat", &(1u64 << 33).to_be_bytes()].concat();
        assert_eq!(
            read_header(&large),
            HeaderRead::Header {
                kind: *b"mdat",
                len: 16,
                size: Some(1 << 33)
            }
        );
        assert_eq!(
            read_header(b"\0\0\0\0mdat"),
            HeaderRead::Header {
                kind: *b"mdat",
                len: 8,
                size: None
            }
        );
    }

    #[test]
    fn children_stop_with_an_error_at_an_overrunning_box() {
        let mut data = Vec::new();
        let at = begin_box(&mut data, b"free");
        data.extend_from_slice(&[1, 2]);
        end_box(&mut data, at);
        data.extend_from_slice(b"\0\0\0\x40skip");
        let kids: Vec<_> = children(&data).collect();
        assert_eq!(kids.len(), 2);
        let first = kids[0].as_ref().expect("a whole box");
        assert_eq!((first.kind, first.data), (*b"free", &[1u8, 2][..]));
        assert!(kids[1].is_err());
        assert!(children(b"\0\0\0\x04free").next().unwrap().is_err());
    }

    #[test]
    fn fields_report_what_is_missing() {
        let mut fields = Fields::new(&[1, 0, 0, 2, 0, 0, 0, 9], "short tfhd");
        assert_eq!(fields.version_flags(), Ok((1, 2)));
        assert_eq!(fields.u32(), Ok(9));
        assert_eq!(fields.u32(), Err("short tfhd"));
    }
}
