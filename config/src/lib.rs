//! `config` — quorumgate's configuration.
//!
//! Loading is layered with figment (built-in defaults < TOML file < `QUORUMGATE_*` environment,
//! nested keys split on `__`: `QUORUMGATE_LOCAL__AGENT_ID=use1`), deserialized into raw serde
//! structs with `deny_unknown_fields`, then validated into the types below. Every problem found
//! is reported at once, each naming its field path (`checks[1].timeout`) and a fix.
//!
//! The configuration has a *shared* part (`[cluster]`, `[[members]]`, `[[checks]]`), identical
//! on every agent and covered by the [`digest_of`] SHA-256, and a *local* part (`[local]`) that
//! is this agent's own business and outside the digest.
//!
//! # Layout
//! - [`probe`]: validated probe specifications (http, tcp, dns), shared by checks and control probes.
//! - `model`: the validated types ([`Config`], [`SharedConfig`], [`LocalConfig`], …).
//! - `load`: figment layering ([`Config::load`], [`Config::from_figment`], [`env_provider`]).
//! - `raw`: the serde structs (the TOML shape); `lenient`: serde that reports every error.
//! - `validate`: raw → validated, one module per section (`cluster`, `checks`, `probe`, `local`).
//! - `parse`: leaf parsers (durations, URLs, keys, addresses); `defaults`: built-in defaults.
//! - `errors`: [`FieldError`], [`ConfigErrors`]; `digest`: the canonical form and [`digest_of`].
//!
//! # Invariants
//! - A [`Config`] exists only if every rule held; `Err` always carries at least one error.
//! - An unknown key anywhere (file or environment) is an error: a typo fails closed.
//! - [`Config::digest`] depends on the shared settings' values only: not on `[local]`, key or
//!   table order, comments, or whether a value was spelled out or defaulted.

#![forbid(unsafe_code)]

mod defaults;
mod digest;
mod errors;
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
pub use load::{env_provider, ENV_NOT_SETTINGS, ENV_PREFIX, ENV_SEPARATOR};
pub use model::{
    CheckConfig, ClusterSettings, Config, ControlProbe, HealthListener, LocalConfig, LogFormat,
    MemberConfig, PeerTls, ServerTls, SharedConfig,
};
