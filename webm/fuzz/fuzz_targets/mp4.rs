//! Any input: `probe_mp4`, `finalize_mp4` and the fragment index never panic; a finalized file
//! finalizes again to itself; the index pushed in two pieces, saved and restored between them,
//! is the index pushed at once.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use livekeep_webm::mp4::Mp4Index;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = livekeep_webm::probe_mp4(Cursor::new(data)) {
        assert!(info.duration_secs.is_finite() && info.duration_secs >= 0.0);
    }
    let mut once = Vec::new();
    if livekeep_webm::finalize_mp4(Cursor::new(data), &mut once).is_ok() {
        let mut twice = Vec::new();
        livekeep_webm::finalize_mp4(Cursor::new(&once), &mut twice)
            .expect("finalized output must finalize again");
        assert_eq!(once, twice);
    }
    let mut whole = Mp4Index::new();
    let _ = whole.push(data);
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut first = Mp4Index::new();
    let _ = first.push(&data[..split]);
    let entries = first.encode_fragments(0);
    let mut resumed = Mp4Index::restore(&first.encode_state(), &entries).expect("restores");
    let _ = resumed.push(&data[split..]);
    assert_eq!(resumed.encode_state(), whole.encode_state());
    assert_eq!(resumed.encode_fragments(0), whole.encode_fragments(0));
});
