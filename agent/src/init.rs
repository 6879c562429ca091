//! `quorumgate init`: a deployable bundle for a new cluster, from its members and checks.
//!
//! Writes, under `--out`: one signing key per agent, one operator key, a development PKI for
//! mutual TLS between the agents (one CA, one certificate per agent with its peer URL's host
//! as a SAN; the CA key is not kept), the shared config plus one `[local]` per member, a
//! systemd drop-in for the TLS key, and a README per host (what to copy where, which ports to
//! open to whom). Every config is validated before anything is written.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use quorum::SigningKey;
use url::Url;

use crate::{keys, tls};

/// One `--member ID,REGION,PEER_URL,HEALTH_URL`.
#[derive(Clone, Debug)]
pub struct MemberArg {
    pub id: String,
    pub region: String,
    pub url: Url,
    pub health_url: Url,
}

impl std::str::FromStr for MemberArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let [id, region, url, health] = parts.as_slice() else {
            return Err(format!(
                "{s:?}: expected ID,REGION,PEER_URL,HEALTH_URL, e.g. use1,us-east-1,https://use1.internal:9443,https://use1.example.com:8443"
            ));
        };
        let parse = |what: &str, u: &str| {
            Url::parse(u).map_err(|e| format!("{s:?}: the {what} {u:?} is not a full URL ({e})"))
        };
        let url = parse("peer URL", url)?;
        if url.scheme() != "https" {
            return Err(format!(
                "{s:?}: the peer URL must be https:// (the bundle sets up mutual TLS between the agents)"
            ));
        }
        let health_url = parse("health URL", health)?;
        if !matches!(health_url.scheme(), "http" | "https") {
            return Err(format!("{s:?}: the health URL must be http:// or https://"));
        }
        Ok(Self {
            id: (*id).to_owned(),
            region: (*region).to_owned(),
            url,
            health_url,
        })
    }
}

/// One `--check ID=URL`: an HTTP check.
#[derive(Clone, Debug)]
pub struct CheckArg {
    pub id: String,
    pub url: String,
}

impl std::str::FromStr for CheckArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((id, url)) if !id.is_empty() && !url.is_empty() => Ok(Self {
                id: id.trim().to_owned(),
                url: url.trim().to_owned(),
            }),
            _ => Err(format!(
                "{s:?}: expected ID=URL, e.g. app=https://app.internal/healthz"
            )),
        }
    }
}

/// What `init` is asked for.
#[derive(Clone, Debug)]
pub struct InitSpec {
    pub out: PathBuf,
    pub name: String,
    pub members: Vec<MemberArg>,
    pub checks: Vec<CheckArg>,
    pub operator: String,
    pub round_interval: String,
    /// Where the files go on each host; `{id}` is the member's id.
    pub install_dir: String,
    /// The state directory on each host; `{id}` as above.
    pub state_dir: String,
}

/// What was written.
#[derive(Debug)]
pub struct Bundle {
    /// Per member: id and its config file in the bundle.
    pub configs: Vec<(String, PathBuf)>,
    pub operator_key: PathBuf,
    pub ca_file: PathBuf,
}

/// The address a listener binds for a URL: its IP when the URL names a loopback address (a
/// local cluster), every interface otherwise; the URL's port (or its scheme's).
fn listen_for(url: &Url) -> anyhow::Result<String> {
    let port = url
        .port_or_known_default()
        .with_context(|| format!("{url} has no port"))?;
    let ip = match url
        .host_str()
        .map(|h| h.trim_matches(['[', ']']))
        .map(str::parse::<IpAddr>)
    {
        Some(Ok(ip)) if ip.is_loopback() => ip.to_string(),
        _ => "0.0.0.0".to_owned(),
    };
    Ok(if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    })
}

fn toml_str(s: &str) -> String {
    // TOML basic strings and JSON strings escape alike for what we write.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// Writes the bundle. Refuses a non-empty `out`.
pub fn init(spec: &InitSpec) -> anyhow::Result<Bundle> {
    if spec.members.is_empty() || spec.checks.is_empty() {
        bail!("give at least one --member and one --check");
    }
    if spec.out.exists()
        && std::fs::read_dir(&spec.out)
            .with_context(|| format!("reading {}", spec.out.display()))?
            .next()
            .is_some()
    {
        bail!(
            "{} is not empty: init writes a new bundle (with new keys) into an empty or new directory",
            spec.out.display()
        );
    }
    let agent_keys: Vec<SigningKey> = spec
        .members
        .iter()
        .map(|_| keys::generate())
        .collect::<Result<_, _>>()
        .context("the operating system's random source failed")?;
    let operator_key = keys::generate().context("the operating system's random source failed")?;

    let shared = shared_config(spec, &agent_keys, &operator_key);
    let mut locals = Vec::new();
    for m in &spec.members {
        locals.push(local_config(spec, m)?);
    }
    // Validate every config before writing anything.
    let mut problems = String::new();
    for (m, local) in spec.members.iter().zip(&locals) {
        if let Err(e) = config::Config::from_toml_str(&format!("{shared}{local}")) {
            let _ = writeln!(problems, "the config of {}:\n{e}", m.id);
        }
    }
    if !problems.is_empty() {
        bail!("the bundle would not be valid; change the arguments:\n{problems}");
    }

    let out = &spec.out;
    let create =
        |d: &Path| std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()));
    create(out)?;
    let pki_dir = out.join("pki");
    let leaves: Vec<(&str, Vec<String>)> = spec
        .members
        .iter()
        .map(|m| {
            let host = m
                .url
                .host_str()
                .unwrap_or_default()
                .trim_matches(['[', ']']);
            (m.id.as_str(), vec![host.to_owned()])
        })
        .collect();
    tls::install_crypto_provider();
    let pki = tls::generate_pki(&pki_dir, &leaves)?;
    let op_dir = out.join("operator");
    create(&op_dir)?;
    let op_key_file = op_dir.join(format!("{}.key", spec.operator));
    keys::write_signing_key(&op_key_file, &operator_key)?;

    let mut configs = Vec::new();
    for (((m, key), local), (_, cert, cert_key)) in spec
        .members
        .iter()
        .zip(&agent_keys)
        .zip(&locals)
        .zip(&pki.certs)
    {
        let host = out.join(&m.id);
        let tls_dir = host.join("tls");
        create(&tls_dir)?;
        keys::write_signing_key(&host.join("agent.key"), key)?;
        std::fs::copy(&pki.ca_file, tls_dir.join("ca.pem"))?;
        std::fs::copy(cert, tls_dir.join("server.pem"))?;
        std::fs::rename(cert_key, tls_dir.join("server.key"))?;
        std::fs::remove_file(cert)?;
        let config_file = host.join("quorumgate.toml");
        std::fs::write(&config_file, format!("{shared}{local}"))?;
        let inst = spec.install_dir.replace("{id}", &m.id);
        std::fs::write(host.join("tls.conf"), drop_in(&inst))?;
        std::fs::write(host.join("README.md"), host_readme(spec, m, &inst)?)?;
        configs.push((m.id.clone(), config_file));
    }
    std::fs::write(out.join("README.md"), bundle_readme(spec, &op_key_file))?;
    Ok(Bundle {
        configs,
        operator_key: op_key_file,
        ca_file: pki.ca_file,
    })
}

fn shared_config(spec: &InitSpec, agent_keys: &[SigningKey], operator: &SigningKey) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Written by `quorumgate init`. Everything above [local] is SHARED: keep it identical on\n# every agent (they compare its digest). See examples/quorumgate.example.toml for every option.\n\n[cluster]\nname = {}\nround_interval = {}\n",
        toml_str(&spec.name),
        toml_str(&spec.round_interval)
    );
    for (m, key) in spec.members.iter().zip(agent_keys) {
        let _ = writeln!(
            s,
            "[[members]]\nid = {}\nregion = {}\nurl = {}\nhealth_url = {}\npublic_key = {}\n",
            toml_str(&m.id),
            toml_str(&m.region),
            toml_str(m.url.as_str()),
            toml_str(m.health_url.as_str()),
            toml_str(&keys::public_key_base64(&key.verifying_key()))
        );
    }
    for c in &spec.checks {
        let _ = writeln!(
            s,
            "[[checks]]\nid = {}\n[checks.http]\nurl = {}\n",
            toml_str(&c.id),
            toml_str(&c.url)
        );
    }
    let _ = writeln!(
        s,
        "# Gates (which DNS records these checks move) go here: see the README's Gates section.\n\n[[operators]]\nid = {}\npublic_key = {}\n",
        toml_str(&spec.operator),
        toml_str(&keys::public_key_base64(&operator.verifying_key()))
    );
    s
}

fn local_config(spec: &InitSpec, m: &MemberArg) -> anyhow::Result<String> {
    let inst = spec.install_dir.replace("{id}", &m.id);
    let state = spec.state_dir.replace("{id}", &m.id);
    let listen = listen_for(&m.url)?;
    let health_listen = listen_for(&m.health_url)?;
    if listen == health_listen {
        bail!(
            "member {}: the peer URL and the health URL use the same port; give the health listener its own",
            m.id
        );
    }
    let t = |f: &str| toml_str(&format!("{inst}/tls/{f}"));
    let mut s = format!(
        "# This agent only ({id}); not part of the digest.\n[local]\nagent_id = {id_s}\nlisten = {listen}\nhealth_listen = {health}\nkey_file = {key}\nstate_dir = {state}\n\n[local.tls]\ncert_file = {cert}\nkey_file = {tkey}\nclient_ca_file = {ca}\n\n",
        id = m.id,
        id_s = toml_str(&m.id),
        listen = toml_str(&listen),
        health = toml_str(&health_listen),
        key = toml_str(&format!("{inst}/agent.key")),
        state = toml_str(&state),
        cert = t("server.pem"),
        tkey = t("server.key"),
        ca = t("ca.pem"),
    );
    if m.health_url.scheme() == "https" {
        let _ = writeln!(
            s,
            "[local.health_tls]\ncert_file = {}\nkey_file = {}\n",
            t("server.pem"),
            t("server.key")
        );
    }
    let _ = writeln!(
        s,
        "[local.peer_tls]\nca_file = {}\nclient_cert_file = {}\nclient_key_file = {}",
        t("ca.pem"),
        t("server.pem"),
        t("server.key")
    );
    Ok(s)
}

/// The systemd drop-in that hands the TLS key to the unit's dynamic user as a credential.
fn drop_in(inst: &str) -> String {
    format!(
        "# /etc/systemd/system/quorumgate.service.d/tls.conf\n[Service]\nLoadCredential=tls.key:{inst}/tls/server.key\nEnvironment=QUORUMGATE_LOCAL__TLS__KEY_FILE=%d/tls.key\nEnvironment=QUORUMGATE_LOCAL__HEALTH_TLS__KEY_FILE=%d/tls.key\nEnvironment=QUORUMGATE_LOCAL__PEER_TLS__CLIENT_KEY_FILE=%d/tls.key\n"
    )
}

fn host_readme(spec: &InitSpec, m: &MemberArg, inst: &str) -> anyhow::Result<String> {
    let port = |u: &Url| u.port_or_known_default().unwrap_or(0);
    let peers: Vec<String> = spec
        .members
        .iter()
        .filter(|p| p.id != m.id)
        .map(|p| format!("{} ({})", p.id, p.url.host_str().unwrap_or("?")))
        .collect();
    let mut s = String::new();
    let _ = write!(
        s,
        r#"# Agent {id} ({region})

Copy this directory's files to the host, as root:

```sh
install -d -m 0755 {inst} {inst}/tls
install -m 0600 agent.key {inst}/agent.key
install -m 0644 quorumgate.toml {inst}/quorumgate.toml
install -m 0644 tls/ca.pem tls/server.pem {inst}/tls/
install -m 0600 tls/server.key {inst}/tls/server.key
install -D -m 0644 tls.conf /etc/systemd/system/quorumgate.service.d/tls.conf
quorumgate check --config {inst}/quorumgate.toml
systemctl daemon-reload && systemctl enable --now quorumgate
```

(With the package's unit, `agent.key` and `server.key` reach the agent as systemd credentials;
keep them root-only.)

Ports to open on this host:

- TCP {peer_port} (peer URL {url}): from the other agents only: {peers}. Mutual TLS: a
  client needs a certificate from this bundle's CA.
- TCP {health_port} (health URL {health}): from Route 53's health checkers (the
  `ROUTE53_HEALTHCHECKS` ranges of https://ip-ranges.amazonaws.com/ip-ranges.json). It serves
  only /v1/health/<check>, /livez and /readyz.

Outbound: to the other agents' peer ports, and to the checks' targets.

Watch it: `quorumgate status --url {url} --ca-file {inst}/tls/ca.pem --cert-file {inst}/tls/server.pem --key-file {inst}/tls/server.key`
"#,
        id = m.id,
        region = m.region,
        peer_port = port(&m.url),
        url = m.url,
        peers = peers.join(", "),
        health_port = port(&m.health_url),
        health = m.health_url,
    );
    Ok(s)
}

fn bundle_readme(spec: &InitSpec, operator_key: &Path) -> String {
    let mut s = format!(
        "# quorumgate cluster {name}\n\nWritten by `quorumgate init`. One directory per agent; copy each to its host as its\nREADME.md says:\n\n",
        name = spec.name
    );
    for m in &spec.members {
        let _ = writeln!(
            s,
            "- `{id}/` → the {region} host ({url})",
            id = m.id,
            region = m.region,
            url = m.url
        );
    }
    let _ = write!(
        s,
        "\n`operator/{op}.key` is the operator key (`[[operators]]` id `{op}`): it signs freeze, approve,\noverride and drill commands. Keep it on the operator's workstation, not on the agents\n({path}).\n\n`pki/ca.pem` is a development CA: its key was not kept, so no further certificate can be\nissued from it. For production, issue each agent a certificate (server and client auth, its\npeer URL's host as a SAN) from your own CA and point `[local.tls]` and `[local.peer_tls]` at\nit.\n\nBefore copying: `quorumgate check --all-members . --skip-files` (the file checks run on each\nhost, where the files are in place).\n\nNext: add `[[gates]]` to the shared part of every config (identical everywhere), and, for\ndata-plane gates, run `quorumgate provision` once.\n",
        op = spec.operator,
        path = operator_key.display()
    );
    s
}
