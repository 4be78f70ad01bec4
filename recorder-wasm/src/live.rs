//! One live recording session: MediaRecorder → journal → tus upload → stop.
//!
//! A byte's path: [`Recorder`] delivers a chunk in order → it joins the [`UploadQueue`] and
//! the journal writer stores it in OPFS → once stored it becomes sendable → the upload loop
//! PATCHes it → the server's acknowledgement drops it from memory, and a journal checkpoint
//! (manifest first, then deletion) drops it from disk. `stop()` waits for the last chunk,
//! declares the length, waits for every acknowledgement, then stops the live.
//!
//! Beside the bytes, a poster task takes one frame about a second into the live and PUTs it
//! as the live's poster at once; `stop()` retries it if that failed. A poster failure is
//! reported (non-fatal, code `poster`) and never fails the stop.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use wasm_bindgen::JsValue;
use web_sys::MediaStream;

use crate::backoff::Backoff;
use crate::error::RecorderError;
use crate::hash::ResumableSha256;
use crate::http::{ApiClient, TusUpload};
use crate::journal::{rebuild_queue, Manifest};
use crate::journal_store::JournalStore;
use crate::locks::{lock_name, try_lock, LiveLock};
use crate::mime;
use crate::model::{seconds, ErrorInfo, Progress, VideoData};
use crate::options::LiveOptions;
use crate::poster::{self, grab_poster};
use crate::recorder::{self, Recorder, RecorderEvent};
use crate::signal::Signal;
use crate::state::RecorderState;
use crate::tus::{upload_id_from_url, UploadQueue};
use crate::upload::{upload, FinishedUpload, UploadOwner};

/// How long `stop()` waits (steps of [`POSTER_STEP_MS`]) for a poster still being taken or
/// sent before it stops the live without it.
const POSTER_WAIT_STEPS: u32 = 50;
const POSTER_STEP_MS: u32 = 100;

/// The page's callbacks (each optional).
#[derive(Default)]
pub struct Callbacks {
    /// `onStateChange(state)`
    pub on_state_change: Option<js_sys::Function>,
    /// `onProgress(progress)`
    pub on_progress: Option<js_sys::Function>,
    /// `onError(info)`
    pub on_error: Option<js_sys::Function>,
}

impl Callbacks {
    fn error(&self, err: &RecorderError, fatal: bool) {
        call(&self.on_error, to_js(&ErrorInfo::new(err, fatal)));
    }
}

/// Calls a page callback; what it throws is its own business and must not break recording.
fn call(callback: &Option<js_sys::Function>, arg: JsValue) {
    if let Some(callback) = callback {
        let _ = callback.call1(&JsValue::UNDEFINED, &arg);
    }
}

/// A plain JS object for `value` (numbers as numbers, never BigInt).
pub fn to_js<T: serde::Serialize>(value: &T) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::UNDEFINED)
}

#[derive(Debug, Clone)]
struct Live {
    id: u64,
    upload_url: String,
}

enum JournalOp {
    Chunk(u64, Vec<u8>),
    Checkpoint,
}

/// Where the live's poster is.
enum PosterState {
    /// No poster task (the live never started).
    None,
    /// The poster task is waiting, grabbing or uploading.
    Busy,
    /// Taken, but the upload failed: `stop()` tries once more.
    Unsent(web_sys::Blob),
    /// Uploaded, or nothing left to try.
    Done,
}

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
    inner: RefCell<Inner>,
}

impl Session {
    /// A session that has not started.
    pub fn new(options: LiveOptions, callbacks: Callbacks) -> Rc<Self> {
        let client = ApiClient::new(&options.api_base, &options.token);
        Rc::new(Self {
            options,
            callbacks,
            client,
            queue: RefCell::new(UploadQueue::new()),
            changed: Signal::new(),
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

    /// Takes the poster about a second into the live (sooner if the page stops first) and
    /// uploads it at once; a failed upload leaves it for `stop()` to retry.
    async fn run_poster(self: Rc<Self>, stream: MediaStream, live_id: u64) {
        let mut waited = 0;
        while waited < poster::GRAB_AFTER_MS && self.state().is_capturing() {
            gloo_timers::future::TimeoutFuture::new(POSTER_STEP_MS).await;
            waited += POSTER_STEP_MS;
        }
        let outcome = if self.state().is_final() {
            PosterState::Done
        } else {
            match grab_poster(&stream).await {
                Ok(jpeg) => match self.client.put_poster(live_id, &jpeg).await {
                    Ok(()) => PosterState::Done,
                    Err(err) => {
                        self.poster_failed(&err);
                        PosterState::Unsent(jpeg)
                    }
                },
                Err(err) => {
                    self.poster_failed(&err);
                    PosterState::Done
                }
            }
        };
        self.inner.borrow_mut().poster = outcome;
        self.changed.notify();
    }

    /// Reports a poster problem as the non-fatal `poster` error, whatever caused it.
    fn poster_failed(&self, err: &RecorderError) {
        let err = match err {
            RecorderError::Poster(_) => err.clone(),
            other => RecorderError::Poster(other.to_string()),
        };
        self.callbacks.error(&err, false);
    }

    /// At stop: waits a bounded time for the poster task, then retries an unsent poster once.
    async fn finish_poster(&self, live_id: u64) {
        for _ in 0..POSTER_WAIT_STEPS {
            if !matches!(self.inner.borrow().poster, PosterState::Busy) {
                break;
            }
            gloo_timers::future::TimeoutFuture::new(POSTER_STEP_MS).await;
        }
        let unsent = {
            let mut inner = self.inner.borrow_mut();
            match std::mem::replace(&mut inner.poster, PosterState::Done) {
                PosterState::Unsent(jpeg) => Some(jpeg),
                other => {
                    inner.poster = other;
                    None
                }
            }
        };
        if let Some(jpeg) = unsent {
            if let Err(err) = self.client.put_poster(live_id, &jpeg).await {
                self.poster_failed(&err);
            }
        }
    }

    fn manifest(&self, live: &Live, mime_type: &str) -> Manifest {
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
            title: self.options.title.clone(),
            duration_ms,
            acked: queue.acked(),
            hash_state: queue.acked_hash().save(),
            finished: queue.is_finished(),
        }
    }

    fn on_recorder_event(self: &Rc<Self>, event: RecorderEvent) {
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

    /// Queues a journal operation; one writer task runs them in order so that the manifest
    /// and the chunk files never race.
    fn journal(self: &Rc<Self>, op: JournalOp) {
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

    async fn run_upload(self: Rc<Self>, upload_url: String) {
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

    /// `stop()`: see the module documentation.
    pub async fn stop(self: Rc<Self>) -> Result<VideoData, RecorderError> {
        let state = self.state();
        if !state.is_capturing() {
            return Err(RecorderError::InvalidState {
                action: "stop",
                state,
            });
        }
        self.set_state(RecorderState::Stopping);
        let result = self.clone().stop_inner().await;
        match &result {
            Ok(_) => self.set_state(RecorderState::Saved),
            Err(err) => self.fail(err.clone()),
        }
        result
    }

    async fn stop_inner(self: Rc<Self>) -> Result<VideoData, RecorderError> {
        let stopped = self.inner.borrow().recorder.as_ref().map(Recorder::stop);
        let summary = match stopped {
            Some(stopped) => stopped.await?,
            None => {
                return Err(RecorderError::InvalidState {
                    action: "stop",
                    state: self.state(),
                })
            }
        };
        loop {
            {
                let inner = self.inner.borrow();
                if let Some(err) = &inner.failure {
                    return Err(err.clone());
                }
                if inner.upload_done {
                    break;
                }
            }
            self.changed.notified().await;
        }
        // The server acknowledged exactly the bytes we hashed, or something is badly wrong.
        let acked_sha256 = self.queue.borrow().acked_hash().hex_digest();
        if acked_sha256 != summary.sha256 {
            return Err(RecorderError::Protocol(
                "the uploaded bytes differ from the recorded ones".into(),
            ));
        }
        let live = self.inner.borrow().live.clone();
        let Some(live) = live else {
            return Err(RecorderError::InvalidState {
                action: "stop",
                state: self.state(),
            });
        };
        // Before the stop, so the server has the poster when it creates the Media.
        self.finish_poster(live.id).await;
        let video_data = VideoData {
            upload_id: upload_id_from_url(&live.upload_url).to_owned(),
            upload_url: live.upload_url.clone(),
            duration: seconds(summary.duration_ms),
            size: summary.size,
            sha256: summary.sha256,
            mime_type: mime::container_of(&summary.mime_type).to_owned(),
            title: self.options.title.clone(),
            live_id: live.id,
        };
        let post = stop_live(&self.client, &video_data, u32::MAX, |err| {
            self.callbacks.error(err, false)
        })
        .await?;
        self.inner.borrow_mut().post = post;
        // Detach the journal, let the writer finish what it holds open (OPFS refuses to remove
        // a directory with a file being written), then delete it.
        let journal = self.inner.borrow_mut().journal.take();
        while self.inner.borrow().journaling {
            self.changed.notified().await;
        }
        if let Some(journal) = journal {
            if let Err(err) = journal.remove().await {
                self.callbacks.error(&err, false);
            }
        }
        Ok(video_data)
    }
}

/// Sends the stop, retrying transport failures and 5xx (the stop is idempotent).
async fn stop_live(
    client: &ApiClient,
    video_data: &VideoData,
    max_failures: u32,
    on_retry: impl Fn(&RecorderError),
) -> Result<JsValue, RecorderError> {
    let mut backoff = Backoff::default();
    loop {
        match client.stop_live(video_data).await {
            Ok(post) => return Ok(post),
            Err(err) if err.is_retryable() && backoff.failures() < max_failures => {
                on_retry(&err);
                let ms = backoff.next_delay_ms(js_sys::Math::random());
                gloo_timers::future::TimeoutFuture::new(ms as u32).await;
            }
            Err(err) => return Err(err),
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

    fn keep_retrying(&self, _failures: u32) -> bool {
        true
    }

    fn retrying(&self, err: &RecorderError) {
        self.0.callbacks.error(err, false);
    }

    fn acknowledged(&self) {
        if self.0.inner.borrow().journal.is_some() {
            self.0.journal(JournalOp::Checkpoint);
        }
        self.0.emit_progress();
        self.0.changed.notify();
    }
}

/// How many failures in a row a resumed upload tolerates before leaving the journal for
/// the next page load.
const RESUME_MAX_FAILURES: u32 = 5;

/// Finishes every unfinished journal of `api_base`: uploads what the server lacks, stops the
/// live, deletes the journal. Journals another tab is recording are left alone; one that
/// fails is reported through `on_error` and kept for the next attempt, unless the server
/// refused it for good (any 4xx but 401 and the retryable ones), in which case it is deleted.
pub async fn resume_pending(
    api_base: &str,
    token: &str,
    on_error: impl Fn(&RecorderError),
) -> Result<Vec<VideoData>, RecorderError> {
    let client = ApiClient::new(api_base, token);
    let mut resumed = Vec::new();
    for (journal, manifest) in JournalStore::pending().await {
        if manifest.api_base.trim_end_matches('/') != client.api_base() {
            continue;
        }
        let Some(_lock) = try_lock(&lock_name(manifest.live_id)).await else {
            continue;
        };
        match resume_one(&client, &journal, &manifest).await {
            Ok(video_data) => {
                if let Err(err) = journal.remove().await {
                    on_error(&err);
                }
                resumed.push(video_data);
            }
            Err(err) => {
                on_error(&err);
                if err.is_final_refusal() {
                    let _ = journal.remove().await;
                }
            }
        }
    }
    Ok(resumed)
}

async fn resume_one(
    client: &ApiClient,
    journal: &JournalStore,
    manifest: &Manifest,
) -> Result<VideoData, RecorderError> {
    let acked_hash = ResumableSha256::restore(&manifest.hash_state)
        .filter(|h| h.length() == manifest.acked)
        .ok_or_else(|| RecorderError::Journal("the journal's hash state is damaged".into()))?;
    let (queue, stale) = rebuild_queue(acked_hash, journal.read_chunks().await?);
    for offset in stale {
        journal.delete_chunk(offset).await?;
    }
    let owner = FinishedUpload::new(queue, RESUME_MAX_FAILURES);
    upload(&TusUpload::new(client, &manifest.upload_url), &owner).await?;
    let queue = owner.into_queue();
    let video_data = VideoData {
        upload_id: upload_id_from_url(&manifest.upload_url).to_owned(),
        upload_url: manifest.upload_url.clone(),
        duration: seconds(manifest.duration_ms),
        size: queue.end(),
        sha256: queue.acked_hash().hex_digest(),
        mime_type: mime::container_of(&manifest.mime_type).to_owned(),
        title: manifest.title.clone(),
        live_id: manifest.live_id,
    };
    stop_live(client, &video_data, RESUME_MAX_FAILURES, |_| {}).await?;
    Ok(video_data)
}
