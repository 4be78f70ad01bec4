//! The progressive stream of a live in progress, cut from the recorder's upload.
//!
//! WebM: a header (EBML, Segment of unknown size, Info, Tracks), then the upload's bytes from
//! the latest whole cluster that opens on a video keyframe, then each cluster as it becomes
//! whole and durable. MP4: the init segment (`ftyp`, `moov`), then the fragments from the
//! latest whole one that opens on a keyframe, then each fragment once its samples are durable.
//! Until the live ends. Chromium plays either as a live `<video>`: `currentTime` advances,
//! `duration` stays Infinity. Where the units are comes from the upload's index
//! (`indexing/`, seen through `live/view.rs`).

use std::io::{Read, Seek, SeekFrom};

use bytes::Bytes;
use futures_util::{stream, Stream};
use tokio::sync::watch;

use livekeep_webm::{
    ebml::{self, Vint},
    mp4::boxes::{children, read_header, HeaderRead},
    Container,
};

use super::{
    advance_index,
    view::{StreamView, Unit, UnitTime},
    LiveError,
};
use crate::{
    db,
    domain::{PostId, UploadId},
    rooms::hub::{Progress, StreamGuard},
    state::AppState,
};

/// Largest piece read from the upload and sent at once: bounds memory per viewer.
const SEND_PIECE: u64 = 256 << 10;

/// Largest moof read whole to rewrite it (the index refuses larger ones).
const MAX_MOOF: u64 = livekeep_webm::mp4::MAX_MOOF;

/// A viewer this far behind the latest committed media is moved to the live edge.
const MAX_BEHIND_MS: f64 = 10_000.0;

/// What a viewer moved to the live edge has taken off the media times since, so the stream's
/// time runs on without a gap the player would wait through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shift {
    /// Timestamp units off every cluster's Timestamp (WebM).
    cluster: i64,
    /// Per track_ID, units of its timescale off every fragment's tfdt (MP4).
    tracks: Vec<(u32, u64)>,
}

impl Shift {
    /// Adds the move from `here` to `edge` (`timescales`: each MP4 track's).
    fn add(&mut self, here: &UnitTime, edge: &UnitTime, timescales: &[(u32, u32)]) {
        match (here, edge) {
            (UnitTime::Cluster(here), UnitTime::Cluster(edge)) => self.cluster += edge - here,
            (UnitTime::Fragment(here), UnitTime::Fragment(edge)) => {
                let scale = |track: u32| {
                    timescales
                        .iter()
                        .find(|(id, _)| *id == track)
                        .map_or(1, |(_, scale)| (*scale).max(1))
                };
                // The move in seconds, from a track both fragments hold.
                let seconds = edge.iter().find_map(|(track, to)| {
                    let from = here.iter().find(|(t, _)| t == track)?.1;
                    Some(to.saturating_sub(from) as f64 / f64::from(scale(*track)))
                });
                for &(track, to) in edge {
                    let delta = match here.iter().find(|(t, _)| *t == track) {
                        Some(&(_, from)) => to.saturating_sub(from),
                        // A track the viewer's fragment lacked: the same move in its timescale.
                        None => (seconds.unwrap_or(0.0) * f64::from(scale(track))).round() as u64,
                    };
                    match self.tracks.iter_mut().find(|(t, _)| *t == track) {
                        Some((_, shift)) => *shift += delta,
                        None => self.tracks.push((track, delta)),
                    }
                }
            }
            _ => {}
        }
    }
}

/// One viewer's position in the live.
struct Follower {
    state: AppState,
    progress: watch::Receiver<Progress>,
    upload: UploadId,
    container: Container,
    committed: u64,
    /// The live ended: send what is left up to `committed` (its last cluster), then stop.
    ended: bool,
    /// Next upload offset to send; `None` until the header went out.
    pos: Option<u64>,
    /// Bytes sent, header included: where the next piece lands in the stream.
    sent: u64,
    shift: Shift,
    /// Keeps the upload's bytes from being deleted at the end before they are sent.
    _reading: StreamGuard,
}

impl Follower {
    /// Takes in the latest progress; false when the stream must end at once: the recorder
    /// moved to another upload (the viewer reconnects and follows that one).
    fn refresh(&mut self) -> bool {
        let progress = self.progress.borrow_and_update();
        match &progress.upload {
            Some(upload) if *upload == self.upload => {
                self.committed = self.committed.max(progress.committed);
            }
            Some(_) => return false,
            None => {}
        }
        self.ended = progress.ended;
        true
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            if !self.refresh() {
                return None;
            }
            let at = self.pos.unwrap_or(0);
            let view = advance_index(
                &self.state,
                &self.upload,
                self.committed,
                self.pos.is_none(),
                at,
            )
            .await;
            let view = match view {
                Ok(view) if !view.unusable => view,
                Ok(_) => return None,
                Err(err) => {
                    // The upload's file went away or the disk failed.
                    tracing::info!(error = ?err, "a live stream stops");
                    return None;
                }
            };
            let pos = match (self.pos, &view.header, view.start) {
                (None, Some(header), Some(start)) if !self.ended => {
                    self.pos = Some(start);
                    self.sent = header.len() as u64;
                    return Some(Ok(Bytes::copy_from_slice(header)));
                }
                (Some(pos), _, _) => pos,
                // Ended before a viewer could start: nothing to send.
                _ if self.ended => return None,
                _ => {
                    if self.progress.changed().await.is_err() {
                        return None;
                    }
                    continue;
                }
            };
            // Once the live ended, its last cluster is whole: everything committed goes (a
            // fragment is whole as soon as its samples are in, so an MP4 has nothing more).
            let sendable = match self.container {
                Container::WebM if self.ended => self.committed,
                _ => view.complete_end,
            };
            if pos < sendable {
                if self.catch_up(pos, &view) {
                    // Moved: take the view at the new position.
                    continue;
                }
                let boundary = if pos < view.complete_end {
                    view.boundary_after
                } else {
                    sendable
                };
                let len = (boundary.min(sendable) - pos).clamp(1, SEND_PIECE);
                let opens = match &view.unit_at {
                    Some(unit) if unit.offset == pos => Opens::Unit(unit.clone()),
                    // The last cluster, whole once the live ended.
                    _ if pos == view.complete_end => Opens::LastCluster,
                    _ => Opens::Nothing,
                };
                let piece = self.read(pos, len, boundary.min(sendable), opens).await;
                if let Ok(bytes) = &piece {
                    self.pos = Some(pos + bytes.len() as u64);
                    self.sent += bytes.len() as u64;
                }
                return Some(piece);
            }
            if self.ended {
                return None;
            }
            // Nothing new to send: wait for the next commit (or the end).
            if self.progress.changed().await.is_err() {
                return None;
            }
        }
    }

    /// Moves a viewer more than [`MAX_BEHIND_MS`] behind to the latest keyframe unit, at a
    /// unit boundary; true when it did.
    fn catch_up(&mut self, pos: u64, view: &StreamView) -> bool {
        let (Some(here), Some(behind), Some(edge)) =
            (&view.unit_at, view.behind_ms, &view.latest_keyframe)
        else {
            return false;
        };
        if here.offset != pos || behind <= MAX_BEHIND_MS || edge.offset <= pos {
            return false;
        }
        self.shift.add(&here.time, &edge.time, &view.timescales);
        tracing::info!(
            behind_ms = behind,
            from = pos,
            to = edge.offset,
            "moved a viewer who fell behind to the live edge"
        );
        self.pos = Some(edge.offset);
        true
    }

    /// Reads the piece `pos..pos + len` (at least), rewritten for this stream when it opens a
    /// unit: a shifted cluster Timestamp; a fragment's tfdts shifted and its absolute base
    /// offsets moved to where it lands (its whole moof is read then, up to `limit`).
    async fn read(
        &self,
        pos: u64,
        len: u64,
        limit: u64,
        opens: Opens,
    ) -> Result<Bytes, std::io::Error> {
        let upload = self.upload.clone();
        let (container, shift, sent) = (self.container, self.shift.clone(), self.sent);
        self.state
            .with_uploads(move |uploads| {
                let mut file = uploads.open(&upload)?;
                let mut bytes = read_at(&mut file, pos, len)?;
                match (container, opens) {
                    (Container::WebM, Opens::Unit(_) | Opens::LastCluster)
                        if shift.cluster != 0 =>
                    {
                        shift_cluster_timestamp(&mut bytes, shift.cluster);
                    }
                    (Container::Mp4, Opens::Unit(unit))
                        if !shift.tracks.is_empty() || !unit.base_offsets.is_empty() =>
                    {
                        let whole = moof_end(&bytes).filter(|&end| end <= MAX_MOOF);
                        if let Some(end) = whole.filter(|&end| end > bytes.len() as u64) {
                            let more = (end.min(limit - pos)) - bytes.len() as u64;
                            let rest = read_at(&mut file, pos + bytes.len() as u64, more)?;
                            bytes.extend_from_slice(&rest);
                        }
                        rewrite_fragment(&mut bytes, pos, &unit, sent, &shift.tracks);
                    }
                    _ => {}
                }
                Ok(Bytes::from(bytes))
            })
            .await
            .map_err(std::io::Error::other)
    }
}

/// Whether the piece being read opens a unit.
enum Opens {
    Nothing,
    /// A whole cluster or fragment.
    Unit(Unit),
    /// The cluster after the last whole one (sent once the live ended).
    LastCluster,
}

/// Exactly `len` bytes of the upload at `pos`.
fn read_at(file: &mut impl ReadSeekFile, pos: u64, len: u64) -> anyhow::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(pos))?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(len).read_to_end(&mut bytes)?;
    anyhow::ensure!(
        bytes.len() as u64 == len,
        "the upload shrank under a stream"
    );
    Ok(bytes)
}

/// What the upload's reader is.
trait ReadSeekFile: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeekFile for T {}

/// Where the first moof of `bytes` ends (from the start of `bytes`), if its header is there.
fn moof_end(bytes: &[u8]) -> Option<u64> {
    let mut at = 0usize;
    loop {
        let HeaderRead::Header { kind, size, .. } = read_header(bytes.get(at..)?) else {
            return None;
        };
        let end = (at as u64).checked_add(size?)?;
        if &kind == b"moof" {
            return Some(end);
        }
        at = usize::try_from(end).ok()?;
    }
}

/// Rewrites, in place, the fragment that opens `bytes` (upload offset `pos`) for a stream where
/// it lands at `sent`: absolute base offsets moved by as much, and each traf's tfdt lowered by
/// its track's shift. Values only shrink or move with the fragment, so every field keeps its
/// width.
fn rewrite_fragment(bytes: &mut [u8], pos: u64, unit: &Unit, sent: u64, shifts: &[(u32, u64)]) {
    for base in &unit.base_offsets {
        let Some(at) = base
            .at
            .checked_sub(pos)
            .and_then(|a| usize::try_from(a).ok())
        else {
            continue;
        };
        if let Some(field) = bytes.get_mut(at..at + 8) {
            let moved = (i128::from(base.value) + i128::from(sent) - i128::from(pos)).max(0);
            field.copy_from_slice(&u64::try_from(moved).unwrap_or(0).to_be_bytes());
        }
    }
    if shifts.is_empty() {
        return;
    }
    let Some(moof_end) = moof_end(bytes).and_then(|end| usize::try_from(end).ok()) else {
        return;
    };
    let Some(moof_start) = top_level_box(bytes, b"moof") else {
        return;
    };
    if moof_end > bytes.len() {
        return;
    }
    shift_tfdts(&mut bytes[moof_start..moof_end], shifts);
}

/// Offset of the first top-level box of `kind` in `bytes`.
fn top_level_box(bytes: &[u8], kind: &[u8; 4]) -> Option<usize> {
    let mut at = 0usize;
    loop {
        let HeaderRead::Header {
            kind: found, size, ..
        } = read_header(bytes.get(at..)?)
        else {
            return None;
        };
        if &found == kind {
            return Some(at);
        }
        at = at.checked_add(usize::try_from(size?).ok()?)?;
    }
}

/// Lowers each traf's tfdt in `moof` (a whole moof box) by its track's shift.
fn shift_tfdts(moof: &mut [u8], shifts: &[(u32, u64)]) {
    let HeaderRead::Header { len, .. } = read_header(moof) else {
        return;
    };
    // (absolute offset of a tfdt's data, its version, the shift) for each traf, found first.
    let mut edits = Vec::new();
    for traf in children(&moof[len..]).flatten() {
        if &traf.kind != b"traf" {
            continue;
        }
        let traf_data = len + traf.offset + traf.header_len;
        let mut track = None;
        let mut tfdt = None;
        for child in children(traf.data).flatten() {
            match &child.kind {
                b"tfhd" if child.data.len() >= 8 => {
                    track = Some(u32::from_be_bytes([
                        child.data[4],
                        child.data[5],
                        child.data[6],
                        child.data[7],
                    ]));
                }
                b"tfdt" if !child.data.is_empty() => {
                    tfdt = Some((traf_data + child.offset + child.header_len, child.data[0]));
                }
                _ => {}
            }
        }
        let shift = track.and_then(|track| shifts.iter().find(|(t, _)| *t == track));
        if let (Some((at, version)), Some(&(_, shift))) = (tfdt, shift) {
            edits.push((at, version, shift));
        }
    }
    for (at, version, shift) in edits {
        let width = if version == 1 { 8 } else { 4 };
        let Some(field) = moof.get_mut(at + 4..at + 4 + width) else {
            continue;
        };
        let old = field
            .iter()
            .fold(0u64, |value, &b| value << 8 | u64::from(b));
        let new = old.saturating_sub(shift);
        field.copy_from_slice(&new.to_be_bytes()[8 - width..]);
    }
}

/// Takes `shift` off the Timestamp of the cluster whose header opens `bytes`, in place: the
/// value only shrinks, so it keeps its width (EBML allows leading zero bytes). False when the
/// cluster does not open with its Timestamp (then it is sent as it is).
fn shift_cluster_timestamp(bytes: &mut [u8], shift: i64) -> bool {
    let Vint::Done(cluster, cluster_len) = ebml::read_header(bytes) else {
        return false;
    };
    if cluster.id != ebml::ID_CLUSTER {
        return false;
    }
    let Vint::Done(child, child_len) = ebml::read_header(&bytes[cluster_len..]) else {
        return false;
    };
    let start = cluster_len + child_len;
    let width = child.size.and_then(|size| usize::try_from(size).ok());
    let (true, Some(width @ 1..=8)) = (child.id == ebml::ID_TIMESTAMP, width) else {
        return false;
    };
    let Some(field) = bytes.get_mut(start..start + width) else {
        return false;
    };
    let old = field
        .iter()
        .fold(0u64, |value, &b| value << 8 | u64::from(b));
    let new = old.saturating_sub(u64::try_from(shift).unwrap_or(0));
    field.copy_from_slice(&new.to_be_bytes()[8 - width..]);
    true
}

/// Opens the progressive stream of live `post_id`: its container (once the first bytes said
/// which, waiting for them while the live runs) and its pieces.
pub async fn open(
    state: &AppState,
    post_id: PostId,
) -> Result<
    (
        Container,
        impl Stream<Item = Result<Bytes, std::io::Error>> + Send,
    ),
    LiveError,
> {
    let post = db::posts::get_live(&state.db, post_id)
        .await?
        .ok_or(LiveError::NotFound)?;
    if !post.is_in_progress() {
        return Err(LiveError::Ended);
    }
    let room = state.hub.room(post_id);
    let mut progress = room.progress();
    // Re-read after taking the room: a live that ended meanwhile would never end this room.
    let post_now = db::posts::get(&state.db, post_id).await?;
    let upload = db::uploads::latest_for_post(&state.db, post_id).await?;
    let in_progress = post_now.as_ref().is_some_and(|post| post.is_in_progress());
    let (Some(upload), true) = (upload, in_progress) else {
        super::announce_end_here(state, post_id).await;
        return Err(LiveError::Ended);
    };
    let (mut upload, mut committed) = (upload.id, upload.offset);
    let container = loop {
        let view = advance_index(state, &upload, committed, false, 0).await?;
        if view.unusable {
            return Err(LiveError::NotStreamable);
        }
        if let Some(container) = view.container {
            break container;
        }
        // Nothing recorded yet: the first bytes will say what the stream is.
        if progress.changed().await.is_err() || progress.borrow().ended {
            return Err(LiveError::Ended);
        }
        let now = progress.borrow_and_update().clone();
        match now.upload {
            // The recorder restarted on another upload: that one is the live now.
            Some(moved) if moved != upload => (upload, committed) = (moved, now.committed),
            _ => committed = committed.max(now.committed),
        }
    };
    let follower = Follower {
        state: state.clone(),
        _reading: room.follow_stream(),
        progress,
        upload,
        container,
        committed,
        ended: false,
        pos: None,
        sent: 0,
        shift: Shift::default(),
    };
    let pieces = stream::unfold(follower, |mut follower| async move {
        let piece = follower.next().await?;
        Some((piece, follower))
    });
    Ok((container, pieces))
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekeep_webm::mp4::BaseOffset;

    fn cluster_with_timestamp(width: usize, value: u64) -> Vec<u8> {
        let mut bytes = vec![
            0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        bytes.push(0xE7);
        bytes.push(0x80 | width as u8);
        bytes.extend_from_slice(&value.to_be_bytes()[8 - width..]);
        bytes.extend_from_slice(&[0xA3, 0x81, 0x00]);
        bytes
    }

    #[test]
    fn a_shifted_cluster_keeps_its_layout_and_loses_the_shift() {
        let mut bytes = cluster_with_timestamp(2, 20_000);
        let before = bytes.len();
        assert!(shift_cluster_timestamp(&mut bytes, 15_000));
        assert_eq!(bytes.len(), before);
        assert_eq!(bytes, cluster_with_timestamp(2, 5_000));
    }

    /// A fragment: a styp, then a moof whose trafs are track 1 (tfdt v1, an absolute base
    /// offset) and track 2 (tfdt v0), then an mdat.
    fn fragment(base: u64, tfdt1: u64, tfdt2: u32) -> (Vec<u8>, u64) {
        use livekeep_webm::mp4::boxes::{begin_box, begin_full_box, end_box};
        let mut out = Vec::new();
        let styp = begin_box(&mut out, b"styp");
        out.extend_from_slice(b"msdh\0\0\0\0");
        end_box(&mut out, styp);
        let moof = begin_box(&mut out, b"moof");
        let mfhd = begin_full_box(&mut out, b"mfhd", 0, 0);
        out.extend_from_slice(&7u32.to_be_bytes());
        end_box(&mut out, mfhd);
        let traf = begin_box(&mut out, b"traf");
        let tfhd = begin_full_box(&mut out, b"tfhd", 0, 1);
        out.extend_from_slice(&1u32.to_be_bytes());
        let base_at = out.len() as u64;
        out.extend_from_slice(&base.to_be_bytes());
        end_box(&mut out, tfhd);
        let tfdt = begin_full_box(&mut out, b"tfdt", 1, 0);
        out.extend_from_slice(&tfdt1.to_be_bytes());
        end_box(&mut out, tfdt);
        end_box(&mut out, traf);
        let traf = begin_box(&mut out, b"traf");
        let tfhd = begin_full_box(&mut out, b"tfhd", 0, 0x20000);
        out.extend_from_slice(&2u32.to_be_bytes());
        end_box(&mut out, tfhd);
        let tfdt = begin_full_box(&mut out, b"tfdt", 0, 0);
        out.extend_from_slice(&tfdt2.to_be_bytes());
        end_box(&mut out, tfdt);
        end_box(&mut out, traf);
        end_box(&mut out, moof);
        let mdat = begin_box(&mut out, b"mdat");
        out.extend_from_slice(&[9; 32]);
        end_box(&mut out, mdat);
        (out, base_at)
    }

    #[test]
    fn a_moved_fragment_has_its_tfdts_shifted_and_its_base_offsets_follow_it() {
        let pos = 50_000;
        let (mut bytes, base_at) = fragment(pos + 100, 90_000, 48_000);
        let layout = bytes.len();
        let unit = Unit {
            offset: pos,
            time: UnitTime::Fragment(vec![(1, 90_000), (2, 48_000)]),
            base_offsets: vec![BaseOffset {
                at: pos + base_at,
                value: pos + 100,
            }],
        };
        // The fragment lands at byte 700 of the stream, 30 000 and 16 000 units earlier.
        rewrite_fragment(&mut bytes, pos, &unit, 700, &[(1, 30_000), (2, 16_000)]);
        assert_eq!(bytes.len(), layout);
        assert_eq!(fragment(800, 60_000, 32_000).0, bytes);
    }

    #[test]
    fn a_shift_is_counted_per_track_and_a_track_missing_from_one_side_is_converted() {
        let mut shift = Shift::default();
        let scales = [(1, 90_000), (2, 48_000)];
        shift.add(
            &UnitTime::Fragment(vec![(1, 90_000)]),
            &UnitTime::Fragment(vec![(1, 990_000), (2, 480_000)]),
            &scales,
        );
        assert_eq!(shift.tracks, vec![(1, 900_000), (2, 480_000)]);
        shift.add(
            &UnitTime::Cluster(1000),
            &UnitTime::Cluster(25_000),
            &scales,
        );
        assert_eq!(shift.cluster, 24_000);
    }

    #[test]
    fn what_is_not_a_cluster_opening_on_its_timestamp_is_left_alone() {
        let mut block_first = cluster_with_timestamp(1, 9);
        block_first.swap(12, 14);
        let copy = block_first.clone();
        assert!(!shift_cluster_timestamp(&mut block_first, 5));
        assert_eq!(block_first, copy);
        let mut short = vec![0x1F, 0x43];
        assert!(!shift_cluster_timestamp(&mut short, 5));
    }
}
