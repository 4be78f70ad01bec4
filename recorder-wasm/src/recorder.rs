//! MediaRecorder wrapper: format choice, ordered chunks, the duration clock and the SHA-256.
//!
//! `dataavailable` hands us Blobs whose bytes can only be read asynchronously; one reader
//! task drains them strictly in arrival order, so the hash, the byte counts and the chunk
//! callback all see the recording exactly as the browser produced it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::rc::Rc;

use gloo_events::EventListener;
use js_sys::Uint8Array;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{
    Blob, BlobEvent, Event, MediaRecorder, MediaRecorderOptions, MediaStream, RecordingState,
};

use crate::clock::DurationClock;
use crate::error::{js_message, RecorderError};
use crate::hash::ResumableSha256;
use crate::mime;
pub use crate::options::RecordingConfig;
use crate::signal::Signal;

/// What the recorder tells its owner, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RecorderEvent {
    /// MediaRecorder fired `start`.
    Started,
    /// MediaRecorder fired `pause`.
    Paused,
    /// MediaRecorder fired `resume`.
    Resumed,
    /// The next bytes of the recording (already counted and hashed).
    Chunk(Vec<u8>),
    /// Recording ended and the last chunk was delivered.
    Stopped,
    /// MediaRecorder failed, or a chunk could not be read.
    Failed(RecorderError),
}

/// What a finished recording amounts to.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingSummary {
    /// Recorded milliseconds, pauses excluded.
    pub duration_ms: f64,
    /// Bytes produced.
    pub size: u64,
    /// Hex SHA-256 of every byte in order.
    pub sha256: String,
    /// The MIME type MediaRecorder used.
    pub mime_type: String,
}

/// True if this browser's MediaRecorder can record `mime`.
pub fn is_supported(mime: &str) -> bool {
    MediaRecorder::is_type_supported(mime)
}

/// The first format of `preference` this browser can record.
pub fn pick_mime_type(preference: mime::FormatPreference) -> Option<&'static str> {
    mime::pick_mime_type(preference, is_supported)
}

/// Milliseconds on the clock `Event.timeStamp` uses.
pub fn now_ms() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map(|p| p.now())
        .unwrap_or_else(js_sys::Date::now)
}

struct Core {
    clock: DurationClock,
    hasher: ResumableSha256,
    chunks: u32,
    blobs: VecDeque<Blob>,
    reading: bool,
    stop_seen: bool,
    /// `stop()` was called and no `dataavailable` has come since: the final chunk is due.
    final_chunk_due: bool,
    finished: bool,
    failure: Option<RecorderError>,
}

type Handler = Rc<dyn Fn(RecorderEvent)>;

/// How long (steps × step) to wait after `stop` for a final `dataavailable` that is late.
const FINAL_CHUNK_GRACE_STEPS: u32 = 25;
const FINAL_CHUNK_GRACE_STEP_MS: u32 = 20;

/// A running MediaRecorder. Dropping it detaches every listener (the page owns the stream).
pub struct Recorder {
    core: Rc<RefCell<Core>>,
    changed: Rc<Signal>,
    media_recorder: MediaRecorder,
    mime_type: String,
    timeslice_ms: u32,
    _listeners: [EventListener; 6],
}

impl Recorder {
    /// Prepares a MediaRecorder on `stream`; `on_event` receives every [`RecorderEvent`].
    /// Call [`start`](Self::start) to begin.
    pub fn new(
        stream: &MediaStream,
        config: &RecordingConfig,
        on_event: impl Fn(RecorderEvent) + 'static,
    ) -> Result<Self, RecorderError> {
        let mime_type =
            mime::choose_mime_type(config.mime_type.as_deref(), config.format, is_supported)?;
        let options = MediaRecorderOptions::new();
        options.set_mime_type(&mime_type);
        if let Some(bps) = config.video_bits_per_second {
            options.set_video_bits_per_second(bps);
        }
        if let Some(interval) = config.keyframe_interval_ms {
            options.set_video_key_frame_interval_duration(f64::from(interval));
        }
        let media_recorder =
            MediaRecorder::new_with_media_stream_and_media_recorder_options(stream, &options)
                .map_err(|e| RecorderError::Recording(js_message(&e)))?;
        let core = Rc::new(RefCell::new(Core {
            clock: DurationClock::new(),
            hasher: ResumableSha256::new(),
            chunks: 0,
            blobs: VecDeque::new(),
            reading: false,
            stop_seen: false,
            final_chunk_due: false,
            finished: false,
            failure: None,
        }));
        let changed = Rc::new(Signal::new());
        let handler: Handler = Rc::new(on_event);
        let target = media_recorder.as_ref();

        let clock_listener =
            |name: &'static str, tick: fn(&mut DurationClock, f64), event: RecorderEvent| {
                let (core, changed, handler) = (core.clone(), changed.clone(), handler.clone());
                EventListener::new(target, name, move |e| {
                    tick(&mut core.borrow_mut().clock, event_time(e));
                    changed.notify();
                    handler(event.clone());
                })
            };
        let started = clock_listener("start", DurationClock::start, RecorderEvent::Started);
        let paused = clock_listener("pause", DurationClock::pause, RecorderEvent::Paused);
        let resumed = clock_listener("resume", DurationClock::resume, RecorderEvent::Resumed);

        let data = {
            let (core, changed, handler) = (core.clone(), changed.clone(), handler.clone());
            EventListener::new(target, "dataavailable", move |e| {
                let blob = e.dyn_ref::<BlobEvent>().and_then(BlobEvent::data);
                core.borrow_mut().final_chunk_due = false;
                if let Some(blob) = blob.filter(|b| b.size() > 0.0) {
                    core.borrow_mut().blobs.push_back(blob);
                    read_blobs(core.clone(), changed.clone(), handler.clone());
                }
            })
        };
        let stopped = {
            let (core, changed, handler) = (core.clone(), changed.clone(), handler.clone());
            EventListener::new(target, "stop", move |e| {
                {
                    let mut core = core.borrow_mut();
                    core.clock.stop(event_time(e));
                    core.stop_seen = true;
                }
                let (core, changed, handler) = (core.clone(), changed.clone(), handler.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    // The spec fires the last `dataavailable` before `stop`, but some browsers
                    // fire it after: if it has not come yet, give it a bounded grace period.
                    for _ in 0..FINAL_CHUNK_GRACE_STEPS {
                        if !core.borrow().final_chunk_due {
                            break;
                        }
                        gloo_timers::future::TimeoutFuture::new(FINAL_CHUNK_GRACE_STEP_MS).await;
                    }
                    loop {
                        let drained = {
                            let core = core.borrow();
                            !core.reading && core.blobs.is_empty()
                        };
                        if drained {
                            break;
                        }
                        changed.notified().await;
                    }
                    core.borrow_mut().finished = true;
                    changed.notify();
                    handler(RecorderEvent::Stopped);
                });
            })
        };
        let failed = {
            let (core, changed, handler) = (core.clone(), changed.clone(), handler.clone());
            EventListener::new(target, "error", move |e| {
                let message = js_sys::Reflect::get(e, &"error".into())
                    .map(|err| js_message(&err))
                    .unwrap_or_else(|_| "MediaRecorder error".into());
                let err = RecorderError::Recording(message);
                core.borrow_mut().failure = Some(err.clone());
                changed.notify();
                handler(RecorderEvent::Failed(err));
            })
        };

        Ok(Self {
            core,
            changed,
            media_recorder,
            mime_type,
            timeslice_ms: config.timeslice_ms,
            _listeners: [started, paused, resumed, data, stopped, failed],
        })
    }

    /// Starts MediaRecorder with the configured timeslice.
    pub fn start(&self) -> Result<(), RecorderError> {
        let slice = i32::try_from(self.timeslice_ms.max(1)).unwrap_or(i32::MAX);
        self.media_recorder
            .start_with_time_slice(slice)
            .map_err(|e| RecorderError::Recording(js_message(&e)))
    }

    /// Resolves once MediaRecorder fired `start` (or failed).
    pub fn started(&self) -> impl Future<Output = Result<(), RecorderError>> + 'static {
        let (core, changed) = (self.core.clone(), self.changed.clone());
        async move {
            loop {
                {
                    let core = core.borrow();
                    if let Some(err) = &core.failure {
                        return Err(err.clone());
                    }
                    if core.clock.has_started() || core.stop_seen {
                        return Ok(());
                    }
                }
                changed.notified().await;
            }
        }
    }

    /// Pauses recording; the clock stops at the `pause` event.
    pub fn pause(&self) -> Result<(), RecorderError> {
        self.media_recorder
            .pause()
            .map_err(|e| RecorderError::Recording(js_message(&e)))
    }

    /// Resumes recording.
    pub fn resume(&self) -> Result<(), RecorderError> {
        self.media_recorder
            .resume()
            .map_err(|e| RecorderError::Recording(js_message(&e)))
    }

    /// Stops MediaRecorder and resolves once the last chunk has been delivered.
    pub fn stop(&self) -> impl Future<Output = Result<RecordingSummary, RecorderError>> + 'static {
        let requested = if self.media_recorder.state() == RecordingState::Inactive {
            Ok(())
        } else {
            self.core.borrow_mut().final_chunk_due = true;
            self.media_recorder
                .stop()
                .map_err(|e| RecorderError::Recording(js_message(&e)))
        };
        let (core, changed, mime_type) = (
            self.core.clone(),
            self.changed.clone(),
            self.mime_type.clone(),
        );
        async move {
            requested?;
            loop {
                {
                    let core = core.borrow();
                    if core.finished {
                        return Ok(RecordingSummary {
                            duration_ms: core.clock.elapsed_ms(now_ms()),
                            size: core.hasher.length(),
                            sha256: core.hasher.hex_digest(),
                            mime_type,
                        });
                    }
                    if let Some(err) = &core.failure {
                        if !core.stop_seen {
                            return Err(err.clone());
                        }
                    }
                }
                changed.notified().await;
            }
        }
    }

    /// Recorded milliseconds so far, pauses excluded.
    pub fn duration_ms(&self) -> f64 {
        self.core.borrow().clock.elapsed_ms(now_ms())
    }

    /// Bytes delivered so far.
    pub fn bytes_recorded(&self) -> u64 {
        self.core.borrow().hasher.length()
    }

    /// Chunks delivered so far.
    pub fn chunks(&self) -> u32 {
        self.core.borrow().chunks
    }

    /// Hex SHA-256 of the bytes delivered so far.
    pub fn sha256(&self) -> String {
        self.core.borrow().hasher.hex_digest()
    }

    /// True once the last chunk has been delivered after a stop.
    pub fn is_finished(&self) -> bool {
        self.core.borrow().finished
    }

    /// The MIME type being recorded.
    pub fn mime_type(&self) -> &str {
        &self.mime_type
    }

    /// The underlying MediaRecorder, for what this wrapper does not cover.
    pub fn as_raw(&self) -> &MediaRecorder {
        &self.media_recorder
    }
}

/// Reads queued Blobs one at a time, in order; a no-op if a reader is already running.
fn read_blobs(core: Rc<RefCell<Core>>, changed: Rc<Signal>, handler: Handler) {
    if std::mem::replace(&mut core.borrow_mut().reading, true) {
        return;
    }
    wasm_bindgen_futures::spawn_local(async move {
        loop {
            let Some(blob) = core.borrow_mut().blobs.pop_front() else {
                break;
            };
            match JsFuture::from(blob.array_buffer()).await {
                Ok(buffer) => {
                    let bytes = Uint8Array::new(&buffer).to_vec();
                    {
                        let mut core = core.borrow_mut();
                        core.hasher.update(&bytes);
                        core.chunks += 1;
                    }
                    handler(RecorderEvent::Chunk(bytes));
                }
                Err(e) => {
                    // A lost chunk would corrupt the file and the hash: fail loudly.
                    let err = RecorderError::Recording(js_message(&e));
                    core.borrow_mut().failure = Some(err.clone());
                    handler(RecorderEvent::Failed(err));
                }
            }
            changed.notify();
        }
        core.borrow_mut().reading = false;
        changed.notify();
    });
}

fn event_time(event: &Event) -> f64 {
    let stamp = event.time_stamp();
    if stamp > 0.0 {
        stamp
    } else {
        now_ms()
    }
}
