//! Issue scenarios 6 and 7: `quorumgate check` reports every mistake; the demo runs.

use std::process::Command;

use crate::support::exe;

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

#[test]
fn check_accepts_the_shipped_example() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quorumgate.example.toml"
    );
    let out = Command::new(exe())
        .args(["check", "--config", example])
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
        "FLIPPED to UNHEALTHY",
        "RECOVERED to HEALTHY",
        "demo complete",
    ] {
        assert!(
            text.contains(needle),
            "missing {needle:?} in demo output:\n{text}"
        );
    }
}
