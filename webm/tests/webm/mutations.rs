//! A deterministic mutation fuzzer: the finalizer never panics and never writes a broken file.
//!
//! Seeds are real recordings (cut short to keep the run bounded) and
//! hand-built files; each case applies a few bit flips, truncations, splices
//! or size rewrites. The generator is seeded, so a failure names its case and
//! replays exactly.

use std::path::Path;

use livekeep_webm::ebml;
use livekeep_webm::{probe_mp4, Error};

use crate::support::*;

/// Cases per run: a few seconds in a debug build.
const CASES: u64 = 5000;
/// Seeds are cut to this length so every case stays fast.
const SEED_LEN: usize = 48 << 10;

/// xorshift64*: tiny, deterministic, good enough to pick offsets.
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
}

fn seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seeds: Vec<Vec<u8>> = [
        "chromium-vp8-kf1s.webm",
        "chromium-vp9.webm",
        "chromium-opus-only.webm",
        "chromium-fmp4.mp4",
    ]
    .iter()
    .map(|name| {
        let mut bytes = std::fs::read(dir.join(name)).expect("fixture");
        bytes.truncate(SEED_LEN);
        bytes
    })
    .collect();
    let blocks = [
        simple_block(1, 0, true, &[1; 40]),
        simple_block(2, 0, true, &opus_packet(1)),
        laced_block(2, 20, Lacing::Xiph, &[vec![2; 300], vec![3; 4], vec![4; 9]]),
        laced_block(2, 80, Lacing::Ebml, &[vec![5; 9], vec![6; 3], vec![7; 2]]),
        laced_block(2, 140, Lacing::Fixed, &[vec![8; 4], vec![9; 4]]),
        block_group(1, 50, false, Some(50), &[10; 30]),
    ];
    let mut cluster = uint(ebml::ID_TIMESTAMP, 1000);
    cluster.extend(blocks.concat());
    seeds.push(live_file(
        &av_tracks(),
        &[
            el_unknown(ebml::ID_CLUSTER, &cluster),
            el(ebml::ID_CLUSTER, &cluster),
        ],
    ));
    seeds
}

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(7) {
            0 => {
                let at = rng.below(len);
                if let Some(byte) = input.get_mut(at) {
                    *byte ^= 1 << rng.below(8);
                }
            }
            1 => {
                let at = rng.below(len);
                let special = [0x00, 0xFF, 0x01, 0x80, 0x7F, 0x40][rng.below(6)];
                if let Some(byte) = input.get_mut(at) {
                    *byte = special;
                }
            }
            2 => input.truncate(rng.below(len + 1)),
            3 => {
                // Splice a piece of another seed in.
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let piece = &other[from..(from + rng.below(512)).min(other.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, piece.iter().copied());
            }
            4 => {
                // Duplicate a range (a repeated chunk upload).
                let from = rng.below(len);
                let to = (from + rng.below(4096)).min(len);
                let piece = input[from..to].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, piece);
            }
            5 => {
                // Rewrite a byte that may start a size as "unknown size".
                let at = rng.below(len);
                if let Some(byte) = input.get_mut(at) {
                    *byte = 0xFF;
                }
            }
            _ => {
                let at = rng.below(len);
                let end = (at + rng.below(64)).min(len);
                input.drain(at..end);
            }
        }
    }
}

#[test]
fn mutated_inputs_never_panic_and_either_fail_or_reparse() {
    let seeds = seeds();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut finalized = 0;
    for case in 0..CASES {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let result = std::panic::catch_unwind(|| finalize(&input));
        match result {
            Ok(Ok((done, output))) => {
                let parsed = std::panic::catch_unwind(|| parse_finalized(&output))
                    .unwrap_or_else(|_| panic!("case {case}: the output does not re-parse"));
                assert_eq!(parsed.cues.len(), done.cue_points, "case {case}");
                // Finalized output is a fixed point of finalizing.
                match finalize(&output) {
                    Ok((_, twice)) => {
                        assert!(twice == output, "case {case}: finalizing twice differs")
                    }
                    Err(e) => panic!("case {case}: finalized output is refused: {e}"),
                }
                assert!(
                    done.duration_secs.is_finite() && done.duration_secs >= 0.0,
                    "case {case}"
                );
                finalized += 1;
            }
            Ok(Err(Error::NotWebM | Error::Invalid(_))) => {}
            Ok(Err(e)) => panic!("case {case}: unexpected error {e}"),
            Err(_) => panic!("case {case}: finalize panicked"),
        }
        let probed = std::panic::catch_unwind(|| probe_mp4(std::io::Cursor::new(&input)));
        assert!(probed.is_ok(), "case {case}: probe_mp4 panicked");
    }
    // Most mutations leave a usable file: the fuzzer must exercise the writer, not just the refusals.
    assert!(
        finalized > CASES / 4,
        "only {finalized} of {CASES} cases finalized"
    );
}
