//! Stopping a live: the last chunk, every acknowledgement, the poster, then
//! `PUT /api/posts/live/{id}/stop/` with the `video_data` the server checks.

use std::rc::Rc;

use wasm_bindgen::JsValue;

use crate::backoff::Backoff;
use crate::error::RecorderError;
use crate::http::ApiClient;
use crate::mime;
use crate::model::{seconds, VideoData};
use crate::recorder::Recorder;
use crate::state::RecorderState;
use crate::tus::upload_id_from_url;

use super::Session;

impl Session {
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
            title: self.options.recording_title.clone(),
            live_id: live.id,
        };
        let post = stop_live(
            &self.client,
            &video_data,
            |err, _| self.keeps_retrying(err),
            |err| self.callbacks.error(err, false),
        )
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

    /// Whether the upload or the stop request tries again after the retryable `err`: always
    /// while the live records, and always without a journal (memory holds the only copy).
    /// Once stopping with the journal holding every byte, a `getToken` that keeps failing ends
    /// the stop ([`crate::token::StopPatience`]) rather than hold it until the host app
    /// answers: `resumePending` finishes the live from the journal later.
    pub(super) fn keeps_retrying(&self, err: &RecorderError) -> bool {
        let journaled_stop = {
            let inner = self.inner.borrow();
            inner.state == RecorderState::Stopping && inner.journal.is_some()
        };
        !journaled_stop || self.stop_patience.try_again_after(err)
    }
}

/// Sends the stop, retrying transport failures, 5xx and a failed `getToken` (the stop is
/// idempotent) while `keep_retrying(err, failures in a row)` says so.
pub(super) async fn stop_live(
    client: &ApiClient,
    video_data: &VideoData,
    keep_retrying: impl Fn(&RecorderError, u32) -> bool,
    on_retry: impl Fn(&RecorderError),
) -> Result<JsValue, RecorderError> {
    let mut backoff = Backoff::default();
    loop {
        match client.stop_live(video_data).await {
            Ok(post) => return Ok(post),
            Err(err) if err.is_retryable() && keep_retrying(&err, backoff.failures() + 1) => {
                on_retry(&err);
                let ms = backoff.next_delay_ms(js_sys::Math::random());
                gloo_timers::future::TimeoutFuture::new(ms as u32).await;
            }
            Err(err) => return Err(err),
        }
    }
}
