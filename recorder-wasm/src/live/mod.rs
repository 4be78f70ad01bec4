//! One live recording session: MediaRecorder → journal → tus upload → stop.
//!
//! A byte's path through these files: the [`Recorder`] delivers a chunk in order →
//! `events.rs` routes it to the [`UploadQueue`] and to the journal writer → `journal_writer.rs`
//! stores it (OPFS or IndexedDB), after which it becomes sendable → `uploader.rs` runs the
//! upload loop that PATCHes it → the server's acknowledgement drops it from memory, and a
//! journal checkpoint (manifest first, then deletion) drops it from disk. `stop.rs` waits for
//! the last chunk, declares the length, waits for every acknowledgement, then stops the live.
//! `resume.rs` finishes, on a later page, the lives whose journal a closed tab left behind.
//!
//! Beside the bytes, `poster_task.rs` takes one frame about a second into the live and PUTs it
//! as the live's poster at once; `stop()` retries it if that failed. A poster failure is
//! reported (non-fatal, code `poster`) and never fails the stop.
//!
//! This file holds the session's state and its lifecycle (pause, resume, failure, abandon);
//! `start.rs` starts it, `callbacks.rs` calls the page back.

mod callbacks;
mod events;
mod journal_writer;
mod poster_task;
mod resume;
mod start;
mod stop;
mod uploader;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use wasm_bindgen::JsValue;

use crate::error::RecorderError;
use crate::http::ApiClient;
use crate::journal_store::JournalStore;
use crate::locks::LiveLock;
use crate::model::Progress;
use crate::options::LiveOptions;
use crate::recorder::Recorder;
use crate::signal::Signal;
use crate::state::RecorderState;
use crate::token::{Credentials, JsTokenProvider, StopPatience, Tokens};
use crate::tus::UploadQueue;

pub use callbacks::{to_js, Callbacks};
pub use resume::resume_pending;

use callbacks::call;
use journal_writer::JournalOp;
use poster_task::PosterState;

/// The live being recorded: its Post id and absolute tus upload URL.
#[derive(Debug, Clone)]
struct Live {
    id: u64,
    upload_url: String,
}

/// What changes while the session runs, borrowed only between awaits.
struct Inner {
    state: RecorderState,
    recorder: Option<Recorder>,
    mime_type: Option<String>,
    live: Option<Live>,
    post: JsValue,
    failure: Option<RecorderError>,
    upload_done: bool,
    journal: Option<Rc<JournalStore>>,
    journal_ops: VecDeque<JournalOp>,
    journaling: bool,
    lock: Option<LiveLock>,
    poster: PosterState,
}

/// The state behind one `LiveRecorder`.
pub struct Session {
    options: LiveOptions,
    callbacks: Callbacks,
    client: ApiClient,
    queue: RefCell<UploadQueue>,
    changed: Signal,
    /// The stop's `getToken` failures in a row (see [`Session::keeps_retrying`]).
    stop_patience: StopPatience,
    inner: RefCell<Inner>,
}

impl Session {
    /// A session that has not started.
    pub fn new(
        options: LiveOptions,
        credentials: Credentials<JsTokenProvider>,
        callbacks: Callbacks,
    ) -> Rc<Self> {
        let client = ApiClient::new(&options.api_base, Tokens::new(credentials));
        Rc::new(Self {
            options,
            callbacks,
            client,
            queue: RefCell::new(UploadQueue::new()),
            changed: Signal::new(),
            stop_patience: StopPatience::default(),
            inner: RefCell::new(Inner {
                state: RecorderState::Idle,
                recorder: None,
                mime_type: None,
                live: None,
                post: JsValue::UNDEFINED,
                failure: None,
                upload_done: false,
                journal: None,
                journal_ops: VecDeque::new(),
                journaling: false,
                lock: None,
                poster: PosterState::None,
            }),
        })
    }

    /// Current state.
    pub fn state(&self) -> RecorderState {
        self.inner.borrow().state
    }

    /// A progress snapshot.
    pub fn progress(&self) -> Progress {
        let inner = self.inner.borrow();
        let queue = self.queue.borrow();
        let (duration_ms, bytes, chunks) = inner
            .recorder
            .as_ref()
            .map(|r| (r.duration_ms(), r.bytes_recorded(), r.chunks()))
            .unwrap_or((0.0, 0, 0));
        Progress::new(
            inner.state,
            duration_ms,
            bytes,
            queue.acked(),
            queue.buffered(),
            chunks,
        )
    }

    /// The MIME type being recorded, once started.
    pub fn mime_type(&self) -> Option<String> {
        self.inner.borrow().mime_type.clone()
    }

    /// The live id, once known.
    pub fn live_id(&self) -> Option<u64> {
        self.inner.borrow().live.as_ref().map(|l| l.id)
    }

    /// The Post the server last returned (after creation, then after the stop).
    pub fn post(&self) -> JsValue {
        self.inner.borrow().post.clone()
    }

    fn set_state(&self, state: RecorderState) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.state == state || inner.state.is_final() {
                return;
            }
            inner.state = state;
        }
        self.release_lock_when_idle();
        call(&self.callbacks.on_state_change, state.as_str().into());
        self.emit_progress();
        self.changed.notify();
    }

    /// Once the session is over and the journal writer idle, lets another page (or
    /// `resumePending` in this one) take over whatever the journal still holds.
    fn release_lock_when_idle(&self) {
        let mut inner = self.inner.borrow_mut();
        if inner.state.is_final() && !inner.journaling {
            inner.lock = None;
        }
    }

    /// The page freed the recorder: stop recording and uploading, but let the last chunk
    /// reach the journal so `resumePending` can finish the live later.
    pub fn abandon(self: &Rc<Self>) {
        let stopped = {
            let mut inner = self.inner.borrow_mut();
            if inner.state.is_final() {
                return;
            }
            inner.failure.get_or_insert(RecorderError::Closed);
            inner.recorder.as_ref().map(Recorder::stop)
        };
        self.changed.notify();
        let session = self.clone();
        wasm_bindgen_futures::spawn_local(async move {
            if let Some(stopped) = stopped {
                let _ = stopped.await;
            }
            session.set_state(RecorderState::Failed);
        });
    }

    fn emit_progress(&self) {
        if self.callbacks.on_progress.is_some() {
            call(&self.callbacks.on_progress, to_js(&self.progress()));
        }
    }

    /// Ends the session with `err`: reports it, stops MediaRecorder, wakes every waiter.
    fn fail(&self, err: RecorderError) {
        let media_recorder = {
            let mut inner = self.inner.borrow_mut();
            if inner.state.is_final() {
                return;
            }
            inner.failure.get_or_insert(err.clone());
            inner.recorder.as_ref().map(|r| r.as_raw().clone())
        };
        if let Some(media_recorder) = media_recorder {
            if media_recorder.state() != web_sys::RecordingState::Inactive {
                let _ = media_recorder.stop();
            }
        }
        self.callbacks.error(&err, true);
        self.set_state(RecorderState::Failed);
    }

    /// `pause()`
    pub fn pause(&self) -> Result<(), RecorderError> {
        self.with_capturing_recorder("pause", Recorder::pause)
    }

    /// `resume()`
    pub fn resume(&self) -> Result<(), RecorderError> {
        self.with_capturing_recorder("resume", Recorder::resume)
    }

    fn with_capturing_recorder(
        &self,
        action: &'static str,
        f: impl FnOnce(&Recorder) -> Result<(), RecorderError>,
    ) -> Result<(), RecorderError> {
        let inner = self.inner.borrow();
        match &inner.recorder {
            Some(recorder) if inner.state.is_capturing() => f(recorder),
            _ => Err(RecorderError::InvalidState {
                action,
                state: inner.state,
            }),
        }
    }
}
