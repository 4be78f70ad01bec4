//! The poster task: one frame about a second into the live, PUT as the live's poster at once;
//! `stop()` retries it once if that failed. A poster failure never fails the live.

use std::rc::Rc;

use web_sys::MediaStream;

use crate::error::RecorderError;
use crate::poster::{self, grab_poster};

use super::Session;

/// How long `stop()` waits (steps of [`POSTER_STEP_MS`]) for a poster still being taken or
/// sent before it stops the live without it.
const POSTER_WAIT_STEPS: u32 = 50;
const POSTER_STEP_MS: u32 = 100;

/// Where the live's poster is.
pub(super) enum PosterState {
    /// No poster task (the live never started).
    None,
    /// The poster task is waiting, grabbing or uploading.
    Busy,
    /// Taken, but the upload failed: `stop()` tries once more.
    Unsent(web_sys::Blob),
    /// Uploaded, or nothing left to try.
    Done,
}

impl Session {
    /// Takes the poster about a second into the live (sooner if the page stops first) and
    /// uploads it at once; a failed upload leaves it for `stop()` to retry.
    pub(super) async fn run_poster(self: Rc<Self>, stream: MediaStream, live_id: u64) {
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
    pub(super) async fn finish_poster(&self, live_id: u64) {
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
}
