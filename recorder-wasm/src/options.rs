//! The page's `RecorderOptions`, checked once at construction so a mistake fails loudly there.

use crate::error::RecorderError;
use crate::mime::FormatPreference;

/// How to record.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingConfig {
    /// Force this MIME type; `None` picks the first supported type of `format`.
    pub mime_type: Option<String>,
    /// Which formats to try first when no MIME type is forced.
    pub format: FormatPreference,
    /// Milliseconds of media per `dataavailable` chunk.
    pub timeslice_ms: u32,
    /// Ask for a keyframe this often (ms) so each chunk starts near a seek point.
    pub keyframe_interval_ms: Option<u32>,
    /// Video bitrate hint.
    pub video_bits_per_second: Option<u32>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            mime_type: None,
            format: FormatPreference::Default,
            timeslice_ms: 1_000,
            keyframe_interval_ms: Some(1_000),
            video_bits_per_second: None,
        }
    }
}

/// Where to keep the local journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JournalKind {
    /// OPFS if the page can write files there, else IndexedDB.
    #[default]
    Auto,
    /// OPFS only.
    Opfs,
    /// IndexedDB only.
    IndexedDb,
    /// No journal: a closed tab loses what the server did not acknowledge.
    Off,
}

impl JournalKind {
    /// Parses the `journal` option (`"auto"`, `"opfs"`, `"indexeddb"`, `"off"`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(Self::Auto),
            "opfs" => Some(Self::Opfs),
            "indexeddb" => Some(Self::IndexedDb),
            "off" => Some(Self::Off),
            _ => None,
        }
    }
}

/// An existing live to record into (its Post id and tus upload URL).
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingLive {
    /// The live (Post) id.
    pub live_id: u64,
    /// Its upload URL, possibly relative.
    pub upload_url: String,
}

/// Validated options of one live recording (the token is apart: see [`crate::token`]).
#[derive(Debug, Clone, PartialEq)]
pub struct LiveOptions {
    /// API origin without a trailing slash; empty means the page's origin.
    pub api_base: String,
    /// The live's title (the Post's `content`).
    pub title: String,
    /// The recording's title (`video_data.title`), only when the app gives one.
    pub recording_title: Option<String>,
    /// Record into this live instead of creating one.
    pub existing: Option<ExistingLive>,
    /// MediaRecorder settings.
    pub recording: RecordingConfig,
    /// Where to keep the local journal.
    pub journal: JournalKind,
}

/// The options as read from JS, before validation (numbers are JS numbers); `token` and
/// `getToken` are checked by [`crate::token::credentials`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawOptions {
    /// `apiBase`
    pub api_base: Option<String>,
    /// `title`
    pub title: Option<String>,
    /// `recordingTitle`
    pub recording_title: Option<String>,
    /// `liveId`
    pub live_id: Option<f64>,
    /// `uploadUrl`
    pub upload_url: Option<String>,
    /// `mimeType`
    pub mime_type: Option<String>,
    /// `preferUniversalMp4`
    pub prefer_universal_mp4: Option<bool>,
    /// `timesliceMs`
    pub timeslice_ms: Option<f64>,
    /// `keyframeIntervalMs`
    pub keyframe_interval_ms: Option<f64>,
    /// `videoBitsPerSecond`
    pub video_bits_per_second: Option<f64>,
    /// `journal`
    pub journal: Option<String>,
}

fn invalid(message: &str) -> RecorderError {
    RecorderError::InvalidOptions(message.to_owned())
}

/// A whole number in `min..=max`, or the error `message`.
fn whole(value: f64, min: f64, max: f64, message: &str) -> Result<f64, RecorderError> {
    if value.is_finite() && value.fract() == 0.0 && (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(message))
    }
}

/// The longest title the server keeps (it trims, then cuts longer ones).
const MAX_TITLE_CHARS: usize = 500;

/// `recordingTitle`, trimmed: 1 to 500 characters.
fn recording_title(title: &str) -> Result<String, RecorderError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
        return Err(invalid(
            "`recordingTitle` must be 1 to 500 characters; leave it out for the server's default title",
        ));
    }
    Ok(title.to_owned())
}

impl RawOptions {
    /// Checks the options and fills in the defaults.
    pub fn validate(self) -> Result<LiveOptions, RecorderError> {
        let api_base = self
            .api_base
            .unwrap_or_default()
            .trim()
            .trim_end_matches('/')
            .to_owned();
        let existing = match (self.live_id, self.upload_url) {
            (None, None) => None,
            (Some(id), Some(url)) if !url.trim().is_empty() => Some(ExistingLive {
                live_id: whole(
                    id,
                    1.0,
                    9_007_199_254_740_991.0,
                    "`liveId` must be a positive integer",
                )? as u64,
                upload_url: url.trim().to_owned(),
            }),
            _ => {
                return Err(invalid(
                    "`liveId` and `uploadUrl` go together: give both or neither",
                ))
            }
        };
        let timeslice_ms = match self.timeslice_ms {
            None => 1_000,
            Some(ms) => whole(
                ms,
                100.0,
                60_000.0,
                "`timesliceMs` must be a whole number from 100 to 60000",
            )? as u32,
        };
        let keyframe_interval_ms = match self.keyframe_interval_ms {
            None => Some(1_000),
            Some(ms) => Some(whole(
                ms,
                1.0,
                600_000.0,
                "`keyframeIntervalMs` must be a whole number from 1 to 600000",
            )? as u32),
        };
        let video_bits_per_second = match self.video_bits_per_second {
            None => None,
            Some(bps) => Some(whole(
                bps,
                1.0,
                f64::from(u32::MAX),
                "`videoBitsPerSecond` must be a positive whole number",
            )? as u32),
        };
        let mime_type = match self.mime_type {
            Some(mime) if mime.trim().is_empty() => {
                return Err(invalid("`mimeType` must not be empty"))
            }
            other => other,
        };
        let format = match (self.prefer_universal_mp4, &mime_type) {
            (Some(true), Some(_)) => {
                return Err(invalid(
                    "give `mimeType` or `preferUniversalMp4`, not both: a forced type is recorded as is",
                ))
            }
            (Some(true), None) => FormatPreference::UniversalMp4,
            _ => FormatPreference::Default,
        };
        let journal = match self.journal.as_deref() {
            None => JournalKind::Auto,
            Some(text) => JournalKind::parse(text).ok_or_else(|| {
                invalid("`journal` must be \"auto\", \"opfs\", \"indexeddb\" or \"off\"")
            })?,
        };
        let recording_title = match self.recording_title {
            None => None,
            Some(title) => Some(recording_title(&title)?),
        };
        Ok(LiveOptions {
            api_base,
            title: self.title.unwrap_or_default(),
            recording_title,
            existing,
            recording: RecordingConfig {
                mime_type,
                format,
                timeslice_ms,
                keyframe_interval_ms,
                video_bits_per_second,
            },
            journal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_what_the_page_left_out() {
        let options = RawOptions::default().validate().expect("valid");
        assert_eq!(options.api_base, "");
        assert_eq!(options.existing, None);
        assert_eq!(options.recording, RecordingConfig::default());
        assert_eq!(options.recording.timeslice_ms, 1_000);
        assert_eq!(options.recording.keyframe_interval_ms, Some(1_000));
        assert_eq!(
            options.recording_title, None,
            "no title unless the app names it"
        );
    }

    #[test]
    fn a_recording_title_is_kept_trimmed_and_a_blank_or_overlong_one_is_refused() {
        let named = RawOptions {
            title: Some("Concert".into()),
            recording_title: Some("  Concert, the recording ".into()),
            ..RawOptions::default()
        };
        let options = named.validate().expect("valid");
        assert_eq!(options.title, "Concert");
        assert_eq!(
            options.recording_title.as_deref(),
            Some("Concert, the recording")
        );
        for bad in ["   ".to_owned(), "é".repeat(501)] {
            let raw = RawOptions {
                recording_title: Some(bad),
                ..RawOptions::default()
            };
            let err = raw.validate().expect_err("refused");
            assert_eq!(err.code(), "invalid_options");
            assert!(err.to_string().contains("`recordingTitle`"), "{err}");
        }
        let longest = RawOptions {
            recording_title: Some("é".repeat(500)),
            ..RawOptions::default()
        };
        assert!(longest.validate().is_ok(), "500 characters, not bytes");
    }

    #[test]
    fn prefer_universal_mp4_sets_the_format_preference_and_excludes_a_forced_type() {
        let universal = RawOptions {
            prefer_universal_mp4: Some(true),
            ..RawOptions::default()
        };
        assert_eq!(
            universal.validate().expect("valid").recording.format,
            FormatPreference::UniversalMp4
        );
        let off = RawOptions {
            prefer_universal_mp4: Some(false),
            mime_type: Some("video/webm".into()),
            ..RawOptions::default()
        };
        assert_eq!(
            off.validate().expect("valid").recording.format,
            FormatPreference::Default
        );
        let both = RawOptions {
            prefer_universal_mp4: Some(true),
            mime_type: Some("video/webm".into()),
            ..RawOptions::default()
        };
        let err = both.validate().expect_err("refused");
        assert!(err.to_string().contains("`preferUniversalMp4`"), "{err}");
    }

    #[test]
    fn the_journal_store_is_chosen_by_name() {
        assert_eq!(
            RawOptions::default().validate().expect("valid").journal,
            JournalKind::Auto
        );
        let idb = RawOptions {
            journal: Some("indexeddb".into()),
            ..RawOptions::default()
        };
        assert_eq!(
            idb.validate().expect("valid").journal,
            JournalKind::IndexedDb
        );
        let bad = RawOptions {
            journal: Some("disk".into()),
            ..RawOptions::default()
        };
        assert!(bad
            .validate()
            .expect_err("refused")
            .to_string()
            .contains("journal"));
    }

    #[test]
    fn the_api_base_loses_its_trailing_slash() {
        let raw = RawOptions {
            api_base: Some("http://127.0.0.1:8080/".into()),
            ..RawOptions::default()
        };
        assert_eq!(
            raw.validate().expect("valid").api_base,
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn an_existing_live_needs_both_its_id_and_upload_url() {
        let only_id = RawOptions {
            live_id: Some(3.0),
            ..RawOptions::default()
        };
        assert!(only_id.validate().is_err());
        let fractional = RawOptions {
            live_id: Some(3.5),
            upload_url: Some("/u/1".into()),
            ..RawOptions::default()
        };
        assert!(fractional.validate().is_err());
        let both = RawOptions {
            live_id: Some(3.0),
            upload_url: Some("/api/uploads/ab".into()),
            ..RawOptions::default()
        };
        assert_eq!(
            both.validate().expect("valid").existing,
            Some(ExistingLive {
                live_id: 3,
                upload_url: "/api/uploads/ab".into()
            })
        );
    }

    #[test]
    fn numbers_out_of_range_are_refused_with_their_name() {
        for raw in [
            RawOptions {
                timeslice_ms: Some(0.0),
                ..RawOptions::default()
            },
            RawOptions {
                timeslice_ms: Some(f64::NAN),
                ..RawOptions::default()
            },
            RawOptions {
                keyframe_interval_ms: Some(-5.0),
                ..RawOptions::default()
            },
            RawOptions {
                video_bits_per_second: Some(1e12),
                ..RawOptions::default()
            },
            RawOptions {
                mime_type: Some(String::new()),
                ..RawOptions::default()
            },
        ] {
            let err = raw.clone().validate().expect_err("refused");
            assert!(err.to_string().contains('`'), "names the option: {err}");
        }
        let ok = RawOptions {
            timeslice_ms: Some(250.0),
            video_bits_per_second: Some(2.5e6),
            ..RawOptions::default()
        };
        let options = ok.validate().expect("valid");
        assert_eq!(
            (
                options.recording.timeslice_ms,
                options.recording.video_bits_per_second
            ),
            (250, Some(2_500_000))
        );
    }
}
