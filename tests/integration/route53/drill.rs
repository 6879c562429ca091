//! Game-day drills end to end (issue 5): `quorumgate drill` against three real agents and the
//! strict Route 53 emulator. The failover and the failback go through the quorum, the fence
//! and the audit log; the report's phases are in order and are the audit logs' own numbers;
//! an abort fails back early (and a restarted agent keeps the drill); a drill refuses to start
//! while the secondary is down; a dry run writes nothing.
//!
//! The emulator serves no DNS, so the first test puts a tiny authoritative DNS server in front
//! of it (answers from ListResourceRecordSets, refreshed every 100 ms) and the drill command
//! watches it through hickory-resolver (`--resolver`); the others watch through the Route 53
//! API, the command's fallback.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType};
use hickory_resolver::proto::rr::rdata::A;
use hickory_resolver::proto::rr::{RData, Record, RecordType};
use quorumgate::drill::report::Report;
use quorumgate::drill::timeline::{self, DrillKey, Phase};
use quorumgate::route53::{RecordTarget, Route53Api, SdkRoute53};
use quorumgate::target_app::TargetApp;
use tokio::net::UdpSocket;
use tokio::process::Command;

use super::gate_rig::{failover_gate, standby_check, GateRig, PRIMARY_IP, SECONDARY_IP};
use super::{GATE, RECORD_NAME};
use crate::support::metric;

/// A drill command's whole run, its end included, stays under this.
const DRILL_LIMIT: Duration = Duration::from_secs(120);

/// A [`GateRig`] with a standby app and a control-plane failover gate `app` (primary: check
/// `app`, secondary: check `standby`), failback deliberate (`auto_failback = false`: only the
/// drill's authority brings it back), and drill objectives.
struct Rig {
    rig: GateRig,
    standby: TargetApp,
}

impl std::ops::Deref for Rig {
    type Target = GateRig;
    fn deref(&self) -> &GateRig {
        &self.rig
    }
}

impl std::ops::DerefMut for Rig {
    fn deref_mut(&mut self) -> &mut GateRig {
        &mut self.rig
    }
}

impl Rig {
    async fn start() -> Self {
        let standby = TargetApp::start().await.expect("standby app");
        let rig = GateRig::start(2, |_, zone_id| {
            [
                standby_check(&standby.url()),
                failover_gate(
                    GATE,
                    zone_id,
                    RECORD_NAME,
                    "wait_period = \"1s\"\nmax_changes = 6\nwindow = \"1h\"\nauto_failback = false\nwriter_stagger = \"500ms\"",
                ),
                "\n[gates.drill]\nrto = \"30s\"\n".to_owned(),
            ]
            .concat()
        })
        .await;
        Self { rig, standby }
    }

    /// `quorumgate drill app …` through the real binary, signed with alice's key.
    fn drill(&self, args: &[&str]) -> Command {
        super::drill_command(
            &self.c.written.agents[0].config_path,
            &self.operator_key,
            &self.c.spec.env,
            args,
        )
    }

    /// Runs a drill command to its end (bounded); its success and its output.
    async fn run_drill(&self, args: &[&str]) -> (bool, String) {
        let child = self.drill(args).spawn().expect("start the drill command");
        finish(child).await
    }

    fn key(&self, seq: u64) -> DrillKey {
        DrillKey {
            gate: "app".into(),
            seq,
            primary_check: "app".into(),
            primary_state: "active=primary".into(),
            secondary_state: "active=secondary".into(),
        }
    }

    fn audit(&self, i: usize) -> Vec<quorumgate::audit::Record> {
        let path = self.c.written.agents[i].state_dir.join("audit.jsonl");
        quorumgate::audit::read_records(&path).expect("audit log")
    }
}

async fn finish(child: tokio::process::Child) -> (bool, String) {
    super::finish_drill(child, DRILL_LIMIT).await
}

/// The one report (`drill-app-*.json`) in `dir`, and the other two files' paths.
fn read_report(dir: &Path) -> (Report, PathBuf, PathBuf) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("report dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    let find = |ext: &str| {
        files
            .iter()
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .unwrap_or_else(|| panic!("no .{ext} in {files:?}"))
            .clone()
    };
    let json = find("json");
    assert!(
        json.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("drill-app-")),
        "{json:?}"
    );
    let report =
        serde_json::from_slice(&std::fs::read(&json).expect("read report")).expect("report JSON");
    (report, find("md"), find("svg"))
}

/// A tiny authoritative DNS server for the gate's record, answering from what the emulator
/// holds (refreshed every 100 ms): what Route 53's name servers would answer.
async fn dns_bridge(rig: &GateRig) -> SocketAddr {
    let mut options = rig.emu.options();
    options.limiter = Arc::new(quorumgate::route53::limiter::RateLimiter::new(50, 50));
    let api = SdkRoute53::load(options).await;
    let zone = rig.zone_id.clone();
    let answer: Arc<Mutex<Vec<Ipv4Addr>>> = Arc::default();
    let current = Arc::clone(&answer);
    tokio::spawn(async move {
        loop {
            if let Ok(records) = api.list_record_sets(&zone, Some(RECORD_NAME)).await {
                let ips = records
                    .iter()
                    .filter(|r| r.name() == RECORD_NAME && r.record_type() == "A")
                    .flat_map(|r| match r.target() {
                        RecordTarget::Values { values, .. } => values.clone(),
                        RecordTarget::Alias { .. } => Vec::new(),
                    })
                    .filter_map(|v| v.parse().ok())
                    .collect();
                *current.lock().expect("answer") = ips;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let addr = socket.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::response(query.metadata.id, query.metadata.op_code);
            m.metadata.message_type = MessageType::Response;
            m.metadata.authoritative = true;
            m.add_queries(query.queries.clone());
            if let Some(q) = query.queries.first() {
                if q.query_type() == RecordType::A
                    && q.name().to_lowercase().to_string() == RECORD_NAME
                {
                    for ip in answer.lock().expect("answer").iter() {
                        m.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A::from(*ip)),
                        ));
                    }
                }
            }
            if let Ok(reply) = m.to_vec() {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    addr
}

/// Every mark of every agent in the report is that agent's audit record: same seq, same
/// event, same time (`accepted_at_ms` / `in_sync_at_ms` for a change's acceptance / INSYNC);
/// and the whole timeline is what the audit log gives.
fn assert_marks_are_the_audit_logs(rig: &Rig, report: &Report) {
    assert_eq!(report.agents.len(), rig.c.len());
    for (i, a) in rig.c.written.agents.iter().enumerate() {
        let records = rig.audit(i);
        let t = report
            .agents
            .iter()
            .find(|t| t.agent == a.id)
            .unwrap_or_else(|| panic!("no timeline for {}", a.id));
        assert_eq!(
            *t,
            timeline::timeline(&a.id, &rig.key(report.drill.seq), &records),
            "{}: the report's timeline is the audit log's",
            a.id
        );
        for m in &t.marks {
            let r = records
                .iter()
                .find(|r| r.seq == m.audit_seq)
                .unwrap_or_else(|| panic!("{}: no record #{}", a.id, m.audit_seq));
            assert_eq!(r.event, m.event, "{}: {m:?}", a.id);
            let want = match m.phase.as_str() {
                "changed" | "failback_changed" => {
                    r.body["accepted_at_ms"].as_u64().unwrap_or(r.at_ms)
                }
                "in_sync" | "failback_in_sync" => {
                    r.body["in_sync_at_ms"].as_u64().unwrap_or(r.at_ms)
                }
                _ => r.at_ms,
            };
            assert_eq!(m.at_ms, want, "{}: {m:?} vs {r:?}", a.id);
        }
    }
    // The cluster's phases are taken from those marks, and are in order.
    let mut last = 0;
    for phase in Phase::ALL {
        let Some(p) = report.phase(phase) else {
            continue;
        };
        assert!(
            p.at_ms >= last,
            "{} out of order: {:#?}",
            p.phase,
            report.phases
        );
        last = p.at_ms;
        if phase != Phase::Start {
            let (agent, seq) = p
                .source
                .strip_prefix("audit ")
                .and_then(|s| s.split_once(" #"))
                .unwrap_or_else(|| panic!("{p:?}"));
            let t = report
                .agents
                .iter()
                .find(|t| t.agent == agent)
                .expect("source agent");
            let m = t.mark(phase).expect("source mark");
            assert_eq!(
                (m.at_ms, m.audit_seq.to_string()),
                (p.at_ms, seq.to_owned())
            );
        }
    }
}

/// A drill on a healthy pair: failover and failback through the fence, each exactly once; the
/// failback needs no `approve` (the drill is its authority, and the audit says so); the
/// votes and certificates say `drill`; the report passes, its phases are in order and are
/// the audit logs' numbers, DNS (through the bridge and hickory) follows; every agent judged
/// the drill itself and exports `quorumgate_drill_result`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_over_and_back_and_reports_what_the_audit_logs_say() {
    let rig = Rig::start().await;
    let dns = dns_bridge(&rig).await;
    rig.emu.reset_stats().await;
    let out = tempfile::tempdir().expect("tempdir");
    let (ok, text) = rig
        .run_drill(&[
            "--duration",
            "5s",
            "--wait",
            "60s",
            "--resolver",
            &dns.to_string(),
            "--out",
            out.path().to_str().expect("utf-8"),
        ])
        .await;
    assert!(ok, "{text}\n{}", rig.c.logs());
    assert!(text.contains("PASS"), "{text}");

    // Through the fence, once each way, and back where it started.
    assert_eq!(
        rig.accepted_writes().await,
        2,
        "failover and failback: {text}"
    );
    assert_eq!(rig.epoch().await, 3);
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);
    rig.wait_gates(
        "every agent back at the primary, drill finished and judged",
        |g| {
            g.current == "active=primary"
                && g.drill.as_ref().is_some_and(|d| {
                    d.state == "finished"
                        && d.result.as_deref() == Some("pass")
                        && d.end_cause.as_deref() == Some("elapsed")
                })
        },
    )
    .await;

    let (report, md, svg) = read_report(out.path());
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.end_cause.as_deref(), Some("elapsed"));
    assert!(!report.drill.dry_run);
    assert_eq!(report.drill.objectives.rto_ms, Some(30_000));
    assert_marks_are_the_audit_logs(&rig, &report);
    for phase in Phase::ALL {
        assert!(
            report.phase(phase).is_some(),
            "no {} phase: {:#?}",
            phase.code(),
            report.phases
        );
    }
    let at = |p: &str| report.phases.iter().find(|c| c.phase == p).map(|c| c.at_ms);
    // Watched through the resolver (hickory), DNS followed the fenced batches.
    let d = report.dns.as_ref().expect("dns");
    assert_eq!(d.source, format!("resolver {dns}"));
    let (over, back) = (
        at("dns_failover").expect("dns failover"),
        at("dns_failback").expect("dns failback"),
    );
    assert!(
        over >= at("sent").expect("sent") && back >= at("failback_sent").expect("failback sent")
    );
    assert!(back > over);
    let rto = report.measured.rto_ms.expect("rto");
    assert!(
        rto < 30_000 && report.measured.rto_to.as_deref() == Some("in_sync"),
        "{:?}",
        report.measured
    );

    // The failback was authorised by the drill, never by an approval; only the writer sent
    // batches, and no database was promoted.
    let writer = report.writer.clone().expect("writer");
    let w = rig
        .c
        .written
        .agents
        .iter()
        .position(|a| a.id == writer)
        .expect("writer index");
    let decisions = rig.audit_events(w, "gate_decision");
    let back = decisions
        .iter()
        .find(|d| d["reason"] == "failback")
        .expect("failback decision");
    assert_eq!(back["authority"]["kind"], "drill", "{back}");
    assert_eq!(back["authority"]["seq"].as_u64(), Some(report.drill.seq));
    for i in 0..rig.c.len() {
        assert!(rig.audit_events(i, "gate_promote").is_empty());
        // The quorum's certificate for the primary's failure carries the drill votes.
        let transitions = rig.audit_events(i, "transition");
        let down = transitions
            .iter()
            .find(|t| t["check"] == "app" && t["to"] == "unhealthy")
            .expect("the primary decided unhealthy");
        use base64::Engine as _;
        let cert = base64::engine::general_purpose::STANDARD
            .decode(down["certificate"].as_str().expect("certificate"))
            .expect("base64");
        assert!(
            cert.windows(5).any(|w| w == b"drill"),
            "the certificate's votes say drill"
        );
        let results = rig.audit_events(i, "drill_result");
        assert_eq!(results.len(), 1, "{results:?}");
        assert_eq!(results[0]["result"], "pass");
        let m = rig.c.metrics(i).await;
        assert_eq!(
            metric(
                &m,
                "quorumgate_drill_result",
                "gate=\"app\",result=\"pass\""
            ),
            1.0,
            "{m}"
        );
        assert_eq!(
            metric(
                &m,
                "quorumgate_drill_result",
                "gate=\"app\",result=\"fail\""
            ),
            0.0
        );
    }
    rig.verify_audits();

    let md = std::fs::read_to_string(md).expect("markdown");
    assert!(md.starts_with("# Drill of gate `app`: PASS"), "{md}");
    let svg = std::fs::read_to_string(svg).expect("svg");
    assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
    for a in &rig.c.written.agents {
        assert!(
            svg.contains(&format!(">{}</text>", a.id)),
            "a row per agent"
        );
    }
    // The same report, later, from the audit logs alone (`--report SEQ`): the same timelines
    // and phases, without DNS.
    let later = tempfile::tempdir().expect("tempdir");
    let seq = report.drill.seq.to_string();
    let (ok, text) = rig
        .run_drill(&[
            "--report",
            &seq,
            "--out",
            later.path().to_str().expect("utf-8"),
        ])
        .await;
    assert!(ok, "{text}");
    let (again, _, _) = read_report(later.path());
    assert_eq!(
        (&again.drill, &again.agents),
        (&report.drill, &report.agents)
    );
    let audited = |r: &Report| {
        r.phases
            .iter()
            .filter(|p| !p.phase.starts_with("dns"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(audited(&again), audited(&report));
    assert!(again.dns.is_none() && again.passed());
}

/// `drill --abort` mid-drill: the drill ends at once and the gate fails back long before the
/// drill's duration; an agent restarted in the middle keeps the drill (replayed from its audit
/// log) and votes it until the abort.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_mid_drill_fails_back_early() {
    let mut rig = Rig::start().await;
    rig.emu.reset_stats().await;
    let out = tempfile::tempdir().expect("tempdir");
    let started = tokio::time::Instant::now();
    let child = rig
        .drill(&[
            "--duration",
            "10m",
            "--wait",
            "60s",
            "--out",
            out.path().to_str().expect("utf-8"),
        ])
        .spawn()
        .expect("start the drill command");
    rig.wait_answer(SECONDARY_IP).await;
    rig.wait_gates("every agent failed over in the drill", |g| {
        g.current == "active=secondary" && g.drill.as_ref().is_some_and(|d| d.state == "running")
    })
    .await;
    rig.c.restart(2).await;
    rig.wait_gates("the restarted agent restored the running drill", |g| {
        g.current == "active=secondary" && g.drill.as_ref().is_some_and(|d| d.state == "running")
    })
    .await;

    let aborted = rig
        .drill(&["--abort"])
        .output()
        .await
        .expect("run drill --abort");
    let text = String::from_utf8_lossy(&aborted.stdout);
    assert!(aborted.status.success(), "{text}");
    assert_eq!(
        text.matches(" ok ").count(),
        3,
        "every agent applied it: {text}"
    );

    let (ok, text) = finish(child).await;
    assert!(ok, "{text}\n{}", rig.c.logs());
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "failed back early"
    );
    assert_eq!(rig.answer().await, [PRIMARY_IP.to_owned()]);
    assert_eq!(rig.accepted_writes().await, 2);
    let (report, _, _) = read_report(out.path());
    assert!(report.passed(), "{report:#?}");
    assert_eq!(report.end_cause.as_deref(), Some("aborted"));
    let ended = report.phase(Phase::Ended).expect("ended").after_start_ms;
    assert!(
        ended < 60_000,
        "ended {ended} ms after the start of a 10-minute drill"
    );
    assert!(report.phase(Phase::FailbackChanged).is_some());
    // No resolver given: DNS through the Route 53 API, and the report says so.
    let d = report.dns.as_ref().expect("dns");
    assert_eq!(d.source, "route53-api");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("ListResourceRecordSets")),
        "{:?}",
        report.notes
    );
    assert!(report.phases.iter().any(|p| p.phase == "dns_failback"));
    assert_marks_are_the_audit_logs(&rig, &report);
    for i in 0..rig.c.len() {
        let ends = rig.audit_events(i, "drill_end");
        assert!(ends.iter().all(|e| e["cause"] == "aborted"), "{ends:?}");
        assert_eq!(
            rig.audit_events(i, "operator_command").len(),
            2,
            "drill and abort"
        );
    }
    rig.verify_audits();
}

/// A drill refuses to start while the secondary is not Healthy by quorum: the command sends
/// nothing; and an agent that receives a drill anyway refuses it on its own and records
/// nothing. A dry-run drill then (the standby back) decides everything and writes nothing,
/// and ends at once when the secondary fails for real (its guard), failing back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_refuses_to_start_when_the_secondary_is_down_and_a_dry_run_writes_nothing() {
    use quorum::operator::{Action, OperatorCommand, SignedCommand};
    let rig = Rig::start().await;
    rig.emu.reset_stats().await;
    rig.standby.set_down(true);
    rig.c
        .wait_until(
            Duration::from_secs(20),
            "every agent decides the standby down",
            || async {
                let mut all = true;
                for i in 0..rig.c.len() {
                    let s = rig.c.status(i).await;
                    all &= s
                        .checks
                        .iter()
                        .any(|c| c.id == "standby" && c.decision == "unhealthy");
                }
                all
            },
        )
        .await;
    let out = tempfile::tempdir().expect("tempdir");
    let (ok, text) = rig
        .run_drill(&[
            "--duration",
            "5s",
            "--out",
            out.path().to_str().expect("utf-8"),
        ])
        .await;
    assert!(!ok, "{text}");
    assert!(text.contains("refused, nothing was sent"), "{text}");
    assert!(
        text.contains("the secondary secondary (check standby) is not Healthy by quorum"),
        "{text}"
    );

    // Signed and delivered by hand: every agent checks again and refuses it.
    let key = quorumgate::keys::load_signing_key(&rig.operator_key).expect("alice's key");
    let now = quorumgate::clock::Clock::now(&quorumgate::clock::SystemClock::default());
    let cmd = OperatorCommand::new(
        rig.cluster_id(),
        quorum::OperatorId::new("alice").expect("id"),
        quorum::GateId::new("app").expect("gate"),
        Action::Drill {
            duration_ms: 5_000,
            dry_run: false,
        },
        now.0,
        now,
        60_000,
    );
    let wire = SignedCommand::sign(&cmd, &key).expect("sign").to_wire();
    for i in 0..rig.c.len() {
        let (code, answer) = rig
            .c
            .request(i, http::Method::POST, "v1/operator", wire.clone())
            .await
            .expect("agent reachable");
        let answer = String::from_utf8_lossy(&answer);
        assert_eq!(code, 403, "{answer}");
        assert!(
            answer.contains("drill_refused") && answer.contains("secondary"),
            "{answer}"
        );
        assert!(rig.audit_events(i, "operator_command").is_empty());
        let m = rig.c.metrics(i).await;
        assert_eq!(
            metric(
                &m,
                "quorumgate_operator_commands_total",
                "result=\"drill_refused\""
            ),
            1.0
        );
    }
    assert_eq!(rig.accepted_writes().await, 0);

    // The standby back: a dry-run drill decides and audits the failover and the failback, and
    // writes nothing (DNS, read through the API, never moves).
    rig.standby.set_down(false);
    rig.c
        .wait_until(
            Duration::from_secs(20),
            "every agent decides the standby up",
            || async {
                let mut all = true;
                for i in 0..rig.c.len() {
                    let s = rig.c.status(i).await;
                    all &= s.checks.iter().any(|c| {
                        c.id == "standby"
                            && c.decision == "healthy"
                            && c.tally.as_ref().is_some_and(|t| t.outcome == "healthy")
                    });
                }
                all
            },
        )
        .await;
    let child = rig
        .drill(&[
            "--duration",
            "10m",
            "--dry-run",
            "--wait",
            "60s",
            "--out",
            out.path().to_str().expect("utf-8"),
        ])
        .spawn()
        .expect("start the drill command");
    rig.wait_gates("every agent failed over in the dry run", |g| {
        g.current == "active=secondary"
            && g.drill
                .as_ref()
                .is_some_and(|d| d.state == "running" && d.dry_run)
    })
    .await;
    rig.standby.set_down(true);
    let (ok, text) = finish(child).await;
    assert!(ok, "{text}\n{}", rig.c.logs());
    let (report, _, _) = read_report(out.path());
    assert!(report.passed() && report.drill.dry_run, "{report:#?}");
    assert_eq!(
        report.end_cause.as_deref(),
        Some("abort_check"),
        "{report:#?}"
    );
    for i in 0..rig.c.len() {
        let ends = rig.audit_events(i, "drill_end");
        assert_eq!(ends.len(), 1, "{ends:?}");
        assert_eq!(
            (ends[0]["cause"].as_str(), ends[0]["check"].as_str()),
            (Some("abort_check"), Some("standby"))
        );
    }
    assert_eq!(rig.accepted_writes().await, 0, "a dry run writes nothing");
    assert_eq!(rig.epoch().await, 1);
    assert!(report.criteria.iter().any(|c| c.name == "dns" && c.passed));
    assert!(
        report.phase(Phase::Changed).is_some() && report.phase(Phase::FailbackChanged).is_some()
    );
    assert!(report.phase(Phase::InSync).is_none() && report.phase(Phase::Sent).is_none());
    assert_marks_are_the_audit_logs(&rig, &report);
    for i in 0..rig.c.len() {
        let decisions = rig.audit_events(i, "gate_decision");
        assert!(
            decisions.iter().all(|d| d["mode"] == "dry-run"),
            "{decisions:?}"
        );
        assert_eq!(decisions.len(), 2, "{decisions:?}");
    }
    rig.wait_gates("back at the primary, re-read from Route 53", |g| {
        g.current == "active=primary" && g.synced && g.epoch == 1
    })
    .await;
    rig.verify_audits();
}
