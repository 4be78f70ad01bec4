//! Browser tests: headless Chromium with the fake camera (see `webdriver.json`).
//! Run with `cargo test -p recorder-wasm --target wasm32-unknown-unknown`.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use gloo_events::EventListener;
use gloo_timers::future::TimeoutFuture;
use recorder_wasm::mime::FormatPreference;
use recorder_wasm::recorder::{self, now_ms, Recorder, RecorderEvent, RecordingConfig};
use sha2::{Digest, Sha256};
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::{Blob, BlobEvent, MediaStream, MediaStreamConstraints};

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The runner starts async tests concurrently; these share the camera, `fetch` and OPFS,
/// and measure durations, so each holds this guard to run alone.
struct Serial;

impl Drop for Serial {
    fn drop(&mut self) {
        BUSY.with(|busy| busy.set(false));
    }
}

async fn serial() -> Serial {
    while BUSY.with(|busy| busy.replace(true)) {
        TimeoutFuture::new(20).await;
    }
    Serial
}

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
    let mime = recorder::pick_mime_type(FormatPreference::Default).expect("Chromium records WebM");
    assert!(recorder::is_supported(mime));
}

#[wasm_bindgen_test]
async fn an_unsupported_forced_format_is_refused_clearly() {
    let _serial = serial().await;
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
    let _serial = serial().await;
    let stream = fake_camera().await;
    let config = RecordingConfig {
        timeslice_ms: 500,
        ..Default::default()
    };
    let (recorder, capture) = record(&stream, &config);
    recorder.start().expect("start");
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
    let _serial = serial().await;
    let stream = fake_camera().await;
    let config = RecordingConfig::default();
    let (recorder, capture) = record(&stream, &config);
    recorder.start().expect("start");
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

// ---- LiveRecorder against an in-page fake server (tests/fake_server.js) ----

use recorder_wasm::journal_store::JournalStore;
use recorder_wasm::options::JournalKind;
use recorder_wasm::LiveRecorder;
use wasm_bindgen::prelude::*;

#[wasm_bindgen(module = "/tests/fake_server.js")]
extern "C" {
    #[wasm_bindgen(js_name = installFakeServer)]
    fn install_fake_server(token: &str) -> JsValue;
    #[wasm_bindgen(js_name = uninstallFakeServer)]
    fn uninstall_fake_server(server: &JsValue);
    #[wasm_bindgen(js_name = serverBytes)]
    fn server_bytes(server: &JsValue, upload_id: &str) -> js_sys::Uint8Array;
    #[wasm_bindgen(js_name = getTokenFor)]
    fn get_token_for(server: &JsValue) -> js_sys::Function;
}

#[wasm_bindgen(module = "/tests/canvas_stream.js")]
extern "C" {
    #[wasm_bindgen(js_name = canvasStream)]
    fn canvas_stream(width: u32, height: u32) -> MediaStream;
    #[wasm_bindgen(js_name = imageSize)]
    async fn image_size(image: &JsValue) -> JsValue;
}

/// The poster the fake server holds for `live_id`: its bytes and whether it came after the stop.
fn poster_of(server: &JsValue, live_id: u32) -> Option<(Vec<u8>, bool)> {
    let posters: js_sys::Map = get(server, "posters").unchecked_into();
    let poster = posters.get(&live_id.into());
    if poster.is_undefined() {
        return None;
    }
    let bytes: js_sys::Uint8Array = get(&poster, "bytes").unchecked_into();
    Some((bytes.to_vec(), get(&poster, "stopped").is_truthy()))
}

/// `(width, height)` of an encoded image.
async fn size_of(image: &JsValue) -> (u32, u32) {
    let size: js_sys::Array = image_size(image).await.unchecked_into();
    let dim = |i| size.get(i).as_f64().expect("a dimension") as u32;
    (dim(0), dim(1))
}

const JPEG_MAGIC: [u8; 3] = [0xff, 0xd8, 0xff];

const TOKEN: &str = "s3cret";
const API: &str = "https://livekeep.test";

fn get(object: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(object, &key.into()).expect("readable property")
}

fn set(object: &JsValue, key: &str, value: impl Into<JsValue>) {
    js_sys::Reflect::set(object, &key.into(), &value.into()).expect("writable property");
}

fn number(object: &JsValue, key: &str) -> f64 {
    get(object, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number"))
}

/// The page's callbacks, recording what they were told.
struct Observed {
    states: Rc<RefCell<Vec<String>>>,
    errors: Rc<RefCell<Vec<(String, bool)>>>,
    /// `onError`'s messages, in the order of `errors`.
    messages: Rc<RefCell<Vec<String>>>,
    progress_calls: Rc<RefCell<u32>>,
    _closures: Vec<Closure<dyn FnMut(JsValue)>>,
}

fn live_options(token: &str) -> (JsValue, Observed) {
    let options: JsValue = js_sys::Object::new().into();
    set(&options, "token", token);
    set(&options, "apiBase", API);
    set(&options, "title", "Concert");
    set(&options, "timesliceMs", 500);
    let states = Rc::new(RefCell::new(Vec::new()));
    let errors = Rc::new(RefCell::new(Vec::new()));
    let messages = Rc::new(RefCell::new(Vec::new()));
    let progress_calls = Rc::new(RefCell::new(0));
    let on_state = {
        let states = states.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |s: JsValue| {
            states
                .borrow_mut()
                .push(s.as_string().expect("a state string"))
        })
    };
    let on_error = {
        let errors = errors.clone();
        let messages = messages.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            let code = get(&e, "code").as_string().expect("a code");
            let message = get(&e, "message").as_string().expect("a message");
            wasm_bindgen_test::console_log!("onError: {message:?}");
            errors
                .borrow_mut()
                .push((code, get(&e, "fatal").is_truthy()));
            messages.borrow_mut().push(message);
        })
    };
    let on_progress = {
        let calls = progress_calls.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |p: JsValue| {
            assert!(
                get(&p, "bytesRecorded").as_f64().is_some(),
                "progress carries numbers"
            );
            *calls.borrow_mut() += 1;
        })
    };
    set(&options, "onStateChange", on_state.as_ref().clone());
    set(&options, "onError", on_error.as_ref().clone());
    set(&options, "onProgress", on_progress.as_ref().clone());
    (
        options,
        Observed {
            states,
            errors,
            messages,
            progress_calls,
            _closures: vec![on_state, on_error, on_progress],
        },
    )
}

/// Removes every journal an earlier test left, in both stores.
async fn clear_journals() {
    for (journal, _) in JournalStore::pending().await {
        journal.remove().await.expect("a removable journal");
    }
}

/// How many journals exist, in both stores.
async fn journal_count() -> usize {
    JournalStore::pending().await.len()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A fresh fake server, the fake camera and a `LiveRecorder` on them (options from
/// `live_options`, adjusted by `adjust(options, server)`), not started yet.
struct Live {
    server: JsValue,
    stream: MediaStream,
    recorder: LiveRecorder,
    observed: Observed,
}

async fn prepare_live(token: &str, adjust: impl FnOnce(&JsValue, &JsValue)) -> Live {
    clear_journals().await;
    let server = install_fake_server(TOKEN);
    let stream = fake_camera().await;
    let (options, observed) = live_options(token);
    adjust(&options, &server);
    let recorder = LiveRecorder::new(options).expect("valid options");
    Live {
        server,
        stream,
        recorder,
        observed,
    }
}

async fn start(live: &Live) {
    JsFuture::from(live.recorder.start(live.stream.clone()))
        .await
        .expect("started");
}

/// The `video_data` of the `index`th stop the fake server accepted.
fn stop_request(server: &JsValue, index: u32) -> JsValue {
    get(server, "stops")
        .unchecked_into::<js_sys::Array>()
        .get(index)
}

fn error_code(err: &JsValue) -> String {
    get(err, "code").as_string().expect("errors carry a code")
}

#[wasm_bindgen_test]
async fn a_live_is_uploaded_while_recording_and_stopped_with_matching_video_data() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, |_, _| {}).await;
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    assert_eq!(recorder.state(), "recording");
    assert_eq!(recorder.live_id(), Some(1.0));
    let mime = recorder.mime_type().expect("chosen at start");
    assert!(recorder::is_supported(&mime));
    TimeoutFuture::new(1_500).await;
    recorder.pause().expect("pause");
    TimeoutFuture::new(500).await;
    assert_eq!(recorder.state(), "paused");
    recorder.resume().expect("resume");
    TimeoutFuture::new(1_000).await;
    assert!(
        recorder.uploaded_bytes() > 0.0,
        "bytes reach the server while the live runs"
    );
    assert!(recorder.chunks() > 0);
    assert_eq!(
        journal_count().await,
        1,
        "the live has a journal while it runs"
    );

    let video_data = JsFuture::from(recorder.stop()).await.expect("stopped");
    let bytes = server_bytes(&server, "1abc").to_vec();
    assert!(!bytes.is_empty());
    assert_eq!(number(&video_data, "size"), bytes.len() as f64);
    assert_eq!(
        get(&video_data, "sha256").as_string(),
        Some(sha256_hex(&bytes))
    );
    assert_eq!(
        get(&video_data, "upload_url").as_string().as_deref(),
        Some("https://livekeep.test/api/uploads/1abc")
    );
    assert_eq!(
        get(&video_data, "upload_id").as_string().as_deref(),
        Some("1abc")
    );
    assert_eq!(
        get(&video_data, "mime_type").as_string().as_deref(),
        Some("video/webm")
    );
    assert!(
        get(&video_data, "title").is_undefined(),
        "no recordingTitle, no title: the server's default applies"
    );
    assert!(
        get(&stop_request(&server, 0), "title").is_undefined(),
        "the stop request carries no title either"
    );
    assert_eq!(number(&video_data, "live_id"), 1.0);
    let duration = number(&video_data, "duration");
    assert!(
        (2.0..4.0).contains(&duration),
        "about 2.5 s recorded, pause excluded: {duration}"
    );
    assert_eq!(
        get(&server, "stops")
            .unchecked_into::<js_sys::Array>()
            .length(),
        1
    );
    assert_eq!(number(&server, "conflicts"), 0.0, "never a wrong offset");

    assert_eq!(recorder.state(), "saved");
    assert_eq!(recorder.uploaded_bytes(), recorder.bytes_recorded());
    assert_eq!(recorder.buffered_bytes(), 0.0, "nothing left in memory");
    assert_eq!(
        get(&recorder.post(), "live_status").as_string().as_deref(),
        Some("ended")
    );
    assert_eq!(
        *observed.states.borrow(),
        [
            "starting",
            "recording",
            "paused",
            "recording",
            "stopping",
            "saved"
        ]
    );
    assert!(*observed.progress_calls.borrow() as f64 >= recorder.chunks() as f64);
    assert!(
        observed.errors.borrow().is_empty(),
        "{:?}",
        observed.errors.borrow()
    );
    assert!(
        journal_count().await == 0,
        "the journal is deleted once the live is saved"
    );
    let (poster, after_stop) = poster_of(&server, 1).expect("the live has a poster");
    assert_eq!(poster[..3], JPEG_MAGIC, "the poster is a JPEG");
    assert!(!after_stop, "the poster was sent during the live");
    assert_eq!(
        size_of(&js_sys::Uint8Array::from(poster.as_slice()).into()).await,
        (640, 480),
        "the fake camera's frame, not scaled"
    );
    assert_eq!(number(&server, "posterAttempts"), 1.0);
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_recording_title_given_by_the_app_is_sent_exactly_and_the_live_keeps_its_own() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, |options, _| {
        set(options, "recordingTitle", "Concert, the recording");
    })
    .await;
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        ..
    } = live;
    TimeoutFuture::new(1_000).await;
    let video_data = JsFuture::from(recorder.stop()).await.expect("stopped");
    assert_eq!(
        get(&video_data, "title").as_string().as_deref(),
        Some("Concert, the recording")
    );
    assert_eq!(
        get(&stop_request(&server, 0), "title")
            .as_string()
            .as_deref(),
        Some("Concert, the recording"),
        "the stop request names the recording"
    );
    let live_title = get(&server, "uploads")
        .unchecked_into::<js_sys::Map>()
        .get(&"1abc".into());
    assert_eq!(
        get(&live_title, "title").as_string().as_deref(),
        Some("Concert"),
        "the live itself is created with its own text"
    );
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_poster_upload_that_failed_is_retried_at_stop_before_the_live_is_stopped() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, |_, _| {}).await;
    set(&live.server, "failPosters", 1);
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    TimeoutFuture::new(2_000).await;
    assert_eq!(number(&server, "posterAttempts"), 1.0, "tried a second in");
    assert!(poster_of(&server, 1).is_none());
    assert_eq!(
        *observed.errors.borrow(),
        [("poster".to_owned(), false)],
        "a non-fatal poster error"
    );
    assert_eq!(recorder.state(), "recording", "recording goes on");
    JsFuture::from(recorder.stop()).await.expect("stopped");
    let (poster, after_stop) = poster_of(&server, 1).expect("sent again at stop");
    assert_eq!(poster[..3], JPEG_MAGIC);
    assert!(!after_stop, "the retry comes before the stop request");
    assert_eq!(number(&server, "posterAttempts"), 2.0);
    assert_eq!(recorder.state(), "saved");
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_live_stopped_within_its_first_second_still_gets_its_poster_before_the_stop() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, |_, _| {}).await;
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    TimeoutFuture::new(300).await;
    JsFuture::from(recorder.stop()).await.expect("stopped");
    let (poster, after_stop) = poster_of(&server, 1).expect("a poster despite the early stop");
    assert_eq!(poster[..3], JPEG_MAGIC);
    assert!(!after_stop, "taken and sent before the stop request");
    assert_eq!(number(&server, "posterAttempts"), 1.0);
    assert!(
        observed.errors.borrow().is_empty(),
        "{:?}",
        observed.errors.borrow()
    );
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_poster_the_server_keeps_refusing_never_fails_the_stop() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, |_, _| {}).await;
    set(&live.server, "failPosters", 100);
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    TimeoutFuture::new(1_500).await;
    let video_data = JsFuture::from(recorder.stop())
        .await
        .expect("stopped without a poster");
    assert!(number(&video_data, "size") > 0.0);
    assert_eq!(recorder.state(), "saved");
    assert!(poster_of(&server, 1).is_none());
    assert_eq!(
        number(&server, "posterAttempts"),
        2.0,
        "once live, once at stop"
    );
    assert_eq!(
        *observed.errors.borrow(),
        [("poster".to_owned(), false), ("poster".to_owned(), false)]
    );
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_wide_frame_becomes_a_640_px_jpeg_through_image_capture_and_through_a_video() {
    let _serial = serial().await;
    let stream = canvas_stream(1280, 720);
    TimeoutFuture::new(200).await;
    for (how, grabbed) in [
        (
            "ImageCapture",
            recorder_wasm::poster::grab_with_image_capture(&stream).await,
        ),
        (
            "<video>",
            recorder_wasm::poster::grab_with_video(&stream).await,
        ),
        ("either", recorder_wasm::poster::grab_poster(&stream).await),
    ] {
        let jpeg = grabbed.unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(jpeg.type_(), "image/jpeg", "{how}");
        assert_eq!(size_of(&jpeg.into()).await, (640, 360), "{how}");
    }
    js_sys::Reflect::get(&stream, &"stopDrawing".into())
        .expect("stopDrawing")
        .unchecked_into::<js_sys::Function>()
        .call0(&stream)
        .expect("stopped");
}

#[wasm_bindgen_test]
async fn a_stream_without_video_gives_a_poster_error() {
    let _serial = serial().await;
    let stream = MediaStream::new().expect("an empty stream");
    let err = recorder_wasm::poster::grab_poster(&stream)
        .await
        .expect_err("no video track");
    assert_eq!(err.code(), "poster");
}

#[wasm_bindgen_test]
async fn an_outage_and_lost_answers_are_ridden_out_without_a_byte_twice() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, |_, _| {}).await;
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    TimeoutFuture::new(1_000).await;
    set(&server, "offline", true);
    TimeoutFuture::new(2_000).await;
    assert!(
        recorder.buffered_bytes() > 0.0,
        "unsent bytes wait in memory"
    );
    // No acknowledgement while offline, so the journal writer deletes nothing: safe to read.
    let pending = JournalStore::pending().await;
    let [(journal, manifest)] = pending.as_slice() else {
        panic!("one journal, not {}", pending.len())
    };
    assert_eq!(
        manifest.upload_url,
        "https://livekeep.test/api/uploads/1abc"
    );
    assert!(
        !format!("{manifest:?}").contains(TOKEN),
        "the journal never holds the token"
    );
    let journaled: usize = journal
        .read_chunks()
        .await
        .expect("chunks")
        .iter()
        .map(|(_, b)| b.len())
        .sum();
    assert!(journaled > 0, "unacknowledged chunks are on disk too");
    set(&server, "offline", false);
    set(&server, "failPatches", 2);
    set(&server, "loseAnswers", 2);
    TimeoutFuture::new(1_000).await;
    let video_data = JsFuture::from(recorder.stop())
        .await
        .expect("stopped despite the outage");

    let bytes = server_bytes(&server, "1abc").to_vec();
    assert_eq!(
        number(&video_data, "size"),
        bytes.len() as f64,
        "no byte skipped, none twice"
    );
    assert_eq!(
        get(&video_data, "sha256").as_string(),
        Some(sha256_hex(&bytes))
    );
    assert_eq!(
        number(&server, "conflicts"),
        0.0,
        "a HEAD settles every doubt before the next PATCH"
    );
    assert!(number(&server, "heads") >= 1.0);
    let errors = observed.errors.borrow();
    assert!(
        errors
            .iter()
            .any(|(code, fatal)| code == "network" && !fatal),
        "{errors:?}"
    );
    assert!(errors.iter().all(|(_, fatal)| !fatal), "{errors:?}");
    assert_eq!(recorder.state(), "saved");
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_rejected_token_fails_the_start_with_its_status_code() {
    let _serial = serial().await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = prepare_live("wrong", |_, _| {}).await;
    let err = JsFuture::from(recorder.start(stream.clone()))
        .await
        .expect_err("unauthenticated");
    assert_eq!(error_code(&err), "http_401");
    assert!(get(&err, "message")
        .as_string()
        .expect("a message")
        .contains("valid token"));
    assert_eq!(recorder.state(), "failed");
    assert_eq!(*observed.errors.borrow(), [("http_401".to_owned(), true)]);
    let err = recorder.pause().expect_err("nothing to pause");
    assert_eq!(error_code(&err), "invalid_state");
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
fn bad_options_throw_a_clear_error() {
    let options: JsValue = js_sys::Object::new().into();
    let err = LiveRecorder::new(options.clone()).err().expect("no token");
    assert_eq!(error_code(&err), "invalid_options");
    assert!(get(&err, "message")
        .as_string()
        .expect("a message")
        .contains("token"));
    set(&options, "token", "t");
    set(&options, "timesliceMs", "fast");
    let err = LiveRecorder::new(options)
        .err()
        .expect("a string for a number");
    assert!(get(&err, "message")
        .as_string()
        .expect("a message")
        .contains("timesliceMs"));
    assert!(LiveRecorder::new(JsValue::NULL).is_err());
}

#[wasm_bindgen_test]
async fn a_live_abandoned_offline_is_finished_by_resume_pending() {
    let _serial = serial().await;
    abandon_offline_then_resume("opfs", Some("Concert, the recording")).await;
}

#[wasm_bindgen_test]
async fn a_live_journaled_in_indexeddb_is_finished_by_resume_pending() {
    let _serial = serial().await;
    abandon_offline_then_resume("indexeddb", None).await;
}

/// Waits (bounded) until a session that ended has journaled its tail (a finished manifest) and
/// let go of live `live_id`'s lock; `each` looks at the journals every time.
async fn journal_settles(
    live_id: u64,
    each: impl Fn(&[(JournalStore, recorder_wasm::journal::Manifest)]),
) -> bool {
    for _ in 0..100 {
        let pending = JournalStore::pending().await;
        each(&pending);
        if pending.iter().any(|(_, m)| m.finished)
            && recorder_wasm::locks::try_lock(&recorder_wasm::locks::lock_name(live_id))
                .await
                .is_some()
        {
            return true;
        }
        TimeoutFuture::new(100).await;
    }
    false
}

/// Records 2 s offline with the journal in `store` (and `recordingTitle` if given), abandons
/// the live (the page goes away), then lets `resumePending` finish it once the network is back.
async fn abandon_offline_then_resume(store: &str, recording_title: Option<&str>) {
    let kind = JournalKind::parse(store).expect("a store name");
    let live = prepare_live(TOKEN, |options, _| {
        set(options, "journal", store);
        if let Some(title) = recording_title {
            set(options, "recordingTitle", title);
        }
    })
    .await;
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        ..
    } = live;
    set(&server, "offline", true);
    TimeoutFuture::new(2_000).await;
    let recorded = recorder.bytes_recorded();
    drop(recorder); // the page goes away without stopping, while offline
    stop_tracks(&stream);

    let settled = journal_settles(1, |pending| {
        let in_store = pending.iter().all(|(journal, _)| journal.kind() == kind);
        assert!(in_store, "the journal is kept where the options say");
    })
    .await;
    assert!(settled, "the abandoned live's journal settles");

    set(&server, "offline", false);
    let options: JsValue = js_sys::Object::new().into();
    set(&options, "token", TOKEN);
    set(&options, "apiBase", API);
    let resumed = JsFuture::from(LiveRecorder::resume_pending(options))
        .await
        .expect("resumed");
    let resumed: js_sys::Array = resumed.unchecked_into();
    assert_eq!(resumed.length(), 1);
    let video_data = resumed.get(0);
    let bytes = server_bytes(&server, "1abc").to_vec();
    assert!(
        bytes.len() as f64 >= recorded,
        "every byte recorded before the page went away"
    );
    assert_eq!(number(&video_data, "size"), bytes.len() as f64);
    assert_eq!(
        get(&video_data, "sha256").as_string(),
        Some(sha256_hex(&bytes)),
        "the hash spans all bytes"
    );
    assert_eq!(&bytes[..4], &[0x1a, 0x45, 0xdf, 0xa3]);
    assert_eq!(
        get(&server, "stops")
            .unchecked_into::<js_sys::Array>()
            .length(),
        1,
        "the live was stopped"
    );
    assert_eq!(
        get(&stop_request(&server, 0), "title")
            .as_string()
            .as_deref(),
        recording_title,
        "the resumed stop names the recording as the app did at the time, and only then"
    );
    assert_eq!(
        get(&video_data, "title").as_string().as_deref(),
        recording_title
    );
    assert!(
        journal_count().await == 0,
        "the journal is gone once the live is stopped"
    );
    uninstall_fake_server(&server);
}

// ---- getToken: short-lived tokens during a live ----

/// Replaces `token` with a `getToken` that asks the fake server for its current token.
fn use_get_token(options: &JsValue, server: &JsValue) {
    js_sys::Reflect::delete_property(options.unchecked_ref::<js_sys::Object>(), &"token".into())
        .expect("deletable property");
    set(options, "getToken", get_token_for(server));
}

/// Every token the server saw on the PATCHes it accepted, in order.
fn patch_tokens(server: &JsValue) -> Vec<String> {
    get(server, "patchTokens")
        .unchecked_into::<js_sys::Array>()
        .iter()
        .map(|t| t.as_string().expect("a token"))
        .collect()
}

#[wasm_bindgen_test]
async fn a_token_that_expires_during_the_live_is_renewed_by_get_token_and_no_byte_is_lost() {
    let _serial = serial().await;
    let live = prepare_live(TOKEN, use_get_token).await;
    set(&live.server, "expireTokenAfterPatches", 2);
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    assert_eq!(
        number(&server, "getTokenCalls"),
        1.0,
        "called before the first request"
    );
    TimeoutFuture::new(3_000).await;
    let video_data = JsFuture::from(recorder.stop())
        .await
        .expect("stopped with the renewed token");

    let renewed = format!("{TOKEN}-renewed");
    assert_eq!(
        get(&server, "token").as_string(),
        Some(renewed.clone()),
        "the token expired"
    );
    assert!(
        number(&server, "unauthorized") >= 1.0,
        "the old token was refused"
    );
    assert_eq!(
        number(&server, "getTokenCalls"),
        2.0,
        "once before the first request, once after the 401"
    );
    let tokens = patch_tokens(&server);
    assert!(tokens.len() > 2, "the upload went on: {tokens:?}");
    assert_eq!(tokens[..2], [TOKEN, TOKEN]);
    assert!(
        tokens[2..].iter().all(|t| *t == renewed),
        "then with the new token: {tokens:?}"
    );
    let bytes = server_bytes(&server, "1abc").to_vec();
    assert_eq!(
        recorder.bytes_recorded(),
        bytes.len() as f64,
        "no byte lost"
    );
    assert_eq!(number(&video_data, "size"), bytes.len() as f64);
    assert_eq!(
        get(&video_data, "sha256").as_string(),
        Some(sha256_hex(&bytes))
    );
    assert_eq!(recorder.state(), "saved");
    assert!(
        observed.errors.borrow().is_empty(),
        "a renewed token is not an error: {:?}",
        observed.errors.borrow()
    );
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

/// Polls `done` every 100 ms for at most 10 s; whether it came true.
async fn eventually(done: impl Fn() -> bool) -> bool {
    for _ in 0..100 {
        if done() {
            return true;
        }
        TimeoutFuture::new(100).await;
    }
    done()
}

/// Where the bytes the only journal holds without a gap from offset `from` end (`from` if none).
async fn journaled_end(from: u64) -> u64 {
    let pending = JournalStore::pending().await;
    let [(journal, _)] = pending.as_slice() else {
        panic!("one journal, not {}", pending.len())
    };
    let mut chunks: Vec<_> = journal
        .read_chunks()
        .await
        .expect("chunks")
        .iter()
        .map(|(offset, bytes)| (*offset, offset + bytes.len() as u64))
        .collect();
    chunks.sort_unstable();
    chunks.iter().fold(from, |covered, &(start, end)| {
        if start <= covered {
            covered.max(end)
        } else {
            covered
        }
    })
}

/// How many non-fatal `token_unavailable` warnings `onError` was given.
fn token_warnings(observed: &Observed) -> usize {
    observed
        .errors
        .borrow()
        .iter()
        .filter(|(code, fatal)| code == "token_unavailable" && !fatal)
        .count()
}

/// A started live whose token expires as it begins, while the host app's token endpoint is
/// down: returned once `getToken` has failed `failures` times, the recorder still recording.
async fn live_with_failing_get_token(failures: usize) -> Live {
    let live = prepare_live(TOKEN, use_get_token).await;
    start(&live).await;
    set(&live.server, "token", format!("{TOKEN}-renewed"));
    set(&live.server, "getTokenRejects", true);
    let failing = eventually(|| {
        token_warnings(&live.observed) >= failures || live.recorder.state() == "failed"
    })
    .await;
    assert!(failing, "getToken was asked {failures} times");
    assert_eq!(
        live.recorder.state(),
        "recording",
        "the live goes on without a token: {:?}",
        live.observed.errors.borrow()
    );
    live
}

/// The messages `onError` gave with `code`.
fn messages_of(observed: &Observed, code: &str) -> Vec<String> {
    let errors = observed.errors.borrow();
    let messages = observed.messages.borrow();
    errors
        .iter()
        .zip(messages.iter())
        .filter(|((c, _), _)| c == code)
        .map(|(_, message)| message.clone())
        .collect()
}

#[wasm_bindgen_test]
async fn a_get_token_that_fails_for_a_while_is_retried_while_the_live_records_and_nothing_is_lost()
{
    let _serial = serial().await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live_with_failing_get_token(3).await;
    let held = server_bytes(&server, "1abc").length() as f64;
    assert!(
        recorder.bytes_recorded() > held,
        "recording went on past what the server holds"
    );
    // No acknowledgement while there is no token, so the writer deletes nothing: safe to read.
    assert!(
        journaled_end(held as u64).await > held as u64,
        "and the journal keeps what the server lacks"
    );

    // The endpoint is back: the next attempt gets a token and the upload catches up.
    set(&server, "getTokenRejects", false);
    let caught_up = eventually(|| recorder.uploaded_bytes() > held).await;
    assert!(caught_up, "the upload goes on once getToken works again");
    assert_eq!(recorder.state(), "recording");
    let video_data = JsFuture::from(recorder.stop())
        .await
        .expect("stopped once getToken works again");

    let bytes = server_bytes(&server, "1abc").to_vec();
    assert_eq!(
        recorder.bytes_recorded(),
        bytes.len() as f64,
        "no byte lost"
    );
    assert_eq!(number(&video_data, "size"), bytes.len() as f64);
    assert_eq!(
        get(&video_data, "sha256").as_string(),
        Some(sha256_hex(&bytes))
    );
    assert_eq!(recorder.state(), "saved");
    let errors = observed.errors.borrow().clone();
    assert!(
        errors
            .iter()
            .all(|(code, fatal)| !fatal && (code == "token_unavailable" || code == "poster")),
        "only warnings: the retries, at most the poster's own: {errors:?}"
    );
    let warnings = token_warnings(&observed);
    assert!(
        warnings as f64 <= number(&server, "getTokenRejections"),
        "one warning per failed getToken, not more: {warnings}"
    );
    for message in messages_of(&observed, "token_unavailable") {
        assert!(
            message.contains("getToken() rejected: the host app's token endpoint is down"),
            "{message}"
        );
        assert!(!message.contains(TOKEN), "never the token: {message}");
    }
    let renewed = format!("{TOKEN}-renewed");
    assert_eq!(
        patch_tokens(&server).last(),
        Some(&renewed),
        "the upload went on with the token getToken gave once back"
    );
    assert_eq!(journal_count().await, 0, "the journal is gone once saved");
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_get_token_that_fails_through_the_stop_leaves_the_live_to_the_journal_and_resume_pending()
{
    let _serial = serial().await;
    // The host app's token endpoint stays down through the stop.
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live_with_failing_get_token(1).await;
    let warnings_before_stop = token_warnings(&observed);
    let err = JsFuture::from(recorder.stop())
        .await
        .expect_err("no token through the stop's retries");
    assert_eq!(error_code(&err), "token_unavailable");
    assert!(
        get(&err, "message")
            .as_string()
            .expect("a message")
            .contains("getToken() rejected"),
        "the message says why"
    );
    assert_eq!(recorder.state(), "failed");
    let errors = observed.errors.borrow().clone();
    let fatal: Vec<_> = errors.iter().filter(|(_, fatal)| *fatal).collect();
    assert_eq!(
        fatal,
        [&("token_unavailable".to_owned(), true)],
        "one clear fatal error, at the end of the stop"
    );
    assert!(
        token_warnings(&observed) >= warnings_before_stop + 2,
        "the stop tried again before it gave up: {errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|(code, fatal)| *fatal || code == "token_unavailable" || code == "poster"),
        "beside it the retries and at most the poster's own report: {errors:?}"
    );
    stop_tracks(&stream);

    let settled = journal_settles(1, |_| {}).await;
    assert!(settled, "the failed live's journal settles");
    let recorded = recorder.bytes_recorded();
    let pending = JournalStore::pending().await;
    let [(_, manifest)] = pending.as_slice() else {
        panic!("one journal, not {}", pending.len())
    };
    assert!(
        !format!("{manifest:?}").contains(TOKEN),
        "the journal never holds a token, old or renewed"
    );
    let held = server_bytes(&server, "1abc").length() as u64;
    assert!(
        (held as f64) < recorded,
        "the server lacks what came after the expiry"
    );
    assert!(
        journaled_end(held).await >= recorded as u64,
        "the journal holds every byte the server lacks ({held}..{recorded})"
    );

    let resume_errors = Rc::new(RefCell::new(Vec::new()));
    let on_error = {
        let errors = resume_errors.clone();
        Closure::<dyn FnMut(JsValue)>::new(move |e: JsValue| {
            errors.borrow_mut().push((
                get(&e, "code").as_string().expect("a code"),
                get(&e, "fatal").is_truthy(),
            ))
        })
    };
    let resume_options = || {
        let options: JsValue = js_sys::Object::new().into();
        set(&options, "apiBase", API);
        set(&options, "getToken", get_token_for(&server));
        set(&options, "onError", on_error.as_ref().clone());
        options
    };
    // Still no token: resumePending reports it and keeps the journal.
    let resumed: js_sys::Array = JsFuture::from(LiveRecorder::resume_pending(resume_options()))
        .await
        .expect("resolves")
        .unchecked_into();
    assert_eq!(resumed.length(), 0);
    assert_eq!(
        *resume_errors.borrow(),
        [("token_unavailable".to_owned(), false)]
    );
    assert_eq!(journal_count().await, 1, "the journal is kept");

    // getToken works again: resumePending gets a token from it and finishes the live.
    set(&server, "getTokenRejects", false);
    let calls_before = number(&server, "getTokenCalls");
    let resumed: js_sys::Array = JsFuture::from(LiveRecorder::resume_pending(resume_options()))
        .await
        .expect("resumed")
        .unchecked_into();
    assert_eq!(resumed.length(), 1);
    assert_eq!(
        number(&server, "getTokenCalls"),
        calls_before + 1.0,
        "resumePending asked getToken once"
    );
    let video_data = resumed.get(0);
    let bytes = server_bytes(&server, "1abc").to_vec();
    assert_eq!(
        bytes.len() as f64,
        recorded,
        "every byte recorded, none lost"
    );
    assert_eq!(number(&video_data, "size"), bytes.len() as f64);
    assert_eq!(
        get(&video_data, "sha256").as_string(),
        Some(sha256_hex(&bytes))
    );
    assert_eq!(journal_count().await, 0);
    uninstall_fake_server(&server);
}

#[wasm_bindgen_test]
async fn a_get_token_that_fails_at_start_rejects_the_start_with_token_unavailable() {
    let _serial = serial().await;
    // Each way a getToken can fail, and what the message must say.
    let failing = [
        (
            "rejects",
            "getToken() rejected: the host app's token endpoint is down",
        ),
        ("throws", "getToken() threw: no session"),
        ("resolves to a number", "string"),
    ];
    for (how, why) in failing {
        let live = prepare_live(TOKEN, |options, server| {
            use_get_token(options, server);
            match how {
                "rejects" => set(server, "getTokenRejects", true),
                "throws" => set(
                    options,
                    "getToken",
                    js_sys::Function::new_no_args("throw new Error('no session')"),
                ),
                _ => set(
                    options,
                    "getToken",
                    js_sys::Function::new_no_args("return Promise.resolve(42)"),
                ),
            }
        })
        .await;
        let Live {
            server,
            stream,
            recorder,
            observed,
        } = live;
        let err = JsFuture::from(recorder.start(stream.clone()))
            .await
            .expect_err("no token, no live");
        assert_eq!(error_code(&err), "token_unavailable", "{how}");
        let message = get(&err, "message").as_string().expect("a message");
        assert!(message.contains(why), "{how}: {message}");
        assert_eq!(recorder.state(), "failed", "{how}");
        assert_eq!(
            *observed.errors.borrow(),
            [("token_unavailable".to_owned(), true)],
            "{how}"
        );
        assert_eq!(
            get(&server, "uploads")
                .unchecked_into::<js_sys::Map>()
                .size(),
            0,
            "{how}: no live was created"
        );
        assert!(
            stream
                .get_tracks()
                .iter()
                .all(|track| get(&track, "readyState").as_string().as_deref() == Some("live")),
            "{how}: the camera is the caller's"
        );
        assert_eq!(journal_count().await, 0, "{how}: nothing to journal");
        stop_tracks(&stream);
        uninstall_fake_server(&server);
    }
}

#[wasm_bindgen_test]
fn token_and_get_token_together_are_refused() {
    let options: JsValue = js_sys::Object::new().into();
    set(&options, "token", "t");
    let get_token = js_sys::Function::new_no_args("return Promise.resolve('t')");
    set(&options, "getToken", get_token.clone());
    let err = LiveRecorder::new(options.clone()).err().expect("both");
    assert_eq!(error_code(&err), "invalid_options");
    assert!(get(&err, "message")
        .as_string()
        .expect("a message")
        .contains("getToken"));
    js_sys::Reflect::delete_property(options.unchecked_ref::<js_sys::Object>(), &"token".into())
        .expect("deleted");
    assert!(LiveRecorder::new(options).is_ok(), "getToken alone will do");
}

// ---- preferUniversalMp4: what this Chromium records when asked for H.264 + AAC ----

/// Whether `needle` occurs in `haystack` (a box type in an MP4 header).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[wasm_bindgen_test]
async fn prefer_universal_mp4_records_h264_and_aac_where_the_browser_can_else_the_default_order() {
    let _serial = serial().await;
    let answers: Vec<(&str, bool)> = recorder_wasm::mime::UNIVERSAL_MP4_MIME_TYPES
        .iter()
        .map(|mime| (*mime, recorder::is_supported(mime)))
        .collect();
    wasm_bindgen_test::console_log!("isTypeSupported, H.264 + AAC in MP4: {answers:?}");
    let default = recorder::pick_mime_type(FormatPreference::Default).expect("a default format");
    let expected = answers
        .iter()
        .find(|(_, supported)| *supported)
        .map_or(default, |(mime, _)| mime);
    assert_eq!(
        recorder::pick_mime_type(FormatPreference::UniversalMp4),
        Some(expected)
    );
    assert_eq!(
        LiveRecorder::pick_mime_type(Some(true)).as_deref(),
        Some(expected)
    );

    let live = prepare_live(TOKEN, |options, _| set(options, "preferUniversalMp4", true)).await;
    start(&live).await;
    let Live {
        server,
        stream,
        recorder,
        observed,
    } = live;
    assert_eq!(recorder.mime_type().as_deref(), Some(expected));
    TimeoutFuture::new(1_500).await;
    let video_data = JsFuture::from(recorder.stop()).await.expect("stopped");
    let bytes = server_bytes(&server, "1abc").to_vec();
    let header = &bytes[..bytes.len().min(4096)];
    if expected.starts_with("video/mp4") {
        assert_eq!(&bytes[4..8], b"ftyp", "an MP4 file");
        assert!(contains(header, b"avcC"), "H.264 video");
        assert!(contains(header, b"mp4a"), "AAC audio");
        assert_eq!(
            get(&video_data, "mime_type").as_string().as_deref(),
            Some("video/mp4")
        );
    } else {
        assert_eq!(&bytes[..4], &[0x1a, 0x45, 0xdf, 0xa3], "the default WebM");
        assert_eq!(
            get(&video_data, "mime_type").as_string().as_deref(),
            Some("video/webm")
        );
    }
    assert!(
        observed.errors.borrow().is_empty(),
        "{:?}",
        observed.errors.borrow()
    );
    stop_tracks(&stream);
    uninstall_fake_server(&server);
}
