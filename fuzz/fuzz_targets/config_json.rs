//! Any bytes as a configuration: parse, validate, lint, and (when valid) build an
//! engine. Nothing may panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = serde_json::from_str::<attrflow::Config>(text) {
        let _ = attrflow::lint::lint(&config);
    }
    if let Ok(config) = attrflow::ValidatedConfig::from_json(text) {
        let _ = attrflow::Engine::new(config);
    }
});
