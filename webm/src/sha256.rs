//! SHA-256 computed as an upload's bytes arrive, its state saved with each committed offset.
//!
//! `sha2::Sha256` cannot be saved and resumed, so this keeps the parts of the computation
//! itself: the eight state words, the bytes of the block not yet compressed, and the length;
//! `sha2::compress256` does the compressing. The saved state is 113 bytes at most.

use sha2::compress256;
use sha2::digest::{consts::U64, generic_array::GenericArray};

use crate::wire::{Reader, Writer};
use crate::Error;

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const INITIAL: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];
/// Version of the saved state.
const STATE_VERSION: u8 = 1;
/// First bytes of a saved state.
const STATE_MAGIC: &[u8; 4] = b"LKSH";

/// A SHA-256 that can be saved ([`Sha256State::encode`]) and resumed ([`Sha256State::decode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sha256State {
    state: [u32; 8],
    block: [u8; 64],
    /// Bytes in `block`.
    filled: usize,
    /// Bytes hashed so far.
    len: u64,
}

impl Default for Sha256State {
    fn default() -> Self {
        Self::new()
    }
}

impl Sha256State {
    /// The hash of nothing yet.
    pub fn new() -> Self {
        Self {
            state: INITIAL,
            block: [0; 64],
            filled: 0,
            len: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was hashed yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Hashes the next bytes.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if self.filled > 0 {
            let take = (64 - self.filled).min(bytes.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&bytes[..take]);
            self.filled += take;
            bytes = &bytes[take..];
            if self.filled < 64 {
                return;
            }
            compress256(
                &mut self.state,
                &[GenericArray::clone_from_slice(&self.block)],
            );
            self.filled = 0;
        }
        let (whole, rest) = bytes.split_at(bytes.len() - bytes.len() % 64);
        // All whole blocks in one call, straight from the input: with SHA-NI, the compression
        // function sets its registers up once per call, and a call per block took ~12 %
        // longer (bench/findings.md, finding 20).
        if !whole.is_empty() {
            compress256(&mut self.state, as_blocks(whole));
        }
        self.block[..rest.len()].copy_from_slice(rest);
        self.filled = rest.len();
    }

    /// The digest of what was hashed so far (the state itself goes on unchanged).
    pub fn digest(&self) -> [u8; 32] {
        let mut state = self.state;
        let mut block = [0u8; 64];
        block[..self.filled].copy_from_slice(&self.block[..self.filled]);
        block[self.filled] = 0x80;
        if self.filled >= 56 {
            compress256(&mut state, &[GenericArray::clone_from_slice(&block)]);
            block = [0; 64];
        }
        block[56..].copy_from_slice(&(self.len * 8).to_be_bytes());
        compress256(&mut state, &[GenericArray::clone_from_slice(&block)]);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// The state as bytes, to save with the committed offset.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.raw(STATE_MAGIC);
        w.u8(STATE_VERSION);
        for word in self.state {
            w.raw(&word.to_be_bytes());
        }
        w.varint(self.len);
        w.raw(&self.block[..self.filled]);
        w.out
    }

    /// Resumes from [`Sha256State::encode`]'s bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(bytes);
        if r.raw(4)? != &STATE_MAGIC[..] || r.u8()? != STATE_VERSION {
            return Err(Error::CorruptState("not a saved SHA-256 state"));
        }
        let mut state = [0u32; 8];
        for word in &mut state {
            let raw = r.raw(4)?;
            *word = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        }
        let len = r.varint()?;
        let filled = (len % 64) as usize;
        let mut block = [0u8; 64];
        block[..filled].copy_from_slice(r.raw(filled)?);
        if !r.is_empty() {
            return Err(Error::CorruptState("bytes after the SHA-256 state"));
        }
        Ok(Self {
            state,
            block,
            filled,
            len,
        })
    }
}

/// `bytes`, a multiple of 64 long, as SHA-256 blocks, without a copy.
fn as_blocks(bytes: &[u8]) -> &[GenericArray<u8, U64>] {
    debug_assert_eq!(bytes.len() % 64, 0);
    // SAFETY: `GenericArray<u8, U64>` is a `#[repr(transparent)]` `[u8; 64]` (size 64,
    // alignment 1, every bit pattern valid), and the slice covers `len / 64` of them, all
    // within `bytes`, borrowed for as long as it is.
    unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast(), bytes.len() / 64) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn known_digests() {
        let empty = Sha256State::new().digest();
        assert_eq!(
            empty[..4],
            [0xe3, 0xb0, 0xc4, 0x42],
            "SHA-256 of nothing starts e3b0c442"
        );
        let mut abc = Sha256State::new();
        abc.update(b"abc");
        assert_eq!(abc.digest(), reference(b"abc"));
    }

    #[test]
    fn random_splits_saved_and_resumed_match_sha2() {
        let data: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
            .collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for case in 0..40 {
            let len = (seed % data.len() as u64) as usize;
            let data = &data[..len];
            let mut hash = Sha256State::new();
            let mut pos = 0;
            while pos < data.len() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let n = 1 + (seed % 200) as usize;
                let end = (pos + n).min(data.len());
                hash.update(&data[pos..end]);
                pos = end;
                // Saved and resumed after every piece, as after every PATCH.
                hash = Sha256State::decode(&hash.encode()).unwrap();
                assert_eq!(hash.len(), pos as u64);
            }
            assert_eq!(hash.digest(), reference(data), "case {case}, {len} bytes");
        }
    }

    #[test]
    fn large_unaligned_pieces_match_sha2() {
        // Pieces of up to 100 000 bytes: many whole blocks per update, starting anywhere in a
        // block, as a PATCH's batches are.
        let data: Vec<u8> = (0..1_100_000u32)
            .map(|i| (i.wrapping_mul(2_246_822_519) >> 11) as u8)
            .collect();
        let mut hash = Sha256State::new();
        let (mut pos, mut seed) = (0, 0x2545_F491_4F6C_DD1Du64);
        while pos < data.len() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let end = (pos + 1 + (seed % 100_000) as usize).min(data.len());
            hash.update(&data[pos..end]);
            pos = end;
        }
        assert_eq!(hash.digest(), reference(&data));
    }

    #[test]
    fn lengths_around_a_block_boundary_pad_correctly() {
        for len in 50..140 {
            let data = vec![0x61u8; len];
            let mut hash = Sha256State::new();
            hash.update(&data);
            assert_eq!(hash.digest(), reference(&data), "{len} bytes");
        }
    }

    #[test]
    fn a_damaged_state_is_refused() {
        let mut hash = Sha256State::new();
        hash.update(b"some bytes");
        let state = hash.encode();
        assert!(Sha256State::decode(&state[..state.len() - 1]).is_err());
        assert!(Sha256State::decode(&[state.as_slice(), b"x"].concat()).is_err());
        assert!(Sha256State::decode(b"nope").is_err());
    }
}
