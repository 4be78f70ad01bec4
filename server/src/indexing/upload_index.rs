//! One upload's container index and SHA-256, fed its bytes in order and saved as it goes.
//!
//! The first bytes say which container it is (WebM's EBML magic, or MP4's `ftyp` at byte
//! 4, as `uploads/sniff.rs` accepts); from then on every byte goes to the crate's push index
//! of that container ([`WebmIndex`], [`Mp4Index`]) and to a resumable [`Sha256State`]. An
//! index that refuses the bytes (a WebM without Tracks, an MP4 whose moov is after its
//! fragments) says why and stops indexing; the hash goes on.

use livekeep_webm::{
    mp4::Mp4Index,
    sha256::Sha256State,
    webm_index::{EntriesMark, WebmIndex},
    Container,
};

/// Bytes enough to tell WebM from MP4 (an `ftyp` at byte 4).
const SNIFF_LEN: usize = 8;
/// EBML's magic, WebM's first four bytes.
const EBML_MAGIC: [u8; 4] = [0x1A, 0x45, 0xDF, 0xA3];
/// First bytes of a saved state, and its version.
const STATE_MAGIC: &[u8; 4] = b"LKUI";
const STATE_VERSION: u8 = 1;

/// Why a saved state could not be read back: the index is rebuilt from the upload's bytes.
#[derive(Debug, thiserror::Error)]
#[error("saved upload index unusable: {0}")]
pub struct CorruptState(pub String);

/// The index of one container, or why there is none.
#[derive(Debug, Clone)]
pub enum ContainerIndex {
    /// The first bytes, until there are enough to name the container.
    Sniffing(Vec<u8>),
    /// A WebM's clusters.
    WebM(Box<WebmIndex>),
    /// A fragmented MP4's fragments.
    Mp4(Box<Mp4Index>),
    /// Neither, or an index that refused the bytes: why.
    Refused(String),
}

/// What to write with a committed offset: the small state (replaced each time) and the
/// entries learnt since the last save (appended at `entries_start` of the entries log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Save {
    /// The index's state ([`UploadIndex::restore`] reads it back).
    pub state: Vec<u8>,
    /// The SHA-256's state.
    pub sha256: Vec<u8>,
    /// Where the new entries start in the upload's entries log.
    pub entries_start: u64,
    /// The entries learnt since the last save (often empty).
    pub entries: Vec<u8>,
}

/// An upload's index and hash, at [`UploadIndex::position`] bytes.
#[derive(Debug, Clone)]
pub struct UploadIndex {
    container: ContainerIndex,
    sha256: Sha256State,
    /// Entries saved so far: the WebM mark, the MP4 fragment count, and their bytes.
    saved_mark: EntriesMark,
    saved_fragments: usize,
    saved_entries_len: u64,
    /// The upload position at which the counters above were last made to match the database
    /// (saved or restored). Fed past it without a save (a live stream bringing this node's
    /// index forward from the store), the index still describes the bytes, but another node may
    /// have appended to the log meanwhile: its next save would go over their entries.
    saved_at: u64,
}

impl Default for UploadIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl UploadIndex {
    /// The index of an empty upload.
    pub fn new() -> Self {
        Self {
            container: ContainerIndex::Sniffing(Vec::new()),
            sha256: Sha256State::new(),
            saved_mark: EntriesMark::default(),
            saved_fragments: 0,
            saved_entries_len: 0,
            saved_at: 0,
        }
    }

    /// Whether what [`UploadIndex::save`] would write follows what the database holds for the
    /// upload at `committed`: the index is there, and was saved or restored there (an empty
    /// upload's index, at 0, holds nothing to save yet).
    pub fn saves_at(&self, committed: u64) -> bool {
        self.position() == committed && self.saved_at == committed
    }

    /// Bytes of the upload hashed (and so seen) so far.
    pub fn position(&self) -> u64 {
        self.sha256.len()
    }

    /// Where feeding must continue from: the hash's position, or the index's when it resumed
    /// before the element it held only part of (a restored WebM index).
    pub fn resume_at(&self) -> u64 {
        self.position().min(self.index_position())
    }

    fn index_position(&self) -> u64 {
        match &self.container {
            ContainerIndex::Sniffing(first) => first.len() as u64,
            ContainerIndex::WebM(index) => index.position(),
            ContainerIndex::Mp4(index) => index.position(),
            ContainerIndex::Refused(_) => u64::MAX,
        }
    }

    /// The container, once known.
    pub fn container(&self) -> Option<Container> {
        match &self.container {
            ContainerIndex::WebM(_) => Some(Container::WebM),
            ContainerIndex::Mp4(_) => Some(Container::Mp4),
            ContainerIndex::Sniffing(_) | ContainerIndex::Refused(_) => None,
        }
    }

    /// The index itself.
    pub fn index(&self) -> &ContainerIndex {
        &self.container
    }

    /// The index itself, to finish it at the end of the upload.
    pub fn index_mut(&mut self) -> &mut ContainerIndex {
        &mut self.container
    }

    /// The SHA-256 of every byte fed.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256.digest()
    }

    /// Feeds the upload's bytes starting at offset `at`, which must not lie past
    /// [`UploadIndex::resume_at`]; what the hash or the index already saw is skipped.
    pub fn feed(&mut self, at: u64, bytes: &[u8]) -> Result<(), Gap> {
        let resume = self.resume_at();
        if at > resume {
            return Err(Gap { at, resume });
        }
        let end = at + bytes.len() as u64;
        let from = |position: u64| &bytes[(position.min(end) - at) as usize..];
        let unseen = from(self.position());
        if !unseen.is_empty() {
            self.sha256.update(unseen);
        }
        let position = self.index_position();
        if position < end {
            self.push_index(from(position));
        }
        Ok(())
    }

    fn push_index(&mut self, bytes: &[u8]) {
        let refused = match &mut self.container {
            ContainerIndex::Sniffing(first) => {
                let take = bytes.len().min(SNIFF_LEN - first.len());
                first.extend_from_slice(&bytes[..take]);
                let sniffed = if first.starts_with(&EBML_MAGIC) {
                    Some(ContainerIndex::WebM(Box::default()))
                } else if first.len() >= SNIFF_LEN {
                    Some(match livekeep_webm::sniff(first) {
                        Some(Container::Mp4) => ContainerIndex::Mp4(Box::default()),
                        _ => ContainerIndex::Refused("neither WebM nor MP4".to_owned()),
                    })
                } else {
                    None
                };
                if let Some(sniffed) = sniffed {
                    let first = std::mem::take(first);
                    self.container = sniffed;
                    // What was held, then the rest, as the index's first bytes.
                    self.push_index(&first);
                    self.push_index(&bytes[take..]);
                }
                None
            }
            ContainerIndex::WebM(index) => index.push(bytes).err(),
            ContainerIndex::Mp4(index) => index.push(bytes).err(),
            ContainerIndex::Refused(_) => None,
        };
        if let Some(err) = refused {
            self.container = ContainerIndex::Refused(err.to_string());
        }
    }

    /// What to save with the committed offset of the bytes fed so far; the entries it
    /// returns count as saved from now on (a failed commit must drop this index).
    pub fn save(&mut self) -> Save {
        let mut state = STATE_MAGIC.to_vec();
        state.push(STATE_VERSION);
        let entries = match &self.container {
            ContainerIndex::Sniffing(first) => {
                state.push(0);
                state.extend_from_slice(first);
                Vec::new()
            }
            ContainerIndex::WebM(index) => {
                state.push(1);
                state.extend_from_slice(&index.encode_state());
                let entries = index.encode_entries(self.saved_mark);
                self.saved_mark = index.mark();
                entries
            }
            ContainerIndex::Mp4(index) => {
                state.push(2);
                state.extend_from_slice(&index.encode_state());
                let entries = index.encode_fragments(self.saved_fragments);
                self.saved_fragments = index.fragments().len();
                entries
            }
            ContainerIndex::Refused(reason) => {
                state.push(3);
                state.extend_from_slice(reason.as_bytes());
                Vec::new()
            }
        };
        let entries_start = self.saved_entries_len;
        self.saved_entries_len += entries.len() as u64;
        self.saved_at = self.position();
        Save {
            state,
            sha256: self.sha256.encode(),
            entries_start,
            entries,
        }
    }

    /// Resumes from a [`Save`]'s state and hash and the concatenated entries saved with
    /// them; feed the upload from [`UploadIndex::resume_at`] on.
    pub fn restore(state: &[u8], sha256: &[u8], entries: &[u8]) -> Result<Self, CorruptState> {
        let corrupt = |what: &str| CorruptState(what.to_owned());
        let sha256 = Sha256State::decode(sha256).map_err(|err| corrupt(&err.to_string()))?;
        let body = state
            .strip_prefix(STATE_MAGIC.as_slice())
            .and_then(|rest| rest.strip_prefix(&[STATE_VERSION]))
            .ok_or_else(|| corrupt("not a saved upload index of this version"))?;
        let (&tag, inner) = body
            .split_first()
            .ok_or_else(|| corrupt("an empty state"))?;
        let crate_err = |err: livekeep_webm::Error| CorruptState(err.to_string());
        let mut index = Self {
            container: ContainerIndex::Refused(String::new()),
            sha256,
            saved_mark: EntriesMark::default(),
            saved_fragments: 0,
            saved_entries_len: 0,
            saved_at: 0,
        };
        index.container = match tag {
            0 if inner.len() < SNIFF_LEN => ContainerIndex::Sniffing(inner.to_vec()),
            1 => {
                let webm = WebmIndex::restore(inner, entries).map_err(crate_err)?;
                index.saved_mark = webm.mark();
                index.saved_entries_len = webm.entries_len();
                ContainerIndex::WebM(Box::new(webm))
            }
            2 => {
                let mp4 = Mp4Index::restore(inner, entries).map_err(crate_err)?;
                index.saved_fragments = mp4.fragments().len();
                index.saved_entries_len = mp4.entries_len();
                ContainerIndex::Mp4(Box::new(mp4))
            }
            3 => ContainerIndex::Refused(String::from_utf8_lossy(inner).into_owned()),
            _ => return Err(corrupt("an unknown container")),
        };
        if index.index_position() != u64::MAX && index.index_position() > index.position() {
            return Err(corrupt("the index is past the hash"));
        }
        index.saved_at = index.position();
        Ok(index)
    }
}

/// Bytes fed past where the index is: the bytes between were never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bytes from {at} fed to an upload index that needs them from {resume}")]
pub struct Gap {
    /// Offset of the bytes fed.
    pub at: u64,
    /// Where the index needed them from.
    pub resume: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        std::fs::read(path).expect("a checked-in fixture")
    }

    /// Feeds `bytes` in pieces of `step`, saving after each and resuming from the saves.
    fn fed_saved_and_resumed(bytes: &[u8], step: usize) -> UploadIndex {
        let mut index = UploadIndex::new();
        let mut entries = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let end = (pos + step).min(bytes.len());
            index.feed(pos as u64, &bytes[pos..end]).unwrap();
            let save = index.save();
            assert_eq!(save.entries_start, entries.len() as u64);
            entries.extend_from_slice(&save.entries);
            index = UploadIndex::restore(&save.state, &save.sha256, &entries).unwrap();
            let resume = index.resume_at() as usize;
            assert!(resume <= end);
            index.feed(resume as u64, &bytes[resume..end]).unwrap();
            pos = end;
        }
        index
    }

    #[test]
    fn saved_and_resumed_after_every_piece_it_is_the_one_pass_index() {
        for (name, container) in [
            ("tests/fixtures/live.webm", Container::WebM),
            ("tests/fixtures/live.mp4", Container::Mp4),
            (
                "../webm/tests/fixtures/chromium-vp8-kf1s.webm",
                Container::WebM,
            ),
            ("../webm/tests/fixtures/chromium-fmp4.mp4", Container::Mp4),
        ] {
            let bytes = fixture(name);
            let mut whole = UploadIndex::new();
            whole.feed(0, &bytes).unwrap();
            assert_eq!(whole.container(), Some(container), "{name}");
            for step in [3, 997, 16 << 10] {
                let index = fed_saved_and_resumed(&bytes, step);
                assert_eq!(index.sha256(), <[u8; 32]>::from(Sha256::digest(&bytes)));
                assert_eq!(index.position(), bytes.len() as u64);
                match (index.index(), whole.index()) {
                    (ContainerIndex::WebM(a), ContainerIndex::WebM(b)) => assert!(a == b, "{name}"),
                    (ContainerIndex::Mp4(a), ContainerIndex::Mp4(b)) => assert!(a == b, "{name}"),
                    _ => panic!("{name}: not the same container"),
                }
            }
        }
    }

    #[test]
    fn bytes_that_are_neither_container_are_refused_and_still_hashed() {
        let mut index = UploadIndex::new();
        index.feed(0, b"hello").unwrap();
        assert!(matches!(index.index(), ContainerIndex::Sniffing(_)));
        index.feed(5, b" world, no video").unwrap();
        assert!(matches!(index.index(), ContainerIndex::Refused(_)));
        assert_eq!(
            index.sha256(),
            <[u8; 32]>::from(Sha256::digest(b"hello world, no video"))
        );
        let save = index.save();
        let restored = UploadIndex::restore(&save.state, &save.sha256, &[]).unwrap();
        assert!(matches!(restored.index(), ContainerIndex::Refused(_)));
    }

    #[test]
    fn a_gap_or_a_damaged_state_is_an_error_not_a_wrong_index() {
        let mut index = UploadIndex::new();
        index.feed(0, b"\x1A\x45\xDF\xA3").unwrap();
        assert!(index.feed(10, b"later").is_err());
        // Bytes already seen are skipped.
        index.feed(0, b"\x1A\x45\xDF\xA3\x01").unwrap();
        assert_eq!(index.position(), 5);
        let save = index.save();
        assert!(UploadIndex::restore(&save.state[..3], &save.sha256, &[]).is_err());
        assert!(UploadIndex::restore(&save.state, &save.sha256[..10], &[]).is_err());
    }
}
