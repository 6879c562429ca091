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
pub(crate) const OPERATOR_MAX_VALID_FOR: &str = "1h";

// [[checks]]
pub(crate) const CHECK_INTERVAL: &str = "5s";
pub(crate) const CHECK_TIMEOUT: &str = "2s";
pub(crate) const FALL_AFTER_ROUNDS: u32 = 3;
pub(crate) const RISE_AFTER_ROUNDS: u32 = 5;
pub(crate) const HOLD_DOWN: &str = "30s";

// [[gates]] (the policy defaults are `quorum::gate::GatePolicy::default()`'s)
pub(crate) const GATE_TTL: u64 = 60;
pub(crate) const GATE_MIN_SERVING: u64 = 1;
pub(crate) const GATE_MAX_CHANGES: u64 = 3;
pub(crate) const GATE_WINDOW: &str = "1h";
pub(crate) const GATE_WAIT_PERIOD: &str = "5s";
pub(crate) const GATE_WRITER_STAGGER: &str = "2s";
pub(crate) const HEALTH_CHECK_INTERVAL: u64 = 10;
pub(crate) const HEALTH_CHECK_FAILURE_THRESHOLD: u64 = 2;

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
/// `local.audit_rotate_bytes`: 64 MiB.
pub(crate) const AUDIT_ROTATE_BYTES: u64 = 64 * 1024 * 1024;
/// `local.audit_keep_files`.
pub(crate) const AUDIT_KEEP_FILES: u64 = 8;
pub(crate) const HTTP_BODY_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
pub(crate) const CONTROL_FAILURES_TO_ABSTAIN: u64 = 1;
pub(crate) const CONTROL_TIMEOUT: &str = "2s";

// [local.route53]
pub(crate) const ROUTE53_CONNECT_TIMEOUT: &str = "3s";
pub(crate) const ROUTE53_ATTEMPT_TIMEOUT: &str = "10s";
pub(crate) const ROUTE53_OPERATION_TIMEOUT: &str = "60s";
pub(crate) const ROUTE53_MAX_REQUESTS_PER_SECOND: u64 = 4;
pub(crate) const ROUTE53_INSYNC_TIMEOUT: &str = "2m";

// limits
/// Hard upper bound of `cluster.max_ballot_bytes`.
pub(crate) const MAX_BALLOT_BYTES_LIMIT: u64 = 16 * 1024 * 1024;
/// Upper bound of `http.max_body_bytes`.
pub(crate) const MAX_BODY_BYTES_LIMIT: u64 = 16 * 1024 * 1024;
/// Bounds of `local.http_body_budget_bytes`: at least one ballot of the largest size any
/// cluster may allow, at most 4 GiB.
pub(crate) const HTTP_BODY_BUDGET_MIN: u64 = MAX_BALLOT_BYTES_LIMIT;
pub(crate) const HTTP_BODY_BUDGET_LIMIT: u64 = 4 * 1024 * 1024 * 1024;
/// Upper bound of `local.probe_concurrency`.
pub(crate) const PROBE_CONCURRENCY_LIMIT: u64 = 65_536;
/// Bounds of `local.audit_rotate_bytes`: 64 KiB to 1 TiB.
pub(crate) const AUDIT_ROTATE_BYTES_MIN: u64 = 64 * 1024;
pub(crate) const AUDIT_ROTATE_BYTES_MAX: u64 = 1 << 40;
/// Upper bound of `local.audit_keep_files`.
pub(crate) const AUDIT_KEEP_FILES_LIMIT: u64 = 1000;
/// Upper bound of `cluster.operator_max_valid_for` (24 h).
pub(crate) const OPERATOR_MAX_VALID_FOR_LIMIT_MS: u64 = 24 * 3_600_000;
/// Upper bound of a gate's `ttl`: Route 53's (2^31 - 1 seconds).
pub(crate) const TTL_LIMIT: u64 = 2_147_483_647;
/// Route 53's per-account API limit, requests per second.
pub(crate) const ROUTE53_MAX_REQUESTS_PER_SECOND_LIMIT: u64 = 5;
/// Children of one CALCULATED health check (one per member on a data-plane gate).
pub(crate) const CALCULATED_CHILDREN_LIMIT: usize = 255;
/// Fewest distinct Route 53 checker regions when any are listed.
pub(crate) const MIN_HEALTH_CHECK_REGIONS: usize = 3;
