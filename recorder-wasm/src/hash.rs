//! SHA-256 whose intermediate state can be saved and restored.
//!
//! The journal deletes chunks once the server has them, yet after a closed tab the
//! recorder must still send the SHA-256 of *every* byte. Saving the hash state at the
//! acknowledged offset lets a later page finish the hash over the chunks still journaled.

use sha2::digest::generic_array::GenericArray;

const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Incremental SHA-256 with a serialisable state.
#[derive(Debug, Clone, PartialEq)]
pub struct ResumableSha256 {
    state: [u32; 8],
    buffer: Vec<u8>,
    length: u64,
}

impl Default for ResumableSha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl ResumableSha256 {
    /// The hash of nothing yet.
    pub fn new() -> Self {
        Self {
            state: INITIAL_STATE,
            buffer: Vec::with_capacity(64),
            length: 0,
        }
    }

    /// Bytes hashed so far.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, mut data: &[u8]) {
        self.length += data.len() as u64;
        if !self.buffer.is_empty() {
            let take = (64 - self.buffer.len()).min(data.len());
            self.buffer.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buffer.len() < 64 {
                return;
            }
            let block = GenericArray::clone_from_slice(&self.buffer);
            sha2::compress256(&mut self.state, &[block]);
            self.buffer.clear();
        }
        let whole = data.len() / 64 * 64;
        let blocks: Vec<_> = data[..whole]
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut self.state, &blocks);
        self.buffer.extend_from_slice(&data[whole..]);
    }

    /// The lowercase hex digest of everything fed so far (the hasher stays usable).
    pub fn hex_digest(&self) -> String {
        let mut state = self.state;
        let mut tail = self.buffer.clone();
        tail.push(0x80);
        while tail.len() % 64 != 56 {
            tail.push(0);
        }
        tail.extend_from_slice(&(self.length.wrapping_mul(8)).to_be_bytes());
        let blocks: Vec<_> = tail
            .chunks_exact(64)
            .map(GenericArray::clone_from_slice)
            .collect();
        sha2::compress256(&mut state, &blocks);
        let mut hex = String::with_capacity(64);
        for word in state {
            push_hex(&mut hex, &word.to_be_bytes());
        }
        hex
    }

    /// The state as text: 64 hex chars of state, the length in hex, the buffered tail in hex.
    pub fn save(&self) -> String {
        let mut out = String::with_capacity(64 + 1 + 16 + 1 + 128);
        for word in self.state {
            push_hex(&mut out, &word.to_be_bytes());
        }
        out.push(':');
        push_hex(&mut out, &self.length.to_be_bytes());
        out.push(':');
        push_hex(&mut out, &self.buffer);
        out
    }

    /// Restores a state written by [`save`](Self::save); `None` if it is damaged.
    pub fn restore(saved: &str) -> Option<Self> {
        let mut parts = saved.split(':');
        let state_hex = decode_hex(parts.next()?)?;
        let length_hex = decode_hex(parts.next()?)?;
        let buffer = decode_hex(parts.next()?)?;
        if parts.next().is_some() || state_hex.len() != 32 || length_hex.len() != 8 {
            return None;
        }
        let mut state = [0u32; 8];
        for (word, bytes) in state.iter_mut().zip(state_hex.chunks_exact(4)) {
            *word = u32::from_be_bytes(bytes.try_into().ok()?);
        }
        let length = u64::from_be_bytes(length_hex.try_into().ok()?);
        if buffer.len() >= 64 || length % 64 != buffer.len() as u64 {
            return None;
        }
        Some(Self {
            state,
            buffer,
            length,
        })
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn reference(data: &[u8]) -> String {
        let mut hex = String::new();
        push_hex(&mut hex, &Sha256::digest(data));
        hex
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn matches_the_reference_for_every_boundary_length() {
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 1000] {
            let data = sample(len);
            let mut hasher = ResumableSha256::new();
            hasher.update(&data);
            assert_eq!(hasher.hex_digest(), reference(&data), "length {len}");
        }
        assert_eq!(
            ResumableSha256::new().hex_digest(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn matches_the_reference_when_fed_in_odd_pieces() {
        let data = sample(5_000);
        let mut hasher = ResumableSha256::new();
        for piece in data.chunks(37) {
            hasher.update(piece);
        }
        assert_eq!(hasher.hex_digest(), reference(&data));
        assert_eq!(hasher.length(), 5_000);
    }

    #[test]
    fn a_saved_state_resumes_to_the_same_digest() {
        let data = sample(3_001);
        let mut first = ResumableSha256::new();
        first.update(&data[..1_234]);
        let mut resumed = ResumableSha256::restore(&first.save()).expect("valid state");
        assert_eq!(resumed, first);
        resumed.update(&data[1_234..]);
        assert_eq!(resumed.hex_digest(), reference(&data));
    }

    #[test]
    fn damaged_states_are_rejected() {
        let mut hasher = ResumableSha256::new();
        hasher.update(b"abc");
        let saved = hasher.save();
        assert!(ResumableSha256::restore(&saved[1..]).is_none());
        assert!(ResumableSha256::restore(&saved.replace(':', ";")).is_none());
        assert!(
            ResumableSha256::restore(&(saved.clone() + "00")).is_none(),
            "tail length mismatch"
        );
        assert!(ResumableSha256::restore("zz").is_none());
        assert!(ResumableSha256::restore("").is_none());
    }
}
