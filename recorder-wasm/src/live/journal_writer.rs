//! The journal writer: one task that writes chunks and checkpoints to the local journal in
//! order, so a chunk is stored before it may be sent and the manifest never races the chunk
//! files.

use std::rc::Rc;

use crate::error::RecorderError;
use crate::journal::Manifest;
use crate::journal_store::JournalStore;

use super::{Live, Session};

/// One step for the journal writer.
pub(super) enum JournalOp {
    /// Store the chunk starting at this offset; it becomes sendable once stored.
    Chunk(u64, Vec<u8>),
    /// Rewrite the manifest, then delete the chunk files the server acknowledged.
    Checkpoint,
}

impl Session {
    /// The manifest that describes `live` as it stands now.
    pub(super) fn manifest(&self, live: &Live, mime_type: &str) -> Manifest {
        let queue = self.queue.borrow();
        let duration_ms = self
            .inner
            .borrow()
            .recorder
            .as_ref()
            .map(|r| r.duration_ms())
            .unwrap_or(0.0);
        Manifest {
            version: Manifest::VERSION,
            live_id: live.id,
            upload_url: live.upload_url.clone(),
            api_base: self.options.api_base.clone(),
            mime_type: mime_type.to_owned(),
            recording_title: self.options.recording_title.clone(),
            duration_ms,
            acked: queue.acked(),
            hash_state: queue.acked_hash().save(),
            finished: queue.is_finished(),
        }
    }

    /// Queues a journal operation; one writer task runs them in order so that the manifest
    /// and the chunk files never race.
    pub(super) fn journal(self: &Rc<Self>, op: JournalOp) {
        {
            let mut inner = self.inner.borrow_mut();
            let redundant = matches!(op, JournalOp::Checkpoint)
                && matches!(inner.journal_ops.back(), Some(JournalOp::Checkpoint));
            if !redundant {
                inner.journal_ops.push_back(op);
            }
            if std::mem::replace(&mut inner.journaling, true) {
                return;
            }
        }
        let session = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            loop {
                let (op, journal) = {
                    let mut inner = session.inner.borrow_mut();
                    match inner.journal_ops.pop_front() {
                        Some(op) => (op, inner.journal.clone()),
                        None => {
                            inner.journaling = false;
                            drop(inner);
                            session.release_lock_when_idle();
                            session.changed.notify();
                            break;
                        }
                    }
                };
                let result = match (op, journal) {
                    (JournalOp::Chunk(offset, bytes), journal) => {
                        let result = match journal {
                            Some(journal) => journal.write_chunk(offset, &bytes).await,
                            None => Ok(()),
                        };
                        // Sendable now: stored, or the journal is gone and sending is all we can do.
                        session
                            .queue
                            .borrow_mut()
                            .mark_ready(offset + bytes.len() as u64);
                        session.changed.notify();
                        result
                    }
                    (JournalOp::Checkpoint, Some(journal)) => session.checkpoint(&journal).await,
                    (JournalOp::Checkpoint, None) => Ok(()),
                };
                if let Err(err) = result {
                    // Keep recording and uploading without the journal rather than stop the
                    // live, and delete it: a journal that stopped following the upload would
                    // mislead `resumePending`.
                    let journal = session.inner.borrow_mut().journal.take();
                    session.callbacks.error(&err, false);
                    if let Some(journal) = journal {
                        let _ = journal.remove().await;
                    }
                }
            }
        });
    }

    async fn checkpoint(&self, journal: &JournalStore) -> Result<(), RecorderError> {
        let (live, mime_type) = {
            let inner = self.inner.borrow();
            match (&inner.live, &inner.mime_type) {
                (Some(live), Some(mime)) => (live.clone(), mime.clone()),
                _ => return Ok(()),
            }
        };
        let manifest = self.manifest(&live, &mime_type);
        journal.write_manifest(&manifest).await?;
        journal.forget_below(manifest.acked).await
    }
}
