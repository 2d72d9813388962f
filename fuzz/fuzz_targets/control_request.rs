//! Control requests: `METHOD\nPATH\nQUERY\nBODY` through the decoder the socket server uses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = supervisor::control::api::decode_fuzz_input(data);
});
