//! Any input: `probe_mp4` returns without panicking.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = livekeep_webm::probe_mp4(Cursor::new(data)) {
        assert!(info.duration_secs.is_finite() && info.duration_secs >= 0.0);
    }
});
