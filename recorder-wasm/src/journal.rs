//! The local journal: every chunk is written to the browser's Origin Private File System
//! before it is sent and deleted once the server acknowledged it, so a tab closed during an
//! offline spell loses nothing once the user comes back.
//!
//! Layout: `livekeep-journal/<live_id>/manifest.json` plus one `<offset>.chunk` file per
//! chunk (offset as 16 hex digits, so names sort by offset). The manifest holds no token.
//! Its SHA-256 state covers exactly the bytes below `acked`; it is rewritten before the
//! chunk files below `acked` are deleted, so the journal plus the server always hold every
//! byte and the hash of the whole recording can still be finished.

use serde::{Deserialize, Serialize};

use crate::hash::ResumableSha256;
use crate::tus::UploadQueue;

/// The OPFS directory that holds one sub-directory per unfinished live.
pub const JOURNAL_DIR: &str = "livekeep-journal";
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";
const CHUNK_SUFFIX: &str = ".chunk";

/// What a later page needs to finish an upload (never the token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this manifest.
    pub version: u32,
    /// The live (Post) id.
    pub live_id: u64,
    /// Absolute tus upload URL.
    pub upload_url: String,
    /// The API base the live belongs to (empty: the page's origin).
    pub api_base: String,
    /// MIME type as recorded.
    pub mime_type: String,
    /// The recording's title the app gave (`recordingTitle`), sent again by `resumePending`.
    /// Manifests written before it existed held the live's own text as `title`: ignored, so
    /// such a live gets the server's default title, as every live without `recordingTitle`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recording_title: Option<String>,
    /// Recorded milliseconds at the last checkpoint.
    pub duration_ms: f64,
    /// Bytes the server had acknowledged at the last checkpoint.
    pub acked: u64,
    /// [`ResumableSha256`] state over the first `acked` bytes.
    pub hash_state: String,
    /// True once MediaRecorder stopped: the journal holds the whole tail.
    pub finished: bool,
}

impl Manifest {
    /// The current manifest format.
    pub const VERSION: u32 = 1;
}

/// The file name of the chunk starting at `offset`.
pub fn chunk_file_name(offset: u64) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut name: String = (0..16)
        .rev()
        .map(|i| DIGITS[((offset >> (i * 4)) & 0xf) as usize] as char)
        .collect();
    name.push_str(CHUNK_SUFFIX);
    name
}

/// The offset of a chunk file, or `None` for any other file.
pub fn parse_chunk_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(CHUNK_SUFFIX)?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// Rebuilds the upload queue of a journal: the bytes after `acked_hash` from the chunk
/// files (sorted by offset). Chunks wholly below the acknowledged offset are returned as
/// stale (to delete); reading stops at the first gap, since bytes after a hole cannot be
/// appended to the upload.
pub fn rebuild_queue(
    acked_hash: ResumableSha256,
    mut chunks: Vec<(u64, Vec<u8>)>,
) -> (UploadQueue, Vec<u64>) {
    chunks.sort_by_key(|(offset, _)| *offset);
    let mut queue = UploadQueue::resuming(acked_hash);
    let mut stale = Vec::new();
    for (offset, bytes) in chunks {
        let end = offset + bytes.len() as u64;
        if end <= queue.acked() {
            stale.push(offset);
            continue;
        }
        if offset > queue.end() {
            break;
        }
        // `queue.end() - offset < bytes.len()` because `end > queue.end()` or the chunk overlaps.
        let skip = usize::try_from(queue.end() - offset).unwrap_or(usize::MAX);
        if let Some(tail) = bytes.get(skip..) {
            queue.push_ready(tail.to_vec());
        }
    }
    queue.finish();
    (queue, stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_of(bytes: &[u8]) -> ResumableSha256 {
        let mut hash = ResumableSha256::new();
        hash.update(bytes);
        hash
    }

    #[test]
    fn chunk_names_sort_by_offset_and_parse_back() {
        assert_eq!(chunk_file_name(0), "0000000000000000.chunk");
        assert_eq!(chunk_file_name(0x1f2e), "0000000000001f2e.chunk");
        assert!(chunk_file_name(9) < chunk_file_name(10));
        assert_eq!(
            parse_chunk_file_name(&chunk_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_chunk_file_name(MANIFEST_FILE), None);
        assert_eq!(parse_chunk_file_name("12.chunk"), None);
    }

    #[test]
    fn a_journal_rebuilds_the_unacknowledged_tail_and_the_whole_hash() {
        let chunks = vec![
            (6, b"ghi".to_vec()),
            (0, b"abc".to_vec()),
            (3, b"def".to_vec()),
        ];
        let (mut queue, stale) = rebuild_queue(hash_of(b"abcd"), chunks);
        assert_eq!(stale, [0], "the chunk wholly acknowledged is stale");
        let plan = queue.next_patch(100).expect("the tail");
        assert_eq!(
            (plan.offset, plan.body.as_slice(), plan.upload_length),
            (4, &b"efghi"[..], Some(9))
        );
        queue.accepted(&plan, Some(9)).expect("in sync");
        assert_eq!(
            queue.acked_hash().hex_digest(),
            hash_of(b"abcdefghi").hex_digest()
        );
    }

    #[test]
    fn reading_stops_at_a_gap() {
        let chunks = vec![(0, b"abc".to_vec()), (5, b"fg".to_vec())];
        let (queue, _) = rebuild_queue(ResumableSha256::new(), chunks);
        assert_eq!(queue.end(), 3);
    }

    #[test]
    fn a_fully_acknowledged_journal_only_declares_the_length() {
        let (queue, stale) = rebuild_queue(hash_of(b"abc"), vec![(0, b"abc".to_vec())]);
        assert_eq!(stale, [0]);
        let plan = queue.next_patch(100).expect("length");
        assert_eq!(
            (plan.offset, plan.body.len(), plan.upload_length),
            (3, 0, Some(3))
        );
    }

    #[test]
    fn a_manifest_from_before_recording_titles_resumes_without_a_title() {
        // Version 1 as written before `recordingTitle`: `title` held the live's own text.
        let json = r#"{"version":1,"live_id":7,"upload_url":"http://h/api/uploads/ab12",
            "api_base":"","mime_type":"video/webm","title":"Concert","duration_ms":1500.0,
            "acked":0,"hash_state":"","finished":true}"#;
        let manifest: Manifest = serde_json::from_str(json).expect("still readable");
        assert_eq!(manifest.version, Manifest::VERSION, "and still resumed");
        assert_eq!(manifest.recording_title, None);
        let untitled = Manifest {
            recording_title: None,
            ..manifest
        };
        let json = serde_json::to_string(&untitled).expect("serialisable");
        assert!(!json.contains("title"), "{json}");
    }

    #[test]
    fn the_manifest_round_trips_and_holds_no_token() {
        let manifest = Manifest {
            version: Manifest::VERSION,
            live_id: 7,
            upload_url: "http://127.0.0.1:8080/api/uploads/ab12".into(),
            api_base: String::new(),
            mime_type: "video/webm;codecs=vp8,opus".into(),
            recording_title: Some("Concert, the recording".into()),
            duration_ms: 1_500.0,
            acked: 3,
            hash_state: hash_of(b"abc").save(),
            finished: false,
        };
        let json = serde_json::to_string(&manifest).expect("serialisable");
        assert!(!json.to_lowercase().contains("token"));
        assert_eq!(
            serde_json::from_str::<Manifest>(&json).expect("parsable"),
            manifest
        );
    }
}
