//! The JS-facing API: the `LiveRecorder` class and its TypeScript types.

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;
use web_sys::MediaStream;

use crate::error::RecorderError;
use crate::http::get;
use crate::live::{resume_pending, to_js, Callbacks, Session};
use crate::mime::FormatPreference;
use crate::options::RawOptions;
use crate::recorder;
use crate::token::{credentials, Credentials, JsTokenProvider};

// The text lives in `ts_types.rs`, plain Rust, so a native test can check its error codes.
#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = crate::ts_types::TS_TYPES;

fn invalid(message: &str) -> JsValue {
    RecorderError::InvalidOptions(message.to_owned()).into()
}

fn string_field(options: &JsValue, key: &str) -> Result<Option<String>, JsValue> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .as_string()
        .map(Some)
        .ok_or_else(|| invalid(&(String::from("`") + key + "` must be a string")))
}

fn number_field(options: &JsValue, key: &str) -> Result<Option<f64>, JsValue> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .as_f64()
        .map(Some)
        .ok_or_else(|| invalid(&(String::from("`") + key + "` must be a number")))
}

fn bool_field(options: &JsValue, key: &str) -> Result<Option<bool>, JsValue> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .as_bool()
        .map(Some)
        .ok_or_else(|| invalid(&(String::from("`") + key + "` must be true or false")))
}

fn function_field(options: &JsValue, key: &str) -> Result<Option<js_sys::Function>, JsValue> {
    let value = get(options, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .dyn_into()
        .map(Some)
        .map_err(|_| invalid(&(String::from("`") + key + "` must be a function")))
}

/// `token` or `getToken`, exactly one.
fn read_credentials(options: &JsValue) -> Result<Credentials<JsTokenProvider>, JsValue> {
    let token = string_field(options, "token")?;
    let get_token = function_field(options, "getToken")?.map(JsTokenProvider);
    Ok(credentials(token, get_token)?)
}

fn check_object(options: &JsValue) -> Result<(), JsValue> {
    if options.is_object() {
        Ok(())
    } else {
        Err(invalid("pass an options object, e.g. { token }"))
    }
}

/// Records a live from a `MediaStream` and keeps it safe on the Livekeep server.
#[wasm_bindgen]
pub struct LiveRecorder {
    session: Rc<Session>,
}

impl Drop for LiveRecorder {
    /// `free()` (or garbage collection) before `stop()` abandons the live; its journal stays
    /// for `resumePending`.
    fn drop(&mut self) {
        self.session.abandon();
    }
}

#[wasm_bindgen]
impl LiveRecorder {
    /// Checks the options; throws an `Error` with `code = "invalid_options"` on a bad one.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "RecorderOptions")] options: JsValue,
    ) -> Result<LiveRecorder, JsValue> {
        check_object(&options)?;
        let credentials = read_credentials(&options)?;
        let raw = RawOptions {
            api_base: string_field(&options, "apiBase")?,
            title: string_field(&options, "title")?,
            recording_title: string_field(&options, "recordingTitle")?,
            live_id: number_field(&options, "liveId")?,
            upload_url: string_field(&options, "uploadUrl")?,
            mime_type: string_field(&options, "mimeType")?,
            prefer_universal_mp4: bool_field(&options, "preferUniversalMp4")?,
            timeslice_ms: number_field(&options, "timesliceMs")?,
            keyframe_interval_ms: number_field(&options, "keyframeIntervalMs")?,
            video_bits_per_second: number_field(&options, "videoBitsPerSecond")?,
            journal: string_field(&options, "journal")?,
        };
        let callbacks = Callbacks {
            on_state_change: function_field(&options, "onStateChange")?,
            on_progress: function_field(&options, "onProgress")?,
            on_error: function_field(&options, "onError")?,
        };
        Ok(LiveRecorder {
            session: Session::new(raw.validate()?, credentials, callbacks),
        })
    }

    /// The first supported of `video/webm;codecs=vp9,opus`, `video/webm;codecs=vp8,opus`,
    /// `video/webm`, `video/mp4` (after H.264 + AAC in MP4 with `preferUniversalMp4`);
    /// `undefined` when the browser can record none of them.
    #[wasm_bindgen(js_name = pickMimeType)]
    pub fn pick_mime_type(
        #[wasm_bindgen(js_name = preferUniversalMp4)] prefer_universal_mp4: Option<bool>,
    ) -> Option<String> {
        let preference = if prefer_universal_mp4 == Some(true) {
            FormatPreference::UniversalMp4
        } else {
            FormatPreference::Default
        };
        recorder::pick_mime_type(preference).map(str::to_owned)
    }

    /// Creates the live if needed and starts recording; resolves once MediaRecorder runs.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn start(&self, stream: MediaStream) -> js_sys::Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            session.start(stream).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// Pauses recording (the paused time is not counted).
    pub fn pause(&self) -> Result<(), JsValue> {
        Ok(self.session.pause()?)
    }

    /// Resumes recording.
    pub fn resume(&self) -> Result<(), JsValue> {
        Ok(self.session.resume()?)
    }

    /// Flushes the last chunk, uploads the rest, declares the length, stops the live;
    /// resolves with the `video_data` it sent.
    #[wasm_bindgen(unchecked_return_type = "Promise<VideoData>")]
    pub fn stop(&self) -> js_sys::Promise {
        let session = self.session.clone();
        future_to_promise(async move {
            let video_data = session.stop().await?;
            Ok(to_js(&video_data))
        })
    }

    /// Finishes the uploads of earlier pages (closed tab, crash) found in the local journal
    /// and stops their lives; resolves with the `video_data` of each live it finished.
    #[wasm_bindgen(js_name = resumePending, unchecked_return_type = "Promise<VideoData[]>")]
    pub fn resume_pending(
        #[wasm_bindgen(unchecked_param_type = "ResumeOptions")] options: JsValue,
    ) -> js_sys::Promise {
        future_to_promise(async move {
            check_object(&options)?;
            let credentials = read_credentials(&options)?;
            let api_base = string_field(&options, "apiBase")?.unwrap_or_default();
            let callbacks = Callbacks {
                on_error: function_field(&options, "onError")?,
                ..Callbacks::default()
            };
            let resumed = resume_pending(api_base.trim(), credentials, |err| {
                if let Some(on_error) = &callbacks.on_error {
                    let info = crate::model::ErrorInfo::new(err, false);
                    let _ = on_error.call1(&JsValue::UNDEFINED, &to_js(&info));
                }
            })
            .await?;
            Ok(resumed.iter().map(to_js).collect::<js_sys::Array>().into())
        })
    }

    /// Current state.
    #[wasm_bindgen(getter, unchecked_return_type = "RecorderState")]
    pub fn state(&self) -> String {
        self.session.state().as_str().to_owned()
    }

    /// Recorded seconds, pauses excluded.
    #[wasm_bindgen(getter)]
    pub fn duration(&self) -> f64 {
        self.session.progress().duration
    }

    /// Bytes MediaRecorder produced.
    #[wasm_bindgen(getter, js_name = bytesRecorded)]
    pub fn bytes_recorded(&self) -> f64 {
        self.session.progress().bytes_recorded as f64
    }

    /// Bytes the server acknowledged.
    #[wasm_bindgen(getter, js_name = uploadedBytes)]
    pub fn uploaded_bytes(&self) -> f64 {
        self.session.progress().uploaded_bytes as f64
    }

    /// Bytes held in memory until the server acknowledges them.
    #[wasm_bindgen(getter, js_name = bufferedBytes)]
    pub fn buffered_bytes(&self) -> f64 {
        self.session.progress().buffered_bytes as f64
    }

    /// Chunks MediaRecorder produced.
    #[wasm_bindgen(getter)]
    pub fn chunks(&self) -> u32 {
        self.session.progress().chunks
    }

    /// The MIME type being recorded, once `start()` chose it.
    #[wasm_bindgen(getter, js_name = mimeType)]
    pub fn mime_type(&self) -> Option<String> {
        self.session.mime_type()
    }

    /// The live (Post) id, once known.
    #[wasm_bindgen(getter, js_name = liveId)]
    pub fn live_id(&self) -> Option<f64> {
        self.session.live_id().map(|id| id as f64)
    }

    /// The Post JSON the server returned last (at creation, then at the stop).
    #[wasm_bindgen(getter)]
    pub fn post(&self) -> JsValue {
        self.session.post()
    }
}
