//! One client connection's raw bytes into the agent's HTTP/1 server (hyper, router, limits,
//! `POST`/`GET /v1/ballots`), then a peer's pull. See `quorumgate::fuzzing::HttpHarness`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quorumgate::fuzzing::HttpHarness;

static HARNESS: OnceLock<HttpHarness> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let _ = HARNESS.get_or_init(HttpHarness::new).run(data);
});
