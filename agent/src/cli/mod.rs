//! Command-line interface: every subcommand's arguments, and the short-lived subcommands'
//! implementations (`check` and `keygen` in [`check`], `verify` in [`verify`], `status` in
//! [`status`]); the long-running ones live in [`crate::run`] (`agent`) and [`crate::demo`].

mod check;
mod status;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use url::Url;

pub use crate::operator_cli::OperatorArgs;
pub use check::{check, keygen, public_key};
pub use status::{render_status, status};
pub use verify::{verify, verify_audit};

/// quorumgate: a quorum of signed health-check ballots in front of Route 53.
#[derive(Debug, Parser)]
#[command(name = "quorumgate", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an agent: probe, sign, exchange ballots, decide, serve /v1/health.
    Agent {
        /// Config file (TOML). QUORUMGATE_* environment variables override it.
        #[arg(long, short, env = "QUORUMGATE_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config and the files it names (keys, certificates) and print every problem
    /// with its field path; exit 1 if any.
    Check {
        #[arg(
            long,
            short,
            env = "QUORUMGATE_CONFIG",
            required_unless_present = "all_members"
        )]
        config: Option<PathBuf>,
        /// Check every member's config of a cluster instead: these files, and the *.toml files
        /// in these directories (and one level below). They must validate, share one digest
        /// and give every member exactly one config.
        #[arg(long, num_args = 1.., value_name = "DIR_OR_FILE")]
        all_members: Vec<PathBuf>,
        /// Validate the config only, not the files it names (e.g. on a workstation that does
        /// not hold the hosts' keys and certificates).
        #[arg(long)]
        skip_files: bool,
    },
    /// Generate an agent signing key (and, optionally, a development TLS PKI), or print an
    /// existing key's public key (--public-key).
    Keygen {
        /// Where to write the private key (mode 0600; never overwritten).
        #[arg(
            long,
            required_unless_present = "public_key",
            conflicts_with = "public_key"
        )]
        out: Option<PathBuf>,
        /// Print the `public_key = "…"` line of this existing key file and write nothing.
        #[arg(long, value_name = "KEY_FILE", conflicts_with_all = ["tls_dir"])]
        public_key: Option<PathBuf>,
        /// Also write a development CA and one server+client certificate per --names entry here.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Names for --tls-dir certificates (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "agent")]
        names: Vec<String>,
    },
    /// Show a running agent's view: members, checks, tallies, decisions.
    Status {
        /// Agent base URL, e.g. https://127.0.0.1:9443
        #[arg(long, default_value = "http://127.0.0.1:9443")]
        url: Url,
        /// CA bundle to verify an HTTPS agent with.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// Client certificate (PEM) for an agent that requires mutual TLS.
        #[arg(long, requires = "key_file")]
        cert_file: Option<PathBuf>,
        /// The client certificate's private key (PEM).
        #[arg(long, requires = "cert_file")]
        key_file: Option<PathBuf>,
        /// Print the raw JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Verify a decision certificate, or a whole audit log, against the configured members' keys.
    Verify {
        #[arg(long, short, env = "QUORUMGATE_CONFIG")]
        config: PathBuf,
        /// The certificate, base64 (as in /v1/status), or @FILE holding it.
        #[arg(long, required_unless_present = "audit", conflicts_with = "audit")]
        cert: Option<String>,
        /// An audit log (`{state_dir}/audit.jsonl`): checks its hash chain and every certificate.
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// Stop automatic changes of a control-plane gate (signed; sent to every agent).
    Freeze {
        #[command(flatten)]
        args: OperatorArgs,
    },
    /// Return a frozen gate to automatic control (clears a pending override).
    Unfreeze {
        #[command(flatten)]
        args: OperatorArgs,
    },
    /// Allow a move the rules hold for an operator: failback (default: to the primary) or a
    /// failover whose replication lag is over max_rpo or unknown (--to the secondary).
    Approve {
        #[command(flatten)]
        args: OperatorArgs,
        /// The target that may become active (default: the failover gate's primary).
        #[arg(long)]
        to: Option<String>,
    },
    /// Break-glass: set the gate's DNS state by hand (and freeze it). Without --force the
    /// target must still be Healthy by quorum.
    Override {
        #[command(flatten)]
        args: OperatorArgs,
        /// Failover gate: the target to make active.
        #[arg(long, conflicts_with = "weights")]
        active: Option<String>,
        /// Weighted gate: every target's weight, e.g. use1=100,usw2=0.
        #[arg(long, value_delimiter = ',')]
        weights: Vec<String>,
        /// Even to a target the quorum does not consider Healthy.
        #[arg(long)]
        force: bool,
    },
    /// Game day: practise a failover of a control-plane failover gate and its failback through
    /// the quorum, safety rules and fence; measure every phase and write a report.
    Drill {
        #[command(flatten)]
        args: crate::drill::command::DrillArgs,
    },
    /// Re-send a signed operator command saved with --save (to agents that missed it).
    Resend {
        #[arg(long, short, env = "QUORUMGATE_CONFIG")]
        config: PathBuf,
        /// The file written by --save.
        file: PathBuf,
        /// Send to these agent base URLs instead of every member's `url`.
        #[arg(long = "agent-url")]
        agent_urls: Vec<Url>,
    },
    /// Show how Route 53 differs from the config's gates (health checks and records), per
    /// object and field; change nothing.
    Plan {
        #[arg(long, short, env = "QUORUMGATE_CONFIG")]
        config: PathBuf,
        /// Exit 2 when there are changes, 0 when none (1 on errors), like terraform.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Create or update the data plane's Route 53 health checks and records (idempotent), or
    /// print them as Terraform.
    Provision {
        #[arg(long, short, env = "QUORUMGATE_CONFIG")]
        config: PathBuf,
        /// Print the same objects as Terraform HCL instead (no API call, no credentials).
        #[arg(long)]
        terraform: bool,
    },
    /// Write a deployable bundle for a new cluster: one key per agent, an operator key, a
    /// development PKI for mutual TLS, every member's config and a README per host.
    Init {
        /// Directory to write the bundle into (new or empty).
        #[arg(long)]
        out: PathBuf,
        /// One per agent: ID,REGION,PEER_URL,HEALTH_URL (the peer URL https://; the health URL
        /// is what Route 53's checkers call, on its own port).
        #[arg(
            long = "member",
            required = true,
            value_name = "ID,REGION,PEER_URL,HEALTH_URL"
        )]
        members: Vec<crate::init::MemberArg>,
        /// One per check: ID=URL, an HTTP check of URL.
        #[arg(long = "check", required = true, value_name = "ID=URL")]
        checks: Vec<crate::init::CheckArg>,
        /// The cluster's name.
        #[arg(long, default_value = "prod")]
        name: String,
        /// The operator whose key the bundle holds.
        #[arg(long, default_value = "operator")]
        operator: String,
        /// cluster.round_interval.
        #[arg(long, default_value = "5s")]
        round_interval: String,
        /// Where the files go on each host ("{id}": the member's id).
        #[arg(long, default_value = "/etc/quorumgate")]
        install_dir: String,
        /// Each agent's state directory ("{id}": the member's id).
        #[arg(long, default_value = "/var/lib/quorumgate")]
        state_dir: String,
    },
    /// Run a local three-agent demo cluster against a demo app, on loopback, and narrate it.
    Demo {
        /// Short timings (for tests and the impatient).
        #[arg(long)]
        fast: bool,
        /// Directory for the demo's keys, configs and logs (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}
