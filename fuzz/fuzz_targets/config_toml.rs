//! Native `.toml` configs through the TOML front end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/nonexistent-fuzz-dir/supervisor.toml");
        let _ = supervisor::config::toml_format::parse(path, text);
    }
});
