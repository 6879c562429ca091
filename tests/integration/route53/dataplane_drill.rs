//! `quorumgate drill` on a data-plane gate: the operator-signed drill makes the agents vote
//! the primary down, Route 53's checkers (the data-plane emulator) see the agents' 503s, and
//! DNS answers the secondary; after the drill the votes return, and so does DNS. The report
//! measures every phase up to "DNS answered the secondary" through the emulator's resolver.

use std::path::Path;
use std::time::Duration;

use quorumgate::drill::report::Report;
use tokio::process::Command;
use tokio::time::{sleep, Instant};

use super::dataplane::{DataPlaneRig, PRIMARY_IP, SECONDARY_IP};
use crate::support::exe;

/// A drill command's whole run stays under this.
const DRILL_LIMIT: Duration = Duration::from_secs(150);

fn drill(rig: &DataPlaneRig, args: &[&str]) -> Command {
    super::drill_command(
        &rig.c.written.agents[0].config_path,
        &rig.operator_key,
        &rig.c.spec.env,
        args,
    )
}

async fn finish(child: tokio::process::Child) -> (bool, String) {
    super::finish_drill(child, DRILL_LIMIT).await
}

fn report_in(dir: &Path) -> Report {
    let json = std::fs::read_dir(dir)
        .expect("report dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("a JSON report");
    serde_json::from_slice(&std::fs::read(json).expect("read report")).expect("report JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_plane_drill_moves_dns_to_the_secondary_and_back_and_reports_it() {
    let rig = DataPlaneRig::start().await;
    let out = tempfile::tempdir().expect("tempdir");
    let resolver = rig.dns().to_string();

    // What cannot mean anything on the data plane is refused before anything is signed.
    let (ok, text) = finish(
        drill(
            &rig,
            &["--duration", "5s", "--dry-run", "--resolver", &resolver],
        )
        .spawn()
        .expect("drill"),
    )
    .await;
    assert!(!ok && text.contains("no dry run"), "{text}");
    let (ok, text) = finish(drill(&rig, &["--duration", "5s"]).spawn().expect("drill")).await;
    assert!(!ok && text.contains("--resolver"), "{text}");
    let freeze = std::process::Command::new(exe())
        .args(["freeze", "app", "--config"])
        .arg(&rig.c.written.agents[0].config_path)
        .args(["--operator", "alice", "--key"])
        .arg(&rig.operator_key)
        .output()
        .expect("freeze");
    assert!(!freeze.status.success());
    assert!(
        String::from_utf8_lossy(&freeze.stderr).contains("data-plane gate"),
        "{}",
        String::from_utf8_lossy(&freeze.stderr)
    );

    let out_dir = out.path().display().to_string();
    let (ok, text) = finish(
        drill(
            &rig,
            &[
                "--duration",
                "6s",
                "--resolver",
                &resolver,
                "--wait",
                "90s",
                "--out",
                &out_dir,
            ],
        )
        .spawn()
        .expect("drill"),
    )
    .await;
    assert!(ok, "the drill failed:\n{text}\n{}", rig.c.logs());
    let report = report_in(out.path());
    assert_eq!(report.drill.plane, "data");
    assert!(report.passed(), "{:#?}", report.criteria);
    let phase = |p: &str| {
        report
            .phases
            .iter()
            .find(|c| c.phase == p)
            .unwrap_or_else(|| panic!("phase {p} missing: {:#?}", report.phases))
            .at_ms
    };
    // In order: the quorum's decision, then DNS; the drill's end, the quorum's recovery, DNS.
    assert!(phase("start") <= phase("detected"));
    assert!(phase("detected") <= phase("dns_failover"));
    assert!(phase("dns_failover") <= phase("ended"));
    assert!(phase("ended") <= phase("recovered"));
    assert!(phase("recovered") <= phase("dns_failback"));
    assert_eq!(report.measured.rto_to.as_deref(), Some("dns"));
    let dns = report.dns.as_ref().expect("DNS watched");
    assert!(dns.source.contains(&resolver), "{}", dns.source);
    assert!(
        dns.samples.iter().any(|s| s.answer.contains(SECONDARY_IP)),
        "{:?}",
        dns.samples
    );
    // No record was ever written: the drill moved DNS through the health checks alone.
    for i in 0..rig.c.len() {
        let events = rig.c.status(i).await;
        let gate = events.gates.iter().find(|g| g.id == "app").expect("gate");
        assert_eq!(gate.plane, "data");
        assert_eq!(gate.changes, 0, "{gate:?}");
        assert_eq!(
            gate.drill.as_ref().and_then(|d| d.result.as_deref()),
            Some("pass"),
            "{gate:?}"
        );
    }
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_data_plane_drill_returns_dns_to_the_primary() {
    let rig = DataPlaneRig::start().await;
    let out = tempfile::tempdir().expect("tempdir");
    let resolver = rig.dns().to_string();
    let out_dir = out.path().display().to_string();
    let child = drill(
        &rig,
        &[
            "--duration",
            "10m",
            "--resolver",
            &resolver,
            "--wait",
            "90s",
            "--out",
            &out_dir,
        ],
    )
    .spawn()
    .expect("drill");
    rig.wait_answer(Duration::from_secs(40), SECONDARY_IP).await;
    let abort = drill(&rig, &["--abort"]).output().await.expect("abort");
    assert!(
        abort.status.success(),
        "{}{}",
        String::from_utf8_lossy(&abort.stdout),
        String::from_utf8_lossy(&abort.stderr)
    );
    let (ok, text) = finish(child).await;
    assert!(ok, "{text}");
    let report = report_in(out.path());
    assert_eq!(report.end_cause.as_deref(), Some("aborted"), "{report:#?}");
    let end = Instant::now() + Duration::from_secs(30);
    while rig.answer().await != [PRIMARY_IP.to_owned()] {
        assert!(Instant::now() < end, "DNS never came back to the primary");
        sleep(Duration::from_millis(50)).await;
    }
}
