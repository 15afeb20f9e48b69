//! Any bytes as a scenario file, run on the in-memory engine. A malformed file must be a
//! failing report, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = attrflow::scenario::run_text(text);
});
