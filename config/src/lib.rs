//! `config` — quorumgate's configuration.
//!
//! Loading is layered with figment (built-in defaults < TOML file < `QUORUMGATE_*` environment,
//! nested keys split on `__`: `QUORUMGATE_LOCAL__AGENT_ID=use1`), deserialized into raw serde
//! structs with `deny_unknown_fields`, then validated into the types below. Every problem found
//! is reported at once, each naming its field path (`checks[1].timeout`) and a fix.
//!
//! The configuration has a *shared* part, identical on every agent and covered by the
//! [`digest_of`] SHA-256: `[cluster]` (protocol timing, `operator_max_valid_for`),
//! `[[members]]` (peer URL, key, and the `health_url` Route 53 checks), `[[checks]]`,
//! `[[gates]]` (with their `[[gates.targets]]`: which checks move which Route 53 records, and
//! the safety policy, as a validated [`quorum::GateSpec`] plus the DNS details in
//! [`GateConfig`]) and `[[operators]]` (who may sign operator commands). The *local* part
//! (`[local]`, including `[local.route53]`: how this agent reaches the Route 53 API) is this
//! agent's own business and outside the digest.
//!
//! # Layout
//! - [`probe`]: validated probe specifications (http, tcp, dns, databases), shared by checks and
//!   control probes.
//! - `model`: the validated types ([`Config`], [`SharedConfig`], [`LocalConfig`], [`GateConfig`],
//!   …).
//! - `load`: figment layering ([`Config::load`], [`Config::from_figment`], [`env_provider`]).
//! - `raw`: the serde structs (the TOML shape); `lenient`: serde that reports every error.
//! - `validate`: raw → validated, one module per section (`cluster`, `checks`, `probe`, `db`,
//!   `gates` (with `targets` and `rules`), `operators`, `local` and `route53`).
//! - `parse`: leaf parsers (durations, URLs, keys, addresses, DNS names, zone ids);
//!   `defaults`: built-in defaults.
//! - `errors`: [`FieldError`], [`ConfigErrors`]; `digest`: the canonical form and [`digest_of`].
//!
//! # Invariants
//! - A [`Config`] exists only if every rule held; `Err` always carries at least one error.
//! - An unknown key anywhere (file or environment) is an error: a typo fails closed.
//! - [`Config::digest`] depends on the shared settings' values only: not on `[local]`, key or
//!   table order, comments, or whether a value was spelled out or defaulted.
//! - References hold: every check a gate names exists (a `lag_check` is a replication-lag
//!   check), every member has a `health_url` when a gate uses the data plane, and a
//!   [`GateConfig`]'s targets are in its spec's target order.
//! - An array of tables (`[[gates]]`, …) cannot be patched element by element from the
//!   environment: a `QUORUMGATE_GATES__0__…` variable is an error naming it, never half-applied.

#![forbid(unsafe_code)]

mod defaults;
mod digest;
mod errors;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod lenient;
mod load;
mod model;
mod parse;
pub mod probe;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

pub use digest::digest_of;
pub use errors::{ConfigErrors, FieldError};
pub use load::{env_provider, local_files, ENV_NOT_SETTINGS, ENV_PREFIX, ENV_SEPARATOR};
pub use model::{
    CheckConfig, ClusterSettings, Config, ControlProbe, DrillConfig, GateConfig, GateTargetConfig,
    HealthCheckSettings, HealthListener, LocalConfig, LogFormat, MemberConfig, OperatorConfig,
    PeerTls, Plane, PromoteAction, PromoteConfig, RecordAnswer, Route53Local, ServerTls,
    SharedConfig,
};
pub use parse::base64_problem;
