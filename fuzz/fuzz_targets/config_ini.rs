//! supervisord `.conf` files through the INI front end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/nonexistent-fuzz-dir/supervisord.conf");
        let _ = supervisor::config::ini_format::parse(path, text);
    }
});
