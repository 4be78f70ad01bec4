//! A stored file mapped whole, read-only, once: the zero-copy path (`http/serve/zero_copy.rs`)
//! hands hyper slices of the mapping as body buffers, which are never touched (their bytes
//! leave with `sendfile` from the file), and asks `mincore` whether their pages are cached.
//!
//! Kept with the file while it is served (a layout media's files stay open between requests),
//! a mapping costs no `mmap` and `munmap` per range; an `munmap` in a multi-threaded process is
//! also a TLB shootdown on every core running one of its threads (bench/findings.md, finding 13).

use std::{fs::File, io, os::fd::AsRawFd, sync::Arc};

/// A file and a read-only shared mapping of all its bytes.
#[derive(Debug)]
pub struct MappedFile {
    file: Arc<File>,
    /// The mapping's first byte; null for an empty file (nothing is mapped).
    base: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; moving it between threads or
// reading it from several is sound.
unsafe impl Send for MappedFile {}
unsafe impl Sync for MappedFile {}

/// Whether the pages of a range are all in the page cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// Every page: sending it will not wait for the disk.
    Resident,
    /// Some page must be read from the disk first.
    Cold,
}

fn page_size() -> io::Result<usize> {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).map_err(io::Error::other)
}

impl MappedFile {
    /// Maps `file` whole, as long as it is now. Stored files never change in place (a new
    /// file gets a new key), so the mapping stays the file's.
    pub fn new(file: Arc<File>) -> io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len()).map_err(io::Error::other)?;
        if len == 0 {
            return Ok(Self {
                file,
                base: std::ptr::null_mut(),
                len,
            });
        }
        // SAFETY: a fresh read-only mapping at an address the kernel picks; the result is
        // checked before use and unmapped in Drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { file, base, len })
    }

    /// The file.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Bytes mapped (the file's length when it was mapped).
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The mapped bytes `first..first + len`, or `None` past the mapping's end or for an empty
    /// range. Reading them reads the file through the page cache.
    pub fn slice(&self, first: u64, len: u64) -> Option<&[u8]> {
        let (first, len) = (usize::try_from(first).ok()?, usize::try_from(len).ok()?);
        if len == 0 || first.checked_add(len)? > self.len {
            return None;
        }
        // SAFETY: first..first + len lies in the live read-only mapping, which outlives the
        // borrow (it is unmapped only when self drops).
        Some(unsafe { std::slice::from_raw_parts(self.base.cast::<u8>().add(first), len) })
    }

    /// Whether every page holding `first..first + len` is in the page cache (`mincore`, which
    /// for a file mapping reports the page cache's pages, touched by this process or not).
    pub fn residency(&self, first: u64, len: u64) -> io::Result<Residency> {
        if self.slice(first, len).is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a range outside the mapped file",
            ));
        }
        let page = page_size()?;
        let (first, len) = (first as usize, len as usize);
        let aligned = first - first % page;
        let span = first + len - aligned;
        let mut pages = vec![0u8; span.div_ceil(page)];
        // SAFETY: aligned..aligned + span lies in the mapping (checked above) and starts on a
        // page boundary; `pages` has one byte per page of it.
        let result = unsafe {
            libc::mincore(
                self.base.cast::<u8>().add(aligned).cast(),
                span,
                pages.as_mut_ptr(),
            )
        };
        if result != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(if pages.iter().all(|page| page & 1 == 1) {
            Residency::Resident
        } else {
            Residency::Cold
        })
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        if self.base.is_null() {
            return;
        }
        // SAFETY: base and len are those mmap returned; nothing borrows the mapping any more
        // (borrows are tied to &self).
        unsafe {
            libc::munmap(self.base, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn slices_hold_the_file_s_bytes_and_stop_at_its_end() {
        let bytes: Vec<u8> = (0..3 * 4096 + 5).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        let mapped = MappedFile::new(Arc::new(File::open(file.path()).unwrap())).unwrap();
        assert_eq!(mapped.len(), bytes.len() as u64);
        assert_eq!(mapped.slice(4095, 4098), Some(&bytes[4095..4095 + 4098]));
        let end = bytes.len() as u64;
        assert_eq!(mapped.slice(end - 1, 1), Some(&bytes[bytes.len() - 1..]));
        assert_eq!(mapped.slice(end - 1, 2), None, "past the end");
        assert_eq!(mapped.slice(3, 0), None, "empty");
        assert_eq!(mapped.slice(u64::MAX, 2), None, "overflowing");
        assert_eq!(mapped.residency(4095, 4098).unwrap(), Residency::Resident);
        assert!(mapped.residency(end, 1).is_err());
    }

    #[test]
    fn an_empty_file_maps_to_nothing() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mapped = MappedFile::new(Arc::new(File::open(file.path()).unwrap())).unwrap();
        assert!(mapped.is_empty());
        assert_eq!(mapped.slice(0, 1), None);
    }
}
