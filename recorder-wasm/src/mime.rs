//! Which container/codec MediaRecorder is asked for.

use crate::error::RecorderError;

/// The formats we accept, best first: VP9 compresses better than VP8 at the same quality,
/// and WebM is what the server's finalizer understands best; MP4 is the Safari fallback.
pub const PREFERRED_MIME_TYPES: [&str; 4] = [
    "video/webm;codecs=vp9,opus",
    "video/webm;codecs=vp8,opus",
    "video/webm",
    "video/mp4",
];

/// The first of [`PREFERRED_MIME_TYPES`] that `is_supported` accepts.
pub fn pick_mime_type(is_supported: impl Fn(&str) -> bool) -> Option<&'static str> {
    PREFERRED_MIME_TYPES
        .into_iter()
        .find(|mime| is_supported(mime))
}

/// The MIME type to record: the caller's choice if the browser supports it, else our pick.
pub fn choose_mime_type(
    forced: Option<&str>,
    is_supported: impl Fn(&str) -> bool,
) -> Result<String, RecorderError> {
    match forced {
        Some(mime) if is_supported(mime) => Ok(mime.to_owned()),
        Some(mime) => Err(RecorderError::UnsupportedMimeType(mime.to_owned())),
        None => pick_mime_type(is_supported)
            .map(str::to_owned)
            .ok_or(RecorderError::NoSupportedFormat),
    }
}

/// The container part of a MIME type (`video/webm;codecs=vp9,opus` → `video/webm`), for the
/// `video_data.mime_type` the server stores and serves as `Content-Type`.
pub fn container_of(mime: &str) -> &str {
    mime.split(';').next().unwrap_or(mime).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_supported_type_wins_in_preference_order() {
        assert_eq!(pick_mime_type(|_| true), Some("video/webm;codecs=vp9,opus"));
        assert_eq!(
            pick_mime_type(|m| !m.contains("vp9")),
            Some("video/webm;codecs=vp8,opus")
        );
        assert_eq!(pick_mime_type(|m| m == "video/webm"), Some("video/webm"));
        assert_eq!(pick_mime_type(|m| m == "video/mp4"), Some("video/mp4"));
    }

    #[test]
    fn no_supported_type_is_a_clear_error() {
        assert_eq!(pick_mime_type(|_| false), None);
        assert_eq!(
            choose_mime_type(None, |_| false),
            Err(RecorderError::NoSupportedFormat)
        );
    }

    #[test]
    fn a_forced_type_is_used_only_when_supported() {
        assert_eq!(
            choose_mime_type(Some("video/mp4"), |_| true).as_deref(),
            Ok("video/mp4")
        );
        assert_eq!(
            choose_mime_type(Some("video/mp4;codecs=avc1,mp4a"), |m| m == "video/webm"),
            Err(RecorderError::UnsupportedMimeType(
                "video/mp4;codecs=avc1,mp4a".into()
            ))
        );
    }

    #[test]
    fn the_container_drops_the_codecs_parameter() {
        assert_eq!(container_of("video/webm;codecs=vp9,opus"), "video/webm");
        assert_eq!(container_of("video/mp4"), "video/mp4");
    }
}
