//! EBML primitives: variable-length ids and sizes, and the element writer.
//!
//! Everything here works on byte slices and never trusts a declared length:
//! readers return `None` when the bytes at hand are not enough to decide.

/// EBML header, the first element of every WebM file.
pub const ID_EBML: u32 = 0x1A45_DFA3;
/// DocType inside the EBML header ("webm" or "matroska").
pub const ID_DOCTYPE: u32 = 0x4282;
/// Segment, the single top-level element holding everything else.
pub const ID_SEGMENT: u32 = 0x1853_8067;
/// SeekHead: the index of top-level elements.
pub const ID_SEEKHEAD: u32 = 0x114D_9B74;
/// Seek entry inside SeekHead.
pub const ID_SEEK: u32 = 0x4DBB;
/// SeekID: the id of the element a Seek points at.
pub const ID_SEEKID: u32 = 0x53AB;
/// SeekPosition: offset from the Segment data start.
pub const ID_SEEKPOSITION: u32 = 0x53AC;
/// Segment Info.
pub const ID_INFO: u32 = 0x1549_A966;
/// TimestampScale in Info (nanoseconds per timestamp unit).
pub const ID_TIMESTAMPSCALE: u32 = 0x2A_D7B1;
/// Duration in Info (float, timestamp units).
pub const ID_DURATION: u32 = 0x4489;
/// Tracks.
pub const ID_TRACKS: u32 = 0x1654_AE6B;
/// TrackEntry inside Tracks.
pub const ID_TRACKENTRY: u32 = 0xAE;
/// TrackNumber inside TrackEntry.
pub const ID_TRACKNUMBER: u32 = 0xD7;
/// TrackType inside TrackEntry (1 video, 2 audio).
pub const ID_TRACKTYPE: u32 = 0x83;
/// CodecID inside TrackEntry.
pub const ID_CODECID: u32 = 0x86;
/// DefaultDuration inside TrackEntry (nanoseconds per frame).
pub const ID_DEFAULTDURATION: u32 = 0x23_E383;
/// Cues.
pub const ID_CUES: u32 = 0x1C53_BB6B;
/// CuePoint inside Cues.
pub const ID_CUEPOINT: u32 = 0xBB;
/// CueTime inside CuePoint.
pub const ID_CUETIME: u32 = 0xB3;
/// CueTrackPositions inside CuePoint.
pub const ID_CUETRACKPOSITIONS: u32 = 0xB7;
/// CueTrack inside CueTrackPositions.
pub const ID_CUETRACK: u32 = 0xF7;
/// CueClusterPosition inside CueTrackPositions.
pub const ID_CUECLUSTERPOSITION: u32 = 0xF1;
/// CueRelativePosition inside CueTrackPositions.
pub const ID_CUERELATIVEPOSITION: u32 = 0xF0;
/// Cluster.
pub const ID_CLUSTER: u32 = 0x1F43_B675;
/// Cluster Timestamp.
pub const ID_TIMESTAMP: u32 = 0xE7;
/// SilentTracks inside Cluster.
pub const ID_SILENTTRACKS: u32 = 0x5854;
/// Position inside Cluster (becomes wrong once we move clusters, so it is dropped).
pub const ID_POSITION: u32 = 0xA7;
/// PrevSize inside Cluster (dropped for the same reason as Position).
pub const ID_PREVSIZE: u32 = 0xAB;
/// SimpleBlock inside Cluster.
pub const ID_SIMPLEBLOCK: u32 = 0xA3;
/// BlockGroup inside Cluster.
pub const ID_BLOCKGROUP: u32 = 0xA0;
/// Block inside BlockGroup.
pub const ID_BLOCK: u32 = 0xA1;
/// BlockDuration inside BlockGroup.
pub const ID_BLOCKDURATION: u32 = 0x9B;
/// ReferenceBlock inside BlockGroup: its presence means "not a keyframe".
pub const ID_REFERENCEBLOCK: u32 = 0xFB;
/// EncryptedBlock inside Cluster (deprecated, copied as is).
pub const ID_ENCRYPTEDBLOCK: u32 = 0xAF;
/// Chapters.
pub const ID_CHAPTERS: u32 = 0x1043_A770;
/// Tags.
pub const ID_TAGS: u32 = 0x1254_C367;
/// Attachments.
pub const ID_ATTACHMENTS: u32 = 0x1941_A469;
/// Void: padding, valid anywhere.
pub const ID_VOID: u32 = 0xEC;
/// CRC-32: a checksum over its parent's other children.
pub const ID_CRC32: u32 = 0xBF;

/// Longest id we accept (EBMLMaxIDLength of WebM).
pub const MAX_ID_LEN: usize = 4;
/// Longest size vint (EBMLMaxSizeLength of WebM).
pub const MAX_SIZE_LEN: usize = 8;
/// Longest element header: id plus size.
pub const MAX_HEADER_LEN: usize = MAX_ID_LEN + MAX_SIZE_LEN;

/// What decoding a vint from a prefix of the stream gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vint<T> {
    /// A complete value and how many bytes it took.
    Done(T, usize),
    /// The bytes end before the vint does: more input is needed.
    NeedMore,
    /// The bytes cannot start a vint (leading zero byte or too long).
    Invalid,
}

/// Length of a vint given its first byte, or `None` for a zero byte.
fn vint_len(first: u8) -> Option<usize> {
    // leading_zeros of a non-zero u8 is 0..=7, so the length is 1..=8.
    (first != 0).then(|| first.leading_zeros() as usize + 1)
}

/// Reads an element id (marker bits kept, as ids are written in specs).
pub fn read_id(buf: &[u8]) -> Vint<u32> {
    let Some(&first) = buf.first() else {
        return Vint::NeedMore;
    };
    let Some(len) = vint_len(first) else {
        return Vint::Invalid;
    };
    if len > MAX_ID_LEN {
        return Vint::Invalid;
    }
    let Some(bytes) = buf.get(..len) else {
        return Vint::NeedMore;
    };
    let id = bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
    Vint::Done(id, len)
}

/// Reads an element data size; `None` inside `Done` is the "unknown size" value.
pub fn read_size(buf: &[u8]) -> Vint<Option<u64>> {
    match read_vint(buf) {
        Vint::Done((value, all_ones), len) => Vint::Done((!all_ones).then_some(value), len),
        Vint::NeedMore => Vint::NeedMore,
        Vint::Invalid => Vint::Invalid,
    }
}

/// Reads a vint with its marker removed; the flag says whether all value bits were ones.
pub fn read_vint(buf: &[u8]) -> Vint<(u64, bool)> {
    let Some(&first) = buf.first() else {
        return Vint::NeedMore;
    };
    let Some(len) = vint_len(first) else {
        return Vint::Invalid;
    };
    let Some(bytes) = buf.get(..len) else {
        return Vint::NeedMore;
    };
    let marker_cleared = u64::from(first) & (0xFF >> len);
    let value = bytes[1..]
        .iter()
        .fold(marker_cleared, |acc, &b| (acc << 8) | u64::from(b));
    let all_ones = value == (1u64 << (7 * len)) - 1;
    Vint::Done((value, all_ones), len)
}

/// Reads a signed vint as used by EBML lacing (value minus half the range).
pub fn read_signed_vint(buf: &[u8]) -> Vint<i64> {
    match read_vint(buf) {
        Vint::Done((value, _), len) => {
            let bias = (1i64 << (7 * len - 1)) - 1;
            // value < 2^56, so it fits in i64 and the subtraction cannot overflow.
            Vint::Done(value as i64 - bias, len)
        }
        Vint::NeedMore => Vint::NeedMore,
        Vint::Invalid => Vint::Invalid,
    }
}

/// A parsed element header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Element id with marker bits.
    pub id: u32,
    /// Data size; `None` when the writer did not know it (live streams).
    pub size: Option<u64>,
    /// Bytes taken by id and size together.
    pub len: usize,
}

/// Reads an element header (id then size) from the start of `buf`.
pub fn read_header(buf: &[u8]) -> Vint<Header> {
    let (id, id_len) = match read_id(buf) {
        Vint::Done(id, len) => (id, len),
        Vint::NeedMore => return Vint::NeedMore,
        Vint::Invalid => return Vint::Invalid,
    };
    match read_size(&buf[id_len..]) {
        Vint::Done(size, size_len) => Vint::Done(
            Header {
                id,
                size,
                len: id_len + size_len,
            },
            id_len + size_len,
        ),
        Vint::NeedMore => Vint::NeedMore,
        Vint::Invalid => Vint::Invalid,
    }
}

/// Decodes an unsigned integer element's payload (at most 8 bytes, big endian).
pub fn read_uint(data: &[u8]) -> Option<u64> {
    (data.len() <= 8).then(|| data.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
}

/// Decodes a float element's payload (0, 4 or 8 bytes).
pub fn read_float(data: &[u8]) -> Option<f64> {
    match data.len() {
        0 => Some(0.0),
        4 => Some(f64::from(f32::from_be_bytes(data.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(data.try_into().ok()?)),
        _ => None,
    }
}

/// Iterates over the children of a master element held in memory.
///
/// Stops at the first child that is malformed or overruns `data`; children
/// with unknown size are reported as ending at the end of `data`.
pub struct Children<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Children<'a> {
    /// Starts iterating over the children encoded in `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }
}

/// One child element: its header and its data slice.
#[derive(Debug, Clone, Copy)]
pub struct Child<'a> {
    /// Element id.
    pub id: u32,
    /// Whole element bytes, header included.
    pub raw: &'a [u8],
    /// Data bytes only.
    pub data: &'a [u8],
}

impl<'a> Iterator for Children<'a> {
    type Item = Child<'a>;

    fn next(&mut self) -> Option<Child<'a>> {
        let rest = self.data.get(self.pos..)?;
        let Vint::Done(header, len) = read_header(rest) else {
            self.pos = self.data.len();
            return None;
        };
        let available = (rest.len() - len) as u64;
        let size = header.size.unwrap_or(available);
        if size > available {
            self.pos = self.data.len();
            return None;
        }
        // size <= available <= usize::MAX, so the cast is lossless.
        let end = len + size as usize;
        let child = Child {
            id: header.id,
            raw: &rest[..end],
            data: &rest[len..end],
        };
        self.pos += end;
        Some(child)
    }
}

/// Bytes needed to write `id` (its marker is part of the value).
pub fn id_len(id: u32) -> usize {
    match id {
        0..=0xFF => 1,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFF_FFFF => 3,
        _ => 4,
    }
}

/// Appends an element id.
pub fn write_id(out: &mut Vec<u8>, id: u32) {
    let len = id_len(id);
    out.extend_from_slice(&id.to_be_bytes()[4 - len..]);
}

/// Bytes needed for the shortest size vint holding `size`.
pub fn size_len(size: u64) -> usize {
    // A vint of n bytes holds values up to 2^(7n) - 2 (all ones means unknown).
    (1..=8).find(|&n| size < (1u64 << (7 * n)) - 1).unwrap_or(8)
}

/// Appends the shortest size vint for `size` (sizes are < 2^56 - 1 in any real file).
pub fn write_size(out: &mut Vec<u8>, size: u64) {
    write_size_with_len(out, size, size_len(size));
}

/// Appends `size` as a vint of exactly `len` bytes (`len` must be large enough).
pub fn write_size_with_len(out: &mut Vec<u8>, size: u64, len: usize) {
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// Bytes of an element header for `id` with the shortest size vint.
pub fn header_len(id: u32, size: u64) -> usize {
    id_len(id) + size_len(size)
}

/// Appends a master or binary element header.
pub fn write_header(out: &mut Vec<u8>, id: u32, size: u64) {
    write_id(out, id);
    write_size(out, size);
}

/// Bytes of an unsigned integer's shortest encoding (at least one byte).
pub fn uint_len(value: u64) -> usize {
    (8 - value.leading_zeros() as usize / 8).max(1)
}

/// Bytes of a whole unsigned integer element.
pub fn uint_element_len(id: u32, value: u64) -> usize {
    let len = uint_len(value);
    id_len(id) + size_len(len as u64) + len
}

/// Appends an unsigned integer element in its shortest form.
pub fn write_uint(out: &mut Vec<u8>, id: u32, value: u64) {
    let len = uint_len(value);
    write_header(out, id, len as u64);
    out.extend_from_slice(&value.to_be_bytes()[8 - len..]);
}

/// Appends a float element as an 8-byte double (a 4-byte float loses milliseconds past ~4.6 h).
pub fn write_float(out: &mut Vec<u8>, id: u32, value: f64) {
    write_header(out, id, 8);
    out.extend_from_slice(&value.to_be_bytes());
}

/// Appends a binary element.
pub fn write_binary(out: &mut Vec<u8>, id: u32, data: &[u8]) {
    write_header(out, id, data.len() as u64);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_their_marker_bits() {
        assert_eq!(read_id(&[0x1A, 0x45, 0xDF, 0xA3]), Vint::Done(ID_EBML, 4));
        assert_eq!(read_id(&[0xA3]), Vint::Done(ID_SIMPLEBLOCK, 1));
        assert_eq!(read_id(&[0x1A, 0x45]), Vint::NeedMore);
        assert_eq!(read_id(&[0x00]), Vint::Invalid);
        assert_eq!(read_id(&[0x08, 0, 0, 0, 0]), Vint::Invalid);
    }

    #[test]
    fn all_ones_sizes_are_unknown() {
        assert_eq!(read_size(&[0xFF]), Vint::Done(None, 1));
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Vint::Done(None, 8)
        );
        assert_eq!(read_size(&[0x40, 0x7F]), Vint::Done(Some(127), 2));
        assert_eq!(read_size(&[0x81]), Vint::Done(Some(1), 1));
    }

    #[test]
    fn written_sizes_read_back_at_every_length_boundary() {
        for size in [
            0,
            1,
            126,
            127,
            128,
            16382,
            16383,
            16384,
            1 << 40,
            (1 << 56) - 2,
        ] {
            let mut out = Vec::new();
            write_size(&mut out, size);
            assert_eq!(out.len(), size_len(size), "length of {size}");
            assert_eq!(read_size(&out), Vint::Done(Some(size), out.len()));
        }
    }

    #[test]
    fn signed_vints_are_centred_on_zero() {
        assert_eq!(read_signed_vint(&[0xBF]), Vint::Done(0, 1));
        assert_eq!(read_signed_vint(&[0x80]), Vint::Done(-63, 1));
        assert_eq!(read_signed_vint(&[0x5F, 0xFF]), Vint::Done(0, 2));
    }

    #[test]
    fn uint_elements_use_the_shortest_payload() {
        let mut out = Vec::new();
        write_uint(&mut out, ID_TIMESTAMP, 0);
        write_uint(&mut out, ID_TIMESTAMPSCALE, 1_000_000);
        assert_eq!(
            out,
            [0xE7, 0x81, 0x00, 0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]
        );
        assert_eq!(
            uint_element_len(ID_TIMESTAMPSCALE, 1_000_000),
            out.len() - 3
        );
    }

    #[test]
    fn children_stop_at_an_overrunning_child() {
        let data = [0xE7, 0x81, 0x05, 0xA3, 0x85, 0x81];
        let children: Vec<_> = Children::new(&data).collect();
        assert_eq!(children.len(), 1);
        assert_eq!(read_uint(children[0].data), Some(5));
    }
}
