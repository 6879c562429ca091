//! Issue 14: quorumgate run the three ways people run it, in real containers (podman, runc).
//!
//! - [`bastion`]: the `.deb` that `cargo deb` builds, installed into Debian 12 containers that
//!   boot systemd as PID 1; the shipped unit started, watched, stopped, upgraded and purged; three
//!   such bastions as one cluster over mutual TLS.
//! - [`sidecar`]: the Dockerfile's image beside an app container in one pod, and the shipped
//!   Kubernetes manifests run by `podman kube play`.
//!
//! What they run on is built from Debian's mirror alone by `images.sh` (mmdebstrap; no registry
//! is reachable here), cached in podman's storage by the script's hash. The binary in the
//! `.deb` and the image is the one this test build made (debug info stripped), not a release
//! build: a release build would add ~7 minutes to every CI run for no behaviour the tests can
//! see. The tests skip, saying why, where podman cannot run (not root, no podman, no runc, no
//! mmdebstrap); `scripts/test.sh` sets `QG_REQUIRE_PODMAN=1`, which turns a skip into a failure.
//!
//! Host facts these tests depend on (Debian 12, cgroup v1 hybrid): crun refuses the hybrid
//! cgroups, so every container runs with `--runtime runc`; runc needs explicit `nofile` and
//! `nproc` limits. Every container, pod and network carries the label `quorumgate-test` with the
//! creating process's id, and is removed on drop; leftovers of killed runs are swept at start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use quorumgate::net;
use tokio::time::Instant;

mod bastion;
mod sidecar;

/// `podman run` options every container here needs (see the module comment).
pub const RUN_OPTS: &[&str] = &[
    "--runtime",
    "runc",
    "--ulimit",
    "nofile=20000:20000",
    "--ulimit",
    "nproc=1024:1024",
];
const LABEL: &str = "quorumgate-test";
/// Where a test's own target app listens on its network's gateway (the host side of the
/// bridge): a fixed port below 32768, on an address no other test shares.
pub const APP_PORT: u16 = 18080;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// Runs `cmd` to completion under `timeout`, returning its output.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut bounded = Command::new("timeout");
    bounded
        .arg("--kill-after=10")
        .arg(limit.as_secs().max(1).to_string())
        .arg(&program)
        .args(&args);
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => bounded.env(k, v),
            None => bounded.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        bounded.current_dir(dir);
    }
    bounded
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// `podman` with this suite's engine settings (`containers.conf` beside this file).
fn podman_cmd() -> Command {
    let mut c = Command::new("podman");
    c.env(
        "CONTAINERS_CONF",
        repo("tests/integration/podman/containers.conf"),
    );
    c
}

/// `podman ARGS`, bounded to two minutes; `(success, stdout + stderr)`.
pub fn podman(args: &[&str]) -> (bool, String) {
    let out = run_bounded(podman_cmd().args(args), Duration::from_secs(120));
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// `podman ARGS`, which must succeed; its stdout, trimmed.
pub fn podman_ok(args: &[&str]) -> String {
    let out = run_bounded(podman_cmd().args(args), Duration::from_secs(180));
    assert!(
        out.status.success(),
        "podman {}: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Why podman cannot run here, if it cannot.
fn unavailable() -> Option<String> {
    if !std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid() == 0
    }) {
        return Some(
            "not root: the containers run rootful (systemd as PID 1, --privileged)".into(),
        );
    }
    for tool in [
        "podman",
        "runc",
        "mmdebstrap",
        "cargo-deb",
        "objcopy",
        "timeout",
    ] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            return Some(format!(
                "{tool} is not installed (scripts/test-deps.sh installs it)"
            ));
        }
    }
    let (ok, text) = podman(&["info", "--format", "{{.Host.OCIRuntime.Name}}"]);
    if !ok {
        return Some(format!("`podman info` fails: {text}"));
    }
    None
}

/// Whether the podman tests can run; prints why not (or fails under `QG_REQUIRE_PODMAN`).
pub fn podman_ready() -> bool {
    let Some(why) = unavailable() else {
        sweep();
        return true;
    };
    assert!(
        std::env::var_os("QG_REQUIRE_PODMAN").is_none(),
        "QG_REQUIRE_PODMAN is set but podman cannot run here: {why}"
    );
    eprintln!("SKIPPED: podman tests need a rootful podman with runc: {why}");
    false
}

/// Removes containers, pods and networks that earlier test processes left (killed by a
/// timeout before their guards ran): those whose creating process is gone.
fn sweep() {
    let alive = |pid: &str| Path::new("/proc").join(pid).exists();
    for (kind, list, rm) in [
        (
            "pod",
            vec![
                "pod",
                "ps",
                "-a",
                "--filter",
                "label=quorumgate-test",
                "--format",
                "{{.Name}} {{.Labels}}",
            ],
            vec!["pod", "rm", "-f", "-t", "0"],
        ),
        (
            "container",
            vec![
                "ps",
                "-a",
                "--filter",
                "label=quorumgate-test",
                "--format",
                "{{.Names}} {{.Labels}}",
            ],
            vec!["rm", "-f", "-t", "0"],
        ),
        (
            "network",
            vec![
                "network",
                "ls",
                "--filter",
                "label=quorumgate-test",
                "--format",
                "{{.Name}} {{.Labels}}",
            ],
            vec!["network", "rm", "-f"],
        ),
    ] {
        let (_, text) = podman(&list);
        for line in text.lines() {
            let Some((name, labels)) = line.split_once(' ') else {
                continue;
            };
            let pid = labels
                .split(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .unwrap_or("");
            if !pid.is_empty() && !alive(pid) {
                let mut args = rm.clone();
                args.push(name);
                let _ = podman(&args);
                eprintln!("swept a leftover {kind} {name}");
            }
        }
    }
}

/// The label every object gets: `quorumgate-test=<pid>`.
pub fn label() -> String {
    format!("{LABEL}={}", std::process::id())
}

/// The local images of `images.sh`.
#[derive(Debug)]
pub struct Images {
    pub systemd: String,
    pub base: String,
    pub busybox: String,
}

pub fn images() -> &'static Images {
    static IMAGES: OnceLock<Images> = OnceLock::new();
    IMAGES.get_or_init(|| {
        let out = run_bounded(
            Command::new("bash")
                .arg(repo("tests/integration/podman/images.sh"))
                .env(
                    "CONTAINERS_CONF",
                    repo("tests/integration/podman/containers.conf"),
                ),
            Duration::from_secs(900),
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "images.sh failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tags: Vec<&str> = text.lines().collect();
        let [systemd, base, busybox] = tags[..] else {
            panic!("images.sh printed {tags:?}");
        };
        Images {
            systemd: systemd.to_owned(),
            base: base.to_owned(),
            busybox: busybox.to_owned(),
        }
    })
}

/// This test build's binary without its debug info (the debug build is ~500 MB, ~50 MB
/// stripped), at `dir/name`.
pub fn stripped_binary(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(dir).expect("mkdir");
    let status = run_bounded(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(crate::support::exe())
            .arg(&out),
        Duration::from_secs(120),
    );
    assert!(status.status.success(), "objcopy --strip-debug failed");
    out
}

/// A podman network of this test, removed on drop.
#[derive(Debug)]
pub struct Net {
    pub name: String,
    /// The subnet's first three octets, e.g. `10.89.3`.
    pub prefix: String,
    /// The host side of the bridge.
    pub gateway: String,
}

impl Net {
    pub fn create(tag: &str) -> Self {
        let name = format!("qg-{tag}-{}", std::process::id());
        podman_ok(&["network", "create", "--label", &label(), &name]);
        let info = podman_ok(&[
            "network",
            "inspect",
            &name,
            "--format",
            "{{range .Subnets}}{{.Subnet}} {{.Gateway}}{{end}}",
        ]);
        let (subnet, gateway) = info.split_once(' ').expect("subnet and gateway");
        assert!(subnet.ends_with(".0/24"), "a /24 expected: {subnet}");
        Self {
            prefix: subnet.trim_end_matches(".0/24").to_owned(),
            gateway: gateway.to_owned(),
            name,
        }
    }

    /// The address `.n` of the subnet.
    pub fn ip(&self, n: u8) -> String {
        format!("{}.{n}", self.prefix)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = podman(&["network", "rm", "-f", &self.name]);
    }
}

/// A container (or pod, with `pod: true`) removed on drop.
#[derive(Debug)]
pub struct Guard {
    pub name: String,
    pub pod: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.pod {
            let _ = podman(&["pod", "rm", "-f", "-t", "0", &self.name]);
        } else {
            let _ = podman(&["rm", "-f", "-t", "0", &self.name]);
        }
    }
}

/// `podman exec NAME sh -c SCRIPT`, bounded; `(success, stdout + stderr)`.
pub fn exec(name: &str, script: &str) -> (bool, String) {
    podman(&["exec", name, "sh", "-c", script])
}

/// As [`exec`], which must succeed; stdout and stderr.
pub fn exec_ok(name: &str, script: &str) -> String {
    let (ok, text) = exec(name, script);
    assert!(ok, "in {name}: {script}\n{text}");
    text
}

/// A GET to `url`, `None` when unreachable. `server_name` overrides the TLS name.
pub async fn get(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    server_name: Option<&str>,
) -> Option<(u16, String)> {
    let mut req = net::Request::get(url.parse().expect("url"), tls.cloned(), 1 << 20);
    req.server_name = server_name.map(str::to_owned);
    net::send(&req, Duration::from_secs(3)).await.ok().map(|r| {
        (
            r.status.as_u16(),
            String::from_utf8_lossy(&r.body).into_owned(),
        )
    })
}

/// Polls `cond` every 250 ms until it holds or `limit` passes (then panics with `what` and
/// `explain()`); returns how long it took.
pub async fn wait_for<F, Fut>(
    limit: Duration,
    what: &str,
    mut cond: F,
    explain: impl Fn() -> String,
) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if cond().await {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not within {limit:?}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A one-member cluster `name` (member `use1`, key `public_key`) probing `app` once a second,
/// listening on 9443 with a public health listener on 8443; `local_extra` is added to
/// `[local]` (e.g. `agent_id`, `key_file`: the image sets both through its environment).
pub fn single_member_config(name: &str, public_key: &str, app: &str, local_extra: &str) -> String {
    format!(
        r#"[cluster]
name = "{name}"
round_interval = "1s"
ballot_valid_for = "4s"
max_clock_skew = "1s"
peer_timeout = "500ms"
allow_single_member = true

[[members]]
id = "use1"
region = "us-east-1"
url = "http://127.0.0.1:9443/"
public_key = "{public_key}"

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
listen = "0.0.0.0:9443"
health_listen = "0.0.0.0:8443"
{local_extra}"#
    )
}
