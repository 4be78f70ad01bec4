//! A buffered, position-tracking reader that can peek ahead, skip and copy.
//!
//! `std::io::BufReader` cannot peek more than it happens to hold, nor tell
//! its absolute position without a syscall; the parser needs both on every
//! element header, so it gets this small reader instead.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// Large enough that one `read` fetches many blocks and one `write` feeds the
/// disk efficiently, small enough to stay far below the memory budget.
pub const BUFFER_SIZE: usize = 1 << 20;

/// Buffered reader over a seekable input with absolute positions.
pub struct Source<R> {
    inner: R,
    buf: Vec<u8>,
    /// Absolute offset of `buf[0]`.
    buf_pos: u64,
    /// Valid bytes in `buf`.
    filled: usize,
    /// Read cursor inside `buf`.
    cursor: usize,
    /// Input length, learnt once by seeking to the end.
    len: u64,
}

impl<R: Read + Seek> Source<R> {
    /// Wraps `inner`, measuring its length and rewinding it to 0.
    pub fn new(mut inner: R, capacity: usize) -> io::Result<Self> {
        let len = inner.seek(SeekFrom::End(0))?;
        inner.seek(SeekFrom::Start(0))?;
        Ok(Self {
            inner,
            buf: vec![0; capacity.max(64)],
            buf_pos: 0,
            filled: 0,
            cursor: 0,
            len,
        })
    }

    /// Total input length in bytes.
    pub fn input_len(&self) -> u64 {
        self.len
    }

    /// Absolute position of the next byte to be read.
    pub fn position(&self) -> u64 {
        self.buf_pos + self.cursor as u64
    }

    /// Bytes between the cursor and the end of the input.
    pub fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.position())
    }

    /// Returns up to `n` bytes from the cursor without consuming them.
    ///
    /// The slice is shorter than `n` only at the end of the input; `n` larger
    /// than the buffer is clamped to it.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        let n = n.min(self.buf.len());
        if self.filled - self.cursor < n {
            self.fill(n)?;
        }
        let end = (self.cursor + n).min(self.filled);
        Ok(&self.buf[self.cursor..end])
    }

    /// Moves the unread bytes to the front and reads until `n` are buffered or the input ends.
    fn fill(&mut self, n: usize) -> io::Result<()> {
        self.buf.copy_within(self.cursor..self.filled, 0);
        self.buf_pos += self.cursor as u64;
        self.filled -= self.cursor;
        self.cursor = 0;
        while self.filled < n {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(read) => self.filled += read,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Moves the cursor to an absolute position, reusing the buffer when it holds it.
    pub fn seek_to(&mut self, pos: u64) -> io::Result<()> {
        if pos >= self.buf_pos && pos <= self.buf_pos + self.filled as u64 {
            // Within the buffered window, so the difference fits in usize.
            self.cursor = (pos - self.buf_pos) as usize;
            return Ok(());
        }
        self.inner.seek(SeekFrom::Start(pos))?;
        self.buf_pos = pos;
        self.filled = 0;
        self.cursor = 0;
        Ok(())
    }

    /// Skips `n` bytes forward.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        self.seek_to(self.position().saturating_add(n))
    }

    /// Copies exactly `n` bytes from the cursor to `out`.
    pub fn copy_to<W: Write>(&mut self, mut n: u64, out: &mut W) -> io::Result<()> {
        while n > 0 {
            if self.cursor == self.filled {
                self.cursor = 0;
                self.buf_pos += self.filled as u64;
                self.filled = 0;
                let read = loop {
                    match self.inner.read(&mut self.buf) {
                        Ok(read) => break read,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                };
                if read == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.filled = read;
            }
            let chunk = (self.filled - self.cursor).min(usize::try_from(n).unwrap_or(usize::MAX));
            out.write_all(&self.buf[self.cursor..self.cursor + chunk])?;
            self.cursor += chunk;
            n -= chunk as u64;
        }
        Ok(())
    }

    /// Reads exactly `n` bytes into a new vector; the caller bounds `n`.
    pub fn read_vec(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(n);
        self.copy_to(n as u64, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn source(len: usize, capacity: usize) -> Source<Cursor<Vec<u8>>> {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        Source::new(Cursor::new(data), capacity).expect("in-memory source")
    }

    #[test]
    fn peek_does_not_consume_and_is_short_only_at_the_end() {
        let mut src = source(100, 64);
        assert_eq!(src.peek(4).expect("peek"), [0, 1, 2, 3]);
        src.skip(98).expect("skip");
        assert_eq!(src.peek(4).expect("peek"), [98, 99]);
        assert_eq!(src.position(), 98);
    }

    #[test]
    fn seeking_back_and_copying_across_buffer_refills_returns_the_same_bytes() {
        let mut src = source(1000, 64);
        src.skip(10).expect("skip");
        src.peek(30).expect("peek");
        src.seek_to(5).expect("seek");
        let mut out = Vec::new();
        src.copy_to(900, &mut out).expect("copy");
        let expected: Vec<u8> = (5..905).map(|i| i as u8).collect();
        assert_eq!(out, expected);
        assert_eq!(src.position(), 905);
    }

    #[test]
    fn copying_past_the_end_is_an_error() {
        let mut src = source(10, 64);
        let mut out = Vec::new();
        assert!(src.copy_to(11, &mut out).is_err());
    }
}
