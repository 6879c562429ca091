//! Command-line interface: every subcommand's arguments and its implementation, except the
//! long-running ones (`agent` in [`crate::run`], `demo` in [`crate::demo`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use config::Config;
use url::Url;

use crate::status::Status;
use crate::{keys, net, tls};

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
    /// Validate a config and print every problem with its field path; exit 1 if any.
    Check {
        #[arg(long, short, env = "QUORUMGATE_CONFIG")]
        config: PathBuf,
    },
    /// Generate an agent signing key (and, optionally, a development TLS PKI).
    Keygen {
        /// Where to write the private key (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
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

/// `quorumgate check`.
pub fn check(path: &Path) -> ExitCode {
    match Config::load(Some(path)) {
        Ok(cfg) => {
            println!(
                "{}: ok — cluster {}, {} members (quorum {}), {} checks, this agent {}, config digest {}",
                path.display(),
                cfg.shared.cluster.name,
                cfg.shared.members.len(),
                cfg.shared.membership.quorum(),
                cfg.shared.checks.len(),
                cfg.local.agent_id,
                cfg.digest
            );
            for w in &cfg.warnings {
                println!("  warning: {}: {} (fix: {})", w.path, w.problem, w.fix);
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!(
                "{}: {} problem(s):\n{errors}",
                path.display(),
                errors.errors.len()
            );
            ExitCode::FAILURE
        }
    }
}

/// `quorumgate keygen`.
pub fn keygen(out: &Path, tls_dir: Option<&Path>, names: &[String]) -> anyhow::Result<()> {
    let key = keys::generate().context("the operating system's random source failed")?;
    keys::write_signing_key(out, &key)?;
    println!("wrote {} (keep it secret)", out.display());
    println!(
        "public_key = \"{}\"",
        keys::public_key_base64(&key.verifying_key())
    );
    if let Some(dir) = tls_dir {
        tls::install_crypto_provider();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let pki = tls::generate_dev_pki(dir, &names)?;
        println!(
            "wrote development CA {} and certificates for {}",
            pki.ca_file.display(),
            names.join(", ")
        );
    }
    Ok(())
}

/// `quorumgate verify --audit`.
pub fn verify_audit(config: &Path, audit: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_for_verify(config)?;
    let skew = cfg.shared.cluster.max_clock_skew_ms;
    match crate::audit::verify_file(audit, &cfg.shared.membership, &cfg.digest, skew) {
        Ok(s) => {
            println!(
                "VALID: {} records, hash chain intact, {} certificates verified",
                s.records, s.certificates
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn load_for_verify(config: &Path) -> anyhow::Result<Config> {
    Config::load(Some(config))
        .map_err(|e| anyhow::anyhow!("{}: config problems:\n{e}", config.display()))
}

/// `quorumgate verify --cert`.
pub fn verify(config: &Path, cert: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_for_verify(config)?;
    let text = match cert.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => cert.to_owned(),
    };
    let bytes = STANDARD
        .decode(text.trim())
        .context("the certificate is not base64")?;
    let skew = cfg.shared.cluster.max_clock_skew_ms;
    match quorum::verify_certificate(&bytes, &cfg.shared.membership, Some(&cfg.digest), skew) {
        Ok(v) => {
            let agents: Vec<&str> = v.agents.iter().map(quorum::AgentId::as_str).collect();
            println!(
                "VALID: check {} was {} by quorum ({} of {} members: {}), config digest {}, ballots live together {}..{} (unix ms)",
                v.check,
                v.outcome.as_str(),
                agents.len(),
                cfg.shared.membership.len(),
                agents.join(", "),
                v.config_digest,
                v.valid_from.0,
                v.valid_until.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Fetches `/v1/status` from an agent.
pub async fn fetch_status(
    base: &Url,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> anyhow::Result<Status> {
    let req = net::Request::get(base.join("v1/status")?, Some(tls), 64 * 1024 * 1024);
    let resp = net::send(&req, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{base}: {e}"))?;
    anyhow::ensure!(resp.status.is_success(), "{base}: HTTP {}", resp.status);
    serde_json::from_slice(&resp.body)
        .with_context(|| format!("{base}: status is not the expected JSON"))
}

/// `quorumgate status`.
pub async fn status(url: &Url, ca_file: Option<&Path>, json: bool) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let tls = tls::client_config(ca_file, None)?;
    let doc = fetch_status(url, tls, Duration::from_secs(5)).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", render_status(&doc));
    }
    Ok(())
}

fn ago(now: u64, then: u64) -> String {
    let ms = now.saturating_sub(then);
    if ms < 10_000 {
        format!("{:.1}s ago", ms as f64 / 1000.0)
    } else {
        format!("{}s ago", ms / 1000)
    }
}

/// Human view of a status document.
#[must_use]
pub fn render_status(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "agent {} ({}) · cluster {} · quorum {}/{} · rounds {} · {} · digest {}",
        s.agent,
        s.region,
        s.cluster,
        s.quorum,
        s.members_total,
        s.rounds,
        if s.ready { "ready" } else { "NOT READY" },
        &s.config_digest[..12.min(s.config_digest.len())]
    );
    if let Some(why) = &s.abstaining {
        let _ = writeln!(o, "ABSTAINING from accusations: {why}");
    }
    let _ = writeln!(
        o,
        "\n{:<14} {:<14} {:<28} LAST PUSH",
        "MEMBER", "REGION", "LATEST BALLOT"
    );
    for m in &s.members {
        let ballot = m.ballot.as_ref().map_or_else(
            || "none".to_owned(),
            |b| {
                format!(
                    "{} {}",
                    if b.live { "live" } else { "EXPIRED" },
                    ago(s.now_ms, b.issued_at_ms)
                )
            },
        );
        let name = if m.is_self {
            format!("{}*", m.id)
        } else {
            m.id.clone()
        };
        let push = if m.is_self {
            "-".to_owned()
        } else {
            m.last_push.clone().unwrap_or_else(|| "-".to_owned())
        };
        let _ = writeln!(o, "{name:<14} {:<14} {ballot:<28} {push}", m.region);
    }
    let _ = writeln!(
        o,
        "\n{:<20} {:<10} {:<12} {:<22} VOTES",
        "CHECK", "DECISION", "SINCE", "TALLY (h/u/a)"
    );
    for c in &s.checks {
        let tally = c.tally.as_ref().map_or_else(
            || "pending".to_owned(),
            |t| format!("{} {}/{}/{}", t.outcome, t.healthy, t.unhealthy, t.abstain),
        );
        let votes: Vec<String> = c
            .observations
            .iter()
            .map(|(agent, ob)| format!("{agent}={}:{}", ob.status, ob.reason))
            .collect();
        let _ = writeln!(
            o,
            "{:<20} {:<10} {:<12} {tally:<22} {}",
            c.id,
            c.decision.to_uppercase(),
            ago(s.now_ms, c.since_ms),
            votes.join(" ")
        );
    }
    if !s.rejected.is_empty() {
        let parts: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(o, "\nrejected ballots: {}", parts.join(" "));
        if let Some(last) = &s.last_rejection {
            let _ = writeln!(o, "last rejection: {last}");
        }
    }
    o
}
