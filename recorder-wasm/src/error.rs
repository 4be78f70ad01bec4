//! The one error type of the recorder, its stable codes, and its conversion to a JS `Error`.

use crate::state::RecorderState;

/// Everything that can go wrong while recording or uploading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecorderError {
    /// The options object passed by the page is unusable.
    #[error("invalid recorder options: {0}")]
    InvalidOptions(String),
    /// The browser supports none of the formats we can record.
    #[error("this browser cannot record any of video/webm (VP9/VP8 + Opus) or video/mp4")]
    NoSupportedFormat,
    /// The page forced a MIME type the browser cannot record.
    #[error("this browser cannot record {0}")]
    UnsupportedMimeType(String),
    /// A method was called in a state where it makes no sense (e.g. `pause()` before `start()`).
    #[error("cannot {action} while the recorder is {state}")]
    InvalidState {
        /// What the caller tried to do.
        action: &'static str,
        /// The state the recorder was in.
        state: RecorderState,
    },
    /// The server refused (401) the token `getToken()` had just given: the host app says no.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// `getToken()` gave no token this time (threw, rejected, timed out, gave no string):
    /// retried like a network error, since the host app's token endpoint may be back soon.
    #[error("no token: {0}")]
    TokenUnavailable(String),
    /// The server answered with an error status.
    #[error("the server answered {status}: {message}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// The server's message (or the status text).
        message: String,
    },
    /// The request never got an answer (offline, DNS, CORS, connection reset).
    #[error("network error: {0}")]
    Network(String),
    /// The request got no answer within the timeout and was aborted.
    #[error("the server did not answer in time")]
    Timeout,
    /// The server's upload offset contradicts what it acknowledged before.
    #[error("upload out of sync: {0}")]
    Protocol(String),
    /// The browser's MediaRecorder failed.
    #[error("recording failed: {0}")]
    Recording(String),
    /// The page freed the recorder before it stopped; the journal keeps the recording.
    #[error("the recorder was freed before it stopped; the local journal keeps the recording")]
    Closed,
    /// The local journal (OPFS) could not be used.
    #[error("local journal: {0}")]
    Journal(String),
    /// The poster image could not be taken or uploaded (never fatal: the recording is safe).
    #[error("poster: {0}")]
    Poster(String),
    /// The WebAssembly module could not be fetched or compiled. The package's JS loader
    /// (`load()`) raises it, since the module cannot report its own failure to load.
    #[error("the recorder's WebAssembly module could not be loaded: {0}")]
    LoadFailed(String),
    /// A bug: something threw without a code (e.g. the WebAssembly module trapped). The React
    /// hook reports it so that its `error.code` is always one of [`RecorderError::CODES`].
    #[error("internal error: {0}")]
    Internal(String),
}

impl RecorderError {
    /// Every code, as the package's README and its `RecorderErrorCode` type list them;
    /// `http_<status>` stands for `http_401`, `http_503`, …
    pub const CODES: [&'static str; 16] = [
        "invalid_options",
        "no_supported_format",
        "unsupported_mime_type",
        "invalid_state",
        "unauthenticated",
        "token_unavailable",
        "http_<status>",
        "network",
        "timeout",
        "upload_protocol",
        "recording_failed",
        "closed",
        "journal",
        "poster",
        "load_failed",
        "internal",
    ];

    /// The stable snake_case code the page switches on (`http_401`, `network`, ...).
    pub fn code(&self) -> String {
        match self {
            Self::InvalidOptions(_) => "invalid_options".into(),
            Self::NoSupportedFormat => "no_supported_format".into(),
            Self::UnsupportedMimeType(_) => "unsupported_mime_type".into(),
            Self::InvalidState { .. } => "invalid_state".into(),
            Self::Unauthenticated(_) => "unauthenticated".into(),
            Self::TokenUnavailable(_) => "token_unavailable".into(),
            Self::Http { status, .. } => {
                let mut code = String::from("http_");
                code.push_str(itoa(*status).as_str());
                code
            }
            Self::Network(_) => "network".into(),
            Self::Timeout => "timeout".into(),
            Self::Protocol(_) => "upload_protocol".into(),
            Self::Recording(_) => "recording_failed".into(),
            Self::Closed => "closed".into(),
            Self::Journal(_) => "journal".into(),
            Self::Poster(_) => "poster".into(),
            Self::LoadFailed(_) => "load_failed".into(),
            Self::Internal(_) => "internal".into(),
        }
    }

    /// Whether retrying the same request later can succeed: transport failures, a `getToken()`
    /// that failed this time, 5xx, `423 Locked` (another PATCH still holds the upload), `429`
    /// and `460` (checksum mismatch: the chunk was damaged in transit and discarded by the
    /// server).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Network(_) | Self::Timeout | Self::TokenUnavailable(_) => true,
            Self::Http { status, .. } => matches!(status, 408 | 423 | 429 | 460 | 500..=599),
            _ => false,
        }
    }

    /// The server refused for good (gone, forbidden, not found, conflicting, too large):
    /// asking again can never succeed. A 401 is not final: the user can log in again.
    pub fn is_final_refusal(&self) -> bool {
        matches!(self, Self::Http { status, .. } if (400..500).contains(status) && *status != 401 && !self.is_retryable())
    }
}

/// Formats a status code without pulling `format!` machinery into the wasm module.
fn itoa(mut n: u16) -> String {
    let mut digits = [0u8; 5];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    digits[i..].iter().map(|&d| d as char).collect()
}

/// The message of a thrown JS value (an `Error`, a `DOMException` or anything else).
#[cfg(target_arch = "wasm32")]
pub fn js_message(value: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    if let Some(err) = value.dyn_ref::<js_sys::Error>() {
        return String::from(err.message());
    }
    js_sys::Reflect::get(value, &"message".into())
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

#[cfg(target_arch = "wasm32")]
impl From<RecorderError> for wasm_bindgen::JsValue {
    /// A JS `Error` whose `message` is human-readable and whose `code` property is stable.
    fn from(err: RecorderError) -> Self {
        let js_err = js_sys::Error::new(&err.to_string());
        // Setting a property on a fresh Error object cannot fail.
        let _ = js_sys::Reflect::set(&js_err, &"code".into(), &err.code().into());
        js_err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_errors_carry_their_status_in_the_code() {
        let err = RecorderError::Http {
            status: 401,
            message: "unauthenticated".into(),
        };
        assert_eq!(err.code(), "http_401");
        assert_eq!(
            RecorderError::Http {
                status: 5,
                message: String::new()
            }
            .code(),
            "http_5"
        );
    }

    /// One of each variant. The match below stops compiling when a variant is added, so the
    /// list (and the checks over it) cannot silently miss one.
    fn one_of_each() -> Vec<RecorderError> {
        fn listed(err: &RecorderError) {
            match err {
                RecorderError::InvalidOptions(_)
                | RecorderError::NoSupportedFormat
                | RecorderError::UnsupportedMimeType(_)
                | RecorderError::InvalidState { .. }
                | RecorderError::Unauthenticated(_)
                | RecorderError::TokenUnavailable(_)
                | RecorderError::Http { .. }
                | RecorderError::Network(_)
                | RecorderError::Timeout
                | RecorderError::Protocol(_)
                | RecorderError::Recording(_)
                | RecorderError::Closed
                | RecorderError::Journal(_)
                | RecorderError::Poster(_)
                | RecorderError::LoadFailed(_)
                | RecorderError::Internal(_) => {}
            }
        }
        let all = vec![
            RecorderError::InvalidOptions("x".into()),
            RecorderError::NoSupportedFormat,
            RecorderError::UnsupportedMimeType("video/x".into()),
            RecorderError::InvalidState {
                action: "pause",
                state: RecorderState::Idle,
            },
            RecorderError::Unauthenticated("x".into()),
            RecorderError::TokenUnavailable("x".into()),
            RecorderError::Http {
                status: 404,
                message: String::new(),
            },
            RecorderError::Network("offline".into()),
            RecorderError::Timeout,
            RecorderError::Protocol("x".into()),
            RecorderError::Recording("x".into()),
            RecorderError::Closed,
            RecorderError::Journal("x".into()),
            RecorderError::Poster("x".into()),
            RecorderError::LoadFailed("x".into()),
            RecorderError::Internal("x".into()),
        ];
        all.iter().for_each(listed);
        all
    }

    /// A code as the documented list writes it (`http_404` → `http_<status>`).
    fn documented(code: &str) -> String {
        match code.strip_prefix("http_") {
            Some(status) if status.parse::<u16>().is_ok() => "http_<status>".into(),
            _ => code.into(),
        }
    }

    #[test]
    fn the_codes_are_exactly_those_of_the_variants() {
        let codes: Vec<String> = one_of_each()
            .iter()
            .map(|e| documented(&e.code()))
            .collect();
        assert_eq!(codes, RecorderError::CODES);
    }

    #[test]
    fn the_typescript_union_lists_exactly_the_codes() {
        let ts = crate::ts_types::TS_TYPES;
        let start = ts
            .find("export type RecorderErrorCode =")
            .expect("the union is declared");
        let union = &ts[start..];
        let union = &union[..union.find(';').expect("the union ends")];
        let members: Vec<String> = union
            .split('|')
            .skip(1)
            .map(|member| {
                let member = member.trim();
                if member == "`http_${number}`" {
                    "http_<status>".to_owned()
                } else {
                    member.trim_matches('"').to_owned()
                }
            })
            .collect();
        assert_eq!(members, RecorderError::CODES);
        assert!(
            ts.contains("RecorderErrorInfo { code: RecorderErrorCode;"),
            "onError's code is typed with the union"
        );
    }

    #[test]
    fn the_package_readme_documents_exactly_the_codes() {
        // The table's rows: | `code` | when | fatal? |
        let readme = include_str!("../js/README.md");
        let table = &readme[readme.find("| code |").expect("the table of error codes")..];
        let codes: Vec<&str> = table
            .lines()
            .skip(2)
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                line.split('`')
                    .nth(1)
                    .expect("a code in backquotes opens each row")
            })
            .collect();
        assert_eq!(codes, RecorderError::CODES);
    }

    #[test]
    fn each_variant_has_a_distinct_stable_code() {
        let codes: Vec<String> = one_of_each().iter().map(RecorderError::code).collect();
        assert_eq!(
            codes,
            [
                "invalid_options",
                "no_supported_format",
                "unsupported_mime_type",
                "invalid_state",
                "unauthenticated",
                "token_unavailable",
                "http_404",
                "network",
                "timeout",
                "upload_protocol",
                "recording_failed",
                "closed",
                "journal",
                "poster",
                "load_failed",
                "internal"
            ]
        );
    }

    #[test]
    fn transport_failures_and_server_errors_are_retried_client_errors_are_not() {
        let http = |status| RecorderError::Http {
            status,
            message: String::new(),
        };
        assert!(RecorderError::Network("reset".into()).is_retryable());
        assert!(RecorderError::Timeout.is_retryable());
        assert!(RecorderError::TokenUnavailable("getToken() rejected".into()).is_retryable());
        assert!(!RecorderError::Unauthenticated("refused".into()).is_retryable());
        for status in [500, 502, 503, 504, 423, 429, 460] {
            assert!(http(status).is_retryable(), "{status} should be retried");
        }
        for status in [400, 401, 403, 404, 409, 410, 412, 413] {
            assert!(
                !http(status).is_retryable(),
                "{status} should not be retried"
            );
        }
        assert!(!RecorderError::NoSupportedFormat.is_retryable());
    }

    #[test]
    fn only_client_errors_other_than_401_are_final_refusals() {
        let http = |status| RecorderError::Http {
            status,
            message: String::new(),
        };
        for status in [400, 403, 404, 409, 410, 413] {
            assert!(http(status).is_final_refusal(), "{status}");
        }
        for status in [401, 423, 429, 460, 500, 503] {
            assert!(!http(status).is_final_refusal(), "{status}");
        }
        assert!(!RecorderError::Network("offline".into()).is_final_refusal());
        assert!(!RecorderError::TokenUnavailable("x".into()).is_final_refusal());
        assert!(!RecorderError::Protocol("x".into()).is_final_refusal());
    }

    #[test]
    fn the_message_is_human_readable() {
        let err = RecorderError::InvalidState {
            action: "pause",
            state: RecorderState::Idle,
        };
        assert_eq!(err.to_string(), "cannot pause while the recorder is idle");
    }
}
