//! The data shapes the recorder hands to the server (`video_data`) and to the page
//! (progress and error reports), named as in the API contract and the TypeScript types.

use serde::{Deserialize, Serialize};

use crate::error::RecorderError;
use crate::state::RecorderState;

/// What the recorder sends with the stop (`PUT /api/posts/live/{id}/stop/`) and resolves with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoData {
    /// The upload's id (last segment of its URL).
    pub upload_id: String,
    /// The tus upload URL the bytes went to (absolute).
    pub upload_url: String,
    /// Recorded seconds, pauses excluded.
    pub duration: f64,
    /// Bytes recorded (and uploaded).
    pub size: u64,
    /// Hex SHA-256 of every byte, in order.
    pub sha256: String,
    /// Container MIME type (`video/webm` or `video/mp4`).
    pub mime_type: String,
    /// The recording's title, only when the app named it (`recordingTitle`): without it the
    /// server titles the Media `Vidéo du live - <content>`, on every path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The live (Post) id.
    pub live_id: u64,
}

/// Milliseconds to the seconds the API speaks, kept to whole milliseconds.
pub fn seconds(ms: f64) -> f64 {
    if ms.is_finite() && ms > 0.0 {
        (ms).round() / 1000.0
    } else {
        0.0
    }
}

/// A snapshot for the page's `onProgress` callback.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Current state, as in `RecorderState`.
    pub state: &'static str,
    /// Recorded seconds, pauses excluded.
    pub duration: f64,
    /// Bytes MediaRecorder produced.
    pub bytes_recorded: u64,
    /// Bytes the server acknowledged.
    pub uploaded_bytes: u64,
    /// Bytes held in memory waiting for an acknowledgement.
    pub buffered_bytes: u64,
    /// Chunks MediaRecorder produced.
    pub chunks: u32,
}

/// An error as the page's `onError` callback sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorInfo {
    /// Stable snake_case code (`network`, `http_401`, ...).
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// True when the recording session is over; false while it keeps retrying.
    pub fatal: bool,
}

impl ErrorInfo {
    /// The report for `err`.
    pub fn new(err: &RecorderError, fatal: bool) -> Self {
        Self {
            code: err.code(),
            message: err.to_string(),
            fatal,
        }
    }
}

impl Progress {
    /// A progress report; `duration_ms` is converted to seconds.
    pub fn new(
        state: RecorderState,
        duration_ms: f64,
        bytes_recorded: u64,
        uploaded: u64,
        buffered: u64,
        chunks: u32,
    ) -> Self {
        Self {
            state: state.as_str(),
            duration: seconds(duration_ms),
            bytes_recorded,
            uploaded_bytes: uploaded,
            buffered_bytes: buffered,
            chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_whole_milliseconds_in_seconds() {
        assert_eq!(seconds(90_500.4), 90.5);
        assert_eq!(seconds(1_234.6), 1.235);
        assert_eq!(seconds(-3.0), 0.0);
        assert_eq!(seconds(f64::NAN), 0.0);
    }

    #[test]
    fn video_data_names_the_recording_only_when_the_app_did() {
        let mut data = VideoData {
            upload_id: "ab".into(),
            upload_url: "http://h/api/uploads/ab".into(),
            duration: 1.5,
            size: 3,
            sha256: "00".into(),
            mime_type: "video/webm".into(),
            title: None,
            live_id: 7,
        };
        let json = serde_json::to_value(&data).expect("serialisable");
        assert!(json.get("title").is_none(), "no title key: {json}");
        data.title = Some("Concert, the recording".into());
        let json = serde_json::to_value(&data).expect("serialisable");
        assert_eq!(json["title"], "Concert, the recording");
    }

    #[test]
    fn error_reports_carry_code_message_and_fatality() {
        let info = ErrorInfo::new(&RecorderError::Timeout, false);
        assert_eq!(info.code, "timeout");
        assert_eq!(info.message, "the server did not answer in time");
        assert!(!info.fatal);
    }
}
