//! The quorumgate agent: the I/O shell around the pure `quorum` core.
//!
//! # Layout
//! - [`run`]: the main loop (`quorumgate agent`) — probes in, ballots out, decisions.
//! - [`node`]: the agent's synchronous state: the quorum engine plus its own observations.
//! - [`server`]: the HTTP surface (health for Route 53, ballots for peers, status, metrics).
//! - [`exchange`]: pushing ballots to peers and pulling to catch up; [`bundle`] its wire form.
//! - [`probe`], [`scheduler`], [`net`], [`tls`]: probing targets on time, with reason codes.
//! - [`route53`]: the Route 53 control plane: API port, SDK adapter, the fenced writer.
//! - [`provision`]: the data plane in Route 53: `plan`, `provision`, `provision --terraform`.
//! - [`drill`]: game-day drills: the agents' side and the `drill` command with its report.
//! - [`cli`], [`status`], [`demo`], [`keys`], [`telemetry`], [`clock`]: the operator's side.
//! - [`sdnotify`]: systemd's notification protocol (`READY=1`, `WATCHDOG=1`, `STOPPING=1`).
#![forbid(unsafe_code)]

pub mod audit;
pub mod aws;
pub mod bundle;
pub mod cli;
pub mod client;
pub mod clock;
pub mod decisions;
pub mod demo;
pub mod devcluster;
pub mod drill;
pub mod exchange;
pub mod fdlimit;
pub mod filecheck;
#[doc(hidden)]
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod gates;
pub mod init;
pub mod intake;
pub mod keys;
pub mod local_resource;
pub mod net;
pub mod node;
pub mod operator_cli;
pub mod probe;
pub mod provision;
pub mod route53;
pub mod run;
pub mod scheduler;
pub mod sdnotify;
pub mod server;
pub mod status;
pub mod target_app;
pub mod telemetry;
pub mod tls;
