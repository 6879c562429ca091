//! systemd: the agent's notification protocol against a real `NOTIFY_SOCKET` (a unix datagram
//! socket bound here), and the shipped unit through `systemd-analyze` (verify, and the offline
//! security score).
//!
//! The agent is started the way systemd starts it: `WATCHDOG_PID` is the pid of the process
//! that execs the agent (a shell wrapper sets it to its own `$$`, then `exec`s), so it matches
//! without the test knowing the pid in advance.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::Arc;
use std::time::Duration;

use quorumgate::devcluster::{self, Spec};
use quorumgate::status::Status;
use quorumgate::target_app::TargetApp;
use quorumgate::{net, tls};
use tokio::process::Child;
use tokio::time::Instant;

use crate::support;

/// A long round, so the agent listens for a good while before its first round makes it ready.
const ROUND_MS: u64 = 1_500;
/// The watchdog timeout the agent is given: it must ping every second.
const WATCHDOG: Duration = Duration::from_secs(2);

/// Which `WATCHDOG_PID` the agent sees.
#[derive(Clone, Copy)]
enum WatchdogPid {
    /// Its own pid, as systemd sets it.
    Own,
    /// None: the watchdog is for whoever reads `WATCHDOG_USEC`.
    Absent,
    /// Another process's (this test's): the agent must not ping.
    Other,
}

/// How `NOTIFY_SOCKET` names the socket.
#[derive(Clone, Copy)]
enum Addr {
    Path,
    Abstract,
}

/// One agent process and the notification socket it talks to.
struct Notified {
    socket: UnixDatagram,
    /// Every datagram received, with when it was read.
    received: Vec<(Instant, String)>,
    child: Child,
    pid: u32,
    agent: devcluster::Agent,
    client_tls: Arc<rustls::ClientConfig>,
    _app: TargetApp,
    _dir: tempfile::TempDir,
}

impl Notified {
    async fn start(pid: WatchdogPid, addr: Addr) -> Self {
        tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let app = TargetApp::start().await.expect("target app");
        let mut spec = Spec::three(dir.path(), app.url());
        spec.round_ms = ROUND_MS;
        spec.timeout_ms = 500;
        // Three members, one running: enough for readiness, which needs no quorum.
        let written = devcluster::write(&spec).expect("write cluster");
        let agent = written.agents.into_iter().next().expect("an agent");

        let (socket, notify_socket) = match addr {
            Addr::Path => {
                let path = dir.path().join("notify");
                let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
                (socket, path.display().to_string())
            }
            Addr::Abstract => {
                use std::os::linux::net::SocketAddrExt as _;
                let name = format!("quorumgate-it-notify-{}", std::process::id());
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .expect("abstract name");
                let socket = UnixDatagram::bind_addr(&addr).expect("bind the notify socket");
                (socket, format!("@{name}"))
            }
        };
        socket.set_nonblocking(true).expect("non-blocking");

        let pid_line = match pid {
            WatchdogPid::Own => "WATCHDOG_PID=$$; export WATCHDOG_PID".to_owned(),
            WatchdogPid::Absent => "unset WATCHDOG_PID".to_owned(),
            WatchdogPid::Other => {
                format!("WATCHDOG_PID={}; export WATCHDOG_PID", std::process::id())
            }
        };
        let wrapper = dir.path().join("agent.sh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\n# As under systemd: the pid that execs the agent is the agent's.\n{pid_line}\nexec '{}' \"$@\"\n",
                support::exe().display()
            ),
        )
        .expect("write the wrapper");
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .expect("chmod the wrapper");
        let env = [
            ("NOTIFY_SOCKET".to_owned(), notify_socket),
            ("WATCHDOG_USEC".to_owned(), WATCHDOG.as_micros().to_string()),
        ];
        let child = devcluster::spawn(&wrapper, &agent, &env).expect("spawn agent");
        let pid = child.id().expect("a running child");
        Self {
            socket,
            received: Vec::new(),
            child,
            pid,
            agent,
            client_tls: written.client_tls,
            _app: app,
            _dir: dir,
        }
    }

    /// Reads every datagram waiting on the socket.
    fn drain(&mut self) {
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) => self.received.push((
                    Instant::now(),
                    String::from_utf8_lossy(&buf[..n]).into_owned(),
                )),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => panic!("notify socket: {e}"),
            }
        }
    }

    /// When each datagram holding the line `line` arrived.
    fn arrivals(&self, line: &str) -> Vec<Instant> {
        self.received
            .iter()
            .filter(|(_, text)| text.lines().any(|l| l == line))
            .map(|(at, _)| *at)
            .collect()
    }

    async fn get(&self, path: &str) -> Option<(u16, bytes::Bytes)> {
        let url = self.agent.url.join(path).ok()?;
        let req = net::Request::get(url, Some(Arc::clone(&self.client_tls)), 1 << 20);
        net::send(&req, Duration::from_secs(3))
            .await
            .ok()
            .map(|r| (r.status.as_u16(), r.body))
    }

    async fn readyz(&self) -> Option<u16> {
        self.get("readyz").await.map(|(code, _)| code)
    }

    async fn status(&self) -> Status {
        let (code, body) = self.get("v1/status").await.expect("status reachable");
        assert_eq!(code, 200);
        serde_json::from_slice(&body).expect("status JSON")
    }

    /// Drains every 20 ms until `cond` holds; panics with `what`, the datagrams and the log.
    async fn wait_until(&mut self, limit: Duration, what: &str, cond: impl Fn(&Self) -> bool) {
        let end = Instant::now() + limit;
        loop {
            self.drain();
            if cond(self) {
                return;
            }
            assert!(
                Instant::now() < end,
                "timed out after {limit:?} waiting for: {what}\n{}",
                self.explain()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn explain(&self) -> String {
        let start = self.received.first().map(|(at, _)| *at);
        let datagrams: Vec<String> = self
            .received
            .iter()
            .map(|(at, text)| {
                let ms = start.map_or(0, |s| at.duration_since(s).as_millis());
                format!("  +{ms} ms: {text:?}")
            })
            .collect();
        let log = std::fs::read_to_string(&self.agent.log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "datagrams:\n{}\n--- agent log (tail) ---\n{}",
            datagrams.join("\n"),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// Waits for `READY=1` and checks that it came only after the first round: `/readyz` (200
    /// only once a round is done) answered 503 while the agent was up, and says 200 as soon as
    /// `READY=1` has been read.
    async fn wait_ready_after_first_round(&mut self) {
        let end = Instant::now() + Duration::from_secs(30);
        let mut saw_not_ready = false;
        loop {
            self.drain();
            if !self.arrivals("READY=1").is_empty() {
                break;
            }
            if self.readyz().await == Some(503) {
                saw_not_ready = true;
            }
            assert!(
                Instant::now() < end,
                "no READY=1 within 30 s\n{}",
                self.explain()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Had READY=1 been sent before the round, /readyz would still say 503 here.
        assert_eq!(
            self.readyz().await,
            Some(200),
            "READY=1 arrived before the first round was done\n{}",
            self.explain()
        );
        let status = self.status().await;
        assert!(status.ready && status.rounds >= 1, "{status:?}");
        assert!(
            saw_not_ready,
            "the agent was never seen listening but not ready: the test proves nothing\n{}",
            self.explain()
        );
        let ready = self
            .received
            .iter()
            .find(|(_, t)| t.lines().any(|l| l == "READY=1"))
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        assert!(
            ready.lines().any(|l| l.starts_with("STATUS=")),
            "READY=1 comes with a STATUS= line: {ready:?}"
        );
    }

    /// SIGTERM, as `systemctl stop` sends it.
    fn sigterm(&self) {
        let ok = StdCommand::new("sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &self.pid.to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -TERM {} failed", self.pid);
    }
}

/// Gaps between consecutive arrivals.
fn gaps(arrivals: &[Instant]) -> Vec<Duration> {
    arrivals.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test]
async fn ready_after_first_round_watchdog_pings_and_stopping_on_sigterm() {
    let mut a = Notified::start(WatchdogPid::Own, Addr::Path).await;
    a.wait_ready_after_first_round().await;

    // WATCHDOG=1 keeps coming, every WATCHDOG_USEC / 2.
    let ready_at = a.arrivals("READY=1")[0];
    a.wait_until(Duration::from_secs(30), "5 WATCHDOG=1 after READY=1", |a| {
        a.arrivals("WATCHDOG=1")
            .iter()
            .filter(|at| **at > ready_at)
            .count()
            >= 5
    })
    .await;
    let pings = a.arrivals("WATCHDOG=1");
    let gaps = gaps(&pings);
    let max = gaps.iter().max().copied().unwrap_or_default();
    let mean = gaps.iter().sum::<Duration>() / u32::try_from(gaps.len()).unwrap_or(1);
    assert!(
        max < WATCHDOG,
        "a gap of {max:?} between pings would have let systemd kill the agent\n{}",
        a.explain()
    );
    assert!(
        mean >= WATCHDOG / 4 && mean <= WATCHDOG * 3 / 4,
        "pings every {mean:?} on average, expected about {:?}\n{}",
        WATCHDOG / 2,
        a.explain()
    );

    // SIGTERM: STOPPING=1, then a clean exit.
    a.sigterm();
    let exit = tokio::time::timeout(Duration::from_secs(15), a.child.wait())
        .await
        .expect("the agent exits within 15 s of SIGTERM")
        .expect("wait");
    a.drain();
    assert!(exit.success(), "exit status {exit:?}\n{}", a.explain());
    let stopping = a.arrivals("STOPPING=1");
    assert_eq!(stopping.len(), 1, "one STOPPING=1\n{}", a.explain());
    assert!(stopping[0] > ready_at);
    assert_eq!(
        a.arrivals("READY=1").len(),
        1,
        "READY=1 exactly once\n{}",
        a.explain()
    );
}

#[tokio::test]
async fn watchdog_without_watchdog_pid_is_fed_over_an_abstract_socket() {
    let mut a = Notified::start(WatchdogPid::Absent, Addr::Abstract).await;
    a.wait_ready_after_first_round().await;
    a.wait_until(Duration::from_secs(30), "3 WATCHDOG=1", |a| {
        a.arrivals("WATCHDOG=1").len() >= 3
    })
    .await;
}

#[tokio::test]
async fn watchdog_meant_for_another_pid_is_left_alone() {
    let mut a = Notified::start(WatchdogPid::Other, Addr::Path).await;
    a.wait_ready_after_first_round().await;
    // An agent that fed the watchdog would have pinged as its loop started (before READY=1)
    // and every second since; give it two more seconds to be wrong.
    let ready_at = a.arrivals("READY=1")[0];
    a.wait_until(Duration::from_secs(10), "2 s past READY=1", |_| {
        ready_at.elapsed() >= WATCHDOG
    })
    .await;
    assert!(
        a.arrivals("WATCHDOG=1").is_empty(),
        "WATCHDOG=1 sent although WATCHDOG_PID names another process\n{}",
        a.explain()
    );
}

// ---------------------------------------------------------------------------------------------
// The unit file.

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../systemd/quorumgate.service");

fn systemd_analyze() -> &'static Path {
    let path = Path::new("/usr/bin/systemd-analyze");
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/test-deps.sh` (it installs Debian's systemd package)",
        path.display()
    );
    path
}

/// The shipped unit with `/usr/bin/quorumgate` pointing at the binary under test (verify wants
/// every `ExecStart*=` to exist), in a temporary directory under the unit's own name.
fn unit_under_test(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(UNIT).expect("read the unit");
    assert!(text.contains("/usr/bin/quorumgate "), "ExecStart= moved");
    let path = dir.join("quorumgate.service");
    let exe = support::exe();
    std::fs::write(
        &path,
        text.replace("/usr/bin/quorumgate ", &format!("{} ", exe.display())),
    )
    .expect("write the unit");
    path
}

fn run(cmd: &mut StdCommand) -> (bool, String) {
    let out = cmd.output().expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_under_test(dir.path());
    // --man=no: the Documentation= pages are checked against agent/man/ by the packaging tests.
    let (ok, out) = run(StdCommand::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit));
    // verify exits 0 on unknown keys and bad values ("…, ignoring"): any line about our unit
    // is a failure.
    let ours: Vec<&str> = out.lines().filter(|l| l.contains("quorumgate")).collect();
    assert!(ok && ours.is_empty(), "systemd-analyze verify:\n{out}");
}

#[test]
fn unit_security_exposure_is_ok_or_better() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_under_test(dir.path());
    let (ok, out) = run(StdCommand::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    assert!(ok, "systemd-analyze security:\n{out}");
    // "→ Overall exposure level for quorumgate.service: 1.1 OK 🙂"
    let line = out
        .lines()
        .find(|l| l.contains("Overall exposure level for"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{out}"));
    let verdict = line.rsplit(": ").next().unwrap_or_default();
    let mut words = verdict.split_whitespace();
    let score: f64 = words
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in {line:?}"));
    let label = words.next().unwrap_or_default();
    eprintln!("systemd-analyze security --offline=yes: {score} {label}");
    // systemd's scale: PERFECT 0, SAFE < 1.0, OK < 5.0, then MEDIUM, EXPOSED, UNSAFE, DANGEROUS.
    assert!(
        score < 5.0 && ["PERFECT", "SAFE", "OK"].contains(&label),
        "exposure {score} {label}: worse than OK\n{out}"
    );
}

#[test]
fn unit_keeps_the_required_settings() {
    let text = std::fs::read_to_string(UNIT).expect("read the unit");
    let settings: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    let required = [
        "Type=notify",
        "NotifyAccess=main",
        "Restart=on-failure",
        "DynamicUser=yes",
        "StateDirectory=quorumgate",
        "ConfigurationDirectory=quorumgate",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "SystemCallFilter=@system-service",
        "MemoryDenyWriteExecute=yes",
        "EnvironmentFile=-/etc/default/quorumgate",
    ];
    for want in required {
        assert!(settings.contains(&want), "the unit lacks `{want}`");
    }
    // The descriptor limit holds both listeners at their largest cap and the reserve (the
    // soft limit of 1,024 otherwise lets a connection flood starve the probes).
    let nofile: u64 = settings
        .iter()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .expect("LimitNOFILE=")
        .parse()
        .expect("LimitNOFILE= is one number (soft and hard alike)");
    let needs = quorumgate::fdlimit::Needs {
        probe_concurrency: 1_024,
        db_probes: 64,
        control_probes: 16,
        peers: 15,
        health_listener: true,
    };
    let budget = quorumgate::fdlimit::budget(nofile, &needs);
    assert_eq!(
        budget.full,
        quorumgate::fdlimit::MAX_LISTENER_CONNECTIONS,
        "LimitNOFILE={nofile}: {budget:?}"
    );
    assert!(
        budget.reserve + 2 * quorumgate::fdlimit::MAX_LISTENER_CONNECTIONS as u64 <= nofile,
        "LimitNOFILE={nofile}: {budget:?}"
    );
    let watchdog = settings
        .iter()
        .find_map(|l| l.strip_prefix("WatchdogSec="))
        .expect("WatchdogSec=");
    let watchdog = humantime::parse_duration(watchdog).expect("WatchdogSec= is a duration");
    // Long enough that a loaded host does not trip it, short enough to catch a stuck loop soon.
    assert!(
        (Duration::from_secs(10)..=Duration::from_secs(120)).contains(&watchdog),
        "WatchdogSec={watchdog:?}"
    );
}
