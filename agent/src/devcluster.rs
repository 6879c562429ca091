//! Writes a local cluster's keys, certificates and configs, and starts its agent processes.
//! Shared by `quorumgate demo` and the integration tests, so both run the same set-up.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use anyhow::Context as _;
use quorum::SigningKey;
use tokio::process::{Child, Command};
use url::Url;

use crate::{keys, tls};

/// Timings and shape of a local cluster. Every agent probes one HTTP check `check_id`.
#[derive(Clone, Debug)]
pub struct Spec {
    pub dir: PathBuf,
    /// `(id, region)` per agent.
    pub agents: Vec<(String, String)>,
    pub check_id: String,
    pub target_url: String,
    pub round_ms: u64,
    pub timeout_ms: u64,
    pub fall_after: u32,
    pub rise_after: u32,
    pub hold_down_ms: u64,
    /// Serve HTTPS with mutual TLS between agents (a development CA is generated).
    pub tls: bool,
    /// Extra TOML appended to one agent's `[local]` section, by agent id.
    pub extra_local: Vec<(String, String)>,
    /// Extra shared TOML (more checks, gates, operators), placed before `[local]` in every
    /// agent's config.
    pub extra_shared: String,
    /// Environment variables for the agent processes (e.g. AWS credentials for an emulator).
    pub env: Vec<(String, String)>,
    pub log_level: String,
    /// Where each agent listens and the URL its peers use, by agent index. `None` (the default):
    /// 127.0.0.1 on a free port, reached directly. Benches that put agents in network
    /// namespaces behind a relay set the region address and the relay's address.
    pub addresses: Option<Vec<(SocketAddr, Url)>>,
    /// Descriptor limits (`RLIMIT_NOFILE`, soft and hard alike) by agent id: those agents are
    /// started through util-linux `prlimit` (see [`command_for`]). Tests use it to run an
    /// agent under systemd's default soft limit of 1,024.
    pub nofile: Vec<(String, u64)>,
    /// Give every agent a public health listener (`local.health_listen`, plain HTTP on
    /// 127.0.0.1) and its member a `health_url`: what Route 53's checkers call, and what a
    /// data-plane gate needs.
    pub health_listener: bool,
}

impl Spec {
    /// Three agents in three regions with short timings.
    #[must_use]
    pub fn three(dir: &Path, target_url: String) -> Self {
        Self {
            dir: dir.to_owned(),
            agents: [
                ("use1", "us-east-1"),
                ("usw2", "us-west-2"),
                ("euw1", "eu-west-1"),
            ]
            .iter()
            .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
            .collect(),
            check_id: "app".to_owned(),
            target_url,
            round_ms: 300,
            timeout_ms: 200,
            fall_after: 2,
            rise_after: 3,
            hold_down_ms: 1_000,
            tls: false,
            extra_local: Vec::new(),
            extra_shared: String::new(),
            env: Vec::new(),
            log_level: "info".to_owned(),
            addresses: None,
            nofile: Vec::new(),
            health_listener: false,
        }
    }
}

/// One written agent.
#[derive(Debug)]
pub struct Agent {
    pub id: String,
    pub url: Url,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    /// Its own state directory (audit log).
    pub state_dir: PathBuf,
    /// Its public health listener's base URL (`Spec::health_listener`).
    pub health_url: Option<Url>,
    pub key: SigningKey,
}

/// A written cluster: what a client needs to reach its agents.
#[derive(Debug)]
pub struct Cluster {
    pub agents: Vec<Agent>,
    /// Client TLS config trusting the cluster's CA (and presenting a client cert) when `tls`.
    pub client_tls: Arc<rustls::ClientConfig>,
}

/// Generates keys (and certificates), reserves ports and writes one config per agent.
pub fn write(spec: &Spec) -> anyhow::Result<Cluster> {
    let dir = &spec.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let scheme = if spec.tls { "https" } else { "http" };
    let mut members = String::new();
    let mut reserved = Vec::new();
    for (id, region) in &spec.agents {
        let key_file = dir.join(format!("{id}-signing.key"));
        let _ = std::fs::remove_file(&key_file);
        let key = keys::generate()?;
        keys::write_signing_key(&key_file, &key)?;
        let (listen, url) = match &spec.addresses {
            Some(addresses) => addresses
                .get(reserved.len())
                .cloned()
                .context("Spec::addresses has fewer entries than agents")?,
            None => {
                // Reserve a port: bind, read it, release it for the agent to bind.
                let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
                (listen, format!("{scheme}://{listen}/").parse()?)
            }
        };
        let health = if spec.health_listener {
            let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
            let url: Url = format!("http://{listen}/").parse()?;
            let _ = write!(members, "\n[[members]]\nhealth_url = \"{url}\"");
            Some((listen, url))
        } else {
            members.push_str("\n[[members]]");
            None
        };
        let _ = write!(
            members,
            "\nid = \"{id}\"\nregion = \"{region}\"\nurl = \"{url}\"\npublic_key = \"{}\"\n",
            keys::public_key_base64(&key.verifying_key())
        );
        reserved.push((id.clone(), listen, url, key, health));
    }
    let shared = format!(
        r#"[cluster]
name = "local"
round_interval = "{round}ms"
ballot_valid_for = "{valid}ms"
max_clock_skew = "500ms"
peer_timeout = "{peer}ms"
max_ballot_bytes = 1048576
{members}
[[checks]]
id = "{check}"
interval = "{round}ms"
timeout = "{timeout}ms"
fall_after = {fall}
rise_after = {rise}
hold_down = "{hold}ms"
[checks.http]
url = "{target}"
expect_status = [200]
body_contains = "ok"
{extra}
"#,
        extra = spec.extra_shared,
        round = spec.round_ms,
        valid = spec.round_ms * 4,
        peer = (spec.round_ms * 2 / 3).max(1),
        check = spec.check_id,
        timeout = spec.timeout_ms,
        fall = spec.fall_after,
        rise = spec.rise_after,
        hold = spec.hold_down_ms,
        target = spec.target_url,
    );
    let names: Vec<&str> = spec.agents.iter().map(|(id, _)| id.as_str()).collect();
    let pki = if spec.tls {
        Some(tls::generate_dev_pki(dir, &names)?)
    } else {
        None
    };
    let mut agents = Vec::new();
    for (id, listen, url, key, health) in reserved {
        let mut local = format!(
            "\n[local]\nagent_id = \"{id}\"\nlisten = \"{listen}\"\nkey_file = \"{}\"\nstate_dir = \"{}\"\nlog_level = \"{}\"\n",
            dir.join(format!("{id}-signing.key")).display(),
            dir.join(&id).display(),
            spec.log_level,
        );
        if let Some((listen, _)) = &health {
            let _ = writeln!(local, "health_listen = \"{listen}\"");
        }
        for (_, extra) in spec.extra_local.iter().filter(|(a, _)| *a == id) {
            local.push_str(extra);
            local.push('\n');
        }
        if let Some(pki) = &pki {
            let (_, cert, cert_key) = pki
                .certs
                .iter()
                .find(|(n, _, _)| *n == id)
                .context("dev PKI lacks a certificate")?;
            let ca = pki.ca_file.display();
            let (cert, cert_key) = (cert.display(), cert_key.display());
            let _ = write!(
                local,
                "[local.tls]\ncert_file = \"{cert}\"\nkey_file = \"{cert_key}\"\nclient_ca_file = \"{ca}\"\n[local.peer_tls]\nca_file = \"{ca}\"\nclient_cert_file = \"{cert}\"\nclient_key_file = \"{cert_key}\"\n"
            );
        }
        let config_path = dir.join(format!("{id}.toml"));
        std::fs::write(&config_path, format!("{shared}{local}"))?;
        agents.push(Agent {
            url,
            log_path: dir.join(format!("{id}.log")),
            state_dir: dir.join(&id),
            health_url: health.map(|(_, u)| u),
            config_path,
            id,
            key,
        });
    }
    let client_tls = match &pki {
        Some(pki) => {
            let (_, cert, key) = pki.certs.first().context("no dev certificates")?;
            tls::client_config(Some(&pki.ca_file), Some((cert, key)))?
        }
        None => tls::client_config(None, None)?,
    };
    Ok(Cluster { agents, client_tls })
}

/// Starts `exe agent --config …` for `agent` with `env` added to its environment, logging
/// to its log file; killed on drop.
pub fn spawn(exe: &Path, agent: &Agent, env: &[(String, String)]) -> anyhow::Result<Child> {
    spawn_with(Command::new(exe), agent, env)
        .with_context(|| format!("starting agent {} ({})", agent.id, exe.display()))
}

/// The command that starts `agent` of `spec`: `exe` itself, or `prlimit --nofile=N:N -- exe`
/// when `spec.nofile` sets a limit for it. Pass it to [`spawn_with`].
#[must_use]
pub fn command_for(exe: &Path, spec: &Spec, agent: &Agent) -> Command {
    match spec.nofile.iter().find(|(id, _)| *id == agent.id) {
        Some((_, n)) => {
            let mut c = Command::new("prlimit");
            c.arg(format!("--nofile={n}:{n}")).arg("--").arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// As [`spawn`], with `command` as the program: `exe` itself, or a wrapper that runs it
/// (`ip netns exec NS exe`).
pub fn spawn_with(
    mut command: Command,
    agent: &Agent,
    env: &[(String, String)],
) -> anyhow::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&agent.log_path)?;
    command
        .arg("agent")
        .arg("--config")
        .arg(&agent.config_path)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting agent {}", agent.id))
}
