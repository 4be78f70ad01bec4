//! Where the whole clusters of a live's upload are, learnt incrementally as bytes commit.
//!
//! A viewer's stream is the EBML header, a Segment of unknown size, Info and Tracks, then
//! raw bytes of the upload from a cluster that starts with a video keyframe up to the end
//! of the last *complete* cluster. MediaRecorder writes unknown-size clusters, so a cluster
//! is complete only once the next level-1 element has started; the upload may stop anywhere.

use std::io::{Read, Seek};

use livekeep_webm::{
    ebml::{self, read_uint, Children},
    reader::{
        is_top_level, read_head, read_master_body, skip_unknown_size, ChildKind, ClusterStep,
        ClusterWalker, Head, HeadRead,
    },
    source::Source,
};

use crate::domain::UploadId;

/// Read buffer per scan: small, as one scan runs per commit and per joining viewer.
const SCAN_BUFFER: usize = 64 << 10;
/// Largest Info or Tracks element accepted.
const MAX_METADATA: u64 = 1 << 20;
/// Bytes after which a recording still without Tracks is given up on.
const MAX_HEADER_SEARCH: u64 = 16 << 20;
/// `Segment` with an unknown size (8-byte all-ones size).
const UNKNOWN_SIZE_SEGMENT: [u8; 12] = [
    0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

/// What is known about the upload's layout so far.
#[derive(Debug, Default)]
pub struct StreamIndex {
    /// The upload described; another one starts the index over.
    upload: Option<UploadId>,
    /// Bytes of the upload already looked at (the committed offset of the last scan).
    scanned_to: u64,
    /// The stream's header, once Info and Tracks are complete.
    header: Option<Vec<u8>>,
    /// Nanoseconds per timestamp unit.
    timestamp_scale_ns: u64,
    /// The video track's number, if any.
    video_track: Option<u64>,
    /// Start of the first element not yet known to be complete.
    next: u64,
    /// Start of the latest complete cluster that begins with a video keyframe.
    keyframe_cluster: Option<u64>,
    /// Earliest and latest block timestamps seen (timestamp units).
    block_span: Option<(i64, i64)>,
    /// The bytes are not a WebM this index understands; nothing will be streamed.
    unusable: bool,
}

/// Why a scan stopped before the committed end.
enum Stop {
    /// More bytes are needed.
    Wait,
    /// The bytes cannot be streamed.
    Unusable,
}

impl StreamIndex {
    /// Starts over if the index described another upload.
    pub fn follow(&mut self, upload: &UploadId) {
        if self.upload.as_ref() != Some(upload) {
            *self = Self {
                upload: Some(upload.clone()),
                ..Self::default()
            };
        }
    }

    /// Whether the upload is known not to be a streamable WebM (MP4, garbage).
    pub fn unusable(&self) -> bool {
        self.unusable
    }

    /// The stream's header, once known.
    pub fn header(&self) -> Option<&[u8]> {
        self.header.as_deref()
    }

    /// Where a joining viewer starts: the latest complete cluster opening on a keyframe.
    pub fn start(&self) -> Option<u64> {
        self.keyframe_cluster
    }

    /// End of the last complete cluster: bytes below it may be sent.
    pub fn complete_end(&self) -> u64 {
        if self.header.is_some() {
            self.next
        } else {
            0
        }
    }

    /// Media time between the first and the last block seen, in milliseconds.
    pub fn media_span_ms(&self) -> Option<f64> {
        let (first, last) = self.block_span?;
        Some((last - first) as f64 * self.timestamp_scale_ns as f64 / 1e6)
    }

    /// Learns the layout of `input` up to `committed` bytes (blocking I/O).
    pub fn advance<R: Read + Seek>(&mut self, input: R, committed: u64) -> std::io::Result<()> {
        if self.unusable || committed <= self.scanned_to {
            return Ok(());
        }
        self.scanned_to = committed;
        let mut src = Source::new(input, SCAN_BUFFER)?;
        let result = match self.header {
            None => self.read_header(&mut src, committed),
            Some(_) => Ok(()),
        }
        .and_then(|()| self.read_clusters(&mut src, committed));
        match result {
            Ok(()) | Err(Scan::Stop(Stop::Wait)) => Ok(()),
            Err(Scan::Stop(Stop::Unusable)) => {
                self.unusable = true;
                Ok(())
            }
            Err(Scan::Io(err)) => Err(err),
        }
    }

    /// Reads the EBML header, the Segment's start, Info and Tracks.
    fn read_header<R: Read + Seek>(&mut self, src: &mut Source<R>, limit: u64) -> Result<(), Scan> {
        let ebml_head = match head_at(src, 0, limit)? {
            head if head.id == ebml::ID_EBML => head,
            _ => return Err(Scan::Stop(Stop::Unusable)),
        };
        let ebml_end = known_end(&ebml_head, limit)?;
        src.seek_to(0)?;
        let mut header = src.read_vec(ebml_end as usize)?;
        if !livekeep_webm::sniff(&header).is_some_and(|c| c == livekeep_webm::Container::WebM) {
            return Err(Scan::Stop(Stop::Unusable));
        }
        let segment = head_at(src, ebml_end, limit)?;
        if segment.id != ebml::ID_SEGMENT {
            return Err(Scan::Stop(Stop::Unusable));
        }
        header.extend_from_slice(&UNKNOWN_SIZE_SEGMENT);
        let mut pos = segment.data_start();
        let (mut info, mut tracks) = (false, false);
        loop {
            if pos > MAX_HEADER_SEARCH {
                return Err(Scan::Stop(Stop::Unusable));
            }
            let head = head_at(src, pos, limit)?;
            match head.id {
                ebml::ID_CLUSTER if info && tracks => break,
                ebml::ID_CLUSTER => return Err(Scan::Stop(Stop::Unusable)),
                ebml::ID_INFO | ebml::ID_TRACKS => {
                    let (body, end) = read_master_body(src, &head, limit, MAX_METADATA)?
                        .ok_or(Scan::Stop(Stop::Wait))?;
                    ebml::write_header(&mut header, head.id, body.len() as u64);
                    header.extend_from_slice(&body);
                    if head.id == ebml::ID_INFO {
                        info = true;
                        self.timestamp_scale_ns = timestamp_scale(&body);
                    } else {
                        tracks = true;
                        self.video_track = video_track(&body);
                    }
                    pos = end;
                }
                _ if is_top_level(head.id) && head.size.is_none() => {
                    pos = skip_unknown_size(src, &head, limit)?.ok_or(Scan::Stop(Stop::Wait))?;
                }
                _ => pos = known_end(&head, limit)?,
            }
        }
        self.header = Some(header);
        self.next = pos;
        Ok(())
    }

    /// Walks clusters from the first one not known complete.
    fn read_clusters<R: Read + Seek>(
        &mut self,
        src: &mut Source<R>,
        limit: u64,
    ) -> Result<(), Scan> {
        loop {
            let head = head_at(src, self.next, limit)?;
            match head.id {
                ebml::ID_CLUSTER => {
                    let (end, keyframe) = self.read_cluster(src, &head, limit)?;
                    if keyframe {
                        self.keyframe_cluster = Some(head.start);
                    }
                    self.next = end;
                }
                ebml::ID_EBML | ebml::ID_SEGMENT => return Err(Scan::Stop(Stop::Unusable)),
                // Void or Tags between clusters: sent along, they are harmless.
                _ if head.size.is_some() => self.next = known_end(&head, limit)?,
                _ => {
                    self.next =
                        skip_unknown_size(src, &head, limit)?.ok_or(Scan::Stop(Stop::Wait))?
                }
            }
        }
    }

    /// Reads one cluster: its end if complete, and whether its first video block is a keyframe.
    ///
    /// Block timestamps are recorded even when the cluster is still incomplete.
    fn read_cluster<R: Read + Seek>(
        &mut self,
        src: &mut Source<R>,
        head: &Head,
        limit: u64,
    ) -> Result<(u64, bool), Scan> {
        let declared_end = head.end();
        let walk_limit = declared_end.map_or(limit, |end| end.min(limit));
        let mut walker = ClusterWalker::new(head.data_start(), walk_limit, declared_end.is_some());
        let mut cluster_ts: i64 = 0;
        let mut keyframe = self.video_track.is_none();
        let mut seen_video = false;
        loop {
            match walker.next(src)? {
                ClusterStep::Child(child) => match child.kind {
                    ChildKind::Timestamp(ts) => cluster_ts = i64::try_from(ts).unwrap_or(0),
                    ChildKind::Block(block) => {
                        let ts = cluster_ts + i64::from(block.header.relative_ts);
                        self.block_span = Some(match self.block_span {
                            Some((first, last)) => (first.min(ts), last.max(ts)),
                            None => (ts, ts),
                        });
                        if Some(block.header.track) == self.video_track && !seen_video {
                            seen_video = true;
                            keyframe = block.keyframe;
                        }
                    }
                    _ => {}
                },
                // Ending exactly at the committed offset proves nothing: more may follow.
                ClusterStep::End(end) if declared_end == Some(end) || end < limit => {
                    return Ok((end, keyframe));
                }
                ClusterStep::End(_) | ClusterStep::Broken(_) => return Err(Scan::Stop(Stop::Wait)),
            }
        }
    }
}

/// A scan's way out: stop (wait or give up) or an I/O failure.
enum Scan {
    Stop(Stop),
    Io(std::io::Error),
}

impl From<std::io::Error> for Scan {
    fn from(err: std::io::Error) -> Self {
        Self::Io(err)
    }
}

/// The element header at `pos`, waiting for more bytes when it is not all there.
fn head_at<R: Read + Seek>(src: &mut Source<R>, pos: u64, limit: u64) -> Result<Head, Scan> {
    src.seek_to(pos)?;
    match read_head(src, limit)? {
        HeadRead::Head(head) => Ok(head),
        HeadRead::End => Err(Scan::Stop(Stop::Wait)),
        HeadRead::Invalid => Err(Scan::Stop(Stop::Unusable)),
    }
}

/// The end of a known-size element that lies within `limit`, else wait (or give up if unknown).
fn known_end(head: &Head, limit: u64) -> Result<u64, Scan> {
    match head.end() {
        Some(end) if end <= limit => Ok(end),
        Some(_) => Err(Scan::Stop(Stop::Wait)),
        None => Err(Scan::Stop(Stop::Unusable)),
    }
}

fn timestamp_scale(info: &[u8]) -> u64 {
    Children::new(info)
        .find(|child| child.id == ebml::ID_TIMESTAMPSCALE)
        .and_then(|child| read_uint(child.data))
        .filter(|&scale| scale > 0)
        .unwrap_or(1_000_000)
}

fn video_track(tracks: &[u8]) -> Option<u64> {
    Children::new(tracks)
        .filter(|child| child.id == ebml::ID_TRACKENTRY)
        .find_map(|entry| {
            let mut number = None;
            let mut video = false;
            for field in Children::new(entry.data) {
                match field.id {
                    ebml::ID_TRACKNUMBER => number = read_uint(field.data),
                    ebml::ID_TRACKTYPE => video = read_uint(field.data) == Some(1),
                    _ => {}
                }
            }
            number.filter(|_| video)
        })
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn fixture() -> Vec<u8> {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/live.webm");
        std::fs::read(path).unwrap()
    }

    fn cluster_starts(bytes: &[u8]) -> Vec<u64> {
        bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == [0x1F, 0x43, 0xB6, 0x75])
            .map(|(i, _)| i as u64)
            .collect()
    }

    #[test]
    fn clusters_become_complete_only_when_the_next_one_starts_or_their_size_is_reached() {
        let bytes = fixture();
        let clusters = cluster_starts(&bytes);
        assert!(clusters.len() >= 3, "{clusters:?}");
        let mut index = StreamIndex::default();
        // Header only: no cluster yet.
        index.advance(Cursor::new(&bytes), clusters[0]).unwrap();
        assert!(
            index.header().is_none(),
            "Tracks end where the first cluster starts"
        );
        index
            .advance(Cursor::new(&bytes), clusters[0] + 10)
            .unwrap();
        let header = index.header().expect("a header").to_vec();
        assert_eq!(&header[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        assert_eq!(index.start(), None);
        // The first cluster and a bit of the second.
        index
            .advance(Cursor::new(&bytes), clusters[1] + 100)
            .unwrap();
        assert_eq!(index.complete_end(), clusters[1]);
        assert_eq!(index.start(), Some(clusters[0]));
        // ffmpeg closes its clusters with a size: the last one is complete at the end. It holds
        // only the last audio packets, so viewers start at the one before.
        index
            .advance(Cursor::new(&bytes), bytes.len() as u64)
            .unwrap();
        assert_eq!(index.complete_end(), bytes.len() as u64);
        assert_eq!(index.start(), Some(clusters[2]));
        let span = index.media_span_ms().unwrap();
        assert!((2800.0..3100.0).contains(&span), "{span}");
    }

    fn chromium_fixture() -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../webm/tests/fixtures/chromium-vp8-kf1s.webm");
        std::fs::read(path).unwrap()
    }

    fn ffmpeg_errors(stream: &[u8]) -> String {
        let mut probe = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i", "-", "-f", "null", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ffmpeg is needed for this test");
        std::io::Write::write_all(probe.stdin.as_mut().unwrap(), stream).unwrap();
        let out = probe.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    #[test]
    fn chromium_clusters_without_size_complete_when_the_next_begins_whatever_the_chunking() {
        let bytes = chromium_fixture();
        let clusters = cluster_starts(&bytes);
        let mut index = StreamIndex::default();
        let mut previous_end = 0;
        for committed in (0..=bytes.len() as u64).step_by(997) {
            index.advance(Cursor::new(&bytes), committed).unwrap();
            let end = index.complete_end();
            assert!(end >= previous_end && end <= committed);
            assert!(
                end == 0 || clusters.contains(&end),
                "{end} is not a cluster start"
            );
            previous_end = end;
        }
        index
            .advance(Cursor::new(&bytes), bytes.len() as u64)
            .unwrap();
        // Nothing follows the last cluster yet: it may still grow.
        assert_eq!(index.complete_end(), *clusters.last().unwrap());
        let start = index.start().unwrap();
        assert!(clusters.contains(&start) && start >= clusters[clusters.len() / 2]);
        let mut stream = index.header().unwrap().to_vec();
        stream.extend_from_slice(&bytes[start as usize..index.complete_end() as usize]);
        assert_eq!(ffmpeg_errors(&stream), "");
    }

    #[test]
    fn the_header_and_a_cluster_make_a_webm_ffmpeg_decodes() {
        let bytes = fixture();
        let clusters = cluster_starts(&bytes);
        let mut index = StreamIndex::default();
        index
            .advance(Cursor::new(&bytes), bytes.len() as u64)
            .unwrap();
        let mut stream = index.header().unwrap().to_vec();
        stream.extend_from_slice(&bytes[clusters[1] as usize..index.complete_end() as usize]);
        assert_eq!(ffmpeg_errors(&stream), "");
    }

    #[test]
    fn mp4_and_text_are_unusable() {
        let mut index = StreamIndex::default();
        index
            .advance(Cursor::new(b"\0\0\0\x20ftypisom\0\0\0\0".to_vec()), 16)
            .unwrap();
        assert!(index.unusable());
        let mut index = StreamIndex::default();
        index
            .advance(Cursor::new(b"hello world, not a video".to_vec()), 24)
            .unwrap();
        assert!(index.unusable());
    }
}
