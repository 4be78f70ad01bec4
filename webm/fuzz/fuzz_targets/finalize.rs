//! Any input: `finalize_webm` returns an error or writes a file it can finalize again identically;
//! when it keeps the clusters verbatim, that file is `plan_webm`'s layout; the index pushed in two
//! pieces, saved and resumed between them, is the index pushed at once.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use livekeep_webm::webm_index::{EntriesMark, WebmIndex};
use livekeep_webm::FinalizePath;

fuzz_target!(|data: &[u8]| {
    let mut once = Vec::new();
    if let Ok(first) = livekeep_webm::finalize_webm(Cursor::new(data), &mut once) {
        // Finalized output is a fixed point: finalizing it again changes nothing.
        let mut twice = Vec::new();
        let second = livekeep_webm::finalize_webm(Cursor::new(&once), &mut twice)
            .expect("finalized output must finalize again");
        assert_eq!(once, twice);
        assert_eq!(first.cue_points, second.cue_points);
        if first.path == FinalizePath::Verbatim {
            let mut index = WebmIndex::new();
            index.push(data).expect("indexed once already");
            index.finish().expect("indexed once already");
            let mut served = Vec::new();
            livekeep_webm::plan_webm(&index)
                .expect("a verbatim plan")
                .write_to(&mut Cursor::new(data), &mut served)
                .expect("writes");
            assert_eq!(served, once);
        }
    }
    let mut whole = WebmIndex::new();
    let _ = whole.push(data);
    let _ = whole.finish();
    let split = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let mut first = WebmIndex::new();
    let _ = first.push(&data[..split]);
    let entries = first.encode_entries(EntriesMark::default());
    let mut resumed = WebmIndex::restore(&first.encode_state(), &entries).expect("restores");
    let _ = resumed.push(&data[resumed.resume_at() as usize..]);
    let _ = resumed.finish();
    assert!(resumed == whole);
});
