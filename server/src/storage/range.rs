//! One byte range of a stored file read in a single blocking call: open, stat and read
//! together, instead of a thread hand-off for each (what a player's Range requests cost).

use std::{fs::File, io, os::unix::fs::FileExt, path::Path, sync::Arc, time::SystemTime};

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

/// A stored file opened for one range of it.
#[derive(Debug)]
pub struct OpenRange {
    /// The open file (shared with a zero-copy body).
    pub file: Arc<File>,
    /// First byte's offset.
    pub first: u64,
    /// Last byte's offset (inclusive).
    pub last: u64,
    /// The file's length.
    pub total: u64,
    /// The file's modification time.
    pub modified: Option<SystemTime>,
}

impl OpenRange {
    /// How many bytes the range holds (at least one).
    pub fn length(&self) -> u64 {
        self.last - self.first + 1
    }

    /// Reads the range's bytes (blocking).
    pub fn read(&self) -> io::Result<RangeRead> {
        let mut bytes = vec![0; usize::try_from(self.length()).map_err(io::Error::other)?];
        self.file.read_exact_at(&mut bytes, self.first)?;
        Ok(RangeRead {
            bytes,
            first: self.first,
            last: self.last,
            total: self.total,
            modified: self.modified,
        })
    }
}

/// Opens the file at `path` for the range `header` names, if it resolves to one satisfiable
/// range of at most `max` bytes; `Ok(None)` otherwise (the caller's general path answers) or
/// if the file is missing. Costs an open and a stat, no read.
pub fn open(path: &Path, header: &str, max: u64) -> io::Result<Option<OpenRange>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let meta = file.metadata()?;
    let Some((first, last)) = resolve(header, meta.len()) else {
        return Ok(None);
    };
    if last - first + 1 > max {
        return Ok(None);
    }
    Ok(Some(OpenRange {
        file: Arc::new(file),
        first,
        last,
        total: meta.len(),
        modified: meta.modified().ok(),
    }))
}

/// Reads the range `header` names from the file at `path`, as [`open`] finds it (blocking).
pub fn read(path: &Path, header: &str, max: u64) -> io::Result<Option<RangeRead>> {
    open(path, header, max)?
        .map(|range| range.read())
        .transpose()
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
