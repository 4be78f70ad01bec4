//! WebM finished without copying the clusters: the index learnt as bytes arrive, saved and
//! resumed, planned into a new head over the upload's cluster bytes; and the rewrite kept for
//! what cannot stay as uploaded.

use std::fs;
use std::io::Cursor;

use livekeep_webm::ebml;
use livekeep_webm::webm_index::{EntriesMark, WebmIndex, WebmStatus};
use livekeep_webm::{finalize_webm, plan_webm, FinalizePath};

use crate::support::*;
use crate::tools::{fixture, framemd5, scratch};

const CHROMIUM_WEBMS: [&str; 5] = [
    "chromium-vp8-kf1s.webm",
    "chromium-vp9.webm",
    "chromium-vp8-sparse.webm",
    "chromium-opus-only.webm",
    "chromium-vp8-truncated.webm",
];

fn one_pass(bytes: &[u8]) -> WebmIndex {
    let mut index = WebmIndex::new();
    index.push(bytes).expect("a WebM");
    index.finish().expect("a WebM");
    index
}

#[test]
fn mediarecorder_recordings_keep_their_clusters_byte_for_byte() {
    for name in CHROMIUM_WEBMS {
        let upload = fs::read(fixture(name)).unwrap();
        let (done, output) = finalize(&upload).expect("finalizes");
        assert_eq!(done.path, FinalizePath::Verbatim, "{name}");
        let index = one_pass(&upload);
        let (first, end) = index.cluster_region().expect("clusters");
        let clusters = &upload[first as usize..end as usize];
        let head = plan_webm(&index).expect("plans").head.len();
        assert!(head < 4096, "{name}: a new head of a few KiB");
        assert_eq!(
            &output[head..head + clusters.len()],
            clusters,
            "{name}: the upload's clusters follow the head"
        );
        // Then the Cues, as one element, and nothing else.
        let tail = &output[head + clusters.len()..];
        let mut rest = tail;
        while let Some(element) = ebml::Children::new(rest).next() {
            assert_eq!(
                element.id,
                ebml::ID_CUES,
                "{name}: only Cues after the clusters"
            );
            rest = &rest[element.raw.len()..];
        }
        assert!(rest.is_empty(), "{name}: whole elements after the clusters");
        assert!(!tail.is_empty(), "{name}: the Cues end the file");
        let parsed = parse_finalized(&output);
        assert_eq!(parsed.unknown_size_clusters, parsed.clusters, "{name}");
    }
}

#[test]
fn what_verbatim_cannot_carry_is_rewritten() {
    let blocks = [
        simple_block(1, 0, true, &[1; 30]),
        simple_block(2, 0, true, &opus_packet(1)),
        simple_block(1, 50, false, &[2; 20]),
    ];
    let body = |ts: u64| [uint(ebml::ID_TIMESTAMP, ts), blocks.concat()].concat();
    let clean = |ts: u64| el_unknown(ebml::ID_CLUSTER, &body(ts));
    let cases: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("clean unknown-size clusters", vec![clean(0), clean(100)]),
        (
            "known-size clusters",
            vec![
                el(ebml::ID_CLUSTER, &body(0)),
                el(ebml::ID_CLUSTER, &body(100)),
            ],
        ),
        (
            "a Void inside a cluster",
            vec![el_unknown(
                ebml::ID_CLUSTER,
                &[body(0), el(ebml::ID_VOID, &[0; 4])].concat(),
            )],
        ),
        (
            "a Position inside a cluster",
            vec![el_unknown(
                ebml::ID_CLUSTER,
                &[uint(ebml::ID_POSITION, 9), body(0)].concat(),
            )],
        ),
        (
            "blocks before the Timestamp",
            vec![el_unknown(ebml::ID_CLUSTER, &blocks.concat())],
        ),
        (
            "Tags between two clusters",
            vec![clean(0), el(ebml::ID_TAGS, &[]), clean(100)],
        ),
        (
            "an empty cluster between two",
            vec![
                clean(0),
                el(ebml::ID_CLUSTER, &uint(ebml::ID_TIMESTAMP, 50)),
                clean(100),
            ],
        ),
        (
            "an empty cluster after the last",
            vec![
                clean(0),
                clean(100),
                el_unknown(ebml::ID_CLUSTER, &uint(ebml::ID_TIMESTAMP, 200)),
            ],
        ),
        (
            "Tags after the last cluster",
            vec![clean(0), clean(100), el(ebml::ID_TAGS, &uint(0x63C0, 1))],
        ),
    ];
    let verbatim = [
        "clean unknown-size clusters",
        "known-size clusters",
        "an empty cluster after the last",
        "Tags after the last cluster",
    ];
    for (name, clusters) in cases {
        let input = live_file(&av_tracks(), &clusters);
        let (done, output) = finalize(&input).expect(name);
        let expected = if verbatim.contains(&name) {
            FinalizePath::Verbatim
        } else {
            FinalizePath::Rewritten
        };
        assert_eq!(done.path, expected, "{name}");
        // Either way the frames are those of the upload, and the file re-parses strictly.
        let parsed = parse_finalized(&output);
        assert!(
            parsed.frames.iter().all(|f| blocks.contains(&f.raw)),
            "{name}"
        );
        let (again, twice) = finalize(&output).expect(name);
        assert_eq!(twice, output, "{name}: finalizing twice differs");
        assert_eq!(
            again.path,
            FinalizePath::Verbatim,
            "{name}: a finished file stays"
        );
    }
}

#[test]
fn a_truncated_known_size_cluster_is_rewritten_an_unknown_size_one_is_not() {
    let blocks = [
        simple_block(1, 0, true, &[1; 30]),
        simple_block(1, 50, false, &[2; 20]),
    ];
    let body = [uint(ebml::ID_TIMESTAMP, 0), blocks.concat()].concat();
    for (cluster, path) in [
        (el(ebml::ID_CLUSTER, &body), FinalizePath::Rewritten),
        (el_unknown(ebml::ID_CLUSTER, &body), FinalizePath::Verbatim),
    ] {
        let input = live_file(&av_tracks(), &[cluster]);
        let (done, output) = finalize(&input[..input.len() - 5]).expect("finalizes");
        assert_eq!(done.path, path);
        assert_eq!(done.dropped_tail_bytes, (blocks[1].len() - 5) as u64);
        assert_eq!(parse_finalized(&output).frames.len(), 1);
    }
}

/// Pushes `upload` in pieces drawn from `seed`, saving the index after each as a server does
/// after a PATCH (entries appended, then the state) and resuming from what was saved.
fn pushed_saved_and_resumed(upload: &[u8], seed: u64, max: usize) -> WebmIndex {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut index = WebmIndex::new();
    let mut entries = Vec::new();
    let mut mark = EntriesMark::default();
    let mut pos = 0usize;
    while pos < upload.len() {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let n = 1 + (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % max as u64) as usize;
        let end = (pos + n).min(upload.len());
        index.push(&upload[pos..end]).expect("a WebM");
        entries.extend(index.encode_entries(mark));
        mark = index.mark();
        assert_eq!(entries.len() as u64, index.entries_len());
        index = WebmIndex::restore(&index.encode_state(), &entries).expect("resumes");
        assert_eq!(index.mark(), mark);
        // A resumed index goes on from before the element it had only part of.
        pos = index.resume_at() as usize;
        index.push(&upload[pos..end]).expect("a WebM");
        pos = end;
    }
    index.finish().expect("a WebM");
    index
}

#[test]
fn the_index_in_any_pushes_saved_and_resumed_is_the_finalizers() {
    let mut uploads: Vec<Vec<u8>> = CHROMIUM_WEBMS
        .iter()
        .map(|name| fs::read(fixture(name)).unwrap())
        .collect();
    uploads.push(live_file(
        &av_tracks(),
        &[el(
            ebml::ID_CLUSTER,
            &[
                uint(ebml::ID_POSITION, 3),
                uint(ebml::ID_TIMESTAMP, 0),
                simple_block(1, 0, true, &[1; 300]),
                block_group(2, 20, true, Some(20), &opus_packet(2)),
            ]
            .concat(),
        )],
    ));
    for (i, upload) in uploads.iter().enumerate() {
        let whole = one_pass(upload);
        for seed in 1..=4 {
            let max = if seed % 2 == 0 { 8192 } else { 37 };
            let index = pushed_saved_and_resumed(upload, seed, max);
            assert!(index == whole, "upload {i}, seed {seed}");
        }
        let mut finalized = Vec::new();
        let done = finalize_webm(Cursor::new(upload), &mut finalized).unwrap();
        if done.path == FinalizePath::Verbatim {
            let mut served = Vec::new();
            plan_webm(&whole)
                .unwrap()
                .write_to(&mut Cursor::new(upload), &mut served)
                .unwrap();
            assert_eq!(served, finalized, "upload {i}");
        } else {
            assert!(plan_webm(&whole).is_err(), "upload {i}");
        }
    }
}

#[test]
fn a_live_index_plans_the_file_its_bytes_so_far_would_make() {
    let upload = fs::read(fixture("chromium-vp8-kf1s.webm")).unwrap();
    let cut = upload.len() * 2 / 3;
    let mut live = WebmIndex::new();
    live.push(&upload[..cut]).unwrap();
    assert_eq!(live.status(), WebmStatus::Clusters);
    let mut served = Vec::new();
    plan_webm(&live)
        .unwrap()
        .write_to(&mut Cursor::new(&upload), &mut served)
        .unwrap();
    let (_, finalized) = finalize(&upload[..cut]).unwrap();
    assert_eq!(served, finalized);
    // The live index itself goes on.
    live.push(&upload[cut..]).unwrap();
    live.finish().unwrap();
    assert!(live == one_pass(&upload));
}

#[test]
fn verbatim_clusters_decode_to_the_uploads_frames() {
    let upload = fixture("chromium-vp9.webm");
    let output = scratch("verbatim.webm");
    let mut bytes = Vec::new();
    let done = finalize_webm(fs::File::open(&upload).unwrap(), &mut bytes).unwrap();
    assert_eq!(done.path, FinalizePath::Verbatim);
    fs::write(&output, &bytes).unwrap();
    assert_eq!(framemd5(&upload), framemd5(&output));
}

#[test]
fn clusters_know_their_timestamp_and_whether_a_keyframe_opens_them() {
    let keyframes = |name: &str| -> (Vec<bool>, Vec<i64>) {
        let index = one_pass(&fs::read(fixture(name)).unwrap());
        let clusters = index.clusters();
        (
            clusters.iter().map(|c| c.keyframe).collect(),
            clusters.iter().map(|c| c.timestamp).collect(),
        )
    };
    // A keyframe about a second, a cluster a second: many clusters open on one, not all.
    let (kf1s, times) = keyframes("chromium-vp8-kf1s.webm");
    assert!(
        kf1s[0] && kf1s.iter().filter(|&&k| k).count() >= 4,
        "{kf1s:?}"
    );
    // Each one that does has a cue point (the keyframe) at its first block.
    let index = one_pass(&fs::read(fixture("chromium-vp8-kf1s.webm")).unwrap());
    for (i, cluster) in index.clusters().iter().enumerate() {
        let cued = index.cues().iter().any(|cue| cue.cue.cluster == i);
        assert!(!cluster.keyframe || cued, "cluster {i}");
    }
    assert!(times.windows(2).all(|t| t[1] > t[0]), "{times:?}");
    assert_eq!(times[0], 0);
    // Default options: only the first frame of five seconds is a keyframe.
    let (sparse, _) = keyframes("chromium-vp8-sparse.webm");
    assert!(sparse[0] && sparse[1..].iter().all(|&k| !k), "{sparse:?}");
    // No video: a player may start at any cluster.
    let (audio, _) = keyframes("chromium-opus-only.webm");
    assert!(audio.iter().all(|&k| k), "{audio:?}");
    assert_eq!(
        index.latest_keyframe_cluster().map(|c| c.start),
        index
            .clusters()
            .iter()
            .rev()
            .find(|c| c.keyframe)
            .map(|c| c.start)
    );
    assert_eq!(
        index.latest_cluster_timestamp(),
        index.clusters().last().map(|c| c.timestamp)
    );
}
