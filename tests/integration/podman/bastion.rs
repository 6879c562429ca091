//! The `.deb` on bastions: Debian 12 containers with systemd as PID 1 (`podman run --privileged
//! --systemd=always … /sbin/init`), the package that `cargo deb` builds installed with `dpkg -i`,
//! and then exactly the steps of README "Install on a bastion".
//!
//! The package: `cargo deb -p quorumgate --no-build` with the shipped `[package.metadata.deb]`,
//! fed this test build's binary (debug info stripped) where cargo-deb looks for it
//! (`$CARGO_TARGET_DIR/release/quorumgate`, in a temporary target directory). Why not a release
//! build: it takes ~7 minutes on CI's 2 cores and changes nothing the tests look at; what they
//! check is the package — files, conffile, maintainer scripts, the unit — and the agent's
//! behaviour under systemd. The "newer" package is the same binary as revision 2
//! (`--deb-revision 2`): an upgrade is dpkg's and the maintainer scripts' doing.
//!
//! The environment's part (not ours): systemd 252 in a container whose root mount is private
//! hands a `LoadCredential=` service an empty, root-owned credentials directory, so the agent
//! fails with EACCES on `/run/credentials/quorumgate.service/agent.key` and loops in
//! auto-restart. `mount --make-rshared /` in the container before the unit starts fixes it (a
//! real machine's root mount is shared already). README "Install on a bastion" says so.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quorumgate::target_app::TargetApp;
use quorumgate::tls;
use tokio::time::Instant;

use super::{
    exec, exec_ok, get, images, label, podman_ok, podman_ready, repo, run_bounded, stripped_binary,
    wait_for, Guard, Net, APP_PORT, RUN_OPTS,
};

/// The unit's timings (systemd/quorumgate.service), which the assertions are bounded by.
const WATCHDOG: Duration = Duration::from_secs(30);
const RESTART: Duration = Duration::from_secs(5);
const TIMEOUT_STOP: Duration = Duration::from_secs(10);
/// Slack for a busy 2-core machine on top of systemd's own timers.
const SLACK: Duration = Duration::from_secs(10);

/// When, since the poller started, and what `/v1/health/app` answered (`None`: unreachable).
type Answer = (Duration, Option<u16>);

/// The two packages, revision 1 and 2 of the same build, in `dir/debs/`.
struct Debs {
    dir: tempfile::TempDir,
}

impl Debs {
    fn build() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        stripped_binary(&target.join("release"), "quorumgate");
        for rev in ["1", "2"] {
            let out = run_bounded(
                Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                    .args([
                        "deb",
                        "-p",
                        "quorumgate",
                        "--no-build",
                        "--deb-revision",
                        rev,
                    ])
                    .arg("-o")
                    .arg(dir.path().join("debs"))
                    .env("CARGO_TARGET_DIR", &target)
                    .current_dir(repo(".")),
                Duration::from_secs(300),
            );
            assert!(
                out.status.success(),
                "cargo deb failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_dir_all(&target);
        Self { dir }
    }

    /// The directory to mount into the bastions.
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

const REV1: &str = "/qg/debs/quorumgate_0.1.0-1_amd64.deb";
const REV2: &str = "/qg/debs/quorumgate_0.1.0-2_amd64.deb";

/// A booted bastion: systemd running, the package installed, removed on drop.
struct Bastion {
    guard: Guard,
}

impl Bastion {
    /// Boots `name` at `ip` on `net` with `share` mounted read-only at `/qg`, installs
    /// revision 1 of the package, and checks what the install did.
    fn boot(net: &Net, name: &str, ip: &str, hosts: &[(String, String)], share: &Path) -> Self {
        let name = format!("{name}-{}", std::process::id());
        let mut args: Vec<String> = ["run", "-d", "--name", &name, "--label", &label()]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        args.extend(RUN_OPTS.iter().map(|s| (*s).to_owned()));
        args.extend(
            [
                "--privileged",
                "--systemd=always",
                "--network",
                &net.name,
                "--ip",
                ip,
            ]
            .iter()
            .map(|s| (*s).to_owned()),
        );
        for (host, addr) in hosts {
            args.push(format!("--add-host={host}:{addr}"));
        }
        args.push("-v".into());
        args.push(format!("{}:/qg:ro", share.display()));
        args.push(images().systemd.clone());
        args.push("/sbin/init".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman_ok(&args);
        let guard = Guard { name, pod: false };
        let b = Self { guard };
        let start = std::time::Instant::now();
        loop {
            let (_, state) = exec(b.name(), "systemctl is-system-running");
            if matches!(state.trim(), "running" | "degraded") {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "{}: systemd did not finish booting: {state}",
                b.name()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        // The environment's part: see the module comment.
        exec_ok(b.name(), "mount --make-rshared /");
        exec_ok(b.name(), &format!("dpkg -i {REV1}"));
        // What the package installed, and that it neither enabled nor started the unit.
        exec_ok(
            b.name(),
            "test -x /usr/bin/quorumgate && test -f /usr/lib/systemd/system/quorumgate.service \
             && test \"$(stat -c %a /etc/default/quorumgate)\" = 600 \
             && test -f /usr/share/doc/quorumgate/examples/quorumgate.example.toml \
             && test -f /usr/share/man/man1/quorumgate-agent.1.gz && ls /usr/lib/debug/.build-id/*/*.debug",
        );
        let (_, enabled) = exec(b.name(), "systemctl is-enabled quorumgate");
        let (_, active) = exec(b.name(), "systemctl is-active quorumgate");
        assert_eq!(
            (enabled.trim(), active.trim()),
            ("disabled", "inactive"),
            "after dpkg -i"
        );
        b
    }

    fn name(&self) -> &str {
        &self.guard.name
    }

    /// `quorumgate keygen --out /etc/quorumgate/agent.key` as README says; the public key.
    fn keygen(&self) -> String {
        exec_ok(self.name(), "install -d -m 0755 /etc/quorumgate");
        let out = exec_ok(
            self.name(),
            "quorumgate keygen --out /etc/quorumgate/agent.key",
        );
        let mode = exec_ok(self.name(), "stat -c '%a %U' /etc/quorumgate/agent.key");
        assert_eq!(mode.trim(), "600 root", "keygen's key file");
        out.lines()
            .find_map(|l| l.strip_prefix("public_key = \""))
            .and_then(|l| l.strip_suffix('"'))
            .unwrap_or_else(|| panic!("keygen printed no public key: {out}"))
            .to_owned()
    }

    /// Writes `/etc/quorumgate/quorumgate.toml` (mode 0644) and runs `quorumgate check` on it.
    fn write_config(&self, toml: &str, dir: &Path) {
        let file = dir.join(format!("{}.toml", self.name()));
        std::fs::write(&file, toml).expect("write config");
        let _ = file; // mounted at /qg, see `share`
        exec_ok(
            self.name(),
            &format!(
                "install -m 0644 /qg/{} /etc/quorumgate/quorumgate.toml && quorumgate check --config /etc/quorumgate/quorumgate.toml",
                file.file_name().expect("name").to_string_lossy()
            ),
        );
    }

    fn show(&self, prop: &str) -> String {
        exec_ok(
            self.name(),
            &format!("systemctl show -p {prop} --value quorumgate"),
        )
        .trim()
        .to_owned()
    }

    fn journal(&self) -> String {
        exec(
            self.name(),
            "journalctl -u quorumgate --no-pager -o cat | tail -n 60",
        )
        .1
    }

    fn explain(&self) -> String {
        format!(
            "{}\n--- systemctl status\n{}\n--- journal\n{}",
            self.name(),
            exec(self.name(), "systemctl status quorumgate --no-pager -l").1,
            self.journal()
        )
    }
}

/// The shipped unit under systemd as PID 1, from `dpkg -i` to `dpkg --purge`: ready only after
/// the first round, STATUS= in `systemctl status`, the watchdog restarting a stopped agent,
/// a clean stop, the journal, `systemd-analyze security` on the running unit, and an upgrade
/// to a newer package while running that restarts the agent without ever answering 200 for the
/// check the quorum had declared down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deb_under_systemd_ready_watchdog_upgrade_and_purge() {
    if !podman_ready() {
        return;
    }
    let debs = Debs::build();
    let net = Net::create("deb");
    let ip = net.ip(10);
    let b = Bastion::boot(&net, "qg-bastion", &ip, &[], debs.path());
    // The bridge exists now: the app listens on its host side.
    let app = TargetApp::bind(format!("{}:{APP_PORT}", net.gateway).parse().expect("addr"))
        .await
        .expect("app on the gateway");
    let key = b.keygen();
    b.write_config(
        &super::single_member_config(
            "bastion",
            &key,
            &format!("http://{}/healthz", app.addr()),
            "agent_id = \"use1\"\nkey_file = \"/etc/quorumgate/agent.key\"\n",
        ),
        debs.path(),
    );

    // Type=notify: `systemctl enable --now` returns once READY=1 came, after the first round.
    let started = Instant::now();
    exec_ok(b.name(), "systemctl enable --now quorumgate");
    let start_to_ready = started.elapsed();
    let health = format!("http://{ip}:8443");
    assert_eq!(
        get(&format!("{health}/readyz"), None, None)
            .await
            .map(|r| r.0),
        Some(200),
        "not ready when systemctl returned:\n{}",
        b.explain()
    );
    let (code, body) = get(&format!("{health}/v1/health/app"), None, None)
        .await
        .expect("health answer");
    assert_eq!((code, body.starts_with("HEALTHY")), (200, true), "{body}");
    let status = exec_ok(b.name(), "systemctl status quorumgate --no-pager");
    assert!(status.contains("active (running)"), "{status}");
    let status_line = status
        .lines()
        .find(|l| l.trim_start().starts_with("Status: \""))
        .unwrap_or_else(|| panic!("no Status: line in systemctl status:\n{status}"));
    assert!(status_line.contains("quorum"), "{status_line}");
    let journal = b.journal();
    assert!(
        journal.contains(": ok — cluster bastion") && journal.contains("agent listening"),
        "the journal has the ExecStartPre check and the agent's log:\n{journal}"
    );
    eprintln!("systemctl enable --now → active after {start_to_ready:?}; {status_line}");

    // systemd-analyze security on the running unit (the offline test scores the file).
    let security = exec_ok(
        b.name(),
        "systemd-analyze security quorumgate --no-pager | tail -n 1",
    );
    assert!(
        security.contains("Overall exposure level for quorumgate.service")
            && (security.contains(" OK") || security.contains("SAFE")),
        "{security}"
    );
    eprintln!("{}", security.trim());

    // The watchdog: a main loop that stops turning (SIGSTOP) is killed and restarted.
    let pid = b.show("MainPID");
    exec_ok(b.name(), &format!("kill -STOP {pid}"));
    let limit = WATCHDOG + RESTART + SLACK;
    let took = wait_for(
        limit,
        "the watchdog restarting the stopped agent",
        || {
            let now = b.show("MainPID");
            let active = b.show("ActiveState");
            let moved = now != pid && now != "0";
            async move { moved && active == "active" }
        },
        || b.explain(),
    )
    .await;
    assert!(
        b.journal().contains("Watchdog timeout"),
        "the restart came from the watchdog:\n{}",
        b.explain()
    );
    assert_eq!(b.show("NRestarts"), "1");
    eprintln!(
        "SIGSTOP → restarted by the watchdog after {took:?} (WatchdogSec {WATCHDOG:?} + RestartSec {RESTART:?})"
    );

    // The app fails: the quorum declares it down, and the decision is persisted.
    app.set_down(true);
    wait_for(
        Duration::from_secs(30),
        "/v1/health/app UNHEALTHY",
        || {
            let url = format!("{health}/v1/health/app");
            async move {
                get(&url, None, None)
                    .await
                    .is_some_and(|(c, b)| c == 503 && b.starts_with("UNHEALTHY"))
            }
        },
        || b.explain(),
    )
    .await;
    wait_for(
        Duration::from_secs(10),
        "decisions.json records the decision",
        || {
            let (_, text) = exec(b.name(), "cat /var/lib/quorumgate/decisions.json");
            async move { text.to_ascii_lowercase().contains("unhealthy") }
        },
        || b.explain(),
    )
    .await;

    // Upgrade while running, with a poller asserting that nothing answers 200 meanwhile.
    let seen: Arc<Mutex<Vec<Answer>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let poller = {
        let (seen, done, url) = (
            Arc::clone(&seen),
            Arc::clone(&done),
            format!("{health}/v1/health/app"),
        );
        tokio::spawn(async move {
            let t0 = Instant::now();
            for _ in 0..2_000 {
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let code = get(&url, None, None).await.map(|r| r.0);
                seen.lock().expect("lock").push((t0.elapsed(), code));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let before = b.show("MainPID");
    let upgrade = tokio::task::block_in_place(|| exec_ok(b.name(), &format!("dpkg -i {REV2}")));
    let version = exec_ok(b.name(), "dpkg-query -W -f='${Version}' quorumgate");
    assert_eq!(version.trim(), "0.1.0-2", "{upgrade}");
    let after = b.show("MainPID");
    assert_ne!(before, after, "the upgrade restarted the agent:\n{upgrade}");
    assert_eq!(b.show("ActiveState"), "active", "{}", b.explain());
    // A few rounds of the new agent.
    tokio::time::sleep(Duration::from_secs(4)).await;
    done.store(true, Ordering::SeqCst);
    poller.await.expect("poller");
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter().all(|(_, c)| *c != Some(200)),
        "answered 200 during the upgrade for a check the quorum had declared down: {seen:?}"
    );
    assert!(
        seen.last().is_some_and(|(_, c)| *c == Some(503)),
        "the new agent answers 503: {seen:?}"
    );
    let restarted = b.journal();
    assert!(restarted.contains("decisions restored"), "{restarted}");

    // systemctl stop: SIGTERM, a graceful exit within TimeoutStopSec.
    let t = Instant::now();
    exec_ok(b.name(), "systemctl stop quorumgate");
    let stop_took = t.elapsed();
    assert!(
        stop_took < TIMEOUT_STOP,
        "stop took {stop_took:?}:\n{}",
        b.explain()
    );
    assert_eq!(
        (b.show("Result"), b.show("ExecMainStatus")),
        ("success".to_owned(), "0".to_owned()),
        "{}",
        b.explain()
    );
    eprintln!("systemctl stop took {stop_took:?}");

    // Purge: the package's files go; the operator's config and the audit log stay.
    exec_ok(b.name(), "dpkg --purge quorumgate");
    exec_ok(
        b.name(),
        "! test -e /usr/bin/quorumgate && ! test -e /usr/lib/systemd/system/quorumgate.service \
         && ! test -e /etc/default/quorumgate && test -f /etc/quorumgate/quorumgate.toml \
         && test -f /var/lib/private/quorumgate/audit.jsonl",
    );
    let (_, gone) = exec(b.name(), "systemctl status quorumgate --no-pager");
    assert!(gone.contains("could not be found"), "{gone}");
    drop(b);
    drop(app);
    drop(net);
}

/// One bastion's config in the three-bastion cluster: hostnames `use1`, `usw2`, `euw1`
/// (`--add-host`), mutual TLS between agents and HTTPS for the health checkers, TLS keys
/// through the README's drop-in.
fn cluster_config(id: &str, keys: &[(String, String)], app: &str) -> String {
    let mut members = String::new();
    for ((host, region), (_, key)) in [
        ("use1", "us-east-1"),
        ("usw2", "us-west-2"),
        ("euw1", "eu-west-1"),
    ]
    .iter()
    .zip(keys)
    {
        members.push_str(&format!(
            "\n[[members]]\nid = \"{host}\"\nregion = \"{region}\"\nurl = \"https://{host}:9443/\"\npublic_key = \"{key}\"\n"
        ));
    }
    format!(
        r#"[cluster]
name = "bastions"
round_interval = "1s"
ballot_valid_for = "4s"
max_clock_skew = "1s"
peer_timeout = "600ms"
{members}
[[checks]]
id = "app"
interval = "1s"
timeout = "500ms"
fall_after = 2
rise_after = 2
hold_down = "1s"
[checks.http]
url = "{app}"
body_contains = "ok"

[local]
agent_id = "{id}"
listen = "0.0.0.0:9443"
health_listen = "0.0.0.0:8443"
key_file = "/etc/quorumgate/agent.key"
[local.tls]
cert_file = "/etc/quorumgate/tls/server.pem"
key_file = "/etc/quorumgate/tls/server.key"
client_ca_file = "/etc/quorumgate/tls/peers-ca.pem"
[local.health_tls]
cert_file = "/etc/quorumgate/tls/server.pem"
key_file = "/etc/quorumgate/tls/server.key"
[local.peer_tls]
ca_file = "/etc/quorumgate/tls/peers-ca.pem"
client_cert_file = "/etc/quorumgate/tls/server.pem"
client_key_file = "/etc/quorumgate/tls/client.key"
"#
    )
}

/// README's drop-in for the TLS private keys (`systemctl edit quorumgate`).
const TLS_DROP_IN: &str = "[Service]
LoadCredential=tls.key:/etc/quorumgate/tls/server.key
LoadCredential=client.key:/etc/quorumgate/tls/client.key
Environment=QUORUMGATE_LOCAL__TLS__KEY_FILE=%d/tls.key
Environment=QUORUMGATE_LOCAL__HEALTH_TLS__KEY_FILE=%d/tls.key
Environment=QUORUMGATE_LOCAL__PEER_TLS__CLIENT_KEY_FILE=%d/client.key
";

/// Three bastions on one podman network form a cluster over mutual TLS; one is cut off
/// (`podman network disconnect`) and the other two keep deciding — they still flip the check
/// when the app fails; it comes back (`podman network connect`) and rejoins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_bastions_form_a_cluster_over_mutual_tls_and_survive_a_disconnect() {
    if !podman_ready() {
        return;
    }
    tls::install_crypto_provider();
    let debs = Debs::build();
    let ids = ["use1", "usw2", "euw1"];
    let pki = tls::generate_dev_pki(&debs.path().join("pki"), &ids).expect("dev pki");
    let net = Net::create("bastions");
    let ips: Vec<String> = (0..3).map(|i| net.ip(10 + i)).collect();
    let hosts: Vec<(String, String)> = ids
        .iter()
        .zip(&ips)
        .map(|(h, ip)| ((*h).to_owned(), ip.clone()))
        .collect();
    let bastions: Vec<Bastion> = ids
        .iter()
        .zip(&ips)
        .map(|(id, ip)| Bastion::boot(&net, &format!("qg-{id}"), ip, &hosts, debs.path()))
        .collect();
    let app = TargetApp::bind(format!("{}:{APP_PORT}", net.gateway).parse().expect("addr"))
        .await
        .expect("app on the gateway");
    let keys: Vec<(String, String)> = ids
        .iter()
        .zip(&bastions)
        .map(|(id, b)| ((*id).to_owned(), b.keygen()))
        .collect();
    for ((id, b), (_, cert, key)) in ids.iter().zip(&bastions).zip(&pki.certs) {
        let rel =
            |p: &Path| -> PathBuf { p.strip_prefix(debs.path()).expect("under share").to_owned() };
        exec_ok(
            b.name(),
            &format!(
                "install -d -m 0755 /etc/quorumgate/tls \
                 && install -m 0644 /qg/{ca} /etc/quorumgate/tls/peers-ca.pem \
                 && install -m 0644 /qg/{cert} /etc/quorumgate/tls/server.pem \
                 && install -m 0600 /qg/{key} /etc/quorumgate/tls/server.key \
                 && install -m 0600 /qg/{key} /etc/quorumgate/tls/client.key \
                 && install -d /etc/systemd/system/quorumgate.service.d \
                 && printf '%s' '{TLS_DROP_IN}' > /etc/systemd/system/quorumgate.service.d/tls.conf",
                ca = rel(&pki.ca_file).display(),
                cert = rel(cert).display(),
                key = rel(key).display(),
            ),
        );
        b.write_config(
            &cluster_config(id, &keys, &format!("http://{}/healthz", app.addr())),
            debs.path(),
        );
    }
    for b in &bastions {
        exec_ok(
            b.name(),
            "systemctl daemon-reload && systemctl enable --now quorumgate",
        );
    }

    let public = tls::client_config(Some(&pki.ca_file), None).expect("client tls");
    let health = |i: usize| format!("https://{}:8443/v1/health/app", ips[i]);
    let explain = || {
        bastions
            .iter()
            .map(Bastion::explain)
            .collect::<Vec<_>>()
            .join("\n\n")
    };
    let answers = |which: Vec<usize>| {
        let public = Arc::clone(&public);
        let urls: Vec<(String, String)> = which
            .iter()
            .map(|&i| (health(i), ids[i].to_owned()))
            .collect();
        async move {
            let mut out = Vec::new();
            for (url, name) in urls {
                out.push(
                    get(&url, Some(&public), Some(&name))
                        .await
                        .map(|(c, b)| (c, b.split_whitespace().next().unwrap_or("").to_owned())),
                );
            }
            out
        }
    };
    let all_say = |which: Vec<usize>, code: u16, word: &'static str| {
        let answers = &answers;
        move || {
            let which = which.clone();
            async move {
                answers(which)
                    .await
                    .iter()
                    .all(|a| a.as_ref().is_some_and(|(c, w)| *c == code && w == word))
            }
        }
    };
    let took = wait_for(
        Duration::from_secs(60),
        "all three bastions answer HEALTHY (a quorum of 2 of 3 ballots)",
        all_say(vec![0, 1, 2], 200, "HEALTHY"),
        explain,
    )
    .await;
    eprintln!("three bastions HEALTHY {took:?} after the last start");
    // Every agent has live ballots from both peers (status needs a client certificate).
    let peer = tls::client_config(Some(&pki.ca_file), Some((&pki.certs[0].1, &pki.certs[0].2)))
        .expect("peer tls");
    for (i, id) in ids.iter().enumerate() {
        let (code, body) = get(
            &format!("https://{}:9443/v1/status", ips[i]),
            Some(&peer),
            Some(id),
        )
        .await
        .expect("status");
        assert_eq!(code, 200, "{body}");
        let status: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        let live = status["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter(|m| !m["ballot"].is_null())
            .count();
        assert_eq!(live, 3, "{id} has ballots from every member: {body}");
    }

    // Cut euw1 off: the other two keep the quorum and still decide.
    podman_ok(&["network", "disconnect", &net.name, bastions[2].name()]);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        all_say(vec![0, 1], 200, "HEALTHY")().await,
        "the two connected bastions still answer HEALTHY: {:?}",
        answers(vec![0, 1]).await
    );
    app.set_down(true);
    let took = wait_for(
        Duration::from_secs(30),
        "the two connected bastions flip to UNHEALTHY",
        all_say(vec![0, 1], 503, "UNHEALTHY"),
        explain,
    )
    .await;
    eprintln!("with one bastion disconnected, the check flipped after {took:?}");

    // Back on the network (same address): it rejoins and agrees.
    podman_ok(&[
        "network",
        "connect",
        "--ip",
        &ips[2],
        &net.name,
        bastions[2].name(),
    ]);
    wait_for(
        Duration::from_secs(30),
        "the reconnected bastion agrees (UNHEALTHY)",
        all_say(vec![0, 1, 2], 503, "UNHEALTHY"),
        explain,
    )
    .await;
    for b in &bastions {
        assert_eq!(b.show("NRestarts"), "0", "{}", b.explain());
    }
    drop(bastions);
    drop(app);
    drop(net);
}
