//! What the live stream needs of an upload's index, as of its committed bytes: the header a
//! viewer gets first, where whole clusters (WebM) or fragments (MP4) are, which open on a
//! keyframe, and their times.
//!
//! The index may have seen bytes past the committed offset (a PATCH being written): only
//! units whose bytes are all committed count. An unknown-size cluster is whole once the next
//! element has started, so it must end before the committed offset; a fragment is whole once
//! its sample data is in.

use livekeep_webm::{
    ebml,
    mp4::{BaseOffset, Fragment, Mp4Index, Mp4Status},
    webm_index::{ClusterEntry, WebmIndex, WebmStatus},
    Container,
};

use crate::indexing::{ContainerIndex, UploadIndex};

/// `Segment` with an unknown size (8-byte all-ones size): the stream never ends in advance.
const UNKNOWN_SIZE_SEGMENT: [u8; 12] = [
    0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
];

/// When a unit's media starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitTime {
    /// A cluster's Timestamp (timestamp units).
    Cluster(i64),
    /// A fragment's decode time per track: (track_ID, decode time in its timescale).
    Fragment(Vec<(u32, u64)>),
}

/// A whole cluster or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// Upload offset of its first byte.
    pub offset: u64,
    /// When its media starts.
    pub time: UnitTime,
    /// Absolute tfhd base offsets inside it, which move with it (MP4 without default-base-is-moof).
    pub base_offsets: Vec<BaseOffset>,
}

/// The stream's view of the upload at one position; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct StreamView {
    /// The container, once the first bytes said.
    pub container: Option<Container>,
    /// What a viewer gets first (WebM: EBML header, Segment, Info, Tracks; MP4: ftyp and
    /// moov), when asked for and known.
    pub header: Option<Vec<u8>>,
    /// Where a joining viewer starts: the latest whole unit that opens on a keyframe.
    pub start: Option<u64>,
    /// End of the last whole unit: bytes below it may be sent.
    pub complete_end: u64,
    /// The upload cannot be streamed (see [`unusable`]).
    pub unusable: bool,
    /// Media time covered by the committed bytes, in milliseconds.
    pub media_span_ms: Option<f64>,
    /// The whole unit starting exactly at the position asked about, if any.
    pub unit_at: Option<Unit>,
    /// Where the unit holding the position asked about ends.
    pub boundary_after: u64,
    /// How far behind the latest committed media `unit_at` is, in milliseconds.
    pub behind_ms: Option<f64>,
    /// The latest whole unit that opens on a keyframe.
    pub latest_keyframe: Option<Unit>,
    /// Each MP4 track's (track_ID, timescale), to convert a time shift between tracks.
    pub timescales: Vec<(u32, u32)>,
}

/// Whether an upload indexed so far can never be streamed: neither container, a WebM or MP4
/// the index refused, or a progressive MP4 (its samples are described in a moov written at
/// the end, so nothing plays before the whole file is there).
pub fn unusable(index: &UploadIndex) -> bool {
    match index.index() {
        ContainerIndex::Sniffing(_) => false,
        ContainerIndex::Refused(_) => true,
        ContainerIndex::WebM(webm) => matches!(webm.status(), WebmStatus::Refused(_)),
        ContainerIndex::Mp4(mp4) => matches!(
            mp4.status(),
            Mp4Status::Refused(_) | Mp4Status::NotFragmented
        ),
    }
}

/// The view of `index` over its first `committed` bytes, at stream position `at`.
pub fn view(index: &UploadIndex, committed: u64, at: u64, with_header: bool) -> StreamView {
    let mut view = StreamView {
        container: index.container(),
        unusable: unusable(index),
        ..StreamView::default()
    };
    if view.unusable {
        return view;
    }
    match index.index() {
        ContainerIndex::WebM(webm) => webm_view(&mut view, webm, committed, at, with_header),
        ContainerIndex::Mp4(mp4) => mp4_view(&mut view, mp4, committed, at, with_header),
        ContainerIndex::Sniffing(_) | ContainerIndex::Refused(_) => {}
    }
    view
}

/// The WebM header a viewer starts with, once Info and Tracks are known.
fn webm_header(webm: &WebmIndex) -> Option<Vec<u8>> {
    if !matches!(webm.status(), WebmStatus::Clusters | WebmStatus::Ended(_)) {
        return None;
    }
    let (info, tracks) = (webm.info_body()?, webm.tracks_body()?);
    let mut header = webm.ebml_header().to_vec();
    header.extend_from_slice(&UNKNOWN_SIZE_SEGMENT);
    ebml::write_header(&mut header, ebml::ID_INFO, info.len() as u64);
    header.extend_from_slice(info);
    ebml::write_header(&mut header, ebml::ID_TRACKS, tracks.len() as u64);
    header.extend_from_slice(tracks);
    Some(header)
}

fn webm_view(view: &mut StreamView, webm: &WebmIndex, committed: u64, at: u64, header: bool) {
    let whole =
        |c: &ClusterEntry| c.data_end < committed || (c.known_size && c.data_end <= committed);
    let clusters = &webm.clusters()[..webm.clusters().partition_point(whole)];
    let Some(head) = webm_header(webm) else {
        return;
    };
    view.header = header.then_some(head);
    let unit = |c: &ClusterEntry| Unit {
        offset: c.start,
        time: UnitTime::Cluster(c.timestamp),
        base_offsets: Vec::new(),
    };
    view.complete_end = clusters.last().map_or(0, |c| c.data_end);
    let keyframe = clusters.iter().rev().find(|c| c.keyframe);
    view.start = keyframe.map(|c| c.start);
    view.latest_keyframe = keyframe.map(unit);
    let i = clusters.partition_point(|c| c.start < at);
    view.unit_at = clusters.get(i).filter(|c| c.start == at).map(unit);
    let next = clusters.partition_point(|c| c.start <= at);
    view.boundary_after = clusters.get(next).map_or(view.complete_end, |c| c.start);
    let scale_ms = webm.timestamp_scale() as f64 / 1e6;
    if let (Some(here), Some(latest)) = (&view.unit_at, webm.latest_cluster_timestamp()) {
        if let UnitTime::Cluster(ts) = here.time {
            view.behind_ms = Some((latest - ts) as f64 * scale_ms);
        }
    }
    if !clusters.is_empty() {
        view.media_span_ms = Some(webm.duration_secs() * 1000.0);
    }
}

fn mp4_view(view: &mut StreamView, mp4: &Mp4Index, committed: u64, at: u64, header: bool) {
    let Some(movie) = mp4.movie() else {
        return;
    };
    if header {
        view.header = Some([mp4.ftyp(), mp4.moov()].concat());
    }
    view.timescales = movie.tracks.iter().map(|t| (t.id, t.timescale)).collect();
    let all = mp4.fragments();
    let fragments = &all[..all.partition_point(|f| f.end <= committed)];
    let unit = |f: &Fragment| Unit {
        offset: f.start,
        time: UnitTime::Fragment(
            mp4.spans(f)
                .iter()
                .map(|span| (span.track_id, span.decode_time))
                .collect(),
        ),
        base_offsets: mp4.base_offsets(f).to_vec(),
    };
    view.complete_end = fragments.last().map_or(0, |f| f.end);
    let keyframe = fragments.iter().rev().find(|f| f.keyframe);
    view.start = keyframe.map(|f| f.start);
    view.latest_keyframe = keyframe.map(unit);
    let i = fragments.partition_point(|f| f.start < at);
    view.unit_at = fragments.get(i).filter(|f| f.start == at).map(unit);
    view.boundary_after = fragments
        .get(fragments.partition_point(|f| f.start <= at))
        .map_or(view.complete_end, |f| f.start);
    // Times on the reference track (video if any).
    let reference = &movie.tracks[movie.reference()];
    let on_reference = |f: &Fragment, end: bool| {
        mp4.spans(f)
            .iter()
            .find(|span| span.track_id == reference.id)
            .map(|span| {
                let time = if end {
                    span.decode_end()
                } else {
                    span.decode_time
                };
                time as f64 * 1000.0 / f64::from(reference.timescale.max(1))
            })
    };
    if let (Some(here), Some(latest)) =
        (fragments.get(i).filter(|f| f.start == at), fragments.last())
    {
        if let (Some(from), Some(to)) = (on_reference(here, false), on_reference(latest, true)) {
            view.behind_ms = Some(to - from);
        }
    }
    if !fragments.is_empty() {
        view.media_span_ms = Some(mp4.duration_secs() * 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::read(path).expect("a checked-in fixture")
    }

    fn indexed(bytes: &[u8]) -> UploadIndex {
        let mut index = UploadIndex::new();
        index.feed(0, bytes).unwrap();
        index
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
    fn an_unknown_size_cluster_is_whole_only_before_the_committed_offset() {
        let bytes = fixture("../webm/tests/fixtures/chromium-vp8-kf1s.webm");
        let clusters = cluster_starts(&bytes);
        // The index has seen everything, the viewer only what is committed.
        let index = indexed(&bytes);
        let at_boundary = view(&index, clusters[2], 0, true);
        assert_eq!(at_boundary.complete_end, clusters[1]);
        let past = view(&index, clusters[2] + 1, 0, true);
        assert_eq!(past.complete_end, clusters[2]);
        let header = past.header.expect("a header");
        assert_eq!(&header[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
        assert_eq!(past.container, Some(Container::WebM));
        let whole = view(&index, bytes.len() as u64, clusters[1], false);
        assert_eq!(whole.unit_at.map(|u| u.offset), Some(clusters[1]));
        assert_eq!(whole.boundary_after, clusters[2]);
        assert!(whole.behind_ms.unwrap() > 2000.0, "{:?}", whole.behind_ms);
    }

    #[test]
    fn mp4_fragments_are_whole_once_their_samples_are_in() {
        let bytes = fixture("../webm/tests/fixtures/chromium-fmp4.mp4");
        let index = indexed(&bytes);
        let ContainerIndex::Mp4(mp4) = index.index() else {
            panic!("an MP4");
        };
        let fragments = mp4.fragments().to_vec();
        assert!(fragments.len() >= 3);
        let second = fragments[1];
        let before = view(&index, second.end - 1, 0, true);
        assert_eq!(before.complete_end, fragments[0].end);
        let at = view(&index, second.end, second.start, true);
        assert_eq!(at.complete_end, second.end);
        assert_eq!(at.unit_at.as_ref().map(|u| u.offset), Some(second.start));
        let header = at.header.expect("ftyp and moov");
        assert_eq!(&header[4..8], b"ftyp");
        assert!(at.start.is_some());
        assert_eq!(at.container, Some(Container::Mp4));
    }

    #[test]
    fn text_and_a_progressive_mp4_cannot_be_streamed() {
        assert!(view(&indexed(b"hello world, not a video"), 24, 0, true).unusable);
        assert!(
            !view(&indexed(b"\0\0"), 2, 0, true).unusable,
            "not known yet"
        );
        // A camera's MP4: sample tables in a moov (moved first by +faststart).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progressive.mp4");
        let made = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=64x48:rate=10",
                "-t",
                "1",
            ])
            .args(["-c:v", "libx264", "-movflags", "+faststart"])
            .arg(&path)
            .status()
            .expect("ffmpeg is needed for this test");
        assert!(made.success());
        let bytes = std::fs::read(&path).unwrap();
        let progressive = view(&indexed(&bytes), bytes.len() as u64, 0, true);
        assert_eq!(progressive.container, Some(Container::Mp4));
        assert!(progressive.unusable);
        assert!(!view(&indexed(&fixture("tests/fixtures/live.mp4")), 100, 0, true).unusable);
    }
}
