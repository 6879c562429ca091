//! Command-line interface: every subcommand's arguments and its implementation, except the
//! long-running ones (`agent` in [`crate::run`], `demo` in [`crate::demo`]).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use std::fmt::Write as _;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::{Parser, Subcommand};
use config::Config;
use url::Url;

pub use crate::operator_cli::OperatorArgs;
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

/// `quorumgate check`: one config, or (`all_members`) every member's config of a cluster.
pub fn check(config: Option<&Path>, all_members: &[PathBuf], skip_files: bool) -> ExitCode {
    if !all_members.is_empty() {
        return check_all_members(all_members, skip_files);
    }
    let Some(path) = config else {
        eprintln!("give --config FILE or --all-members DIR");
        return ExitCode::FAILURE;
    };
    if check_one(path, skip_files).is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Checks one config (and its files): prints `ok` with its warnings, or every problem.
fn check_one(path: &Path, skip_files: bool) -> Option<Config> {
    let cfg = match Config::load(Some(path)) {
        Ok(cfg) => cfg,
        Err(mut errors) => {
            // The files too, as far as an invalid config names them: one run, every problem.
            if !skip_files {
                let files = crate::filecheck::check_named_files(&config::local_files(path));
                errors.errors.extend(files.errors);
            }
            eprintln!(
                "{}: {} problem(s):\n{errors}",
                path.display(),
                errors.errors.len()
            );
            return None;
        }
    };
    let files = if skip_files {
        crate::filecheck::FileReport::default()
    } else {
        {
            use crate::clock::Clock as _;
            crate::filecheck::check_files(&cfg, crate::clock::SystemClock::default().now())
        }
    };
    if !files.errors.is_empty() {
        let errors = config::ConfigErrors {
            errors: files.errors,
        };
        eprintln!(
            "{}: {} problem(s) with the files it names:\n{errors}",
            path.display(),
            errors.errors.len()
        );
        return None;
    }
    println!(
        "{}: ok — cluster {}, {} members (quorum {}), {} checks, this agent {}, config digest {}{}",
        path.display(),
        cfg.shared.cluster.name,
        cfg.shared.members.len(),
        cfg.shared.membership.quorum(),
        cfg.shared.checks.len(),
        cfg.local.agent_id,
        cfg.digest,
        if skip_files {
            " (files not checked)"
        } else {
            ""
        }
    );
    for w in cfg.warnings.iter().chain(&files.warnings) {
        println!("  warning: {}: {} (fix: {})", w.path, w.problem, w.fix);
    }
    Some(cfg)
}

/// The config files `args` name: files as given, directories' `*.toml` (and their
/// subdirectories' `*.toml`), sorted.
fn config_files(args: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    fn tomls(dir: &Path, depth: u8, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() && depth > 0 {
                tomls(&p, depth - 1, out)?;
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            tomls(a, 1, &mut out)?;
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// `check --all-members`: every file on its own, then the cluster: one digest, one config per
/// member.
fn check_all_members(args: &[PathBuf], skip_files: bool) -> ExitCode {
    let files = match config_files(args) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            eprintln!("no *.toml config files in the paths given");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cannot list the config files: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    let mut valid: Vec<(PathBuf, Config)> = Vec::new();
    for f in &files {
        match check_one(f, skip_files) {
            Some(cfg) => valid.push((f.clone(), cfg)),
            None => ok = false,
        }
    }
    let mut problems: Vec<String> = Vec::new();
    if let Some((first_path, first)) = valid.first() {
        for (p, c) in &valid[1..] {
            if c.digest != first.digest {
                problems.push(format!(
                    "{}: its shared part (digest {}) differs from {}'s (digest {}): the agents would reject each other's ballots (config_drift); make [cluster], [[members]], [[checks]], [[gates]] and [[operators]] identical",
                    p.display(),
                    c.digest,
                    first_path.display(),
                    first.digest
                ));
            }
        }
        for m in &first.shared.members {
            let with: Vec<&Path> = valid
                .iter()
                .filter(|(_, c)| c.local.agent_id == m.id)
                .map(|(p, _)| p.as_path())
                .collect();
            match with.as_slice() {
                [_] => {}
                [] if ok => problems.push(format!(
                    "member {} has no config among these files: add one with [local] agent_id = \"{}\"",
                    m.id, m.id
                )),
                [] => {}
                several => problems.push(format!(
                    "member {} has {} configs ({}): give each host its own agent_id",
                    m.id,
                    several.len(),
                    several
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
    for p in &problems {
        eprintln!("cluster: {p}");
    }
    if ok && problems.is_empty() {
        println!(
            "cluster: ok — {} configs, one per member, config digest {}",
            valid.len(),
            valid
                .first()
                .map(|(_, c)| c.digest.to_string())
                .unwrap_or_default()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `quorumgate keygen --public-key FILE`: the public key of an existing key file, in the form
/// `[[members]].public_key` (or `[[operators]].public_key`) takes.
pub fn public_key(key_file: &Path) -> anyhow::Result<()> {
    let key = keys::load_signing_key(key_file)?;
    println!(
        "public_key = \"{}\"",
        keys::public_key_base64(&key.verifying_key())
    );
    Ok(())
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
    let operators: Vec<_> = cfg
        .shared
        .operators
        .iter()
        .map(|o| (o.id.clone(), o.public_key))
        .collect();
    let trust = crate::audit::Trust {
        membership: &cfg.shared.membership,
        digest: &cfg.digest,
        skew_ms: cfg.shared.cluster.max_clock_skew_ms,
        operators: &operators,
    };
    match crate::audit::verify_file(audit, &trust) {
        Ok(s) => {
            println!(
                "VALID: {} records, hash chain intact, {} certificates and {} operator commands verified",
                s.records, s.certificates, s.commands
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
pub async fn status(
    url: &Url,
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    json: bool,
) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let tls = tls::client_config(ca_file, identity)?;
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

/// A gate's drill, in one phrase of the status table.
fn drill_detail(now: u64, d: &crate::status::DrillStatus) -> String {
    let dry = if d.dry_run { " (dry run)" } else { "" };
    match d.state.as_str() {
        "running" => format!(
            "DRILL {}{dry} by {} running, ends in {}s",
            d.seq,
            d.by,
            d.ends_at_ms.saturating_sub(now) / 1000
        ),
        "ended" => format!(
            "DRILL {}{dry} ended ({}), failing back",
            d.seq,
            d.end_cause.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "last drill {}{dry}: {}",
            d.seq,
            d.result.as_deref().unwrap_or("being judged")
        ),
    }
}

/// One member's vote in the status table: `use1=healthy:ok`, with a replication-lag check's
/// measured lag (`[lag 1.2s]`: how far the standby is behind) and, when the ballot carrying it
/// no longer counts, `[EXPIRED, observed 34s ago]`: the last thing it said, not a current vote.
fn vote(now: u64, agent: &str, ob: &crate::status::ObservationStatus) -> String {
    let mut v = format!("{agent}={}:{}", ob.status, ob.reason);
    if let Some(lag) = ob.lag_ms {
        let _ = write!(v, "[lag {}]", lag_text(lag));
    }
    if !ob.live {
        let _ = write!(v, "[EXPIRED, observed {}]", ago(now, ob.observed_at_ms));
    }
    v
}

/// A replication lag for people: `0.4s`, `12s`, `3m 5s`.
fn lag_text(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 60_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m {}s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// Human view of a status document.
#[must_use]
pub fn render_status(s: &Status) -> String {
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
        "\n{:<20} {:<10} {:<10} {:<12} {:<22} VOTES",
        "CHECK", "DECISION", "BASIS", "SINCE", "TALLY (h/u/a)"
    );
    for c in &s.checks {
        let tally = c.tally.as_ref().map_or_else(
            || "pending".to_owned(),
            |t| format!("{} {}/{}/{}", t.outcome, t.healthy, t.unhealthy, t.abstain),
        );
        let votes: Vec<String> = c
            .observations
            .iter()
            .map(|(agent, ob)| vote(s.now_ms, agent, ob))
            .collect();
        let basis = if c.basis.is_empty() { "-" } else { &c.basis };
        let _ = writeln!(
            o,
            "{:<20} {:<10} {basis:<10} {:<12} {tally:<22} {}",
            c.id,
            c.decision.to_uppercase(),
            ago(s.now_ms, c.since_ms),
            votes.join(" ")
        );
    }
    if !s.gates.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<14} {:<8} {:<24} {:<6} {:<18} DETAIL",
            "GATE", "MODE", "DNS", "EPOCH", "EVALUATION"
        );
        for g in &s.gates {
            let mut detail = Vec::new();
            if g.alert {
                detail.push("ALERT".to_owned());
            }
            if let (Some(hold), Some(since)) = (&g.hold, g.hold_since_ms) {
                if g.last_evaluation != "no_change" {
                    detail.push(format!("{hold} (since {})", ago(s.now_ms, since)));
                }
            }
            if let Some(by) = &g.frozen_by {
                detail.push(format!("frozen by {by}"));
            }
            if let Some(a) = &g.approval {
                detail.push(format!("approved: {a}"));
            }
            if let Some(d) = &g.drill {
                detail.push(drill_detail(s.now_ms, d));
            }
            if let Some(out) = &g.last_outcome {
                detail.push(format!("last: {out}"));
            }
            if !g.synced {
                detail.push("not yet read from Route 53".to_owned());
            }
            let _ = writeln!(
                o,
                "{:<14} {:<8} {:<24} {:<6} {:<18} {}",
                g.id,
                g.mode,
                g.current,
                g.epoch,
                g.last_evaluation,
                detail.join("; ")
            );
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::render_status;

    #[test]
    fn status_shows_lag_and_marks_expired_votes() {
        let doc = serde_json::json!({
            "agent": "use1", "region": "us-east-1", "cluster": "prod", "version": "0",
            "config_digest": "00112233445566778899", "now_ms": 100_000, "members_total": 3,
            "quorum": 2, "ready": true, "rounds": 7, "abstaining": null, "controls": [],
            "members": [], "rejected": {}, "last_rejection": null,
            "checks": [{
                "id": "db-lag", "kind": "replication_lag", "decision": "healthy",
                "basis": "decided", "since_ms": 50_000, "transitions": 0, "pending_rounds": 0,
                "tally": null,
                "observations": {
                    "use1": { "status": "healthy", "reason": "ok", "latency_ms": 3,
                              "observed_at_ms": 99_000, "lag_ms": 1_200, "detail": "", "live": true },
                    "usw2": { "status": "unhealthy", "reason": "lag", "latency_ms": 3,
                              "observed_at_ms": 66_000, "lag_ms": 185_000, "detail": "", "live": false }
                }
            }]
        });
        let status = serde_json::from_value(doc).unwrap();
        let text = render_status(&status);
        assert!(text.contains("use1=healthy:ok[lag 1.2s]"), "{text}");
        assert!(
            text.contains("usw2=unhealthy:lag[lag 3m 5s][EXPIRED, observed 34s ago]"),
            "{text}"
        );
    }
}
