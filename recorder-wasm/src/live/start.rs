//! Starting a live: the format first, then the live (created or given), the lock and the
//! journal, MediaRecorder, and the upload and poster tasks.

use std::rc::Rc;

use web_sys::MediaStream;

use crate::error::RecorderError;
use crate::journal_store::JournalStore;
use crate::locks::{lock_name, try_lock};
use crate::mime;
use crate::recorder::{self, Recorder};
use crate::state::RecorderState;

use super::poster_task::PosterState;
use super::{Live, Session};

impl Session {
    /// `start(stream)`: creates the live if needed, opens the journal, starts MediaRecorder.
    pub async fn start(self: Rc<Self>, stream: MediaStream) -> Result<(), RecorderError> {
        let state = self.state();
        if state != RecorderState::Idle {
            return Err(RecorderError::InvalidState {
                action: "start",
                state,
            });
        }
        self.set_state(RecorderState::Starting);
        let result = self.clone().start_inner(stream).await;
        if let Err(err) = &result {
            self.fail(err.clone());
            // Nothing was recorded: a journal would only make `resumePending` stop an empty live.
            let journal = self.inner.borrow_mut().journal.take();
            let recorded = self.queue.borrow().end();
            if let (Some(journal), 0) = (journal, recorded) {
                let _ = journal.remove().await;
            }
        }
        result
    }

    async fn start_inner(self: Rc<Self>, stream: MediaStream) -> Result<(), RecorderError> {
        // Choose the format first, so a browser that cannot record leaves no empty live behind.
        let mime_type = mime::choose_mime_type(
            self.options.recording.mime_type.as_deref(),
            self.options.recording.format,
            recorder::is_supported,
        )?;
        self.inner.borrow_mut().mime_type = Some(mime_type.clone());
        let live = match &self.options.existing {
            Some(existing) => Live {
                id: existing.live_id,
                upload_url: self.client.absolute(&existing.upload_url)?,
            },
            None => {
                let created = self.client.create_live(&self.options.title).await?;
                self.inner.borrow_mut().post = created.post;
                Live {
                    id: created.live_id,
                    upload_url: created.upload_url,
                }
            }
        };
        self.inner.borrow_mut().live = Some(live.clone());
        self.inner.borrow_mut().lock = try_lock(&lock_name(live.id)).await;
        match JournalStore::create(self.options.journal, &self.manifest(&live, &mime_type)).await {
            Ok(journal) => self.inner.borrow_mut().journal = journal.map(Rc::new),
            Err(err) => self.callbacks.error(&err, false),
        }

        let mut config = self.options.recording.clone();
        config.mime_type = Some(mime_type);
        let weak = Rc::downgrade(&self);
        let recorder = Recorder::new(&stream, &config, move |event| {
            if let Some(session) = weak.upgrade() {
                session.on_recorder_event(event);
            }
        })?;
        recorder.start()?;
        let started = recorder.started();
        self.inner.borrow_mut().recorder = Some(recorder);
        wasm_bindgen_futures::spawn_local(self.clone().run_upload(live.upload_url));
        started.await?;
        self.inner.borrow_mut().poster = PosterState::Busy;
        wasm_bindgen_futures::spawn_local(self.clone().run_poster(stream, live.id));
        Ok(())
    }
}
