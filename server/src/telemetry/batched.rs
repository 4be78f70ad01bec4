//! Log lines written out in batches: one `write(2)` for many lines, as nginx's `access_log …
//! buffer=` does, instead of one per line (that system call was ~1.5 % of a Range request's
//! CPU: bench/findings.md, finding 14). A warning or an error is written at once, after the
//! lines buffered before it, so it is never held back; other lines wait at most
//! [`FLUSH_EVERY`], or until [`FLUSH_AT`] bytes are waiting.

use std::{
    io::{self, Write},
    sync::{Arc, Mutex, MutexGuard, PoisonError, Weak},
    thread,
    time::Duration,
};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The longest an info line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Bytes buffered that are written at once, whatever the time.
pub const FLUSH_AT: usize = 64 * 1024;

/// A `MakeWriter` for the fmt layer that batches the lines it is given into `out`.
#[derive(Debug)]
pub struct BatchedWriter<W> {
    pending: Arc<Mutex<Pending<W>>>,
    /// Every line written at once: no thread could be started to write them later.
    unbuffered: bool,
}

/// Lines not written yet, and where they go.
#[derive(Debug)]
struct Pending<W> {
    buffer: Vec<u8>,
    out: W,
}

impl<W: Write> Pending<W> {
    fn write_out(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let written = self
            .out
            .write_all(&self.buffer)
            .and_then(|()| self.out.flush());
        // Lines that could not be written are dropped rather than kept growing.
        self.buffer.clear();
        written
    }
}

fn lock<W>(pending: &Mutex<Pending<W>>) -> MutexGuard<'_, Pending<W>> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write + Send + 'static> BatchedWriter<W> {
    /// A writer into `out`, and the guard that writes out what is left when dropped (`main`
    /// holds it). A thread writes the buffered lines every [`FLUSH_EVERY`].
    pub fn new(out: W) -> (Self, FlushGuard) {
        let pending = Arc::new(Mutex::new(Pending {
            buffer: Vec::with_capacity(FLUSH_AT),
            out,
        }));
        let weak = Arc::downgrade(&pending);
        let unbuffered = thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || flush_periodically(&weak))
            .is_err();
        let guard = {
            let pending = Arc::clone(&pending);
            FlushGuard {
                flush: Box::new(move || {
                    let _ = lock(&pending).write_out();
                }),
            }
        };
        (
            Self {
                pending,
                unbuffered,
            },
            guard,
        )
    }
}

/// Writes the buffered lines every [`FLUSH_EVERY`] while the writer lives.
fn flush_periodically<W: Write>(pending: &Weak<Mutex<Pending<W>>>) {
    loop {
        thread::sleep(FLUSH_EVERY);
        let Some(pending) = pending.upgrade() else {
            return;
        };
        let _ = lock(&pending).write_out();
    }
}

/// Writes out the lines still buffered when dropped.
pub struct FlushGuard {
    flush: Box<dyn Fn() + Send + Sync>,
}

impl FlushGuard {
    /// Writes out the lines buffered so far (before printing to stderr directly).
    pub fn flush(&self) {
        (self.flush)();
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.flush();
    }
}

impl std::fmt::Debug for FlushGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushGuard").finish_non_exhaustive()
    }
}

/// One event's writer: its bytes join the buffer, written out at once when `urgent`.
#[derive(Debug)]
pub struct LineWriter<'a, W> {
    pending: &'a Mutex<Pending<W>>,
    urgent: bool,
}

impl<W: Write> Write for LineWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut pending = lock(self.pending);
        pending.buffer.extend_from_slice(bytes);
        if self.urgent || pending.buffer.len() >= FLUSH_AT {
            pending.write_out()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.urgent {
            lock(self.pending).write_out()?;
        }
        Ok(())
    }
}

impl<'a, W: Write + 'a> MakeWriter<'a> for BatchedWriter<W> {
    type Writer = LineWriter<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            pending: &self.pending,
            urgent: self.unbuffered,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            pending: &self.pending,
            // Levels order by verbosity: WARN and ERROR are the least verbose.
            urgent: self.unbuffered || *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tracing_subscriber::fmt;

    use super::*;

    /// A `Write` into memory the test can read.
    #[derive(Debug, Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A subscriber writing through a fresh batched writer into `out`.
    fn batched_subscriber(out: &Shared) -> (impl tracing::Subscriber, FlushGuard) {
        let (writer, guard) = BatchedWriter::new(out.clone());
        let subscriber = fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(Level::INFO)
            .finish();
        (subscriber, guard)
    }

    #[test]
    fn info_lines_wait_and_a_warning_writes_them_out_first_in_order() {
        let out = Shared::default();
        let (subscriber, _guard) = batched_subscriber(&out);
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("first");
            tracing::info!("second");
            assert_eq!(out.text(), "", "info lines are buffered");
            tracing::warn!("third");
        });
        let text = out.text();
        let at = |word: &str| {
            text.find(word)
                .unwrap_or_else(|| panic!("{word} in {text}"))
        };
        assert!(
            at("first") < at("second") && at("second") < at("third"),
            "{text}"
        );
    }

    #[test]
    fn buffered_lines_are_written_by_the_thread_and_by_the_guard() {
        let out = Shared::default();
        let (subscriber, guard) = batched_subscriber(&out);
        tracing::subscriber::with_default(subscriber, || tracing::info!("on its own"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.text().contains("on its own") {
            assert!(Instant::now() < deadline, "never written: {:?}", out.text());
            thread::sleep(FLUSH_EVERY / 4);
        }
        let (subscriber, guard_2) = batched_subscriber(&out);
        tracing::subscriber::with_default(subscriber, || tracing::info!("at the end"));
        drop(guard_2);
        assert!(out.text().contains("at the end"), "{}", out.text());
        drop(guard);
    }

    #[test]
    fn a_full_buffer_is_written_at_once() {
        let out = Shared::default();
        // No flushing thread: only the size may write the lines out.
        let writer = BatchedWriter {
            pending: Arc::new(Mutex::new(Pending {
                buffer: Vec::new(),
                out: out.clone(),
            })),
            unbuffered: false,
        };
        let line = vec![b'x'; FLUSH_AT / 4];
        let mut lines = 0;
        while out.text().is_empty() {
            writer.make_writer().write_all(&line).unwrap();
            lines += 1;
            assert!(lines <= 4, "not written at {FLUSH_AT} bytes");
        }
        assert_eq!(out.text().len(), FLUSH_AT);
    }
}
