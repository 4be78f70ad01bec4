//! tus 1.0 bookkeeping, free of any I/O: which bytes to PATCH next, what an answer means,
//! and how to resynchronise with the server's offset.
//!
//! The invariant: bytes below `acked` are on the server and forgotten here; bytes from
//! `acked` to `end` are held in order. Every PATCH starts at `acked`, so after any doubt
//! (409, timeout, 5xx) a HEAD tells the true offset and the next PATCH starts exactly there:
//! no byte is written twice and none is skipped.

use std::collections::VecDeque;

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::error::RecorderError;
use crate::hash::ResumableSha256;

/// The protocol version header's value.
pub const TUS_VERSION: &str = "1.0.0";
/// The content type of a PATCH body.
pub const PATCH_CONTENT_TYPE: &str = "application/offset+octet-stream";

/// One PATCH to send.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPlan {
    /// `Upload-Offset`: where the body starts in the upload.
    pub offset: u64,
    /// The bytes, possibly several chunks coalesced after an outage.
    pub body: Vec<u8>,
    /// `Upload-Length`, sent once the recording has ended and the length is known.
    pub upload_length: Option<u64>,
}

impl PatchPlan {
    /// The offset the server should answer with when it accepts this PATCH.
    pub fn expected_offset(&self) -> u64 {
        self.offset + self.body.len() as u64
    }

    /// `Upload-Checksum` for the body, so a chunk damaged in transit is refused (460), not stored.
    pub fn checksum_header(&self) -> String {
        let mut header = String::from("sha256 ");
        header.push_str(
            &base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&self.body)),
        );
        header
    }
}

/// How the uploader reacts to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx: done.
    Success,
    /// 409: our offset is wrong; ask the server (HEAD) and resend from its offset.
    Conflict,
    /// Worth retrying after a delay (5xx, 423, 429, 460, ...).
    Retry,
    /// Retrying cannot help (401, 403, 404, 410, 413, ...).
    Fatal,
}

/// Classifies a status code for the upload loop.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        409 => StatusClass::Conflict,
        _ if (RecorderError::Http {
            status,
            message: String::new(),
        })
        .is_retryable() =>
        {
            StatusClass::Retry
        }
        _ => StatusClass::Fatal,
    }
}

/// Parses an `Upload-Offset` / `Upload-Length` header value.
pub fn parse_offset(value: Option<&str>) -> Option<u64> {
    value?.trim().parse().ok()
}

/// The upload id: the last path segment of the upload URL (ids are hex strings).
pub fn upload_id_from_url(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(path)
}

/// The bytes of one upload that the server has not acknowledged yet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadQueue {
    acked: u64,
    acked_hash: ResumableSha256,
    end: u64,
    ready_end: u64,
    pending: VecDeque<(u64, Vec<u8>)>,
    finished: bool,
    length_sent: bool,
}

impl UploadQueue {
    /// An empty upload starting at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// An upload whose first bytes are already on the server (a resumed journal); `acked_hash`
    /// is the SHA-256 state over exactly those bytes.
    pub fn resuming(acked_hash: ResumableSha256) -> Self {
        let acked = acked_hash.length();
        Self {
            acked,
            acked_hash,
            end: acked,
            ready_end: acked,
            ..Self::default()
        }
    }

    /// Appends the next chunk; it may be sent once [`mark_ready`](Self::mark_ready) covers it.
    pub fn push(&mut self, chunk: Vec<u8>) {
        if chunk.is_empty() {
            return;
        }
        let start = self.end;
        self.end += chunk.len() as u64;
        self.pending.push_back((start, chunk));
    }

    /// Appends a chunk that may be sent at once (no journal in front of it).
    pub fn push_ready(&mut self, chunk: Vec<u8>) {
        self.push(chunk);
        self.ready_end = self.end;
    }

    /// Bytes up to `offset` are safe in the local journal and may be sent.
    pub fn mark_ready(&mut self, offset: u64) {
        self.ready_end = self.ready_end.max(offset.min(self.end));
    }

    /// No more chunks will come: the next PATCH carries `Upload-Length`.
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Bytes the server has acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The SHA-256 state over the acknowledged bytes: saved in the journal so a resumed upload
    /// can still report the hash of the whole recording.
    pub fn acked_hash(&self) -> &ResumableSha256 {
        &self.acked_hash
    }

    /// True once no more chunks will come.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes pushed so far, acknowledged or not.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Bytes held in memory, waiting for an acknowledgement.
    pub fn buffered(&self) -> u64 {
        self.end - self.acked
    }

    /// True when every byte is acknowledged and the server knows the final length.
    pub fn is_complete(&self) -> bool {
        self.finished && self.length_sent && self.acked == self.end
    }

    /// The next PATCH: the ready bytes from the acknowledged offset (at most `max_body`),
    /// or a bodiless PATCH declaring the length once everything else is acknowledged.
    pub fn next_patch(&self, max_body: usize) -> Option<PatchPlan> {
        let sendable = self.ready_end.min(self.end).saturating_sub(self.acked);
        let limit = usize::try_from(sendable)
            .unwrap_or(usize::MAX)
            .min(max_body.max(1));
        let mut body = Vec::with_capacity(limit);
        for (start, chunk) in &self.pending {
            if body.len() >= limit {
                break;
            }
            let skip = usize::try_from(self.acked.saturating_sub(*start)).unwrap_or(usize::MAX);
            if skip >= chunk.len() {
                continue;
            }
            let take = (chunk.len() - skip).min(limit - body.len());
            body.extend_from_slice(&chunk[skip..skip + take]);
        }
        let reaches_end = self.acked + body.len() as u64 == self.end;
        let upload_length = (self.finished && !self.length_sent && reaches_end).then_some(self.end);
        if body.is_empty() && upload_length.is_none() {
            return None;
        }
        Some(PatchPlan {
            offset: self.acked,
            body,
            upload_length,
        })
    }

    /// The server accepted `plan` and answered with `server_offset` (`Upload-Offset`).
    pub fn accepted(
        &mut self,
        plan: &PatchPlan,
        server_offset: Option<u64>,
    ) -> Result<(), RecorderError> {
        self.resync(
            server_offset.unwrap_or_else(|| plan.expected_offset()),
            plan.upload_length,
        )
    }

    /// Adopts the server's view after a HEAD (or a PATCH answer): its offset, and its
    /// `Upload-Length` if it already has one. Forgets every byte below the offset.
    pub fn resync(
        &mut self,
        server_offset: u64,
        server_length: Option<u64>,
    ) -> Result<(), RecorderError> {
        if server_offset < self.acked {
            return Err(RecorderError::Protocol(describe(
                "the server lost acknowledged bytes: it holds",
                server_offset,
                "but had acknowledged",
                self.acked,
            )));
        }
        if server_offset > self.end {
            return Err(RecorderError::Protocol(describe(
                "the server holds",
                server_offset,
                "bytes but only this many were recorded:",
                self.end,
            )));
        }
        if let Some(length) = server_length {
            if self.finished && length != self.end {
                return Err(RecorderError::Protocol(describe(
                    "the server expects a length of",
                    length,
                    "but the recording has",
                    self.end,
                )));
            }
            self.length_sent = true;
        }
        while let Some((start, chunk)) = self.pending.front_mut() {
            let chunk_end = *start + chunk.len() as u64;
            if chunk_end <= server_offset {
                let skip = usize::try_from(self.acked.saturating_sub(*start)).unwrap_or(usize::MAX);
                self.acked_hash
                    .update(chunk.get(skip..).unwrap_or_default());
                self.pending.pop_front();
            } else {
                if *start < server_offset {
                    // `server_offset - start < chunk.len()`, which is a usize.
                    let cut = (server_offset - *start) as usize;
                    let skip =
                        usize::try_from(self.acked.saturating_sub(*start)).unwrap_or(usize::MAX);
                    self.acked_hash
                        .update(chunk.get(skip..cut).unwrap_or_default());
                    chunk.drain(..cut);
                    *start = server_offset;
                }
                break;
            }
        }
        self.acked = server_offset;
        self.ready_end = self.ready_end.max(server_offset);
        Ok(())
    }
}

fn describe(before: &str, a: u64, middle: &str, b: u64) -> String {
    let mut text = String::from(before);
    for part in [" ", &a.to_string(), " ", middle, " ", &b.to_string()] {
        text.push_str(part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue_with(chunks: &[&[u8]]) -> UploadQueue {
        let mut queue = UploadQueue::new();
        for chunk in chunks {
            queue.push_ready(chunk.to_vec());
        }
        queue
    }

    #[test]
    fn chunks_are_sent_in_order_from_the_acknowledged_offset() {
        let mut queue = queue_with(&[b"abc", b"de"]);
        let plan = queue.next_patch(1 << 20).expect("bytes to send");
        assert_eq!(
            (plan.offset, plan.body.as_slice(), plan.upload_length),
            (0, &b"abcde"[..], None)
        );
        queue.accepted(&plan, Some(5)).expect("in sync");
        assert_eq!((queue.acked(), queue.buffered()), (5, 0));
        assert_eq!(
            queue.next_patch(1 << 20),
            None,
            "nothing left while recording"
        );
    }

    #[test]
    fn a_patch_body_is_limited_and_can_split_a_chunk() {
        let mut queue = queue_with(&[b"abcd", b"efgh"]);
        let first = queue.next_patch(6).expect("bytes");
        assert_eq!(first.body, b"abcdef");
        queue.accepted(&first, Some(6)).expect("in sync");
        let second = queue.next_patch(6).expect("bytes");
        assert_eq!((second.offset, second.body.as_slice()), (6, &b"gh"[..]));
    }

    #[test]
    fn only_journaled_bytes_are_sent() {
        let mut queue = UploadQueue::new();
        queue.push(b"abc".to_vec());
        queue.push(b"def".to_vec());
        assert_eq!(queue.next_patch(100), None);
        queue.mark_ready(3);
        assert_eq!(queue.next_patch(100).map(|p| p.body), Some(b"abc".to_vec()));
    }

    #[test]
    fn a_conflict_resyncs_to_the_server_offset_without_resending_or_skipping() {
        // The PATCH reached the server but its answer was lost: the server has 4 bytes.
        let mut queue = queue_with(&[b"abc", b"def"]);
        queue.resync(4, None).expect("offset within what we hold");
        let plan = queue.next_patch(100).expect("the rest");
        assert_eq!((plan.offset, plan.body.as_slice()), (4, &b"ef"[..]));
        assert_eq!(queue.buffered(), 2);
    }

    #[test]
    fn a_server_behind_its_acknowledgements_is_a_protocol_error() {
        let mut queue = queue_with(&[b"abcdef"]);
        queue.resync(4, None).expect("forward is fine");
        let err = queue.resync(2, None).expect_err("backwards");
        assert_eq!(err.code(), "upload_protocol");
        assert!(queue.resync(7, None).is_err(), "ahead of what was recorded");
        assert_eq!(queue.acked(), 4, "a failed resync changes nothing");
    }

    #[test]
    fn the_final_length_rides_on_the_last_patch() {
        let mut queue = queue_with(&[b"abc"]);
        queue.finish();
        let plan = queue.next_patch(100).expect("last bytes");
        assert_eq!(plan.upload_length, Some(3));
        assert!(!queue.is_complete());
        queue.accepted(&plan, Some(3)).expect("in sync");
        assert!(queue.is_complete());
        assert_eq!(queue.next_patch(100), None);
    }

    #[test]
    fn a_length_only_patch_is_sent_when_everything_was_already_acknowledged() {
        let mut queue = queue_with(&[b"abc"]);
        let plan = queue.next_patch(100).expect("bytes");
        queue.accepted(&plan, Some(3)).expect("in sync");
        queue.finish();
        let plan = queue.next_patch(100).expect("length declaration");
        assert_eq!(
            (plan.offset, plan.body.len(), plan.upload_length),
            (3, 0, Some(3))
        );
        queue.accepted(&plan, Some(3)).expect("in sync");
        assert!(queue.is_complete());
    }

    #[test]
    fn a_length_the_server_already_knows_is_not_sent_twice() {
        let mut queue = queue_with(&[b"abc"]);
        queue.finish();
        queue.resync(3, Some(3)).expect("HEAD after a lost answer");
        assert!(queue.is_complete());
        assert_eq!(queue.next_patch(100), None);
        assert!(
            queue.resync(3, Some(4)).is_err(),
            "a different length is a protocol error"
        );
    }

    #[test]
    fn an_empty_recording_still_declares_its_length() {
        let mut queue = UploadQueue::new();
        queue.finish();
        let plan = queue.next_patch(100).expect("length declaration");
        assert_eq!(
            (plan.offset, plan.body.len(), plan.upload_length),
            (0, 0, Some(0))
        );
    }

    #[test]
    fn a_resumed_upload_starts_at_its_acknowledged_offset() {
        let mut hash = ResumableSha256::new();
        hash.update(b"0123456789");
        let mut queue = UploadQueue::resuming(hash);
        queue.push_ready(b"xyz".to_vec());
        let plan = queue.next_patch(100).expect("bytes");
        assert_eq!((plan.offset, plan.expected_offset()), (10, 13));
        queue.accepted(&plan, Some(13)).expect("in sync");
        let mut whole = ResumableSha256::new();
        whole.update(b"0123456789xyz");
        assert_eq!(queue.acked_hash().hex_digest(), whole.hex_digest());
    }

    #[test]
    fn the_acknowledged_hash_covers_exactly_the_acknowledged_bytes() {
        let mut queue = queue_with(&[b"abcd", b"efgh", b"ij"]);
        let hash_of = |bytes: &[u8]| {
            let mut h = ResumableSha256::new();
            h.update(bytes);
            h
        };
        queue.resync(2, None).expect("partial first chunk");
        assert_eq!(queue.acked_hash(), &hash_of(b"ab"));
        queue.resync(6, None).expect("into the second chunk");
        assert_eq!(queue.acked_hash(), &hash_of(b"abcdef"));
        queue.resync(10, None).expect("everything");
        assert_eq!(queue.acked_hash(), &hash_of(b"abcdefghij"));
        assert_eq!(queue.buffered(), 0);
    }

    #[test]
    fn statuses_are_classified_for_the_upload_loop() {
        assert_eq!(classify_status(204), StatusClass::Success);
        assert_eq!(classify_status(409), StatusClass::Conflict);
        assert_eq!(classify_status(503), StatusClass::Retry);
        assert_eq!(classify_status(460), StatusClass::Retry);
        assert_eq!(classify_status(401), StatusClass::Fatal);
        assert_eq!(classify_status(410), StatusClass::Fatal);
    }

    #[test]
    fn headers_parse_and_the_checksum_is_base64_sha256() {
        assert_eq!(parse_offset(Some(" 42 ")), Some(42));
        assert_eq!(parse_offset(Some("-1")), None);
        assert_eq!(parse_offset(None), None);
        let plan = PatchPlan {
            offset: 0,
            body: b"abc".to_vec(),
            upload_length: None,
        };
        assert_eq!(
            plan.checksum_header(),
            "sha256 ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    #[test]
    fn the_upload_id_is_the_last_path_segment() {
        assert_eq!(upload_id_from_url("/api/uploads/9f3a"), "9f3a");
        assert_eq!(
            upload_id_from_url("http://h:8080/api/uploads/9f3a/?x=1"),
            "9f3a"
        );
    }
}
