//! `quorumgate freeze | unfreeze | approve | override`: sign an operator command with an
//! operator key listed in `[[operators]]` and deliver it to every agent. `quorumgate drill`
//! ([`crate::drill::command`]) signs and delivers its commands with the same functions.
//!
//! Each agent verifies the signature, the operator, replay protection (a per-operator `seq`,
//! here the wall clock in ms) and the command's validity window on its own, records it in its
//! audit log, and only then applies it. The command is the same bytes for every agent, so a
//! partial delivery can be completed by re-sending exactly them (`quorumgate resend FILE`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use config::{Config, GateConfig, Plane};
use http::Method;
use quorum::gate::{DesiredState, GateKind};
use quorum::operator::{Action, OperatorCommand, SignedCommand};
use quorum::{ClusterId, GateId, OperatorId, TargetId};
use rustls::ClientConfig;
use url::Url;

use crate::clock::{Clock as _, SystemClock};
use crate::{keys, net, tls};

/// What every operator command needs.
#[derive(Debug, Clone, clap::Args)]
pub struct OperatorArgs {
    /// The gate (a control-plane `[[gates]]` id).
    pub gate: String,
    /// Config file (any agent's: the shared part names the members, gates and operators).
    #[arg(long, short, env = "QUORUMGATE_CONFIG")]
    pub config: PathBuf,
    /// Your operator id (an `[[operators]]` entry).
    #[arg(long, env = "QUORUMGATE_OPERATOR")]
    pub operator: String,
    /// Your ed25519 signing key (made with `quorumgate keygen`).
    #[arg(long, env = "QUORUMGATE_OPERATOR_KEY")]
    pub key: PathBuf,
    /// Why: recorded in every agent's audit log.
    #[arg(long, default_value = "")]
    pub note: String,
    /// How long the command may be delivered, and how long an approval or a pending
    /// override stays usable (at most `cluster.operator_max_valid_for`).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    pub valid_for: Duration,
    /// Send to these agent base URLs instead of every member's `url`.
    #[arg(long = "agent-url")]
    pub agent_urls: Vec<Url>,
    /// Also write the signed command (base64) to this file, to re-send it to agents that
    /// missed it with `quorumgate resend --config F FILE`.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// The action, as given on the command line.
#[derive(Debug, Clone)]
pub enum Requested {
    Freeze,
    Unfreeze,
    /// `None`: the failover gate's primary (failback).
    Approve {
        to: Option<String>,
    },
    Override {
        active: Option<String>,
        weights: Vec<String>,
        force: bool,
    },
}

/// Signs and delivers one command; prints one line per agent. Exit 0 only if every agent
/// applied it (or already had it).
pub async fn run(args: &OperatorArgs, requested: Requested) -> anyhow::Result<ExitCode> {
    tls::install_crypto_provider();
    let cfg = Config::load(Some(&args.config))
        .map_err(|e| anyhow::anyhow!("{}: config problems:\n{e}", args.config.display()))?;
    let gate = control_gate(&cfg, &args.gate)?;
    let action = action(gate, requested)?;
    let (command, wire) = sign(args, &cfg, gate, action, 0)?;
    println!(
        "{} {} by {} (seq {}, valid for {})",
        command.action.as_str(),
        command.gate,
        command.operator,
        command.seq,
        humantime::format_duration(args.valid_for)
    );
    deliver(&cfg, &args.agent_urls, wire).await
}

/// Signs `action` on `gate` with the operator's key, checked against `[[operators]]`, for the
/// cluster `cfg` describes (its name and member list: agents of another cluster refuse it);
/// its seq is the wall clock in ms, and above `after_seq`. Writes `--save` if asked.
pub(crate) fn sign(
    args: &OperatorArgs,
    cfg: &Config,
    gate: &GateConfig,
    action: Action,
    after_seq: u64,
) -> anyhow::Result<(OperatorCommand, Vec<u8>)> {
    let operator = OperatorId::new(args.operator.as_str())
        .map_err(|e| anyhow::anyhow!("--operator {}: {e}", args.operator))?;
    let listed = cfg
        .shared
        .operators
        .iter()
        .find(|o| o.id == operator)
        .with_context(|| format!("--operator {operator} is not listed in [[operators]]"))?;
    let key = keys::load_signing_key(&args.key)?;
    anyhow::ensure!(
        key.verifying_key() == listed.public_key,
        "--key {} is not operator {operator}'s key (its public key is {})",
        args.key.display(),
        keys::public_key_base64(&key.verifying_key())
    );
    let valid_for_ms = u32::try_from(args.valid_for.as_millis())
        .ok()
        .filter(|ms| u64::from(*ms) <= cfg.shared.cluster.operator_max_valid_for_ms)
        .with_context(|| {
            format!(
                "--valid-for {} is over cluster.operator_max_valid_for ({} ms)",
                humantime::format_duration(args.valid_for),
                cfg.shared.cluster.operator_max_valid_for_ms
            )
        })?;
    let now = SystemClock::default().now();
    let command = OperatorCommand::new(
        ClusterId::new(&cfg.shared.cluster.name, &cfg.shared.membership),
        operator,
        gate.spec.id().clone(),
        action,
        now.0.max(after_seq.saturating_add(1)),
        now,
        valid_for_ms,
    )
    .with_note(args.note.clone());
    let signed = SignedCommand::sign(&command, &key).context("encoding the command")?;
    let wire = signed.to_wire();
    if let Some(path) = &args.save {
        use base64::Engine as _;
        let text = base64::engine::general_purpose::STANDARD.encode(&wire);
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok((command, wire))
}

/// Re-sends a saved signed command (`--save`) to agents that missed it.
pub async fn resend(config: &Path, file: &Path, agent_urls: &[Url]) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    tls::install_crypto_provider();
    let cfg = Config::load(Some(config))
        .map_err(|e| anyhow::anyhow!("{}: config problems:\n{e}", config.display()))?;
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let wire = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .context("the saved command is not base64")?;
    saved_for(&cfg, &wire).with_context(|| format!("{}", file.display()))?;
    deliver(&cfg, agent_urls, wire).await
}

/// Whether a saved command is for the cluster `cfg` describes: the agents would refuse it
/// otherwise, so say so before sending anything.
fn saved_for(cfg: &Config, wire: &[u8]) -> anyhow::Result<()> {
    let command = SignedCommand::from_wire(wire)
        .and_then(|s| s.decode_unverified())
        .context("not a signed operator command")?;
    let ours = ClusterId::new(&cfg.shared.cluster.name, &cfg.shared.membership);
    match command.cluster {
        None => anyhow::bail!(
            "signed by an older quorumgate without a cluster identity: the agents refuse it; \
             sign it again with `quorumgate {}`",
            command.action.as_str()
        ),
        Some(theirs) if theirs != ours => anyhow::bail!(
            "signed for cluster {theirs}, but --config is cluster {ours}: give --config that \
             cluster's config, or sign the command again for this one"
        ),
        Some(_) => Ok(()),
    }
}

/// The gate named `gate`, of either plane.
pub(crate) fn any_gate<'a>(cfg: &'a Config, gate: &str) -> anyhow::Result<&'a GateConfig> {
    let id = GateId::new(gate).map_err(|e| anyhow::anyhow!("gate {gate}: {e}"))?;
    cfg.shared
        .gates
        .iter()
        .find(|g| *g.spec.id() == id)
        .with_context(|| format!("no gate {gate} in [[gates]]"))
}

pub(crate) fn control_gate<'a>(cfg: &'a Config, gate: &str) -> anyhow::Result<&'a GateConfig> {
    let g = any_gate(cfg, gate)?;
    anyhow::ensure!(
        g.plane == Plane::Control,
        "gate {gate} is a data-plane gate: the agents never write its records, so there is \
         nothing to freeze, approve or override (Route 53 follows the health checks)"
    );
    Ok(g)
}

fn target(raw: &str) -> anyhow::Result<TargetId> {
    TargetId::new(raw).map_err(|e| anyhow::anyhow!("target {raw}: {e}"))
}

/// The signed action for a request, checked against the gate's shape.
fn action(gate: &GateConfig, requested: Requested) -> anyhow::Result<Action> {
    let action = match requested {
        Requested::Freeze => Action::Freeze,
        Requested::Unfreeze => Action::Unfreeze,
        Requested::Approve { to } => {
            let to = match (to, gate.spec.kind()) {
                (Some(t), _) => target(&t)?,
                (None, GateKind::Failover { primary, .. }) => primary.id.clone(),
                (None, GateKind::Weighted { .. }) => {
                    anyhow::bail!("approvals apply to failover gates only")
                }
            };
            Action::Approve { to }
        }
        Requested::Override {
            active,
            weights,
            force,
        } => {
            let desired = match (active, weights.is_empty()) {
                (Some(a), true) => DesiredState::Failover { active: target(&a)? },
                (None, false) => {
                    let mut pairs = Vec::new();
                    for w in &weights {
                        let (id, weight) = w
                            .split_once('=')
                            .with_context(|| format!("--weights {w}: expected TARGET=WEIGHT"))?;
                        let weight: u8 = weight
                            .parse()
                            .with_context(|| format!("--weights {w}: weight is 0..=255"))?;
                        pairs.push((target(id)?, weight));
                    }
                    DesiredState::weighted(pairs)
                }
                _ => anyhow::bail!(
                    "override needs exactly one of --active TARGET (failover) or --weights A=N,B=M (weighted)"
                ),
            };
            Action::Override { desired, force }
        }
    };
    quorum::operator::check_action(&gate.spec, &action)
        .map_err(|e| anyhow::anyhow!("gate {}: {e}", gate.spec.id()))?;
    Ok(action)
}

/// The client TLS config of `[local.peer_tls]` (the agents' full surface may require it).
pub(crate) fn client_tls(cfg: &Config) -> anyhow::Result<Arc<ClientConfig>> {
    let peer = &cfg.local.peer_tls;
    let identity = match (&peer.client_cert_file, &peer.client_key_file) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    Ok(tls::client_config(peer.ca_file.as_deref(), identity)?)
}

/// `(name, base URL)` of every member, or of the given URLs.
pub(crate) fn agent_targets(cfg: &Config, urls: &[Url]) -> Vec<(String, Url)> {
    if urls.is_empty() {
        cfg.shared
            .members
            .iter()
            .map(|m| (m.id.to_string(), m.url.clone()))
            .collect()
    } else {
        urls.iter().map(|u| (u.to_string(), u.clone())).collect()
    }
}

/// POSTs the command to every agent at once; prints each answer.
async fn deliver(cfg: &Config, urls: &[Url], wire: Vec<u8>) -> anyhow::Result<ExitCode> {
    let tls = client_tls(cfg)?;
    let targets = agent_targets(cfg, urls);
    let results = send_all(&targets, &tls, wire).await?;
    let all_ok = print_results(&results);
    for line in advice(&results) {
        println!("{line}");
    }
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What to do about the agents that did not apply a command. Re-sending the same signed
/// command helps only where it did not arrive or could not be applied (network, 5xx); an
/// agent that refused it (`403 rejected: <reason>`) will refuse it again.
pub(crate) fn advice(results: &[(String, (bool, String))]) -> Vec<String> {
    let mut retry: Vec<&str> = Vec::new();
    let mut refused: Vec<(&str, &str)> = Vec::new();
    for (name, (ok, text)) in results {
        if *ok {
            continue;
        }
        match text
            .strip_prefix("HTTP 403 rejected: ")
            .and_then(|r| r.split(':').next())
        {
            Some(reason) => refused.push((name, reason)),
            None => retry.push(name),
        }
    }
    let mut out = Vec::new();
    if !retry.is_empty() {
        out.push(format!(
            "{} did not get it or could not apply it: re-send the same signed command to them with `quorumgate resend --config F FILE` (FILE as written by --save; without one, sign the command again)",
            retry.join(", ")
        ));
    }
    let mut reasons: Vec<&str> = refused.iter().map(|(_, r)| *r).collect();
    reasons.sort_unstable();
    reasons.dedup();
    for reason in reasons {
        let names: Vec<&str> = refused
            .iter()
            .filter(|(_, r)| *r == reason)
            .map(|(n, _)| *n)
            .collect();
        let why = match reason {
            "replay" => "its sequence number is not newer than the last command of this operator they applied; see the gate in `quorumgate status`, and to act again sign a new command",
            "bad_signature" | "unknown_operator" => "their [[operators]] do not list this key for this operator: check --key and --operator, and that those agents run the config with your [[operators]] entry (compare the config digest in `quorumgate status`)",
            "expired" | "from_future" => "its validity window does not cover their clock: check the clocks (NTP) and sign a new command",
            "wrong_cluster" => "it was signed for another cluster (another cluster.name or member list than theirs): sign it again with --config pointing at their cluster's config",
            "old_version" => "it was signed by an older quorumgate, without a cluster identity: sign it again with this version",
            _ => "see the reason above",
        };
        out.push(format!(
            "{} refused it ({reason}); re-sending the same command cannot change that: {why}",
            names.join(", ")
        ));
    }
    out
}

/// One line per agent; true if every agent applied it (or already had it).
pub(crate) fn print_results(results: &[(String, (bool, String))]) -> bool {
    let mut all_ok = true;
    for (name, (ok, text)) in results {
        all_ok &= ok;
        println!(
            "  {name:<16} {}  {text}",
            if *ok { "ok " } else { "FAILED" }
        );
    }
    all_ok
}

/// POSTs `wire` to every target's `/v1/operator` at once: `(name, (applied, answer))`, sorted.
pub(crate) async fn send_all(
    targets: &[(String, Url)],
    tls: &Arc<ClientConfig>,
    wire: Vec<u8>,
) -> anyhow::Result<Vec<(String, (bool, String))>> {
    let body = Bytes::from(wire);
    let mut tasks = tokio::task::JoinSet::new();
    for (name, base) in targets.iter().cloned() {
        let url = base.join("v1/operator")?;
        let req = net::Request::get(url, Some(Arc::clone(tls)), 4096)
            .with_body(Method::POST, body.clone());
        tasks.spawn(async move {
            let answer = match net::send(&req, Duration::from_secs(10)).await {
                Ok(resp) => {
                    let text = String::from_utf8_lossy(&resp.body).trim().to_owned();
                    (
                        resp.status.is_success(),
                        format!("HTTP {} {text}", resp.status.as_u16()),
                    )
                }
                Err(e) => (false, format!("not delivered: {e}")),
            };
            (name, answer)
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.context("delivery task failed")?);
    }
    results.sort();
    Ok(results)
}

#[cfg(test)]
mod saved_tests {
    use super::*;
    use quorum::SigningKey;

    fn config(name: &str) -> Config {
        let member = |id: &str, seed: u8| {
            let key = SigningKey::from_bytes(&[seed; 32]);
            format!(
                "[[members]]\nid = \"{id}\"\nregion = \"r\"\nurl = \"http://127.0.0.1:{}/\"\npublic_key = \"{}\"\n",
                9000 + u16::from(seed),
                keys::public_key_base64(&key.verifying_key())
            )
        };
        let toml = format!(
            "[cluster]\nname = \"{name}\"\nallow_single_member = true\n{}\
             [[checks]]\nid = \"app\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n[checks.http]\nurl = \"http://127.0.0.1:1/\"\n\
             [local]\nagent_id = \"a\"\nkey_file = \"/nonexistent\"\n",
            member("a", 1),
        );
        Config::from_toml_str(&toml).expect("valid test config")
    }

    fn saved(cluster: Option<ClusterId>) -> Vec<u8> {
        let mut cmd = OperatorCommand::new(
            ClusterId {
                name: String::new(),
                members_sha256: [0; 32],
            },
            OperatorId::new("alice").unwrap(),
            GateId::new("app").unwrap(),
            Action::Freeze,
            1,
            quorum::UnixMillis(1),
            1,
        );
        cmd.cluster = cluster;
        SignedCommand::sign(&cmd, &SigningKey::from_bytes(&[9; 32]))
            .unwrap()
            .to_wire()
    }

    /// `resend` refuses, before sending, a saved command the agents of `--config` would
    /// refuse for its cluster, and says which cluster it is for.
    #[test]
    fn resend_checks_the_saved_command_is_for_this_cluster() {
        let prod = config("prod");
        let ours = ClusterId::new("prod", &prod.shared.membership);
        assert!(saved_for(&prod, &saved(Some(ours.clone()))).is_ok());
        let staging = ClusterId {
            name: "staging".into(),
            ..ours
        };
        let err = saved_for(&prod, &saved(Some(staging)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("signed for cluster \"staging\"")
                && err.contains("--config is cluster \"prod\""),
            "{err}"
        );
        let err = saved_for(&prod, &saved(None)).unwrap_err().to_string();
        assert!(
            err.contains("sign it again with `quorumgate freeze`"),
            "{err}"
        );
        assert!(saved_for(&prod, b"junk").is_err());
    }
}

#[cfg(test)]
mod advice_tests {
    use super::advice;

    fn r(name: &str, ok: bool, text: &str) -> (String, (bool, String)) {
        (name.to_owned(), (ok, text.to_owned()))
    }

    #[test]
    fn resend_is_advised_only_where_it_can_help() {
        let results = [
            r("use1", true, "HTTP 200 applied: freeze app"),
            r("usw2", false, "not delivered: connection refused"),
            r(
                "euw1",
                false,
                "HTTP 403 rejected: replay: seq 3 is not newer than 5",
            ),
            r(
                "apse1",
                false,
                "HTTP 403 rejected: bad_signature: signature does not verify",
            ),
        ];
        let a = advice(&results);
        assert_eq!(a.len(), 3, "{a:?}");
        assert!(
            a[0].starts_with("usw2 did not get it") && a[0].contains("quorumgate resend"),
            "{a:?}"
        );
        assert!(
            a[1].starts_with("apse1 refused it (bad_signature)") && !a[1].contains("resend --"),
            "{a:?}"
        );
        assert!(
            a[2].starts_with(
                "euw1 refused it (replay); re-sending the same command cannot change that"
            ),
            "{a:?}"
        );
        assert!(advice(&results[..1]).is_empty());
    }
}
