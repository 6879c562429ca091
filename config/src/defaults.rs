//! Built-in defaults: the lowest layer (defaults < file < environment).
//!
//! They are applied by the validator to any setting that no layer provided, so
//! [`crate::Config::load`], [`crate::Config::from_figment`] and [`crate::Config::from_toml_str`]
//! all agree. Keep `examples/quorumgate.example.toml` in step with this file.

// [cluster]
pub(crate) const ROUND_INTERVAL: &str = "5s";
pub(crate) const BALLOT_VALID_FOR: &str = "15s";
pub(crate) const MAX_CLOCK_SKEW: &str = "2s";
pub(crate) const MAX_BALLOT_BYTES: u64 = 4 * 1024 * 1024;
pub(crate) const PEER_TIMEOUT: &str = "1s";

// [[checks]]
pub(crate) const CHECK_INTERVAL: &str = "5s";
pub(crate) const CHECK_TIMEOUT: &str = "2s";
pub(crate) const FALL_AFTER_ROUNDS: u32 = 3;
pub(crate) const RISE_AFTER_ROUNDS: u32 = 5;
pub(crate) const HOLD_DOWN: &str = "30s";

// probes
pub(crate) const HTTP_METHOD: &str = "GET";
pub(crate) const HTTP_EXPECT_STATUS: u16 = 200;
pub(crate) const HTTP_MAX_BODY_BYTES: u64 = 64 * 1024;
pub(crate) const DNS_PORT: u16 = 53;

// [local]
pub(crate) const LISTEN: &str = "0.0.0.0:9443";
pub(crate) const STATE_DIR: &str = "/var/lib/quorumgate";
/// Relative to `state_dir`.
pub(crate) const KEY_FILE_NAME: &str = "agent.key";
pub(crate) const LOG_LEVEL: &str = "info";
pub(crate) const PROBE_CONCURRENCY: u64 = 64;
pub(crate) const CONTROL_FAILURES_TO_ABSTAIN: u64 = 1;
pub(crate) const CONTROL_TIMEOUT: &str = "2s";

// limits
/// Hard upper bound of `cluster.max_ballot_bytes`.
pub(crate) const MAX_BALLOT_BYTES_LIMIT: u64 = 16 * 1024 * 1024;
/// Upper bound of `http.max_body_bytes`.
pub(crate) const MAX_BODY_BYTES_LIMIT: u64 = 16 * 1024 * 1024;
/// Upper bound of `local.probe_concurrency`.
pub(crate) const PROBE_CONCURRENCY_LIMIT: u64 = 65_536;
