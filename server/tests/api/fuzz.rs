//! Property tests of the tus header parsers: `Upload-Metadata`, `Upload-Checksum`, and the
//! byte sizes of the configuration. A deterministic generator (fixed seed, so a failure
//! reproduces) mutates the seed corpus in `tests/fuzz-corpus/` and builds random inputs; every
//! parser must return `Ok` or `Err` without panicking, and round-trip where a writer exists.
//! `LIVEKEEP_FUZZ_CASES` (default 20 000 per parser, well under a second) runs longer.

use std::{panic::AssertUnwindSafe, path::Path, str::FromStr};

use base64::{engine::general_purpose::STANDARD, Engine};
use livekeep_server::domain::{ByteSize, UploadChecksum, UploadMetadata};
use sha2::{Digest, Sha256};

fn cases() -> usize {
    std::env::var("LIVEKEEP_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Characters the header parsers care about, plus some that must merely not hurt them.
    fn char(&mut self) -> char {
        const INTERESTING: &[char] = &[
            ' ', ',', '=', '+', '/', '-', '_', '.', '\t', '\0', '\n', '\u{7f}', 'é', '\u{202E}',
            '\u{2066}', '𝄞', '🎥', '\u{FEFF}', 'K', 'i', 'B', 'G', 'b', 's', 'h', 'a', '1', '2',
            '5', '6', '0', '9',
        ];
        match self.below(3) {
            0 => *self.pick(INTERESTING),
            1 => char::from(b' ' + self.below(95) as u8),
            _ => char::from_u32(self.below(0x11_0000) as u32).unwrap_or('\u{FFFD}'),
        }
    }

    fn string(&mut self, max: usize) -> String {
        (0..self.below(max + 1)).map(|_| self.char()).collect()
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        (0..self.below(max + 1))
            .map(|_| self.next() as u8)
            .collect()
    }

    /// `seed` with a few characters inserted, deleted, replaced or duplicated.
    fn mutate(&mut self, seed: &str) -> String {
        let mut chars: Vec<char> = seed.chars().collect();
        for _ in 0..1 + self.below(4) {
            let at = self.below(chars.len() + 1);
            match self.below(5) {
                0 => chars.insert(at, self.char()),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                2 if at < chars.len() => chars[at] = self.char(),
                3 => chars.truncate(at),
                _ => {
                    let copy: Vec<char> = chars[at..].iter().take(8).copied().collect();
                    chars.splice(at..at, copy);
                }
            }
        }
        chars.into_iter().collect()
    }
}

/// Every seed of `tests/fuzz-corpus/<dir>/` (files other than UTF-8 are read lossily).
fn corpus(dir: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(dir);
    let mut seeds: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("corpus entry").path())
        .map(|path| String::from_utf8_lossy(&std::fs::read(path).expect("seed")).into_owned())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} holds no seeds", dir.display());
    seeds
}

/// Runs `parse` on every seed and on `cases()` mutations and random strings, failing with the
/// input that panicked.
fn never_panics<T>(seeds: &[String], seed: u64, parse: impl Fn(&str) -> T) {
    let mut rng = Rng(seed);
    let random = (0..cases()).map(|i| match i % 3 {
        0 => rng.string(64),
        _ => {
            let base = rng.pick(seeds).clone();
            rng.mutate(&base)
        }
    });
    for input in seeds.iter().cloned().chain(random) {
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            parse(&input);
        }));
        assert!(outcome.is_ok(), "the parser panicked on {input:?}");
    }
}

#[test]
fn upload_metadata_never_panics_on_the_corpus_or_its_mutations() {
    let seeds = corpus("upload-metadata");
    assert!(seeds.iter().any(|s| UploadMetadata::parse(s).is_ok()));
    assert!(seeds.iter().any(|s| UploadMetadata::parse(s).is_err()));
    never_panics(&seeds, 0x5EED_0001, UploadMetadata::parse);
}

#[test]
fn upload_metadata_decodes_what_a_tus_client_encodes() {
    let mut rng = Rng(0x5EED_0002);
    const KEY_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_.-";
    for _ in 0..cases() / 4 {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for _ in 0..rng.below(6) {
            let key: String = (0..1 + rng.below(12))
                .map(|_| char::from(*rng.pick(KEY_CHARS)))
                .collect();
            if pairs.iter().all(|(k, _)| *k != key) {
                pairs.push((key, rng.string(24)));
            }
        }
        let header = pairs
            .iter()
            .map(|(k, v)| match v.is_empty() && rng.below(2) == 0 {
                true => k.clone(),
                false => format!("{k} {}", STANDARD.encode(v)),
            })
            .collect::<Vec<_>>()
            .join(if rng.below(2) == 0 { "," } else { ", " });
        let meta = UploadMetadata::parse(&header).unwrap_or_else(|e| panic!("{header:?}: {e}"));
        for (k, v) in &pairs {
            assert_eq!(meta.get(k), Some(v.as_str()), "{header:?}");
        }
    }
}

#[test]
fn upload_checksum_never_panics_on_the_corpus_or_its_mutations() {
    let seeds = corpus("upload-checksum");
    assert!(seeds.iter().any(|s| UploadChecksum::parse(s).is_ok()));
    assert!(seeds.iter().any(|s| UploadChecksum::parse(s).is_err()));
    never_panics(&seeds, 0x5EED_0003, UploadChecksum::parse);
}

#[test]
fn an_upload_checksum_written_for_a_body_matches_it_and_only_it() {
    let mut rng = Rng(0x5EED_0004);
    for _ in 0..cases() / 20 {
        let body = rng.bytes(512);
        let (name, digest) = if rng.below(2) == 0 {
            ("sha256", Sha256::digest(&body).to_vec())
        } else {
            ("SHA1", sha1::Sha1::digest(&body).to_vec())
        };
        let header = format!("{name} {}", STANDARD.encode(digest));
        let checksum = UploadChecksum::parse(&header).unwrap_or_else(|e| panic!("{header}: {e}"));
        let mut hasher = checksum.hasher();
        let split = rng.below(body.len() + 1);
        hasher.update(&body[..split]);
        hasher.update(&body[split..]);
        assert!(checksum.matches(hasher), "{header}");
        let mut other = body.clone();
        other.push(rng.next() as u8);
        let mut hasher = checksum.hasher();
        hasher.update(&other);
        assert!(!checksum.matches(hasher), "{header} matched another body");
    }
}

#[test]
fn byte_sizes_never_panic_and_round_trip_through_their_display() {
    let seeds = corpus("byte-size");
    never_panics(&seeds, 0x5EED_0005, ByteSize::from_str);
    let mut rng = Rng(0x5EED_0006);
    let units: &[(&str, u64)] = &[
        ("", 1),
        ("KiB", 1 << 10),
        ("MB", 1_000_000),
        ("GiB", 1 << 30),
    ];
    for _ in 0..cases() {
        let value = rng.next() >> rng.below(64);
        let shown = ByteSize(value).to_string();
        assert_eq!(
            shown.parse::<ByteSize>().ok(),
            Some(ByteSize(value)),
            "{shown}"
        );
        let (unit, multiplier) = *rng.pick(units);
        let written = format!("{value}{unit}");
        assert_eq!(
            written.parse::<ByteSize>().ok(),
            value.checked_mul(multiplier).map(ByteSize),
            "{written}"
        );
    }
}
