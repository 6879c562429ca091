//! Signed operator commands into an `OperatorBook`, applied to gate states and evaluated.
//! See `quorum::fuzzing::operator_command`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quorum::fuzzing::operator_command(data);
});
