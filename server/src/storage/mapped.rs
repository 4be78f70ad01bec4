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
    /// Maps the first `len` bytes of `file`: all of it, its length as the caller just stat'ed
    /// it (each caller has, so no second `fstat` here). Stored files never change in place (a
    /// new file gets a new key), so the mapping stays the file's.
    pub fn new(file: Arc<File>, len: u64) -> io::Result<Self> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
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

    /// The mapped bytes `first..first + len` and whether every page holding them is in the
    /// page cache; an error past the mapping's end or for an empty range. `cachestat` (Linux
    /// 6.5) counts the pages in one walk of the page cache, where `mincore` looks up and takes
    /// a reference on each page in turn (3 % of the server's CPU at 1 MiB ranges:
    /// bench/findings.md, finding 13); `mincore` where the kernel lacks it.
    pub fn resident_slice(&self, first: u64, len: u64) -> io::Result<(&[u8], Residency)> {
        let slice = self.slice(first, len).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a range outside the mapped file",
            )
        })?;
        let page = page_size()?;
        let residency = match cached_pages(&self.file, first, len)? {
            Some(cached) => {
                let page = page as u64;
                let pages = (first + len - 1) / page - first / page + 1;
                if cached >= pages {
                    Residency::Resident
                } else {
                    Residency::Cold
                }
            }
            None => self.mincore(slice, page)?,
        };
        Ok((slice, residency))
    }

    /// The residency of `slice`, a slice of this mapping, from `mincore`, which for a file
    /// mapping reports the page cache's pages, touched by this process or not.
    fn mincore(&self, slice: &[u8], page: usize) -> io::Result<Residency> {
        let first = slice.as_ptr() as usize - self.base as usize;
        let aligned = first - first % page;
        let span = first + slice.len() - aligned;
        let mut pages = vec![0u8; span.div_ceil(page)];
        // SAFETY: `slice` lies in the mapping, so aligned..aligned + span does too (the mapping
        // starts on a page boundary); `pages` has one byte per page of it.
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

/// Pages of `file` from `first..first + len` in the page cache (`cachestat(2)`), or `None`
/// where the kernel has no `cachestat` (before 6.5, or a sandbox refusing it).
fn cached_pages(file: &File, first: u64, len: u64) -> io::Result<Option<u64>> {
    use std::sync::atomic::{AtomicBool, Ordering};
    /// The system call's number, the same on every architecture (libc lacks it on x86_64).
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    static UNSUPPORTED: AtomicBool = AtomicBool::new(false);
    if UNSUPPORTED.load(Ordering::Relaxed) {
        return Ok(None);
    }
    let range = Range { off: first, len };
    let mut stat = Stat::default();
    // SAFETY: the descriptor is open; `range` and `stat` are valid for the kernel's struct
    // cachestat_range and struct cachestat, read and written only during the call.
    let result = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0,
        )
    };
    if result == 0 {
        return Ok(Some(stat.nr_cache));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOSYS | libc::EPERM) => {
            UNSUPPORTED.store(true, Ordering::Relaxed);
            Ok(None)
        }
        _ => Err(err),
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

    /// A temporary file mapped whole.
    fn map(file: &tempfile::NamedTempFile) -> MappedFile {
        let len = file.as_file().metadata().unwrap().len();
        MappedFile::new(Arc::new(File::open(file.path()).unwrap()), len).unwrap()
    }

    #[test]
    fn slices_hold_the_file_s_bytes_and_stop_at_its_end() {
        let bytes: Vec<u8> = (0..3 * 4096 + 5).map(|i| (i % 251) as u8).collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        let mapped = map(&file);
        assert_eq!(mapped.len(), bytes.len() as u64);
        assert_eq!(mapped.slice(4095, 4098), Some(&bytes[4095..4095 + 4098]));
        let end = bytes.len() as u64;
        assert_eq!(mapped.slice(end - 1, 1), Some(&bytes[bytes.len() - 1..]));
        assert_eq!(mapped.slice(end - 1, 2), None, "past the end");
        assert_eq!(mapped.slice(3, 0), None, "empty");
        assert_eq!(mapped.slice(u64::MAX, 2), None, "overflowing");
        let (slice, residency) = mapped.resident_slice(4095, 4098).unwrap();
        assert_eq!(slice, &bytes[4095..4095 + 4098]);
        assert_eq!(residency, Residency::Resident);
        assert!(mapped.resident_slice(end, 1).is_err(), "past the end");
        assert!(mapped.resident_slice(3, 0).is_err(), "empty");
    }

    #[test]
    fn cachestat_and_mincore_agree_on_a_cached_file_and_on_one_dropped_from_the_cache() {
        let bytes = vec![7u8; 64 * 4096];
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        file.as_file().sync_all().unwrap();
        let mapped = map(&file);
        let (first, len) = (4095, 10 * 4096);
        let page = page_size().unwrap();
        let (slice, residency) = mapped.resident_slice(first, len).unwrap();
        assert_eq!(residency, Residency::Resident);
        assert_eq!(mapped.mincore(slice, page).unwrap(), Residency::Resident);
        // SAFETY: advice on an open descriptor; it only drops clean cached pages.
        let dropped = unsafe {
            libc::posix_fadvise(mapped.file().as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
        };
        assert_eq!(dropped, 0);
        let (slice, residency) = mapped.resident_slice(first, len).unwrap();
        assert_eq!(residency, Residency::Cold);
        assert_eq!(mapped.mincore(slice, page).unwrap(), Residency::Cold);
        if let Some(cached) = cached_pages(mapped.file(), 0, 64 * 4096).unwrap() {
            assert_eq!(cached, 0, "cachestat counts what mincore sees");
        }
    }

    #[test]
    fn an_empty_file_maps_to_nothing() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mapped = map(&file);
        assert!(mapped.is_empty());
        assert_eq!(mapped.slice(0, 1), None);
    }
}
