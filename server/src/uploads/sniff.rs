//! What a recording's first bytes say: WebM and MP4 are accepted, anything else is refused at
//! the first PATCH, before a byte is kept.

/// Whether the first bytes of an upload start like WebM (EBML magic) or MP4 (`ftyp` at byte 4).
///
/// `None` while too few bytes are known to decide.
pub fn looks_like_video(first: &[u8]) -> Option<bool> {
    const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
    if first.len() >= 4 && first[..4] == EBML_MAGIC {
        return Some(true);
    }
    if first.len() >= 8 {
        return Some(&first[4..8] == b"ftyp");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webm_and_mp4_signatures_are_recognised_and_text_is_not() {
        assert_eq!(looks_like_video(&[0x1A, 0x45, 0xDF, 0xA3]), Some(true));
        assert_eq!(looks_like_video(b"\0\0\0\x20ftypisom"), Some(true));
        assert_eq!(looks_like_video(b"hello world"), Some(false));
        assert_eq!(looks_like_video(b"hel"), None);
    }
}
