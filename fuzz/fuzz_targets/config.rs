//! TOML text into a validated `Config` (or every error). See `config::fuzzing::config`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = config::fuzzing::config(data);
});
