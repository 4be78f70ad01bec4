//! The Livekeep API over `fetch`: JSON calls, and the tus transport of one upload.
//! Every request has a timeout (an `AbortController`), so a hung connection becomes a
//! retryable [`RecorderError::Timeout`] instead of a stalled upload.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Uint8Array, JSON};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, Headers, RequestInit, Response};

use crate::error::{js_message, RecorderError};
use crate::model::VideoData;
use crate::token::{JsTokenProvider, Tokens};
use crate::tus::{self, PatchPlan, StatusClass, PATCH_CONTENT_TYPE, TUS_VERSION};
use crate::upload::{PatchReply, ServerOffset, TusTransport};

/// Per-request timeout: a PATCH of a few seconds of video must not take longer than this.
pub const REQUEST_TIMEOUT_MS: u32 = 20_000;

/// A poster is a few dozen KB and optional: it must never hold the stop for long.
pub const POSTER_TIMEOUT_MS: u32 = 5_000;

/// A live just created by `POST /api/posts/live/`.
#[derive(Debug, Clone)]
pub struct CreatedLive {
    /// The live (Post) id.
    pub live_id: u64,
    /// Absolute tus upload URL.
    pub upload_url: String,
    /// The Post JSON.
    pub post: JsValue,
}

/// An answer, read completely.
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Headers,
    /// Response body as text.
    pub body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).ok().flatten()
    }

    /// The error this answer means: the API's `{"error": {"message"}}` or the raw body.
    fn error(&self) -> RecorderError {
        let message = JSON::parse(&self.body)
            .ok()
            .and_then(|json| js_sys::Reflect::get(&json, &"error".into()).ok())
            .and_then(|error| js_sys::Reflect::get(&error, &"message".into()).ok())
            .and_then(|message| message.as_string())
            .unwrap_or_else(|| self.body.chars().take(200).collect());
        RecorderError::Http {
            status: self.status,
            message,
        }
    }
}

/// Talks to one Livekeep server with the page's token (fixed, or from `getToken`).
#[derive(Debug, Clone)]
pub struct ApiClient {
    api_base: String,
    tokens: Rc<Tokens<JsTokenProvider>>,
}

impl ApiClient {
    /// A client for `api_base` (empty: the page's origin) authenticating with `tokens`.
    pub fn new(api_base: &str, tokens: Tokens<JsTokenProvider>) -> Self {
        Self {
            api_base: api_base.trim_end_matches('/').to_owned(),
            tokens: Rc::new(tokens),
        }
    }

    /// The API base this client talks to.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// `url` made absolute against the API base (itself resolved against the page).
    pub fn absolute(&self, url: &str) -> Result<String, RecorderError> {
        let page = web_sys::window()
            .and_then(|w| w.location().href().ok())
            .ok_or_else(|| {
                RecorderError::Network("no page location to resolve URLs against".into())
            })?;
        let base = if self.api_base.is_empty() {
            page
        } else {
            web_sys::Url::new_with_base(&self.api_base, &page)
                .map_err(|e| RecorderError::InvalidOptions(js_message(&e)))?
                .href()
        };
        web_sys::Url::new_with_base(url, &base)
            .map(|u| u.href())
            .map_err(|e| RecorderError::Protocol(js_message(&e)))
    }

    fn endpoint(&self, path: &str) -> String {
        let mut url = self.api_base.clone();
        url.push_str(path);
        url
    }

    /// Sends one request and reads the whole answer, or fails with `Network` / `Timeout`
    /// after [`REQUEST_TIMEOUT_MS`].
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&JsValue>,
    ) -> Result<Reply, RecorderError> {
        self.send_within(method, url, headers, body, REQUEST_TIMEOUT_MS)
            .await
    }

    /// [`send`](Self::send) with its own timeout in milliseconds. With `getToken`, a 401 is
    /// answered by one more try with a fresh token (see [`Tokens::authorized`]).
    pub async fn send_within(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&JsValue>,
        timeout_ms: u32,
    ) -> Result<Reply, RecorderError> {
        self.tokens
            .authorized(
                async |token| {
                    self.send_once(method, url, headers, body, timeout_ms, token)
                        .await
                },
                |reply| reply.status == 401,
            )
            .await
    }

    async fn send_once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&JsValue>,
        timeout_ms: u32,
        token: &str,
    ) -> Result<Reply, RecorderError> {
        let window = web_sys::window().ok_or_else(|| RecorderError::Network("no window".into()))?;
        let request_headers = Headers::new().map_err(|e| RecorderError::Network(js_message(&e)))?;
        let mut bearer = String::from("Bearer ");
        bearer.push_str(token);
        let all = headers
            .iter()
            .copied()
            .chain([("Authorization", bearer.as_str())]);
        for (name, value) in all {
            request_headers
                .set(name, value)
                .map_err(|e| RecorderError::Network(js_message(&e)))?;
        }
        let controller =
            AbortController::new().map_err(|e| RecorderError::Network(js_message(&e)))?;
        let init = RequestInit::new();
        init.set_method(method);
        init.set_headers(&request_headers);
        init.set_signal(Some(&controller.signal()));
        if let Some(body) = body {
            init.set_body(body);
        }
        let timed_out = Rc::new(Cell::new(false));
        let _timer = {
            let timed_out = timed_out.clone();
            gloo_timers::callback::Timeout::new(timeout_ms, move || {
                timed_out.set(true);
                controller.abort();
            })
        };
        let failed = |e: JsValue| {
            if timed_out.get() {
                RecorderError::Timeout
            } else {
                RecorderError::Network(js_message(&e))
            }
        };
        let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
            .await
            .map_err(failed)?
            .unchecked_into();
        let text_promise = response.text().map_err(failed)?;
        let body = JsFuture::from(text_promise)
            .await
            .map_err(failed)?
            .as_string()
            .unwrap_or_default();
        Ok(Reply {
            status: response.status(),
            headers: response.headers(),
            body,
        })
    }

    /// Sends `body` as JSON to an API path and parses the 2xx answer.
    pub async fn json(
        &self,
        method: &str,
        path: &str,
        body: &JsValue,
    ) -> Result<JsValue, RecorderError> {
        let text = JSON::stringify(body).map_err(|e| RecorderError::Protocol(js_message(&e)))?;
        let reply = self
            .send(
                method,
                &self.endpoint(path),
                &[("Content-Type", "application/json")],
                Some(&text.into()),
            )
            .await?;
        if !(200..300).contains(&reply.status) {
            return Err(reply.error());
        }
        JSON::parse(&reply.body)
            .map_err(|_| RecorderError::Protocol("the server's answer is not JSON".into()))
    }

    /// `POST /api/posts/live/`: starts a live titled `title`.
    pub async fn create_live(&self, title: &str) -> Result<CreatedLive, RecorderError> {
        let body = js_sys::Object::new();
        set(&body, "content", &title.into());
        let answer = self.json("POST", "/api/posts/live/", &body).await?;
        let live_id = get(&answer, "live_id")
            .as_f64()
            .filter(|id| id.fract() == 0.0 && *id > 0.0)
            .ok_or_else(|| RecorderError::Protocol("the new live has no live_id".into()))?;
        let upload_url = get(&answer, "upload_url")
            .as_string()
            .ok_or_else(|| RecorderError::Protocol("the new live has no upload_url".into()))?;
        Ok(CreatedLive {
            live_id: live_id as u64,
            upload_url: self.absolute(&upload_url)?,
            post: get(&answer, "post"),
        })
    }

    /// `PUT /api/posts/live/{id}/stop/` with `video_data`; answers the Post.
    pub async fn stop_live(&self, video_data: &VideoData) -> Result<JsValue, RecorderError> {
        let body = js_sys::Object::new();
        let data = serde_wasm_bindgen::to_value(video_data)
            .map_err(|e| RecorderError::Protocol(e.to_string()))?;
        set(&body, "video_data", &data);
        let mut path = String::from("/api/posts/live/");
        path.push_str(&video_data.live_id.to_string());
        path.push_str("/stop/");
        self.json("PUT", &path, &body).await
    }
}

impl ApiClient {
    /// `PUT /api/posts/live/{id}/poster/` with a JPEG; the server answers 204.
    pub async fn put_poster(
        &self,
        live_id: u64,
        jpeg: &web_sys::Blob,
    ) -> Result<(), RecorderError> {
        let mut path = String::from("/api/posts/live/");
        path.push_str(&live_id.to_string());
        path.push_str("/poster/");
        let reply = self
            .send_within(
                "PUT",
                &self.endpoint(&path),
                &[("Content-Type", "image/jpeg")],
                Some(jpeg.as_ref()),
                POSTER_TIMEOUT_MS,
            )
            .await?;
        if (200..300).contains(&reply.status) {
            Ok(())
        } else {
            Err(reply.error())
        }
    }
}

/// The tus transport of one upload URL.
pub struct TusUpload<'a> {
    client: &'a ApiClient,
    url: String,
}

impl<'a> TusUpload<'a> {
    /// The upload at `url` (absolute).
    pub fn new(client: &'a ApiClient, url: &str) -> Self {
        Self {
            client,
            url: url.to_owned(),
        }
    }
}

impl TusTransport for TusUpload<'_> {
    async fn head(&self) -> Result<ServerOffset, RecorderError> {
        let reply = self
            .client
            .send("HEAD", &self.url, &[("Tus-Resumable", TUS_VERSION)], None)
            .await?;
        if tus::classify_status(reply.status) != StatusClass::Success {
            return Err(reply.error());
        }
        let offset = tus::parse_offset(reply.header("Upload-Offset").as_deref())
            .ok_or_else(|| RecorderError::Protocol("HEAD answered without Upload-Offset".into()))?;
        Ok(ServerOffset {
            offset,
            length: tus::parse_offset(reply.header("Upload-Length").as_deref()),
        })
    }

    async fn patch(&self, plan: &PatchPlan) -> Result<PatchReply, RecorderError> {
        let offset = plan.offset.to_string();
        let length = plan.upload_length.map(|l| l.to_string());
        let checksum = plan.checksum_header();
        let mut headers = vec![
            ("Tus-Resumable", TUS_VERSION),
            ("Upload-Offset", offset.as_str()),
            ("Content-Type", PATCH_CONTENT_TYPE),
        ];
        if !plan.body.is_empty() {
            headers.push(("Upload-Checksum", checksum.as_str()));
        }
        if let Some(length) = &length {
            headers.push(("Upload-Length", length.as_str()));
        }
        let body: JsValue = Uint8Array::from(plan.body.as_slice()).into();
        let reply = self
            .client
            .send("PATCH", &self.url, &headers, Some(&body))
            .await?;
        match tus::classify_status(reply.status) {
            StatusClass::Success => Ok(PatchReply::Accepted(tus::parse_offset(
                reply.header("Upload-Offset").as_deref(),
            ))),
            StatusClass::Conflict => Ok(PatchReply::Conflict),
            StatusClass::Retry | StatusClass::Fatal => Err(reply.error()),
        }
    }

    async fn sleep(&self, ms: f64) {
        gloo_timers::future::TimeoutFuture::new(ms.clamp(0.0, f64::from(u32::MAX)) as u32).await;
    }

    fn random(&self) -> f64 {
        js_sys::Math::random()
    }
}

/// `object[key]`, or `undefined`.
pub fn get(object: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(object, &key.into()).unwrap_or(JsValue::UNDEFINED)
}

/// `object[key] = value` on a plain object (cannot fail there).
pub fn set(object: &JsValue, key: &str, value: &JsValue) {
    let _ = js_sys::Reflect::set(object, &key.into(), value);
}
