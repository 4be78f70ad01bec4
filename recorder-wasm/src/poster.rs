//! The live's poster: one frame of the stream, scaled to at most [`MAX_WIDTH`] px wide and
//! encoded as JPEG, so the feed can show a picture before anyone plays the recording.
//!
//! The frame comes from `ImageCapture.grabFrame()` where the browser has it (Chromium), else
//! from a hidden `<video>` playing the same stream, drawn onto a canvas.

/// Widest poster in pixels: enough for a feed card, small enough to upload in a blink.
pub const MAX_WIDTH: u32 = 640;

/// JPEG quality passed to `canvas.toBlob`.
pub const JPEG_QUALITY: f64 = 0.8;

/// How far into the live the frame is taken (ms): past the camera's first dark frames.
pub const GRAB_AFTER_MS: u32 = 1_000;

/// The poster's size for a `width`×`height` frame: the same aspect ratio, at most
/// [`MAX_WIDTH`] wide, never upscaled, never zero.
pub fn scaled_size(width: u32, height: u32) -> (u32, u32) {
    if width <= MAX_WIDTH {
        return (width.max(1), height.max(1));
    }
    let scaled = u64::from(height) * u64::from(MAX_WIDTH) / u64::from(width);
    (MAX_WIDTH, (scaled as u32).max(1))
}

#[cfg(target_arch = "wasm32")]
pub use browser::{grab_poster, grab_with_image_capture, grab_with_video};

#[cfg(target_arch = "wasm32")]
mod browser {
    use js_sys::{Array, Function, Promise, Reflect};
    use wasm_bindgen::prelude::*;
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{
        Blob, CanvasRenderingContext2d, HtmlCanvasElement, HtmlVideoElement, ImageBitmap,
        MediaStream, MediaStreamTrack,
    };

    use super::{scaled_size, JPEG_QUALITY};
    use crate::error::{js_message, RecorderError};

    /// How long the hidden `<video>` may take to show its first frame.
    const VIDEO_READY_STEPS: u32 = 60;
    const VIDEO_READY_STEP_MS: u32 = 50;
    /// `HTMLMediaElement.HAVE_CURRENT_DATA`: a frame can be drawn.
    const HAVE_CURRENT_DATA: u16 = 2;

    fn failed(message: &str) -> RecorderError {
        RecorderError::Poster(message.to_owned())
    }

    fn js_failed(value: JsValue) -> RecorderError {
        RecorderError::Poster(js_message(&value))
    }

    fn video_track(stream: &MediaStream) -> Result<MediaStreamTrack, RecorderError> {
        stream
            .get_video_tracks()
            .get(0)
            .dyn_into()
            .map_err(|_| failed("the stream has no video track"))
    }

    /// A JPEG of the stream's current frame, at most 640 px wide: `ImageCapture` where the
    /// browser has it, else a hidden `<video>`.
    pub async fn grab_poster(stream: &MediaStream) -> Result<Blob, RecorderError> {
        let has_image_capture = Reflect::get(&js_sys::global(), &"ImageCapture".into())
            .map(|ctor| ctor.is_function())
            .unwrap_or(false);
        if has_image_capture {
            // Some implementations refuse a track (e.g. one from a canvas): try the fallback.
            if let Ok(blob) = grab_with_image_capture(stream).await {
                return Ok(blob);
            }
        }
        grab_with_video(stream).await
    }

    /// The frame through `new ImageCapture(track).grabFrame()`.
    pub async fn grab_with_image_capture(stream: &MediaStream) -> Result<Blob, RecorderError> {
        let track = video_track(stream)?;
        let ctor: Function = Reflect::get(&js_sys::global(), &"ImageCapture".into())
            .map_err(js_failed)?
            .dyn_into()
            .map_err(|_| failed("ImageCapture is missing"))?;
        let capture = Reflect::construct(&ctor, &Array::of1(&track)).map_err(js_failed)?;
        let grab: Function = Reflect::get(&capture, &"grabFrame".into())
            .map_err(js_failed)?
            .dyn_into()
            .map_err(|_| failed("ImageCapture has no grabFrame"))?;
        let promise: Promise = grab
            .call0(&capture)
            .map_err(js_failed)?
            .dyn_into()
            .map_err(|_| failed("grabFrame did not return a promise"))?;
        let bitmap: ImageBitmap = JsFuture::from(promise)
            .await
            .map_err(js_failed)?
            .dyn_into()
            .map_err(|_| failed("grabFrame did not give an ImageBitmap"))?;
        let (width, height) = scaled_size(bitmap.width(), bitmap.height());
        let drawn = canvas(width, height).and_then(|(canvas, context)| {
            context
                .draw_image_with_image_bitmap_and_dw_and_dh(
                    &bitmap,
                    0.0,
                    0.0,
                    f64::from(width),
                    f64::from(height),
                )
                .map_err(js_failed)?;
            Ok(canvas)
        });
        bitmap.close();
        jpeg(&drawn?).await
    }

    /// The frame through a hidden, muted `<video>` playing the stream, drawn on a canvas.
    pub async fn grab_with_video(stream: &MediaStream) -> Result<Blob, RecorderError> {
        video_track(stream)?;
        let document = web_sys::window()
            .and_then(|w| w.document())
            .ok_or_else(|| failed("no document"))?;
        let video: HtmlVideoElement = document
            .create_element("video")
            .map_err(js_failed)?
            .dyn_into()
            .map_err(|_| failed("not a video element"))?;
        video.set_muted(true);
        let _ = video.set_attribute("playsinline", "");
        video.set_src_object(Some(stream));
        let result = draw_video_frame(&video).await;
        // Detach so the element lets go of the stream at once.
        let _ = video.pause();
        video.set_src_object(None);
        jpeg(&result?).await
    }

    async fn draw_video_frame(
        video: &HtmlVideoElement,
    ) -> Result<HtmlCanvasElement, RecorderError> {
        // A muted video may autoplay; if `play()` is refused the wait below says so.
        if let Ok(promise) = video.play() {
            let _ = JsFuture::from(promise).await;
        }
        let mut ready = false;
        for _ in 0..VIDEO_READY_STEPS {
            if video.ready_state() >= HAVE_CURRENT_DATA && video.video_width() > 0 {
                ready = true;
                break;
            }
            gloo_timers::future::TimeoutFuture::new(VIDEO_READY_STEP_MS).await;
        }
        if !ready {
            return Err(failed("the video showed no frame in time"));
        }
        let (width, height) = scaled_size(video.video_width(), video.video_height());
        let (canvas, context) = canvas(width, height)?;
        context
            .draw_image_with_html_video_element_and_dw_and_dh(
                video,
                0.0,
                0.0,
                f64::from(width),
                f64::from(height),
            )
            .map_err(js_failed)?;
        Ok(canvas)
    }

    fn canvas(
        width: u32,
        height: u32,
    ) -> Result<(HtmlCanvasElement, CanvasRenderingContext2d), RecorderError> {
        let canvas: HtmlCanvasElement = web_sys::window()
            .and_then(|w| w.document())
            .ok_or_else(|| failed("no document"))?
            .create_element("canvas")
            .map_err(js_failed)?
            .dyn_into()
            .map_err(|_| failed("not a canvas element"))?;
        canvas.set_width(width);
        canvas.set_height(height);
        let context = canvas
            .get_context("2d")
            .map_err(js_failed)?
            .ok_or_else(|| failed("no 2d canvas context"))?
            .dyn_into()
            .map_err(|_| failed("not a 2d context"))?;
        Ok((canvas, context))
    }

    /// `canvas.toBlob("image/jpeg", 0.8)` as a future.
    async fn jpeg(canvas: &HtmlCanvasElement) -> Result<Blob, RecorderError> {
        // The executor runs synchronously, so it can hand the callback out by `&mut`.
        let mut callback_slot = None;
        let promise = Promise::new(&mut |resolve, _reject| {
            let on_blob = resolve.clone();
            let callback = Closure::<dyn FnMut(JsValue)>::new(move |blob: JsValue| {
                let _ = on_blob.call1(&JsValue::UNDEFINED, &blob);
            });
            let encoding = canvas.to_blob_with_type_and_encoder_options(
                callback.as_ref().unchecked_ref(),
                "image/jpeg",
                &JPEG_QUALITY.into(),
            );
            if encoding.is_err() {
                // A tainted canvas throws: settle now (with no Blob) instead of never.
                let _ = resolve.call1(&JsValue::UNDEFINED, &JsValue::NULL);
            }
            // Kept alive until the browser called it (below), then dropped: no `forget()`.
            callback_slot = Some(callback);
        });
        let blob = JsFuture::from(promise).await.map_err(js_failed)?;
        drop(callback_slot);
        blob.dyn_into()
            .map_err(|_| failed("the canvas could not be encoded as JPEG"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_frame_is_scaled_to_640_keeping_its_aspect_ratio() {
        assert_eq!(scaled_size(1280, 720), (640, 360));
        assert_eq!(scaled_size(1920, 1080), (640, 360));
        assert_eq!(scaled_size(641, 480), (640, 479));
    }

    #[test]
    fn a_small_frame_is_never_upscaled() {
        assert_eq!(scaled_size(640, 480), (640, 480));
        assert_eq!(scaled_size(320, 240), (320, 240));
    }

    #[test]
    fn a_degenerate_frame_still_gives_a_drawable_size() {
        assert_eq!(scaled_size(0, 0), (1, 1));
        assert_eq!(scaled_size(100_000, 1), (640, 1));
    }
}
