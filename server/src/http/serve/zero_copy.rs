//! Zero-copy file bodies: a range of a stored file leaves with `sendfile(2)`, from the page
//! cache straight to the socket, like nginx's `sendfile on`, instead of being read into a
//! buffer that hyper then writes (two copies through user space).
//!
//! hyper writes bodies from memory, so the range is handed to it as the bytes of a read-only
//! `mmap` of the file ([`MappedFile`], [`ZeroCopy::file_range`]): valid memory, but never
//! touched. Each connection's socket ([`ZeroCopyStream`]) knows the mappings made for its
//! responses; when hyper asks it to write a slice that lies in one, it sends the same bytes
//! from the file at the matching offset with `sendfile` instead. Were a mapping ever written by another path,
//! its bytes are the file's, so the answer would still be right, one copy slower.
//!
//! Stored files are never rewritten or cut in place (a new file gets a new key; a deleted one
//! lives on while open), so the pages under a mapping stay the file's for its lifetime.

use std::{
    fs::File,
    io::{self, IoSlice},
    os::fd::AsRawFd,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
    task::{ready, Context, Poll},
};

use crate::metrics::Metrics;
pub use crate::storage::mapped::{MappedFile, Residency};
use bytes::Bytes;
use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::TcpStream,
};

/// A region of memory that is an mmap of a file range, known to its connection's socket.
#[derive(Debug)]
struct Region {
    id: u64,
    /// Address of the range's first byte in the mapping.
    start: usize,
    len: usize,
    file: Arc<File>,
    /// Offset in the file of the range's first byte.
    offset: u64,
}

/// The mappings of one connection's responses still queued for writing.
#[derive(Debug)]
struct Regions {
    live: Mutex<Vec<Region>>,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Regions {
    fn live(&self) -> std::sync::MutexGuard<'_, Vec<Region>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file and offset behind the byte at `address`, if it lies in a region.
    fn find(&self, address: usize) -> Option<(Arc<File>, u64)> {
        self.live()
            .iter()
            .find(|region| address >= region.start && address - region.start < region.len)
            .map(|region| {
                let into = (address - region.start) as u64;
                (Arc::clone(&region.file), region.offset + into)
            })
    }

    fn any(&self) -> bool {
        !self.live().is_empty()
    }
}

/// A connection's ability to send file ranges with `sendfile`; handlers find it in the
/// request's extensions (absent when the app is called without the accept loop, as in tests
/// that `oneshot` the router).
#[derive(Debug, Clone)]
pub struct ZeroCopy {
    regions: Arc<Regions>,
}

impl ZeroCopy {
    /// A new connection's, with no mapping yet; bytes it sends are counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            regions: Arc::new(Regions {
                live: Mutex::default(),
                next_id: AtomicU64::new(0),
                metrics,
            }),
        }
    }

    /// The bytes `first..first + len` of `mapped`'s file as a body buffer that this connection
    /// sends with `sendfile`, and whether they are all in the page cache.
    pub fn file_range(
        &self,
        mapped: &Arc<MappedFile>,
        first: u64,
        len: u64,
    ) -> io::Result<(Bytes, Residency)> {
        let (slice, residency) = mapped.resident_slice(first, len)?;
        let start = slice.as_ptr() as usize;
        let id = self.regions.next_id.fetch_add(1, Ordering::Relaxed);
        self.regions.live().push(Region {
            id,
            start,
            len: len as usize,
            file: Arc::clone(mapped.file()),
            offset: first,
        });
        let owner = Registered {
            mapped: Arc::clone(mapped),
            first,
            len,
            regions: Arc::clone(&self.regions),
            id,
        };
        Ok((Bytes::from_owner(owner), residency))
    }
}

/// A range of a mapping known to a connection's socket until it is dropped.
#[derive(Debug)]
struct Registered {
    mapped: Arc<MappedFile>,
    first: u64,
    len: u64,
    regions: Arc<Regions>,
    id: u64,
}

impl AsRef<[u8]> for Registered {
    fn as_ref(&self) -> &[u8] {
        // Checked when registered: the range lies in the mapping.
        self.mapped.slice(self.first, self.len).unwrap_or_default()
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.regions.live().retain(|region| region.id != self.id);
    }
}

/// A connection's TCP stream that writes slices of its [`ZeroCopy`] mappings with `sendfile`.
#[derive(Debug)]
pub struct ZeroCopyStream {
    stream: TcpStream,
    regions: Arc<Regions>,
}

impl ZeroCopyStream {
    /// Wraps a connection's stream; `zero_copy` goes into its requests' extensions.
    pub fn new(stream: TcpStream, zero_copy: &ZeroCopy) -> Self {
        Self {
            stream,
            regions: Arc::clone(&zero_copy.regions),
        }
    }

    /// Runs a raw write on the socket once it is writable, waiting again on `WouldBlock`.
    fn poll_raw(
        &self,
        cx: &mut Context<'_>,
        mut write: impl FnMut(libc::c_int) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let fd = self.stream.as_raw_fd();
        loop {
            ready!(self.stream.poll_write_ready(cx))?;
            match self.stream.try_io(Interest::WRITABLE, || write(fd)) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }
}

/// `sendfile` of up to `len` bytes of `file` from `offset` to the socket `fd`.
fn send_file(fd: libc::c_int, file: &File, offset: u64, len: usize) -> io::Result<usize> {
    let mut offset = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    // SAFETY: both descriptors are open (the file is held by its region), `offset` is a
    // valid out-pointer.
    let sent = unsafe { libc::sendfile(fd, file.as_raw_fd(), &mut offset, len) };
    match sent {
        -1 => Err(io::Error::last_os_error()),
        // The file ended before its range: it was cut under us; never report a zero write.
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file is shorter than the range being sent",
        )),
        sent => Ok(sent as usize),
    }
}

/// `send` of `slices` with `MSG_MORE`: the headers wait for the file's first bytes, so they
/// leave in the same segment instead of a small one of their own.
fn send_more(fd: libc::c_int, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on Unix.
    message.msg_iov = slices.as_ptr().cast_mut().cast();
    message.msg_iovlen = slices.len() as _;
    // SAFETY: the iovecs borrow live slices for the duration of the call.
    let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_MORE | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

impl AsyncRead for ZeroCopyStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ZeroCopyStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if !self.regions.any() {
            return Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        }
        let mapped = bufs.iter().enumerate().find_map(|(i, buf)| {
            let found = (!buf.is_empty()).then(|| self.regions.find(buf.as_ptr() as usize));
            found.flatten().map(|(file, offset)| (i, file, offset))
        });
        match mapped {
            None => Pin::new(&mut self.stream).poll_write_vectored(cx, bufs),
            // What precedes the file's bytes (the headers) goes first, held for them.
            Some((i, _, _)) if i > 0 => self.poll_raw(cx, |fd| send_more(fd, &bufs[..i])),
            Some((_, file, offset)) => {
                // A slice lies within one mapping: it is a part of the Bytes that owns it.
                let len = bufs[0].len();
                let sent = ready!(self.poll_raw(cx, |fd| send_file(fd, &file, offset, len)))?;
                self.regions.metrics.sent_by_sendfile(sent as u64);
                Poll::Ready(Ok(sent))
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A file of `len` bytes that differ from page to page and within pages.
    fn numbered_file(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i % 251) as u8 ^ (i / 4096) as u8)
            .collect();
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&bytes).unwrap();
        file.flush().unwrap();
        (file, bytes)
    }

    fn mapped(file: &tempfile::NamedTempFile) -> Arc<MappedFile> {
        let len = file.as_file().metadata().unwrap().len();
        Arc::new(MappedFile::new(Arc::new(File::open(file.path()).unwrap()), len).unwrap())
    }

    /// A connected pair: the server's end wrapped for zero copy, and the client's.
    async fn connection(zero_copy: &ZeroCopy) -> (ZeroCopyStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (
            ZeroCopyStream::new(accepted.unwrap().0, zero_copy),
            client.unwrap(),
        )
    }

    /// Writes the buffers as hyper does: vectored writes, advancing past what each one took.
    async fn write_all_vectored(stream: &mut ZeroCopyStream, buffers: &mut [Bytes]) {
        use bytes::Buf;
        loop {
            let slices: Vec<IoSlice<'_>> = buffers
                .iter()
                .filter(|b| !b.is_empty())
                .map(|b| IoSlice::new(b))
                .collect();
            if slices.is_empty() {
                return;
            }
            let mut written = stream.write_vectored(&slices).await.unwrap();
            assert!(written > 0);
            for buffer in buffers.iter_mut() {
                let take = written.min(buffer.len());
                buffer.advance(take);
                written -= take;
            }
        }
    }

    #[tokio::test]
    async fn a_mapped_range_leaves_by_sendfile_after_its_headers_with_the_file_s_bytes() {
        let (file, bytes) = numbered_file(5 * 4096 + 123);
        let metrics = Arc::new(Metrics::default());
        let zero_copy = ZeroCopy::new(Arc::clone(&metrics));
        let (mut server, mut client) = connection(&zero_copy).await;
        let file = mapped(&file);
        // Unaligned both ends, across page boundaries.
        let (first, len) = (4095u64, 3 * 4096 + 7);
        let (body, residency) = zero_copy.file_range(&file, first, len).unwrap();
        assert_eq!(
            residency,
            Residency::Resident,
            "a file just written is cached"
        );
        let head = Bytes::from_static(b"HTTP/1.1 206 Partial Content\r\n\r\n");
        let mut expected = head.to_vec();
        expected.extend_from_slice(&bytes[4095..4095 + len as usize]);
        let reader = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert_eq!(got, expected);
        });
        write_all_vectored(&mut server, &mut [head, body]).await;
        reader.await.unwrap();
        // Every byte of the range, and only those, went through sendfile.
        assert_eq!(
            metrics
                .render(&crate::metrics::Gauges::default())
                .lines()
                .find(|l| l.starts_with("livekeep_media_sendfile_bytes_total")),
            Some(format!("livekeep_media_sendfile_bytes_total {len}").as_str())
        );
    }

    #[tokio::test]
    async fn a_mapping_read_as_memory_holds_the_same_bytes_and_is_forgotten_once_dropped() {
        let (file, bytes) = numbered_file(3 * 4096);
        let zero_copy = ZeroCopy::new(Arc::new(Metrics::default()));
        let file = mapped(&file);
        let (body, _) = zero_copy.file_range(&file, 4097, 4096).unwrap();
        assert_eq!(&body[..], &bytes[4097..4097 + 4096]);
        let address = body.as_ptr() as usize;
        assert!(zero_copy.regions.find(address + 10).is_some());
        drop(body);
        assert!(zero_copy.regions.find(address + 10).is_none());
        assert!(!zero_copy.regions.any());
    }

    #[tokio::test]
    async fn plain_buffers_go_out_as_they_are() {
        let zero_copy = ZeroCopy::new(Arc::new(Metrics::default()));
        let (mut server, mut client) = connection(&zero_copy).await;
        server.write_all(b"hello").await.unwrap();
        let mut got = [0; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
