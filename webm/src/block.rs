//! Block headers: track, relative timestamp, flags and lacing.
//!
//! Only the header is decoded; frame payloads are never touched, so blocks
//! are copied byte for byte and the frames stay the same.

use crate::ebml::{read_signed_vint, read_vint, Vint};

/// What the finalizer needs to know about one SimpleBlock or Block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Track number the block belongs to.
    pub track: u64,
    /// Timestamp relative to the cluster's, in TimestampScale units.
    pub relative_ts: i16,
    /// Keyframe flag of a SimpleBlock (Blocks get theirs from the BlockGroup).
    pub keyframe: bool,
    /// Frames in the block (1 unless laced).
    pub frames: u32,
    /// First byte of the first frame, when the frame is not empty (Opus TOC).
    pub first_byte: Option<u8>,
    /// Second byte of the first frame (Opus frame count for code 3 packets).
    pub second_byte: Option<u8>,
}

/// Why a block header could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockError {
    /// The header or its lace sizes do not fit in the block.
    Malformed,
    /// The lace header is longer than the prefix the caller read.
    NeedMore,
}

/// Decodes a block header from `prefix`, the first bytes of a block whose data is `total` bytes.
pub fn parse_block(prefix: &[u8], total: u64) -> Result<BlockHeader, BlockError> {
    let (track, track_len) = match read_vint(prefix) {
        Vint::Done((track, _), len) => (track, len),
        Vint::NeedMore if (prefix.len() as u64) < total => return Err(BlockError::NeedMore),
        _ => return Err(BlockError::Malformed),
    };
    let fixed = prefix.get(track_len..track_len + 3).ok_or(
        if (prefix.len() as u64) < total && total >= track_len as u64 + 3 {
            BlockError::NeedMore
        } else {
            BlockError::Malformed
        },
    )?;
    let relative_ts = i16::from_be_bytes([fixed[0], fixed[1]]);
    let flags = fixed[2];
    let mut pos = track_len + 3;
    let payload = total.checked_sub(pos as u64).ok_or(BlockError::Malformed)?;
    let lacing = (flags >> 1) & 0b11;
    let frames = if lacing == 0 {
        1
    } else {
        let count = u32::from(*byte_at(prefix, pos, total)?) + 1;
        pos += 1;
        let sizes_sum = match lacing {
            0b01 => xiph_sizes(prefix, &mut pos, total, count)?,
            0b11 => ebml_sizes(prefix, &mut pos, total, count)?,
            _ => {
                // Fixed-size lacing: the payload after the count splits evenly.
                let rest = payload - 1;
                if rest % u64::from(count) != 0 {
                    return Err(BlockError::Malformed);
                }
                0
            }
        };
        // The last frame takes what the others leave, and must not be negative.
        let header_end = pos as u64;
        if header_end > total || sizes_sum > total - header_end {
            return Err(BlockError::Malformed);
        }
        count
    };
    let first_byte = ((pos as u64) < total)
        .then(|| prefix.get(pos).copied())
        .flatten();
    let second_byte = ((pos as u64 + 1) < total)
        .then(|| prefix.get(pos + 1).copied())
        .flatten();
    Ok(BlockHeader {
        track,
        relative_ts,
        keyframe: flags & 0x80 != 0,
        frames,
        first_byte,
        second_byte,
    })
}

/// The byte at `pos`, telling a short prefix apart from a short block.
fn byte_at(prefix: &[u8], pos: usize, total: u64) -> Result<&u8, BlockError> {
    prefix.get(pos).ok_or(if (pos as u64) < total {
        BlockError::NeedMore
    } else {
        BlockError::Malformed
    })
}

/// Reads `count - 1` Xiph lace sizes (runs of 255 ended by a smaller byte); returns their sum.
fn xiph_sizes(prefix: &[u8], pos: &mut usize, total: u64, count: u32) -> Result<u64, BlockError> {
    let mut sum = 0u64;
    for _ in 1..count {
        loop {
            let byte = *byte_at(prefix, *pos, total)?;
            *pos += 1;
            sum += u64::from(byte);
            if byte != 255 {
                break;
            }
        }
    }
    Ok(sum)
}

/// Reads `count - 1` EBML lace sizes (a vint, then signed differences); returns their sum.
fn ebml_sizes(prefix: &[u8], pos: &mut usize, total: u64, count: u32) -> Result<u64, BlockError> {
    let need_more = |pos: usize| {
        if (prefix.len() as u64) < total && pos < prefix.len() + 8 {
            BlockError::NeedMore
        } else {
            BlockError::Malformed
        }
    };
    if count < 2 {
        return Ok(0);
    }
    let mut size = match read_vint(prefix.get(*pos..).unwrap_or(&[])) {
        Vint::Done((size, _), len) => {
            *pos += len;
            i64::try_from(size).map_err(|_| BlockError::Malformed)?
        }
        Vint::NeedMore => return Err(need_more(*pos)),
        Vint::Invalid => return Err(BlockError::Malformed),
    };
    let mut sum = size as u64;
    for _ in 2..count {
        match read_signed_vint(prefix.get(*pos..).unwrap_or(&[])) {
            Vint::Done(delta, len) => {
                *pos += len;
                size = size.checked_add(delta).ok_or(BlockError::Malformed)?;
                if size < 0 {
                    return Err(BlockError::Malformed);
                }
                sum = sum.checked_add(size as u64).ok_or(BlockError::Malformed)?;
            }
            Vint::NeedMore => return Err(need_more(*pos)),
            Vint::Invalid => return Err(BlockError::Malformed),
        }
    }
    Ok(sum)
}

/// Duration in nanoseconds of an Opus packet, from its TOC byte (RFC 6716 §3.1).
pub fn opus_packet_duration_ns(toc: u8, second: Option<u8>) -> Option<u64> {
    let config = toc >> 3;
    let frame_ns: u64 = match config {
        0..=11 => [10_000_000, 20_000_000, 40_000_000, 60_000_000][usize::from(config % 4)],
        12..=15 => [10_000_000, 20_000_000][usize::from(config % 2)],
        _ => [2_500_000, 5_000_000, 10_000_000, 20_000_000][usize::from(config % 4)],
    };
    let frames = match toc & 0b11 {
        0 => 1,
        1 | 2 => 2,
        _ => u64::from(second? & 0x3F),
    };
    Some(frame_ns * frames)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unlaced_keyframe_header_is_decoded() {
        let block = [0x81, 0x00, 0x21, 0x80, 0xAA, 0xBB];
        let header = parse_block(&block, block.len() as u64).expect("valid");
        assert_eq!(header.track, 1);
        assert_eq!(header.relative_ts, 33);
        assert!(header.keyframe);
        assert_eq!(header.frames, 1);
        assert_eq!(header.first_byte, Some(0xAA));
    }

    #[test]
    fn negative_relative_timestamps_are_kept() {
        let block = [0x82, 0xFF, 0xF6, 0x00, 0x01];
        let header = parse_block(&block, 5).expect("valid");
        assert_eq!(header.relative_ts, -10);
        assert!(!header.keyframe);
    }

    #[test]
    fn xiph_lacing_counts_frames_and_checks_sizes() {
        // 3 frames: sizes 300 (255 + 45), 2, and the rest (1).
        let mut block = vec![0x81, 0, 0, 0x02, 2, 255, 45, 2];
        let payload_start = block.len();
        block.resize(payload_start + 303, 0);
        let header = parse_block(&block, block.len() as u64).expect("valid");
        assert_eq!(header.frames, 3);
        assert_eq!(header.first_byte, Some(0));
        block.truncate(payload_start + 301);
        assert_eq!(
            parse_block(&block, block.len() as u64),
            Err(BlockError::Malformed)
        );
    }

    #[test]
    fn ebml_lacing_accepts_negative_differences_but_not_negative_sizes() {
        // 3 frames: 10, 10 - 3 = 7, rest.
        let mut block = vec![0x81, 0, 0, 0x06, 2, 0x8A, 0xBC];
        block.resize(block.len() + 20, 7);
        assert_eq!(
            parse_block(&block, block.len() as u64).map(|h| h.frames),
            Ok(3)
        );
        let bad = [0x81, 0, 0, 0x06, 2, 0x81, 0x80, 0, 0];
        assert_eq!(
            parse_block(&bad, bad.len() as u64),
            Err(BlockError::Malformed)
        );
    }

    #[test]
    fn fixed_lacing_requires_an_even_split() {
        let mut block = vec![0x81, 0, 0, 0x04, 3];
        block.resize(block.len() + 8, 1);
        assert_eq!(
            parse_block(&block, block.len() as u64).map(|h| h.frames),
            Ok(4)
        );
        block.push(1);
        assert_eq!(
            parse_block(&block, block.len() as u64),
            Err(BlockError::Malformed)
        );
    }

    #[test]
    fn a_prefix_shorter_than_the_lace_header_asks_for_more() {
        let block = [0x81, 0, 0, 0x02, 9, 255];
        assert_eq!(parse_block(&block, 1000), Err(BlockError::NeedMore));
        assert_eq!(parse_block(&[0x81, 0], 2), Err(BlockError::Malformed));
    }

    #[test]
    fn opus_toc_gives_the_packet_duration() {
        // Config 31 (CELT 20 ms), code 0: one frame.
        assert_eq!(opus_packet_duration_ns(0xF8, None), Some(20_000_000));
        // Config 3 (SILK 60 ms), code 1: two frames.
        assert_eq!(opus_packet_duration_ns(0x19, None), Some(120_000_000));
        // Config 16 (CELT 2.5 ms), code 3 with 4 frames.
        assert_eq!(opus_packet_duration_ns(0x83, Some(0x04)), Some(10_000_000));
        assert_eq!(opus_packet_duration_ns(0x83, None), None);
    }
}
