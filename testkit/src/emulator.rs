//! Where the strict Route 53 / RDS emulator lives and how its clients are set up, shared by the
//! integration tests, the chaos suite and the end-to-end bench (each starts the emulator its
//! own way: on loopback, or inside a hub namespace).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, ChildStdin, Command};

/// The emulator's Python, where `scripts/test-deps.sh` puts its virtualenv:
/// `$QG_MOTO_PYTHON`, else `${QG_DEPS_DIR:-$HOME/.cache/quorumgate}/moto-venv/bin/python`.
#[must_use]
pub fn moto_python() -> PathBuf {
    if let Some(p) = std::env::var_os("QG_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let deps = std::env::var_os("QG_DEPS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/quorumgate"),
        PathBuf::from,
    );
    deps.join("moto-venv/bin/python")
}

/// `tests/fixtures/moto_strict.py`, the emulator itself.
#[must_use]
pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/moto_strict.py")
}

/// Environment for agent processes that talk to the emulator: its dummy credentials, and
/// nothing from the host's AWS configuration (no profile files, no instance metadata).
#[must_use]
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/quorumgate-test"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/quorumgate-test",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// [`moto_python`], or an error that names the script installing it.
pub fn require_python() -> anyhow::Result<PathBuf> {
    let python = moto_python();
    anyhow::ensure!(
        python.exists(),
        "the Route 53 emulator's Python is missing at {}: run `bash scripts/test-deps.sh` \
         (or point QG_MOTO_PYTHON at a Python with moto[server]==5.2.5)",
        python.display()
    );
    Ok(python)
}

/// A started emulator process and the port it reported.
#[derive(Debug)]
pub struct Spawned {
    /// Killed when dropped.
    pub child: Child,
    /// The emulator exits by itself when this pipe closes: keep it as long as the child.
    pub stdin: ChildStdin,
    pub port: u16,
}

/// Starts the fixture with `python` (a command running the emulator's Python: the program
/// itself, or `ip netns exec NS python`), listening on `port` (0: one it picks) for at most
/// `lifetime_s`, with `args` added; returns once it reports the port it listens on.
pub async fn spawn(
    mut python: Command,
    port: u16,
    lifetime_s: u64,
    args: &[&str],
) -> anyhow::Result<Spawned> {
    let mut child = python
        .arg(fixture())
        .args(["--port", &port.to_string(), "--max-lifetime-s"])
        .arg(lifetime_s.max(60).to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the Route 53 emulator")?;
    let stdin = child.stdin.take().context("emulator stdin")?;
    let stdout = child.stdout.take().context("emulator stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the emulator did not report its port within 30 s")??
        .context("the emulator exited before listening")?;
    let port = line
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .with_context(|| format!("unexpected first line from the emulator: {line:?}"))?;
    Ok(Spawned { child, stdin, port })
}
