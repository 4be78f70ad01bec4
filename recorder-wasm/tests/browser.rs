//! Browser tests: headless Chromium with the fake camera (see `webdriver.json`).
//! Run with `cargo test -p recorder-wasm --target wasm32-unknown-unknown`.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::future::TimeoutFuture;
use recorder_wasm::recorder::{self, now_ms, Recorder, RecorderEvent, RecordingConfig};
use sha2::{Digest, Sha256};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{Blob, BlobEvent, MediaStream, MediaStreamConstraints};

wasm_bindgen_test_configure!(run_in_browser);

async fn fake_camera() -> MediaStream {
    let constraints = MediaStreamConstraints::new();
    constraints.set_video(&true.into());
    constraints.set_audio(&true.into());
    let devices = web_sys::window()
        .expect("a window")
        .navigator()
        .media_devices()
        .expect("mediaDevices");
    let promise = devices
        .get_user_media_with_constraints(&constraints)
        .expect("getUserMedia");
    JsFuture::from(promise)
        .await
        .expect("the fake camera")
        .unchecked_into()
}

fn stop_tracks(stream: &MediaStream) {
    for track in stream.get_tracks() {
        track.unchecked_into::<web_sys::MediaStreamTrack>().stop();
    }
}

/// Collects what the recorder reports and, independently, the raw Blobs MediaRecorder emits.
struct Capture {
    events: Rc<RefCell<Vec<RecorderEvent>>>,
    blobs: Rc<RefCell<Vec<Blob>>>,
    _raw_listener: EventListener,
}

fn record(stream: &MediaStream, config: &RecordingConfig) -> (Recorder, Capture) {
    let events = Rc::new(RefCell::new(Vec::new()));
    let sink = events.clone();
    let recorder =
        Recorder::new(stream, config, move |e| sink.borrow_mut().push(e)).expect("a recorder");
    let blobs = Rc::new(RefCell::new(Vec::new()));
    let blob_sink = blobs.clone();
    let raw_listener = EventListener::new(recorder.as_raw(), "dataavailable", move |e| {
        if let Some(blob) = e.dyn_ref::<BlobEvent>().and_then(BlobEvent::data) {
            blob_sink.borrow_mut().push(blob);
        }
    });
    (
        recorder,
        Capture {
            events,
            blobs,
            _raw_listener: raw_listener,
        },
    )
}

async fn bytes_of(blobs: &[Blob]) -> Vec<u8> {
    let mut all = Vec::new();
    for blob in blobs {
        let buffer = JsFuture::from(blob.array_buffer())
            .await
            .expect("readable blob");
        all.extend(js_sys::Uint8Array::new(&buffer).to_vec());
    }
    all
}

#[wasm_bindgen_test]
fn the_picked_format_is_supported_by_this_browser() {
    let mime = recorder::pick_mime_type().expect("Chromium records WebM");
    assert!(recorder::is_supported(mime));
}

#[wasm_bindgen_test]
async fn an_unsupported_forced_format_is_refused_clearly() {
    let stream = fake_camera().await;
    let config = RecordingConfig {
        mime_type: Some("video/mp4;codecs=avc1,mp4a".into()),
        ..Default::default()
    };
    let err = Recorder::new(&stream, &config, |_| {})
        .err()
        .expect("refused");
    assert_eq!(err.code(), "unsupported_mime_type");
    stop_tracks(&stream);
}

#[wasm_bindgen_test]
async fn a_two_second_recording_yields_ordered_hashed_chunks_and_its_duration() {
    let stream = fake_camera().await;
    let config = RecordingConfig {
        timeslice_ms: 500,
        ..Default::default()
    };
    let (recorder, capture) = record(&stream, &config);
    recorder.start(config.timeslice_ms).expect("start");
    recorder.started().await.expect("the start event");
    let wall_start = now_ms();
    TimeoutFuture::new(2_200).await;
    let wall = now_ms() - wall_start;
    let summary = recorder.stop().await.expect("a clean stop");

    assert!(recorder::is_supported(&summary.mime_type));
    assert!(recorder.chunks() > 0, "chunks: {}", recorder.chunks());
    assert!(summary.size > 0);
    assert!(
        (summary.duration_ms - wall).abs() < 300.0,
        "measured {} ms, wall {wall} ms",
        summary.duration_ms
    );

    let blobs = capture.blobs.borrow().clone();
    let raw = bytes_of(&blobs).await;
    assert_eq!(
        summary.size,
        raw.len() as u64,
        "every byte MediaRecorder produced is counted"
    );
    assert_eq!(
        summary.sha256,
        hex(&Sha256::digest(&raw)),
        "the hash covers every byte in order"
    );

    let events = capture.events.borrow();
    assert_eq!(events.first(), Some(&RecorderEvent::Started));
    assert_eq!(events.last(), Some(&RecorderEvent::Stopped));
    let delivered: Vec<u8> = events
        .iter()
        .filter_map(|e| match e {
            RecorderEvent::Chunk(bytes) => Some(bytes.as_slice()),
            _ => None,
        })
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        delivered, raw,
        "chunks are delivered in order, none missing"
    );
    assert_eq!(
        &raw[..4],
        &[0x1a, 0x45, 0xdf, 0xa3],
        "a WebM starts with the EBML header"
    );
    stop_tracks(&stream);
}

#[wasm_bindgen_test]
async fn a_pause_is_excluded_from_the_duration() {
    let stream = fake_camera().await;
    let config = RecordingConfig::default();
    let (recorder, capture) = record(&stream, &config);
    recorder.start(config.timeslice_ms).expect("start");
    recorder.started().await.expect("the start event");
    let wall_start = now_ms();
    TimeoutFuture::new(1_000).await;
    recorder.pause().expect("pause");
    TimeoutFuture::new(1_000).await;
    recorder.resume().expect("resume");
    TimeoutFuture::new(1_000).await;
    let wall = now_ms() - wall_start;
    let summary = recorder.stop().await.expect("a clean stop");

    let expected = wall - 1_000.0;
    assert!(
        (summary.duration_ms - expected).abs() < 300.0,
        "measured {} ms, expected {expected} ms",
        summary.duration_ms
    );
    let events = capture.events.borrow();
    assert!(events.contains(&RecorderEvent::Paused) && events.contains(&RecorderEvent::Resumed));
    stop_tracks(&stream);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
