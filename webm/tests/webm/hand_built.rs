//! Finalizing hand-built EBML, checked by re-parsing the output strictly.

use livekeep_webm::ebml;
use livekeep_webm::{sniff, Container, Error};

use crate::support::*;

/// Video every 50 ms (keyframe first) and Opus every 20 ms for one second from `start`.
fn av_cluster_blocks(start: i64, cluster_ts: i64) -> Vec<Vec<u8>> {
    let mut blocks = Vec::new();
    for i in 0..50 {
        let t = start + i * 20;
        if i % 5 == 0 && i < 50 {
            let v = start + (i / 5) * 100;
            blocks.push(simple_block(
                1,
                (v - cluster_ts) as i16,
                i == 0,
                &[i as u8; 30],
            ));
            blocks.push(simple_block(
                1,
                (v + 50 - cluster_ts) as i16,
                false,
                &[i as u8; 20],
            ));
        }
        blocks.push(simple_block(
            2,
            (t - cluster_ts) as i16,
            true,
            &opus_packet(i as u8),
        ));
    }
    blocks
}

fn cluster_body(ts: u64, blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut body = uint(ebml::ID_TIMESTAMP, ts);
    for block in blocks {
        body.extend_from_slice(block);
    }
    body
}

fn assert_close(actual: f64, expected: f64) {
    assert!(
        (actual - expected).abs() < 1e-6,
        "duration {actual} != expected {expected}"
    );
}

#[test]
fn a_mediarecorder_shaped_file_gets_duration_and_cues() {
    let mut all_blocks = Vec::new();
    let mut clusters = Vec::new();
    for second in 0..3u64 {
        let blocks = av_cluster_blocks(second as i64 * 1000, second as i64 * 1000);
        clusters.push(el_unknown(
            ebml::ID_CLUSTER,
            &cluster_body(second * 1000, &blocks),
        ));
        all_blocks.extend(blocks);
    }
    let input = live_file(&av_tracks(), &clusters);

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    // Video ends at 2950 + 50 ms, audio at 2980 + 20 ms.
    assert_close(done.duration_secs, 3.0);
    assert_close(parsed.duration_secs, 3.0);
    assert_eq!(parsed.cues, vec![(0, 1), (1000, 1), (2000, 1)]);
    assert_eq!(done.cue_points, 3);
    assert_eq!(done.dropped_tail_bytes, 0);
    assert_eq!(parsed.clusters, 3);
    let raw: Vec<_> = parsed.frames.iter().map(|f| f.raw.clone()).collect();
    assert_eq!(
        raw, all_blocks,
        "every block is copied unchanged and in order"
    );
}

#[test]
fn known_size_clusters_lose_void_crc_position_and_prevsize_but_keep_blocks() {
    let blocks = av_cluster_blocks(0, 0);
    let mut body = el(ebml::ID_CRC32, &[1, 2, 3, 4]);
    body.extend(uint(ebml::ID_TIMESTAMP, 0));
    body.extend(uint(ebml::ID_POSITION, 1234));
    body.extend(uint(ebml::ID_PREVSIZE, 99));
    for (i, block) in blocks.iter().enumerate() {
        body.extend_from_slice(block);
        if i == 10 {
            body.extend(el(ebml::ID_VOID, &[0; 7]));
        }
    }
    let input = live_file(
        &av_tracks(),
        &[el(ebml::ID_CLUSTER, &body), el(ebml::ID_VOID, &[0; 3])],
    );

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    let raw: Vec<_> = parsed.frames.iter().map(|f| f.raw.clone()).collect();
    assert_eq!(raw, blocks);
    assert_eq!(parsed.clusters, 1);
    assert_close(done.duration_secs, 1.0);
}

#[test]
fn laced_blocks_are_copied_and_last_for_all_their_frames() {
    let tracks = el(ebml::ID_TRACKS, &track(1, 2, "A_VORBIS", Some(20_000_000)));
    let frame = |n: usize, len: usize| vec![n as u8; len];
    let blocks = vec![
        laced_block(
            1,
            0,
            Lacing::Xiph,
            &[frame(1, 300), frame(2, 2), frame(3, 10)],
        ),
        laced_block(
            1,
            60,
            Lacing::Ebml,
            &[frame(4, 10), frame(5, 7), frame(6, 30), frame(7, 1)],
        ),
        laced_block(1, 140, Lacing::Fixed, &[frame(8, 16), frame(9, 16)]),
    ];
    let input = live_file(
        &tracks,
        &[el_unknown(ebml::ID_CLUSTER, &cluster_body(0, &blocks))],
    );

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    // The fixed-laced block starts at 140 ms and holds two 20 ms frames.
    assert_close(done.duration_secs, 0.18);
    assert_eq!(
        parsed
            .frames
            .iter()
            .map(|f| f.raw.clone())
            .collect::<Vec<_>>(),
        blocks
    );
    assert_eq!(parsed.cues, vec![(0, 1)], "audio only: one cue per cluster");
}

#[test]
fn block_groups_carry_keyframes_and_durations() {
    let tracks = el(ebml::ID_TRACKS, &track(1, 1, "V_VP8", None));
    let blocks = vec![
        block_group(1, 0, true, None, &[1; 10]),
        block_group(1, 40, false, None, &[2; 10]),
        block_group(1, 80, true, None, &[3; 10]),
        block_group(1, 120, false, Some(500), &[4; 10]),
    ];
    let input = live_file(
        &tracks,
        &[el_unknown(ebml::ID_CLUSTER, &cluster_body(0, &blocks))],
    );

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_close(done.duration_secs, 0.62);
    assert_eq!(
        parsed.cues,
        vec![(0, 1), (80, 1)],
        "a cue per video keyframe"
    );
    let keyframes: Vec<bool> = parsed.frames.iter().map(|f| f.keyframe).collect();
    assert_eq!(keyframes, [true, false, true, false]);
}

#[test]
fn empty_clusters_are_dropped() {
    let blocks = av_cluster_blocks(0, 0);
    let input = live_file(
        &av_tracks(),
        &[
            el_unknown(ebml::ID_CLUSTER, &uint(ebml::ID_TIMESTAMP, 0)),
            el(ebml::ID_CLUSTER, &[]),
            el_unknown(ebml::ID_CLUSTER, &[]),
            el_unknown(ebml::ID_CLUSTER, &cluster_body(0, &blocks)),
            el(ebml::ID_CLUSTER, &uint(ebml::ID_TIMESTAMP, 1000)),
        ],
    );

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_eq!(parsed.clusters, 1);
    assert_eq!(parsed.frames.len(), blocks.len());
    assert_eq!(done.cue_points, 1);
}

#[test]
fn a_block_cut_off_mid_way_is_dropped_and_counted() {
    let first = av_cluster_blocks(0, 0);
    let second = av_cluster_blocks(1000, 1000);
    let complete = live_file(
        &av_tracks(),
        &[
            el_unknown(ebml::ID_CLUSTER, &cluster_body(0, &first)),
            el_unknown(ebml::ID_CLUSTER, &cluster_body(1000, &second)),
        ],
    );
    let last_block = second.last().expect("blocks");
    let last_start = complete.len() - last_block.len();
    for cut in [last_start + 1, last_start + 3, complete.len() - 1] {
        let input = &complete[..cut];

        let (done, output) = finalize(input).expect("finalizes");
        let parsed = parse_finalized(&output);

        assert_eq!(done.dropped_tail_bytes, (cut - last_start) as u64);
        assert_eq!(parsed.frames.len(), first.len() + second.len() - 1);
        // Without the last Opus packet (1980 ms), the audio ends at 1980 ms and the video at 2000 ms.
        assert_close(done.duration_secs, 2.0);
    }
}

#[test]
fn a_truncated_known_size_cluster_keeps_its_complete_blocks() {
    let blocks = av_cluster_blocks(0, 0);
    let complete = live_file(
        &av_tracks(),
        &[el(ebml::ID_CLUSTER, &cluster_body(0, &blocks))],
    );
    let cut = complete.len() - 5;

    let (done, output) = finalize(&complete[..cut]).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_eq!(parsed.frames.len(), blocks.len() - 1);
    assert_eq!(
        done.dropped_tail_bytes,
        (blocks.last().map_or(0, Vec::len) - 5) as u64
    );
}

#[test]
fn timestamps_that_do_not_start_at_zero_measure_from_the_first_block() {
    let clusters: Vec<_> = [5000u64, 6000]
        .iter()
        .map(|&ts| {
            let blocks = av_cluster_blocks(ts as i64, ts as i64);
            el_unknown(ebml::ID_CLUSTER, &cluster_body(ts, &blocks))
        })
        .collect();
    let input = live_file(&av_tracks(), &clusters);

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_close(done.duration_secs, 2.0);
    assert_eq!(parsed.cues, vec![(5000, 1), (6000, 1)]);
    assert_eq!(parsed.frames[0].time, 5000);
}

#[test]
fn blocks_with_negative_relative_timestamps_count_from_their_cluster() {
    let tracks = el(ebml::ID_TRACKS, &track(1, 2, "A_OPUS", None));
    let blocks = vec![
        simple_block(1, -40, true, &opus_packet(1)),
        simple_block(1, -20, true, &opus_packet(2)),
        simple_block(1, 0, true, &opus_packet(3)),
    ];
    let input = live_file(
        &tracks,
        &[el_unknown(ebml::ID_CLUSTER, &cluster_body(100, &blocks))],
    );

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_close(done.duration_secs, 0.06);
    assert_eq!(parsed.frames[0].time, 60);
    assert_eq!(parsed.cues, vec![(60, 1)]);
}

#[test]
fn blocks_before_any_cluster_timestamp_get_timestamp_zero() {
    let tracks = el(ebml::ID_TRACKS, &track(1, 2, "A_OPUS", None));
    let blocks = [
        simple_block(1, 0, true, &opus_packet(1)),
        simple_block(1, 20, true, &opus_packet(2)),
    ];
    let mut body = blocks.concat();
    body.extend(uint(ebml::ID_TIMESTAMP, 777));
    let input = live_file(&tracks, &[el_unknown(ebml::ID_CLUSTER, &body)]);

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_close(done.duration_secs, 0.04);
    assert_eq!(
        parsed.frames.iter().map(|f| f.time).collect::<Vec<_>>(),
        [0, 20]
    );
}

#[test]
fn several_video_tracks_index_the_first_one() {
    let tracks = el(
        ebml::ID_TRACKS,
        &[
            track(1, 2, "A_OPUS", None),
            track(2, 1, "V_VP9", None),
            track(3, 1, "V_VP8", None),
        ]
        .concat(),
    );
    let blocks = vec![
        simple_block(1, 0, true, &opus_packet(1)),
        simple_block(3, 0, true, &[3; 9]),
        simple_block(2, 10, true, &[2; 9]),
        simple_block(2, 60, false, &[2; 9]),
    ];
    let input = live_file(
        &tracks,
        &[el_unknown(ebml::ID_CLUSTER, &cluster_body(0, &blocks))],
    );

    let (done, output) = finalize(&input).expect("finalizes");
    let parsed = parse_finalized(&output);

    assert_eq!(parsed.cues, vec![(10, 2)]);
    // Track 2's last frame starts at 60 and lasts its only interval, 50.
    assert_close(done.duration_secs, 0.11);
}

#[test]
fn finalizing_a_finalized_file_changes_nothing() {
    let clusters: Vec<_> = (0..3u64)
        .map(|s| {
            let blocks = av_cluster_blocks(s as i64 * 1000, s as i64 * 1000);
            el_unknown(ebml::ID_CLUSTER, &cluster_body(s * 1000, &blocks))
        })
        .collect();
    let input = live_file(&av_tracks(), &clusters);

    let (first, once) = finalize(&input).expect("finalizes");
    let (second, twice) = finalize(&once).expect("finalizes again");

    assert_eq!(once, twice);
    assert_eq!(first, second);
}

#[test]
fn files_that_are_not_webm_are_refused() {
    let mp4 = b"\0\0\0\x18ftypisom\0\0\0\0isomiso2".to_vec();
    let matroska = [ebml_header("matroska"), el_unknown(ebml::ID_SEGMENT, &[])].concat();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for input in [Vec::new(), vec![0x1A, 0x45], mp4, matroska, garbage] {
        assert!(
            matches!(finalize(&input), Err(Error::NotWebM)),
            "{:02x?} must be refused as not WebM",
            &input[..input.len().min(8)]
        );
    }
}

#[test]
fn webm_without_tracks_is_invalid() {
    let no_segment = ebml_header("webm");
    let no_tracks = [
        ebml_header("webm"),
        el_unknown(
            ebml::ID_SEGMENT,
            &[info(), el_unknown(ebml::ID_CLUSTER, &[])].concat(),
        ),
    ]
    .concat();
    for input in [no_segment, no_tracks] {
        assert!(matches!(finalize(&input), Err(Error::Invalid(_))));
    }
}

#[test]
fn sniff_recognises_webm_and_mp4_from_their_first_bytes() {
    let webm = live_file(&av_tracks(), &[]);
    assert_eq!(sniff(&webm[..64]), Some(Container::WebM));
    assert_eq!(sniff(b"\0\0\0\x18ftypmp42"), Some(Container::Mp4));
    assert_eq!(sniff(&ebml_header("matroska")), None);
    assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), None);
    assert_eq!(sniff(&[]), None);
}
