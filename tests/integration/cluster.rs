//! Issue scenarios 1, 2, 3 and 5: decisions, a hallucinating agent, crashed agents, abstention.

use std::time::Duration;

use std::process::Command;

use base64::Engine as _;
use tokio::time::Instant;

use crate::support::{exe, TestCluster, CHECK};

const LIMIT: Duration = Duration::from_secs(20);

async fn all_answer(c: &TestCluster, code: u16) -> bool {
    c.healths().await.iter().all(|h| *h == Some(code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_follows_the_target_down_and_back_up() {
    let c = TestCluster::start(|_| {}).await;
    c.wait_until(LIMIT, "all HEALTHY at start", || all_answer(&c, 200))
        .await;

    c.app.set_down(true);
    let failed_at = Instant::now();
    c.wait_until(LIMIT, "all UNHEALTHY after the target fails", || {
        all_answer(&c, 503)
    })
    .await;
    let fall = failed_at.elapsed();
    // fall_after rounds of the tally, plus one probe interval and one round for the first bad
    // result to reach every ballot; generous slack for a loaded CI machine.
    let bound = c.round() * (c.spec.fall_after + 2) + Duration::from_secs(3);
    assert!(fall <= bound, "took {fall:?} to fail, bound {bound:?}");
    let s = c.status(0).await;
    let check = s
        .checks
        .iter()
        .find(|k| k.id == CHECK)
        .expect("check in status");
    assert_eq!(check.decision, "unhealthy");
    let cert = check
        .tally
        .as_ref()
        .and_then(|t| t.certificate.clone())
        .expect("decided verdict has a certificate");
    verify_cli(&c, &cert, true, "VALID: check app was unhealthy by quorum");
    // One flipped bit in the last signature must not verify.
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&cert)
        .expect("base64");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    verify_cli(
        &c,
        &base64::engine::general_purpose::STANDARD.encode(bytes),
        false,
        "INVALID",
    );
    let pretty = Command::new(exe())
        .args(["status", "--url", c.written.agents[0].url.as_str()])
        .output()
        .expect("run status");
    let text = String::from_utf8_lossy(&pretty.stdout);
    assert!(
        pretty.status.success() && text.contains("UNHEALTHY"),
        "status CLI output:\n{text}"
    );

    c.app.set_down(false);
    c.wait_until(LIMIT, "all HEALTHY after recovery", || all_answer(&c, 200))
        .await;
    // Every agent's audit log holds both transitions with verifiable certificates.
    for a in &c.written.agents {
        let out = Command::new(exe())
            .args(["verify", "--config"])
            .arg(&a.config_path)
            .arg("--audit")
            .arg(a.state_dir.join("audit.jsonl"))
            .output()
            .expect("run verify --audit");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {text}", a.id);
        assert!(text.contains("2 certificates and"), "{}: {text}", a.id);
    }
    let s = c.status(1).await;
    let check = s
        .checks
        .iter()
        .find(|k| k.id == CHECK)
        .expect("check in status");
    assert_eq!(check.transitions, 2, "exactly one fall and one rise");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hallucinating_agent_never_flips_the_check() {
    let c = TestCluster::start(|_| {}).await;
    c.wait_until(LIMIT, "all HEALTHY at start", || all_answer(&c, 200))
        .await;
    let liar = c.id(2).to_owned();
    c.app.break_view(&liar);
    // Wait until the broken view is really in the tally: the liar votes Unhealthy.
    c.wait_until(
        LIMIT,
        "the liar's unhealthy vote reaches agent 0",
        || async {
            let s = c.status(0).await;
            s.checks[0]
                .observations
                .get(&liar)
                .is_some_and(|o| o.status == "unhealthy")
        },
    )
    .await;
    // Watch for well beyond fall_after: no agent may ever answer 503.
    let window = c.round() * (c.spec.fall_after * 4 + 4);
    let end = Instant::now() + window;
    while Instant::now() < end {
        let h = c.healths().await;
        assert!(
            h.iter().all(|x| *x == Some(200)),
            "a minority flipped the check: {h:?}\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = c.status(0).await;
    assert_eq!(s.checks[0].transitions, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_still_decide_and_a_lone_survivor_holds() {
    let mut c = TestCluster::start(|_| {}).await;
    c.wait_until(LIMIT, "all HEALTHY at start", || all_answer(&c, 200))
        .await;
    c.kill(2).await;
    c.app.set_down(true);
    c.wait_until(LIMIT, "the two survivors decide UNHEALTHY", || async {
        c.health(0).await == Some(503) && c.health(1).await == Some(503)
    })
    .await;

    c.kill(1).await;
    c.app.set_down(false);
    // The survivor sees the target healthy again but is alone: 1 of 3 is no quorum.
    c.wait_until(LIMIT, "the survivor reports no_quorum", || async {
        let s = c.status(0).await;
        s.checks[0]
            .tally
            .as_ref()
            .is_some_and(|t| t.outcome == "no_quorum")
    })
    .await;
    let window = c.round() * (c.spec.rise_after * 3 + 4);
    let end = Instant::now() + window;
    while Instant::now() < end {
        assert_eq!(c.health(0).await, Some(503), "a lone agent moved the check");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = c.status(0).await;
    assert_eq!(
        s.checks[0].decision, "unhealthy",
        "NoQuorum holds the last decided state"
    );
    assert_eq!(
        s.checks[0].tally.as_ref().map(|t| t.outcome.as_str()),
        Some("no_quorum")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_control_probe_fails_abstains() {
    // A control probe at a port nobody listens on: this agent's "own network" is broken.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let c = TestCluster::start(|spec| {
        let id = spec.agents[2].0.clone();
        spec.extra_local.push((id, format!("[[local.control]]\nid = \"vpc\"\ntimeout = \"100ms\"\n[local.control.tcp]\naddress = \"{closed}\"\n")));
    })
    .await;
    let abstainer = c.id(2).to_owned();
    c.app.set_down(true);
    c.wait_until(
        LIMIT,
        "agent 2 votes abstain with reason control_failed",
        || async {
            let s = c.status(0).await;
            s.checks[0]
                .observations
                .get(&abstainer)
                .is_some_and(|o| o.status == "abstain" && o.reason == "control_failed")
        },
    )
    .await;
    let own = c.status(2).await;
    assert!(
        own.abstaining.as_deref().is_some_and(|w| w.contains("vpc")),
        "status says why: {:?}",
        own.abstaining
    );
    assert!(own.controls.iter().any(|k| k.id == "vpc" && !k.healthy));
    // The two others still form a quorum and fail the check over.
    c.wait_until(LIMIT, "the other two decide UNHEALTHY", || async {
        c.health(0).await == Some(503)
    })
    .await;
}

fn verify_cli(c: &TestCluster, cert: &str, ok: bool, expect: &str) {
    let out = Command::new(exe())
        .args(["verify", "--cert", cert, "--config"])
        .arg(&c.written.agents[0].config_path)
        .output()
        .expect("run verify");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.success(),
        ok,
        "verify said:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(expect), "verify said:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_cluster_decides_and_refuses_clients_without_a_certificate() {
    let public = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let c = TestCluster::start(|spec| {
        spec.tls = true;
        let id = spec.agents[0].0.clone();
        spec.extra_local
            .push((id, format!("health_listen = \"{public}\"")));
    })
    .await;
    c.wait_until(LIMIT, "all HEALTHY over mutual TLS", || all_answer(&c, 200))
        .await;
    c.wait_until(LIMIT, "every push over mutual TLS succeeds", || async {
        let s = c.status(0).await;
        s.members
            .iter()
            .filter(|m| !m.is_self)
            .all(|m| m.last_push.as_deref() == Some("ok"))
    })
    .await;

    // A client that trusts the CA but presents no certificate is refused.
    let ca = c.spec.dir.join("ca.pem");
    let anonymous = quorumgate::tls::client_config(Some(&ca), None).expect("client config");
    let url = c.written.agents[0].url.join("v1/status").expect("url");
    let req = quorumgate::net::Request::get(url, Some(anonymous), 1024);
    let result = quorumgate::net::send(&req, Duration::from_secs(3)).await;
    assert!(
        result.is_err(),
        "a client without a certificate got an answer: {:?}",
        result.map(|r| r.status)
    );

    // The status CLI presents a client certificate when given one.
    let id = c.id(1).to_owned();
    let out = Command::new(exe())
        .args([
            "status",
            "--url",
            c.written.agents[0].url.as_str(),
            "--ca-file",
        ])
        .arg(&ca)
        .arg("--cert-file")
        .arg(c.spec.dir.join(format!("{id}.pem")))
        .arg("--key-file")
        .arg(c.spec.dir.join(format!("{id}.key")))
        .output()
        .expect("run status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("quorum 2/3"), "{text}");
    let out = Command::new(exe())
        .args([
            "status",
            "--url",
            c.written.agents[0].url.as_str(),
            "--ca-file",
        ])
        .arg(&ca)
        .output()
        .expect("run status");
    assert!(
        !out.status.success(),
        "without a certificate the agent refuses"
    );

    // Route 53 has no client certificate: it uses the public health listener, which serves
    // health answers and nothing else.
    let get = |path: &str| {
        let url = format!("http://{public}{path}").parse().expect("url");
        quorumgate::net::Request::get(url, None, 4096)
    };
    let health = quorumgate::net::send(&get("/v1/health/app"), Duration::from_secs(3))
        .await
        .expect("public health");
    assert_eq!(health.status.as_u16(), 200);
    assert!(health.body.starts_with(b"HEALTHY"), "{:?}", health.body);
    for private in ["/v1/status", "/v1/ballots", "/metrics"] {
        let r = quorumgate::net::send(&get(private), Duration::from_secs(3))
            .await
            .expect("public listener answers");
        assert_eq!(r.status.as_u16(), 404, "{private} must not be public");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_catches_up_and_its_new_ballots_count() {
    let mut c = TestCluster::start(|_| {}).await;
    c.wait_until(LIMIT, "all HEALTHY", || all_answer(&c, 200))
        .await;
    let id = c.id(2).to_owned();
    let seq_of = |s: &quorumgate::status::Status, id: &str| {
        s.members
            .iter()
            .find(|m| m.id == id)
            .and_then(|m| m.ballot.as_ref())
            .map_or(0, |b| b.seq)
    };
    let before = seq_of(&c.status(0).await, &id);
    assert!(before > 0);

    c.restart(2).await;
    // It pulled its peers' ballots on start.
    let metrics = c.metrics(2).await;
    let pulled = crate::support::metric(
        &metrics,
        "quorumgate_peer_pull_total",
        &format!("peer=\"{}\",result=\"ok\"", c.id(0)),
    );
    assert!(
        pulled >= 1.0,
        "no successful pull after restart:\n{metrics}"
    );
    // Its new ballots keep rising above the old ones, so peers accept them (no replay).
    c.wait_until(
        LIMIT,
        "agent 0 accepts the restarted agent's new ballots",
        || async { seq_of(&c.status(0).await, &id) > before },
    )
    .await;
    let s = c.status(0).await;
    assert_eq!(
        s.rejected.get("replay"),
        None,
        "rejections: {:?}",
        s.rejected
    );
    assert!(all_answer(&c, 200).await);
}
