//! The upload task: the session as the owner of the tus upload loop, retrying without limit
//! while the live runs (a stop may give up on `getToken`, see [`Session::keeps_retrying`]).

use std::cell::RefCell;
use std::rc::Rc;

use crate::error::RecorderError;
use crate::http::TusUpload;
use crate::signal::Signal;
use crate::tus::UploadQueue;
use crate::upload::{upload, UploadOwner};

use super::journal_writer::JournalOp;
use super::Session;

impl Session {
    /// Uploads the live's bytes until the queue is complete, the page abandons the live, or
    /// an error ends it.
    pub(super) async fn run_upload(self: Rc<Self>, upload_url: String) {
        let transport = TusUpload::new(&self.client, &upload_url);
        match upload(&transport, &LiveUpload(&self)).await {
            Ok(()) => {
                self.inner.borrow_mut().upload_done = true;
                self.changed.notify();
            }
            // Abandoned by the page: `abandon` ends the session once the last chunk is journaled.
            Err(RecorderError::Closed) => {}
            Err(err) => self.fail(err),
        }
    }
}

/// The live session as the upload loop's owner: retries without limit while the live runs.
struct LiveUpload<'a>(&'a Rc<Session>);

impl UploadOwner for LiveUpload<'_> {
    fn queue(&self) -> &RefCell<UploadQueue> {
        &self.0.queue
    }

    fn changed(&self) -> &Signal {
        &self.0.changed
    }

    fn failure(&self) -> Option<RecorderError> {
        self.0.inner.borrow().failure.clone()
    }

    fn keep_retrying(&self, err: &RecorderError, _failures: u32) -> bool {
        self.0.keeps_retrying(err)
    }

    fn retrying(&self, err: &RecorderError) {
        self.0.callbacks.error(err, false);
    }

    fn acknowledged(&self) {
        self.0.stop_patience.reset();
        if self.0.inner.borrow().journal.is_some() {
            self.0.journal(JournalOp::Checkpoint);
        }
        self.0.emit_progress();
        self.0.changed.notify();
    }
}
