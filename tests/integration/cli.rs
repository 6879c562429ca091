//! Issue scenarios 6 and 7: `quorumgate check` reports every mistake; the demo runs.

use std::process::Command;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use quorumgate::devcluster;

use crate::support::exe;

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(exe())
        .args(args)
        .output()
        .expect("run quorumgate");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn check_reports_every_mistake_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[cluster]
name = "bad"
round_interval = "5s"
peer_timout = "1s"

[[members]]
id = "a"
region = "us-east-1"
url = "not a url"
public_key = "AAAA"

[[members]]
id = "a"
region = "us-west-2"
url = "https://b.internal:9443"
public_key = "Zm9v"

[[checks]]
id = "app"
interval = "5s"
timeout = "9s"
fall_after = 0
[checks.http]
url = "https://app.internal/healthz"

[local]
agent_id = "nobody"
listen = "0.0.0.0:99999"
key_file = "/tmp/k"
"#,
    )
    .expect("write config");
    let out = Command::new(exe())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    assert!(!out.status.success(), "check must fail");
    let text = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "cluster.peer_timout",
        "members[0].url",
        "members[0].public_key",
        "members[1].id",
        "members[1].public_key",
        "checks[0].timeout",
        "checks[0].fall_after",
        "local.agent_id",
        "local.listen",
    ] {
        assert!(text.contains(needle), "missing {needle} in:\n{text}");
    }
}

/// Twenty-one mistakes, among them issue 15's three that used to hide others: an error inside
/// a check next to a gate naming a missing check (`checks[2].timeout`, `gates[0].targets[1]`),
/// a duplicate check id next to another missing check (`checks[5].id`, `gates[1].targets[1]`),
/// and a broken check whose id is reused later (`checks[4].hold_down`, `checks[5].id`; also
/// `checks[2]`/`checks[3]`); the last is a key file that does not exist. One run of `check`
/// must name every one.
const MANY_MISTAKES: &str = r#"[cluster]
name = "app-prod"
round_interval = "5s"
ballot_valid_for = "4s"
peer_timout = "1s"

[[members]]
id = "use1"
region = "us-east-1"
url = "not a url"
health_url = "https://use1.example.com:8443/"
public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

[[members]]
id = "usw2"
region = "us-west-2"
url = "https://usw2.internal:9443"
health_url = "https://usw2.example.com:8443/"
public_key = "AAAA"

[[members]]
id = "use1"
region = "eu-central-1"
url = "https://euc1.internal:9443"
health_url = "https://euc1.example.com:8443/"
public_key = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E="

[[checks]]
id = "app"
fall_after = 0
[checks.http]
url = "https://app.internal/healthz"

[[checks]]
id = "app-usw2"
[checks.http]
url = "gopher://app-usw2.internal/healthz"

[[checks]]
id = "db-write"
interval = "5s"
timeout = "9s"
[checks.tcp]
address = "db.internal:5432"

[[checks]]
id = "db-write"
[checks.tcp]
address = "db-replica"

[[checks]]
id = "lag"
hold_down = "soon"
[checks.dns]
name = "app.internal"
nameserver = "10.0.0.2:53"

[[checks]]
id = "lag"
[checks.dns]
name = "app.internal"
nameserver = "10.0.0.3:53"

[[gates]]
id = "app"
zone_id = "Z0123456789ABC"
zone = "example.com"
record = "app.example.org"
kind = "failover"
[[gates.targets]]
id = "use1"
check = "app"
role = "primary"
values = ["192.0.2.10"]
[[gates.targets]]
id = "usw2"
check = "app-nonexistent"
role = "secondary"
values = ["198.51.100.10"]

[[gates]]
id = "db"
plane = "control"
zone_id = "bad zone"
zone = "example.com"
record = "db.example.com"
kind = "failover"
[[gates.targets]]
id = "primary"
check = "db-write"
role = "primary"
values = ["192.0.2.30"]
[[gates.targets]]
id = "standby"
check = "db-standby"
role = "secondary"
values = ["192.0.2.31"]

[[operators]]
id = "alice"
public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="

[local]
agent_id = "nobody"
listen = "0.0.0.0:99999"
key_file = "/tmp/k"

[[local.control]]
id = "vpc-dns"
[local.control.dns]
name = "s3.us-east-1.amazonaws.com"
nameserver = "resolver"
"#;

#[test]
fn check_reports_every_planted_mistake_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("many.toml");
    let missing = dir.path().join("missing.key");
    std::fs::write(
        &path,
        MANY_MISTAKES.replace("/tmp/k", missing.to_str().expect("utf-8")),
    )
    .expect("write config");
    let out = Command::new(exe())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    assert!(!out.status.success(), "check must fail");
    let text = String::from_utf8_lossy(&out.stderr);
    let expected = [
        "cluster.peer_timout",
        "cluster.ballot_valid_for",
        "members[0].url",
        "members[1].public_key",
        "members[2].id",
        "checks[0].fall_after",
        "checks[1].http.url",
        "checks[2].timeout",
        "checks[3].id",
        "checks[3].tcp.address",
        "checks[4].hold_down",
        "checks[5].id",
        "gates[0].record",
        "gates[0].targets[1].check",
        "gates[1].zone_id",
        "gates[1].targets[1].check",
        "operators[0].public_key",
        "local.agent_id",
        "local.listen",
        "local.control[0].dns.nameserver",
        // A file the (invalid) config names: checked in the same run.
        "local.key_file",
    ];
    let missing: Vec<&str> = expected
        .iter()
        .copied()
        .filter(|p| !text.lines().any(|l| l.starts_with(&format!("  - {p}: "))))
        .collect();
    assert!(missing.is_empty(), "not reported: {missing:?} in:\n{text}");
    assert!(
        text.contains(&format!("{} problem(s)", expected.len())),
        "expected exactly {} problems:\n{text}",
        expected.len()
    );
}

#[test]
fn check_accepts_the_shipped_example() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quorumgate.example.toml"
    );
    let out = Command::new(exe())
        .args(["check", "--skip-files", "--config", example])
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn demo_runs_to_completion_and_shows_the_no_flip_and_the_flip() {
    let out = Command::new(exe())
        .args(["demo", "--fast"])
        .output()
        .expect("run demo");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "NO FLIP",
        "DNS kept answering the primary",
        "FLIPPED to UNHEALTHY",
        // The DNS answer, by real queries to the demo's Route 53 data-plane emulator.
        "dig @127.0.0.1 -p ",
        "DNS FAILED OVER: app.demo.example → 198.51.100.20 (the secondary)",
        "RECOVERED to HEALTHY",
        "DNS FAILED BACK: app.demo.example → 192.0.2.10",
        "demo complete",
    ] {
        assert!(
            text.contains(needle),
            "missing {needle:?} in demo output:\n{text}"
        );
    }
    // The demo waits for its agents before it narrates anything about them.
    assert!(!text.contains("unreachable"), "{text}");
}

/// `check` reads the files a config names, as the agent will; `--all-members` checks a whole
/// cluster's configs together.
#[test]
fn check_reads_the_files_and_all_members_checks_the_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = devcluster::Spec::three(dir.path(), "http://127.0.0.1:1/".to_owned());
    spec.tls = true;
    let c = devcluster::write(&spec).expect("write cluster");
    let use1 = &c.agents[0].config_path;

    let (ok, out, err) = run(&["check", "--config", s(use1)]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = run(&["check", "--all-members", s(dir.path())]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("cluster: ok — 3 configs"), "{out}");

    // One member's config missing: named.
    let (ok, _, err) = run(&[
        "check",
        "--all-members",
        s(use1),
        s(&c.agents[1].config_path),
    ]);
    assert!(!ok);
    assert!(err.contains("member euw1 has no config"), "{err}");

    // A signing key others can read: the agent would refuse it, so check does.
    let key = dir.path().join("use1-signing.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (ok, _, err) = run(&["check", "--config", s(use1)]);
    assert!(!ok);
    assert!(
        err.contains("  - local.key_file: ") && err.contains("chmod 600"),
        "{err}"
    );
    let (ok, out, err) = run(&["check", "--skip-files", "--config", s(use1)]);
    assert!(ok && out.contains("(files not checked)"), "{out}{err}");
}

#[test]
fn keygen_prints_an_existing_keys_public_key_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("agent.key");
    let (ok, out, err) = run(&["keygen", "--out", s(&key)]);
    assert!(ok, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("public_key = "))
        .expect("public key line")
        .to_owned();
    let (ok, out, err) = run(&["keygen", "--public-key", s(&key)]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), line);

    let (ok, _, err) = run(&["keygen", "--out", s(&key)]);
    assert!(!ok);
    assert!(
        err.contains("already exists") && err.contains("--public-key"),
        "{err}"
    );
    assert!(!err.contains("os error 17"), "{err}");
}

/// Kills and reaps the agents it holds when dropped (also when the test panics).
struct Agents(Vec<std::process::Child>);

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `init` writes a bundle that `check --all-members` passes (with its files), and whose three
/// agents, started from it as they are on loopback, form a cluster over mutual TLS.
#[test]
fn init_writes_a_bundle_that_checks_and_runs_on_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = dir.path().join("bundle");
    let port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    let ids = ["use1", "usw2", "euw1"];
    let ports: Vec<(u16, u16)> = ids.iter().map(|_| (port(), port())).collect();
    let mut args: Vec<String> = vec!["init".into(), "--out".into(), s(&bundle).into()];
    for (id, (peer, health)) in ids.iter().zip(&ports) {
        args.push("--member".into());
        args.push(format!(
            "{id},region-{id},https://127.0.0.1:{peer},http://127.0.0.1:{health}/"
        ));
    }
    let at = |what: &str| format!("{}/{{id}}{what}", s(&bundle));
    args.extend([
        "--check".into(),
        "app=http://127.0.0.1:1/healthz".into(),
        "--round-interval".into(),
        "1s".into(),
        "--install-dir".into(),
        at(""),
        "--state-dir".into(),
        at("/state"),
    ]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = run(&argv);
    assert!(ok, "init failed: {out}{err}");
    for f in [
        "README.md",
        "operator/operator.key",
        "pki/ca.pem",
        "use1/README.md",
        "use1/agent.key",
        "use1/tls/server.key",
        "use1/tls.conf",
    ] {
        assert!(bundle.join(f).exists(), "no {f} in the bundle");
    }
    let (ok, out, err) = run(&["check", "--all-members", s(&bundle)]);
    assert!(ok, "check --all-members: {out}{err}");
    assert!(out.contains("cluster: ok — 3 configs"), "{out}");

    let mut agents = Agents(Vec::new());
    for id in ids {
        let log = std::fs::File::create(dir.path().join(format!("{id}.log"))).expect("log");
        agents.0.push(
            Command::new(exe())
                .args(["agent", "--config"])
                .arg(bundle.join(id).join("quorumgate.toml"))
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("start agent"),
        );
    }
    let logs = || {
        ids.iter()
            .map(|id| {
                let text = std::fs::read_to_string(dir.path().join(format!("{id}.log")))
                    .unwrap_or_default();
                format!("--- {id}\n{text}")
            })
            .collect::<String>()
    };
    // Every agent ready and seeing all three members' ballots live, through the bundle's own
    // mutual TLS. Bounded: a busy machine gets a minute.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for (id, (peer, _)) in ids.iter().zip(&ports) {
        let tls = bundle.join(id).join("tls");
        loop {
            let (ok, out, _) = run(&[
                "status",
                "--json",
                "--url",
                &format!("https://127.0.0.1:{peer}"),
                "--ca-file",
                s(&tls.join("ca.pem")),
                "--cert-file",
                s(&tls.join("server.pem")),
                "--key-file",
                s(&tls.join("server.key")),
            ]);
            let doc: serde_json::Value = if ok {
                serde_json::from_str(&out).expect("status JSON")
            } else {
                serde_json::Value::Null
            };
            let live = doc["members"].as_array().map_or(0, |ms| {
                ms.iter().filter(|m| m["ballot"]["live"] == true).count()
            });
            if doc["ready"] == true && live == ids.len() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} not ready with 3 live ballots: {out}\n{}",
                logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

/// Every `quorumgate …` command quoted in a doc: a line of a code block starting with
/// `quorumgate ` or `cargo run -p quorumgate -- ` (continuation lines joined, `#` comments
/// dropped), or an inline code span starting so. `(file:line, words after the prefix)`.
fn doc_commands(file: &str, text: &str) -> Vec<(String, String)> {
    const PREFIXES: [&str; 2] = ["cargo run -p quorumgate -- ", "quorumgate "];
    let strip = |s: &str| {
        PREFIXES
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .map(str::to_owned)
    };
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if in_block {
            let code = line.split(" #").next().unwrap_or_default().trim();
            let (start, joined) = match pending.take() {
                Some((start, head)) => (start, format!("{head} {code}")),
                None => (n, code.to_owned()),
            };
            if let Some(rest) = joined.strip_suffix('\\') {
                pending = Some((start, rest.trim_end().to_owned()));
            } else if let Some(cmd) = strip(&joined) {
                out.push((format!("{file}:{start}"), cmd));
            }
            continue;
        }
        // Inline code spans of prose and tables.
        for (k, span) in line.split('`').enumerate() {
            if k % 2 == 1 {
                if let Some(cmd) = strip(span) {
                    out.push((format!("{file}:{n}"), cmd));
                }
            }
        }
    }
    out
}

/// The docs quote the CLI as it is: every subcommand exists and every flag is one of its own.
#[test]
fn docs_command_lines_match_the_cli() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut helps: std::collections::HashMap<String, Option<Vec<String>>> =
        std::collections::HashMap::new();
    let flags_of = |sub: &str| -> Option<Vec<String>> {
        let (ok, out, _) = run(&[sub, "--help"]);
        ok.then(|| {
            out.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--") && w.len() > 2)
                .map(str::to_owned)
                .collect()
        })
    };
    let mut problems = Vec::new();
    let mut seen = 0;
    for f in &files {
        let name = f.strip_prefix(&root).unwrap_or(f).display().to_string();
        let text = std::fs::read_to_string(f).expect("read doc");
        for (at, cmd) in doc_commands(&name, &text) {
            // Quoted text that is not a command line (a Route 53 health check's Name tag).
            const NOT_COMMANDS: [&str; 1] = ["prod agent/use1/app-use1"];
            if NOT_COMMANDS.contains(&cmd.as_str()) {
                continue;
            }
            seen += 1;
            let mut words = cmd.split_whitespace();
            let Some(sub) = words.next() else { continue };
            if sub.starts_with("--") {
                // `quorumgate --help` / `--version`
                if !matches!(sub, "--help" | "--version") {
                    problems.push(format!("{at}: `quorumgate {cmd}`: unknown flag {sub}"));
                }
                continue;
            }
            let flags = helps.entry(sub.to_owned()).or_insert_with(|| flags_of(sub));
            let Some(flags) = flags else {
                problems.push(format!("{at}: `quorumgate {cmd}`: no subcommand {sub:?}"));
                continue;
            };
            for w in words {
                let w = w.trim_start_matches(['[', '(']);
                if !w.starts_with("--") {
                    continue;
                }
                let flag: String = w
                    .split('=')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if flag.len() > 2 && !flags.contains(&flag) {
                    problems.push(format!("{at}: `quorumgate {cmd}`: {sub} has no {flag}"));
                }
            }
        }
    }
    assert!(
        seen > 20,
        "found only {seen} command lines: is the extraction broken?"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
