//! Any input: `finalize_webm` returns an error or writes a file it can finalize again identically.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut once = Vec::new();
    if let Ok(first) = livekeep_webm::finalize_webm(Cursor::new(data), &mut once) {
        // Finalized output is a fixed point: finalizing it again changes nothing.
        let mut twice = Vec::new();
        let second = livekeep_webm::finalize_webm(Cursor::new(&once), &mut twice)
            .expect("finalized output must finalize again");
        assert_eq!(once, twice);
        assert_eq!(first.cue_points, second.cue_points);
    }
});
