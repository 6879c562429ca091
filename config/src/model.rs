//! The validated configuration: what the agent consumes. Built only by the validator, so
//! holding a [`Config`] means every rule in `validate` holds. Units are in the field names.

use std::net::SocketAddr;
use std::path::PathBuf;

use quorum::{AgentId, CheckId, ConfigDigest, DecisionPolicy, Membership, VerifyingKey};
use url::Url;

use crate::errors::FieldError;
use crate::probe::ProbeSpec;

/// A loaded, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Identical on every agent; covered by [`Config::digest`].
    pub shared: SharedConfig,
    /// This agent's own settings; not covered by the digest.
    pub local: LocalConfig,
    /// SHA-256 of the canonical form of `shared` (see [`crate::digest_of`]).
    pub digest: ConfigDigest,
    /// Valid but probably unintended settings (e.g. no control probes). The agent logs them at
    /// start-up; `quorumgate check` prints them.
    pub warnings: Vec<FieldError>,
}

impl Config {
    /// The member with this id.
    #[must_use]
    pub fn member(&self, id: &AgentId) -> Option<&MemberConfig> {
        self.shared.members.iter().find(|m| &m.id == id)
    }

    /// The check with this id.
    #[must_use]
    pub fn check(&self, id: &CheckId) -> Option<&CheckConfig> {
        self.shared.checks.iter().find(|c| &c.id == id)
    }

    /// This agent's own member entry (`local.agent_id` always names one).
    #[must_use]
    pub fn me(&self) -> Option<&MemberConfig> {
        self.member(&self.local.agent_id)
    }
}

/// The part of the configuration every agent must agree on.
#[derive(Clone, Debug)]
pub struct SharedConfig {
    pub cluster: ClusterSettings,
    /// In file order.
    pub members: Vec<MemberConfig>,
    /// Built from `members`: ids and keys unique, Q = ⌊N/2⌋+1.
    pub membership: Membership,
    /// In file order.
    pub checks: Vec<CheckConfig>,
    /// In file order; ids unique.
    pub gates: Vec<GateConfig>,
    /// In file order; ids and keys unique.
    pub operators: Vec<OperatorConfig>,
}

/// `[cluster]`: protocol timing and limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    pub name: String,
    /// How often each agent issues a ballot.
    pub round_interval_ms: u64,
    /// How long a ballot counts after it was issued; > `round_interval_ms`.
    pub ballot_valid_for_ms: u32,
    /// How far in the future a ballot's `issued_at` may be.
    pub max_clock_skew_ms: u64,
    /// Hard cap on an encoded ballot; ≤ 16 MiB.
    pub max_ballot_bytes: usize,
    /// Timeout of one ballot POST to a peer; < `round_interval_ms`.
    pub peer_timeout_ms: u64,
    /// The operator acknowledged a 1- or 2-member (non-fault-tolerant) setup.
    pub allow_single_member: bool,
    /// Longest `valid_for` an operator command may carry (bounds how long an approval or a
    /// pending override lingers).
    pub operator_max_valid_for_ms: u64,
}

/// `[[members]]`: one agent of the quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberConfig {
    pub id: AgentId,
    pub region: String,
    /// Peer base URL (http or https), e.g. `https://use1.internal:9443/`.
    pub url: Url,
    pub public_key: VerifyingKey,
    /// The public base URL Route 53's health checkers use for this agent (its health
    /// listener), e.g. `https://use1.example.com:8443/`. Required by data-plane gates.
    pub health_url: Option<Url>,
}

/// `[[checks]]`: one thing the quorum decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    pub id: CheckId,
    pub interval_ms: u64,
    /// < `interval_ms`.
    pub timeout_ms: u64,
    pub policy: DecisionPolicy,
    pub probe: ProbeSpec,
}

/// `[local]`: this agent only; outside the digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// Names one of the members.
    pub agent_id: AgentId,
    pub listen: SocketAddr,
    /// The agent's ed25519 signing key. Default: `{state_dir}/agent.key`.
    pub key_file: PathBuf,
    pub state_dir: PathBuf,
    pub log_format: LogFormat,
    /// A tracing filter: `info`, or `warn,quorumgate=debug`.
    pub log_level: String,
    /// Most probes in flight at once.
    pub probe_concurrency: usize,
    /// Request body bytes the HTTP server holds at once, across every connection; an upload
    /// beyond it is answered 503 with `Retry-After`.
    pub http_body_budget_bytes: usize,
    /// `None`: derive the jitter seed from the agent id.
    pub jitter_seed: Option<u64>,
    /// The audit log rotates before an append would grow `audit.jsonl` past this size.
    pub audit_rotate_bytes: u64,
    /// Rotated audit files kept (`audit.jsonl.1` … `.N`); older ones are deleted. ≥ 1.
    pub audit_keep_files: u64,
    /// Consecutive failed control rounds after which this agent votes Abstain instead of
    /// Unhealthy. ≥ 1.
    pub control_failures_to_abstain: u32,
    /// `Some`: serve HTTPS.
    pub tls: Option<ServerTls>,
    /// `Some`: a second, public listener that serves only `/v1/health/*`, `/livez` and
    /// `/readyz` — for Route 53 health checkers, which present no client certificate.
    pub health_listener: Option<HealthListener>,
    pub peer_tls: PeerTls,
    /// Probes of this agent's own network (abstention). May be empty (with a warning).
    pub control: Vec<ControlProbe>,
    /// How this agent reaches the Route 53 API (control-plane gates, `plan`, `provision`).
    pub route53: Route53Local,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// `[local.tls]`: serve HTTPS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// `Some`: require client certificates signed by this CA (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
}

/// `local.health_listen` and `[local.health_tls]`: the public, read-only listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthListener {
    pub listen: SocketAddr,
    /// `Some`: serve HTTPS (Route 53 HTTPS health checks do not verify the certificate).
    pub tls: Option<ServerTls>,
}

/// `[local.peer_tls]`: how this agent connects to its peers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PeerTls {
    /// `None`: the platform's roots plus the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Both or neither: the client certificate for mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
}

/// `[[local.control]]`: a control probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlProbe {
    /// Unique among control probes; same character rules as a check id.
    pub id: String,
    pub timeout_ms: u64,
    pub probe: ProbeSpec,
}

/// `[[operators]]`: a person (or break-glass role) allowed to sign `freeze`, `unfreeze`,
/// `approve` and `override` commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperatorConfig {
    pub id: quorum::OperatorId,
    pub public_key: VerifyingKey,
}

/// Which Route 53 plane a gate uses (docs/route53.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plane {
    /// `provision` creates one HTTPS string-match health check per agent and check, one
    /// CALCULATED check per check, and records that carry them; failover needs no API call.
    Data,
    /// The agents rewrite the records themselves, through the fence, within the safety rules.
    Control,
}

impl Plane {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Plane::Data => "data",
            Plane::Control => "control",
        }
    }
}

/// What a target's record answers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordAnswer {
    /// Literal values (`A`/`AAAA` addresses, a `CNAME` target, …), in file order; with the
    /// gate's TTL.
    Values(Vec<String>),
    /// A Route 53 alias (no TTL).
    Alias {
        hosted_zone_id: String,
        dns_name: String,
        evaluate_target_health: bool,
    },
}

/// `[[gates.targets]]`: where one target's traffic goes in DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateTargetConfig {
    pub id: quorum::TargetId,
    pub answer: RecordAnswer,
}

/// Route 53 health checks created by `provision` for a data-plane gate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSettings {
    /// 10 (fast) or 30 seconds.
    pub request_interval_s: u32,
    /// 1..=10 consecutive checker results before Route 53 changes the status.
    pub failure_threshold: u32,
    /// Checker regions (Route 53 region codes); empty: Route 53's default set.
    pub regions: Vec<String>,
}

/// `[[gates]]`: one gate: which checks move which records, and its safety rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateConfig {
    /// Id, kind (targets, their checks and lag checks), policy (`min_serving`, velocity,
    /// `auto_failback`, `max_rpo`) and mode (live / dry-run). `spec.id()` is one DNS label.
    pub spec: quorum::GateSpec,
    pub plane: Plane,
    /// Hosted zone id without the `/hostedzone/` prefix, e.g. `Z0123456789ABC`.
    pub zone_id: String,
    /// The zone's name, lower case, with the trailing dot: `example.com.`.
    pub zone_name: String,
    /// The record the gate manages, lower case, with the trailing dot, inside the zone.
    pub record_name: String,
    /// `A`, `AAAA` or `CNAME`.
    pub record_type: String,
    /// TTL of value records (aliases have none).
    pub ttl_s: u32,
    /// One per target of `spec`, in `spec`'s target order.
    pub targets: Vec<GateTargetConfig>,
    /// Control plane: a writer of rank r waits r × this before trying to write, so the
    /// preferred writer goes first.
    pub writer_stagger_ms: u64,
    /// Data plane: the health checks `provision` creates.
    pub health_checks: HealthCheckSettings,
    /// Control-plane failover gates: promote the standby database when failing over to the
    /// secondary. `None` (the default): DNS only.
    pub promote: Option<PromoteConfig>,
    /// `[gates.drill]`: what guards the gate's game-day drills and what they must achieve.
    pub drill: DrillConfig,
}

/// `[gates.drill]` of a control-plane failover gate (every field optional).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DrillConfig {
    /// A check whose Unhealthy decision ends a running drill at once (the secondary's own
    /// check always does). Never the primary's check.
    pub abort_check: Option<CheckId>,
    /// Objective: drill start → the failover change INSYNC (or accepted) at most this long.
    pub rto_ms: Option<u64>,
    /// Objective: the secondary's replication lag at the failover at most this much (needs the
    /// secondary's `lag_check`).
    pub rpo_ms: Option<u64>,
}

/// `[gates.promote]`: what a failover to the secondary also does to the database, once, by the
/// agent whose fenced batch won, after an audit record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromoteConfig {
    pub action: PromoteAction,
    /// `None`: the standard region chain.
    pub region: Option<String>,
    /// Endpoint override (an emulator, a VPC endpoint).
    pub endpoint_url: Option<Url>,
}

/// The database action of a failover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromoteAction {
    /// `PromoteReadReplica` of this RDS instance (skipped when it is no read replica).
    RdsReadReplica { instance: String },
    /// `FailoverDBCluster` of this Aurora cluster, to `target_instance` when given (skipped
    /// when that instance already is the writer).
    AuroraFailover {
        cluster: String,
        target_instance: Option<String>,
    },
}

impl GateConfig {
    /// The target config with this id.
    #[must_use]
    pub fn target(&self, id: &quorum::TargetId) -> Option<&GateTargetConfig> {
        self.targets.iter().find(|t| &t.id == id)
    }
}

/// `[local.route53]`: how this agent reaches the Route 53 API. Credentials come from the
/// standard AWS chain (environment, profile, instance/task role); outside the digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route53Local {
    /// Endpoint override (an emulator); `None`: the SDK's endpoint resolution.
    pub endpoint_url: Option<Url>,
    /// `None`: the standard region chain, else us-east-1 (Route 53's control plane).
    pub region: Option<String>,
    pub connect_timeout_ms: u64,
    /// One request and its response.
    pub attempt_timeout_ms: u64,
    /// One call, retries included.
    pub operation_timeout_ms: u64,
    /// The shared token bucket's rate, 1..=5 (Route 53's per-account limit is 5).
    pub max_requests_per_second: u32,
    /// How long to poll GetChange for INSYNC after a write (0: do not wait).
    pub insync_timeout_ms: u64,
}
