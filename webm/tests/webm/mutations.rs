//! A deterministic mutation fuzzer: the finalizers never panic, never write a broken file, and
//! stay within their memory bounds.
//!
//! Seeds are real recordings (cut short to keep the run bounded) and
//! hand-built files; each case applies a few bit flips, truncations, splices
//! or size rewrites. The generator is seeded, so a failure names its case and
//! replays exactly.

use std::io::Cursor;
use std::path::Path;

use livekeep_webm::ebml;
use livekeep_webm::mp4::Mp4Index;
use livekeep_webm::{finalize_mp4, finalize_webm, probe_mp4, Error};

use crate::memory::peak_during;
use crate::support::*;
use crate::tools::{ffmpeg_make, scratch};

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

/// MP4 seeds: Chromium's recording and ffmpeg's H.264 + AAC with absolute base offsets.
fn mp4_seeds() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut chromium = std::fs::read(dir.join("chromium-fmp4.mp4")).expect("fixture");
    chromium.truncate(SEED_LEN);
    let ffmpeg = scratch("mutation-seed.mp4");
    ffmpeg_make(
        "-v error -y -f lavfi -i testsrc2=size=96x64:rate=15 \
         -f lavfi -i sine=frequency=440:sample_rate=8000 -t 3 \
         -c:v libx264 -preset veryfast -g 15 -c:a aac -b:a 16k \
         -movflags frag_keyframe+empty_moov -frag_duration 1000000 {out}",
        None,
        &ffmpeg,
    );
    let mut ffmpeg = std::fs::read(&ffmpeg).expect("ffmpeg's output");
    ffmpeg.truncate(SEED_LEN);
    vec![chromium, ffmpeg]
}

/// Heap a finalizer may hold for an input of `len` bytes: its buffers, and the output
/// (a growing vector) with the head it adds.
fn memory_bound(len: usize) -> usize {
    (4 << 20) + 8 * len
}

/// The index's state as bytes: two indexes that encode the same are the same.
fn encoded(index: &Mp4Index) -> (Vec<u8>, Vec<u8>) {
    (index.encode_state(), index.encode_fragments(0))
}

#[test]
fn mutated_mp4s_never_panic_stay_bounded_and_index_alike_in_any_pushes() {
    let seeds = mp4_seeds();
    let mut rng = Rng(0x5EED_4D50_34AB_0002);
    let mut finalized = 0;
    for case in 0..CASES / 2 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let (result, peak) = peak_during(|| {
            std::panic::catch_unwind(|| {
                let mut output = Vec::new();
                finalize_mp4(Cursor::new(&input), &mut output).map(|done| (done, output))
            })
        });
        assert!(
            peak <= memory_bound(input.len()),
            "case {case}: finalize_mp4 held {peak} bytes for {} of input",
            input.len()
        );
        match result {
            Ok(Ok((done, output))) => {
                // Finalized output is a fixed point of finalizing.
                let mut twice = Vec::new();
                match finalize_mp4(Cursor::new(&output), &mut twice) {
                    Ok(again) => {
                        assert!(twice == output, "case {case}: finalizing twice differs");
                        assert_eq!(again.dropped_tail_bytes, 0, "case {case}");
                    }
                    Err(e) => panic!("case {case}: finalized output is refused: {e}"),
                }
                assert!(
                    done.duration_secs.is_finite() && done.duration_secs >= 0.0,
                    "case {case}"
                );
                finalized += 1;
            }
            Ok(Err(Error::NotMp4 | Error::Invalid(_))) => {}
            Ok(Err(e)) => panic!("case {case}: unexpected error {e}"),
            Err(_) => panic!("case {case}: finalize_mp4 panicked"),
        }

        // The same index, pushed at once or in pieces saved and restored between them.
        let mut whole = Mp4Index::new();
        let _ = whole.push(&input);
        let mut index = Mp4Index::new();
        let mut entries = Vec::new();
        let mut saved = 0;
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + 1 + rng.below(4096)).min(input.len());
            let _ = index.push(&input[pos..end]);
            pos = end;
            entries.extend(index.encode_fragments(saved));
            saved = index.fragments().len();
            index = Mp4Index::restore(&index.encode_state(), &entries)
                .unwrap_or_else(|e| panic!("case {case}: a saved state is refused: {e}"));
        }
        assert!(
            encoded(&index) == encoded(&whole),
            "case {case}: pushes differ"
        );

        let (probed, peak) =
            peak_during(|| std::panic::catch_unwind(|| probe_mp4(Cursor::new(&input))));
        assert!(probed.is_ok(), "case {case}: probe_mp4 panicked");
        assert!(
            peak <= memory_bound(input.len()),
            "case {case}: probe_mp4 held {peak}"
        );
        let (_, peak) = peak_during(|| finalize_webm(Cursor::new(&input), Vec::new()));
        assert!(
            peak <= memory_bound(input.len()),
            "case {case}: finalize_webm held {peak}"
        );
    }
    assert!(
        finalized > CASES / 4,
        "only {finalized} of {} cases finalized",
        CASES / 2
    );
}

#[test]
fn mutated_webms_index_alike_in_any_pushes_and_plan_what_finalize_writes() {
    use livekeep_webm::webm_index::{EntriesMark, WebmIndex};
    use livekeep_webm::{plan_webm, FinalizePath};

    let seeds = seeds();
    let mut rng = Rng(0x5EED_5745_424D_0003);
    let mut verbatim = 0;
    for case in 0..CASES / 2 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input, &seeds);
        let mut whole = WebmIndex::new();
        let _ = whole.push(&input);
        let _ = whole.finish();

        // Pushed in pieces, saved after each and resumed from what was saved.
        let mut index = WebmIndex::new();
        let mut entries = Vec::new();
        let mut mark = EntriesMark::default();
        let mut pos = 0;
        while pos < input.len() {
            let end = (pos + 1 + rng.below(3000)).min(input.len());
            let _ = index.push(&input[pos..end]);
            entries.extend(index.encode_entries(mark));
            mark = index.mark();
            index = WebmIndex::restore(&index.encode_state(), &entries)
                .unwrap_or_else(|e| panic!("case {case}: a saved state is refused: {e}"));
            let _ = index.push(&input[index.resume_at() as usize..end]);
            pos = end;
        }
        let _ = index.finish();
        assert!(index == whole, "case {case}: pushes differ");

        let mut output = Vec::new();
        if let Ok(done) = finalize_webm(Cursor::new(&input), &mut output) {
            if done.path == FinalizePath::Verbatim {
                let mut served = Vec::new();
                plan_webm(&whole)
                    .unwrap_or_else(|e| panic!("case {case}: no plan: {e}"))
                    .write_to(&mut Cursor::new(&input), &mut served)
                    .unwrap_or_else(|e| panic!("case {case}: the plan does not write: {e}"));
                assert!(
                    served == output,
                    "case {case}: the plan is not what finalize writes"
                );
                verbatim += 1;
            }
        }
    }
    assert!(
        verbatim > CASES / 10,
        "only {verbatim} cases kept their clusters"
    );
}
