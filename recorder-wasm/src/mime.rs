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

/// MP4 with H.264 + AAC, the pair every browser and device plays, in the spellings browsers
/// accept (best first): Constrained Baseline 3.0 + AAC-LC as RFC 6381 writes it, unquoted and
/// quoted, then the shorter forms Chromium's and WebKit's `isTypeSupported` know. A bare
/// `video/mp4` is not among them: Chromium records VP9 + Opus under that name.
pub const UNIVERSAL_MP4_MIME_TYPES: [&str; 5] = [
    "video/mp4;codecs=avc1.42E01E,mp4a.40.2",
    "video/mp4;codecs=\"avc1.42E01E, mp4a.40.2\"",
    "video/mp4;codecs=avc1,mp4a.40.2",
    "video/mp4;codecs=avc1,mp4a",
    "video/mp4;codecs=h264,aac",
];

/// Which formats to try first when the page forces none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatPreference {
    /// [`PREFERRED_MIME_TYPES`] in order.
    #[default]
    Default,
    /// [`UNIVERSAL_MP4_MIME_TYPES`] first, then [`PREFERRED_MIME_TYPES`] (`preferUniversalMp4`).
    UniversalMp4,
}

/// The first format of `preference` that `is_supported` accepts.
pub fn pick_mime_type(
    preference: FormatPreference,
    is_supported: impl Fn(&str) -> bool,
) -> Option<&'static str> {
    let universal: &[&'static str] = match preference {
        FormatPreference::Default => &[],
        FormatPreference::UniversalMp4 => &UNIVERSAL_MP4_MIME_TYPES,
    };
    universal
        .iter()
        .chain(PREFERRED_MIME_TYPES.iter())
        .copied()
        .find(|mime| is_supported(mime))
}

/// The MIME type to record: the caller's choice if the browser supports it, else our pick.
pub fn choose_mime_type(
    forced: Option<&str>,
    preference: FormatPreference,
    is_supported: impl Fn(&str) -> bool,
) -> Result<String, RecorderError> {
    match forced {
        Some(mime) if is_supported(mime) => Ok(mime.to_owned()),
        Some(mime) => Err(RecorderError::UnsupportedMimeType(mime.to_owned())),
        None => pick_mime_type(preference, is_supported)
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

    const DEFAULT: FormatPreference = FormatPreference::Default;
    const UNIVERSAL: FormatPreference = FormatPreference::UniversalMp4;

    /// What Chromium 156 on Debian answered (FIELD-NOTES): H.264 video, but no AAC encoder.
    fn chromium_here(mime: &str) -> bool {
        matches!(
            mime,
            "video/webm;codecs=vp9,opus"
                | "video/webm;codecs=vp8,opus"
                | "video/webm"
                | "video/mp4"
                | "video/mp4;codecs=avc1"
                | "video/mp4;codecs=avc1.42E01E,opus"
        )
    }

    /// What Safari before 18.4 records: MP4 with H.264 + AAC only.
    fn safari_17(mime: &str) -> bool {
        mime == "video/mp4" || mime.starts_with("video/mp4;codecs=avc1")
    }

    #[test]
    fn the_first_supported_type_wins_in_preference_order() {
        assert_eq!(
            pick_mime_type(DEFAULT, |_| true),
            Some("video/webm;codecs=vp9,opus")
        );
        assert_eq!(
            pick_mime_type(DEFAULT, |m| !m.contains("vp9")),
            Some("video/webm;codecs=vp8,opus")
        );
        assert_eq!(
            pick_mime_type(DEFAULT, |m| m == "video/webm"),
            Some("video/webm")
        );
        assert_eq!(
            pick_mime_type(DEFAULT, |m| m == "video/mp4"),
            Some("video/mp4")
        );
    }

    #[test]
    fn the_default_order_never_asks_for_h264() {
        assert_eq!(
            pick_mime_type(DEFAULT, |m| m.contains("avc1") || m == "video/webm"),
            Some("video/webm")
        );
    }

    #[test]
    fn universal_mp4_comes_first_when_asked_for_and_supported() {
        assert_eq!(
            pick_mime_type(UNIVERSAL, |_| true),
            Some("video/mp4;codecs=avc1.42E01E,mp4a.40.2")
        );
        // A browser that knows only the short spelling still gets H.264 + AAC.
        assert_eq!(
            pick_mime_type(UNIVERSAL, |m| m == "video/mp4;codecs=h264,aac"
                || m.starts_with("video/webm")),
            Some("video/mp4;codecs=h264,aac")
        );
        assert_eq!(
            pick_mime_type(UNIVERSAL, safari_17),
            Some("video/mp4;codecs=avc1.42E01E,mp4a.40.2")
        );
        assert_eq!(
            pick_mime_type(DEFAULT, safari_17),
            Some("video/mp4"),
            "Safari's default MP4 is H.264 + AAC anyway"
        );
    }

    #[test]
    fn without_h264_and_aac_the_universal_preference_falls_back_to_the_default_order() {
        // Chromium here records H.264 but has no AAC encoder: no universal MP4, so WebM VP9,
        // never the bare video/mp4 (VP9 + Opus in MP4) nor H.264 with Opus.
        assert_eq!(
            pick_mime_type(UNIVERSAL, chromium_here),
            Some("video/webm;codecs=vp9,opus")
        );
        assert_eq!(
            pick_mime_type(UNIVERSAL, chromium_here),
            pick_mime_type(DEFAULT, chromium_here)
        );
        assert!(UNIVERSAL_MP4_MIME_TYPES
            .iter()
            .all(|m| m.contains("avc1") || m.contains("h264")));
        assert!(UNIVERSAL_MP4_MIME_TYPES
            .iter()
            .all(|m| m.contains("mp4a") || m.contains("aac")));
    }

    #[test]
    fn no_supported_type_is_a_clear_error() {
        assert_eq!(pick_mime_type(UNIVERSAL, |_| false), None);
        assert_eq!(
            choose_mime_type(None, DEFAULT, |_| false),
            Err(RecorderError::NoSupportedFormat)
        );
    }

    #[test]
    fn a_forced_type_is_used_only_when_supported() {
        assert_eq!(
            choose_mime_type(Some("video/mp4"), DEFAULT, |_| true).as_deref(),
            Ok("video/mp4")
        );
        assert_eq!(
            choose_mime_type(Some("video/mp4;codecs=avc1,mp4a"), DEFAULT, |m| m
                == "video/webm"),
            Err(RecorderError::UnsupportedMimeType(
                "video/mp4;codecs=avc1,mp4a".into()
            ))
        );
    }

    #[test]
    fn the_container_drops_the_codecs_parameter() {
        assert_eq!(container_of("video/webm;codecs=vp9,opus"), "video/webm");
        assert_eq!(container_of("video/mp4"), "video/mp4");
        assert_eq!(
            container_of("video/mp4;codecs=\"avc1.42E01E, mp4a.40.2\""),
            "video/mp4"
        );
    }
}
