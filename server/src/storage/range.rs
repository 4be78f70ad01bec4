//! One byte range of a stored file read in a single blocking call: open, stat and read
//! together, instead of a thread hand-off for each (what a player's Range requests cost).

use std::{fs::File, io, os::unix::fs::FileExt, path::Path, time::SystemTime};

/// Bytes read from a stored file, with what the answer's headers need.
#[derive(Debug)]
pub struct RangeRead {
    /// The bytes from `first` to `last` inclusive.
    pub bytes: Vec<u8>,
    /// First byte's offset.
    pub first: u64,
    /// Last byte's offset (inclusive).
    pub last: u64,
    /// The file's length.
    pub total: u64,
    /// The file's modification time.
    pub modified: Option<SystemTime>,
}

/// Resolves one `bytes=a-b`, `bytes=a-` or `bytes=-n` against a file of `len` bytes; `None`
/// for several ranges, other units, malformed or unsatisfiable ones.
pub fn resolve(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    let (first, last) = if first.is_empty() {
        let suffix: u64 = last.parse().ok()?;
        (len.checked_sub(suffix.min(len))?, len - 1)
    } else {
        let first: u64 = first.parse().ok()?;
        let last = if last.is_empty() {
            len - 1
        } else {
            last.parse::<u64>().ok()?.min(len - 1)
        };
        (first, last)
    };
    (first <= last && first < len).then_some((first, last))
}

/// Reads the range `header` names from the file at `path` (blocking: an open, a stat and a
/// read), if it resolves to one satisfiable range of at most `max` bytes; `Ok(None)` otherwise
/// (the caller's general path answers) or if the file is missing.
pub fn read(path: &Path, header: &str, max: u64) -> io::Result<Option<RangeRead>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    let total = meta.len();
    let Some((first, last)) = resolve(header, total) else {
        return Ok(None);
    };
    let length = last - first + 1;
    if length > max {
        return Ok(None);
    }
    let mut bytes = vec![0; usize::try_from(length).map_err(io::Error::other)?];
    file.read_exact_at(&mut bytes, first)?;
    Ok(Some(RangeRead {
        bytes,
        first,
        last,
        total,
        modified: meta.modified().ok(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_resolve_and_the_rest_is_left_to_the_general_path() {
        assert_eq!(resolve("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(resolve("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(resolve("bytes=95-", 100), Some((95, 99)));
        assert_eq!(resolve("bytes=-10", 100), Some((90, 99)));
        assert_eq!(resolve("bytes=-500", 100), Some((0, 99)));
        assert_eq!(resolve("bytes=100-", 100), None);
        assert_eq!(resolve("bytes=9-0", 100), None);
        assert_eq!(resolve("bytes=0-1,5-6", 100), None);
        assert_eq!(resolve("items=0-1", 100), None);
        assert_eq!(resolve("bytes=0-9", 0), None);
        assert_eq!(resolve("bytes=x-9", 100), None);
    }

    #[test]
    fn a_range_is_read_exactly_and_a_large_one_is_declined() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, (0..=255u8).collect::<Vec<_>>()).unwrap();
        let read_range = read(&path, "bytes=10-19", 64).unwrap().unwrap();
        assert_eq!(read_range.bytes, (10..20).collect::<Vec<u8>>());
        assert_eq!(
            (read_range.first, read_range.last, read_range.total),
            (10, 19, 256)
        );
        assert!(read(&path, "bytes=0-", 64).unwrap().is_none());
        assert!(read(&dir.path().join("missing"), "bytes=0-1", 64)
            .unwrap()
            .is_none());
    }
}
