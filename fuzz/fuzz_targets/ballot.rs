//! Signed ballots into a `BallotBook`: decoding, member keys, receipt validation (digest,
//! seq, skew, expiry) and the tally's certificates. See `quorum::fuzzing::ballot`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = quorum::fuzzing::ballot(data);
});
