//! Event routing: what the session does with each [`RecorderEvent`] MediaRecorder reports.

use std::rc::Rc;

use crate::error::RecorderError;
use crate::recorder::RecorderEvent;
use crate::state::RecorderState;

use super::journal_writer::JournalOp;
use super::Session;

impl Session {
    /// Routes one event: state changes, a chunk to the upload queue and the journal, the end
    /// of the recording, a failure.
    pub(super) fn on_recorder_event(self: &Rc<Self>, event: RecorderEvent) {
        match event {
            RecorderEvent::Started if self.state() == RecorderState::Starting => {
                self.set_state(RecorderState::Recording)
            }
            RecorderEvent::Paused if self.state() == RecorderState::Recording => {
                self.set_state(RecorderState::Paused)
            }
            RecorderEvent::Resumed if self.state() == RecorderState::Paused => {
                self.set_state(RecorderState::Recording)
            }
            RecorderEvent::Chunk(bytes) => {
                let offset = self.queue.borrow().end();
                let journaled = self.inner.borrow().journal.is_some();
                if journaled {
                    self.queue.borrow_mut().push(bytes.clone());
                    self.journal(JournalOp::Chunk(offset, bytes));
                    self.journal(JournalOp::Checkpoint);
                } else {
                    self.queue.borrow_mut().push_ready(bytes);
                    self.changed.notify();
                }
                self.emit_progress();
            }
            RecorderEvent::Stopped => {
                if self.state().is_capturing() {
                    // Not our stop(): the stream ended (camera unplugged, track stopped). The
                    // bytes so far are safe; the page should call stop() to end the live.
                    let err = RecorderError::Recording(
                        "the media stream ended; call stop() to save the live".into(),
                    );
                    self.callbacks.error(&err, false);
                }
                self.queue.borrow_mut().finish();
                self.journal(JournalOp::Checkpoint);
                self.changed.notify();
                self.emit_progress();
            }
            RecorderEvent::Failed(err) => self.fail(err),
            RecorderEvent::Started | RecorderEvent::Paused | RecorderEvent::Resumed => {}
        }
    }
}
