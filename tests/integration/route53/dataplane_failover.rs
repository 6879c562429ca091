//! Data-plane failover, asserted on DNS answers (see [`super::dataplane`] for the rig):
//! a minority of agents broken never moves DNS; a majority moves it to the secondary within
//! the documented bound; every agent gone makes Route 53 fail open (the primary); a flooded
//! health listener fails open, never over; agents restarted during an outage never send DNS
//! back to the broken primary.

use std::time::Duration;

use tokio::time::{sleep, Instant};

use super::dataplane::{
    DataPlaneRig, FAILURE_THRESHOLD, INTERVAL_S, PRIMARY_IP, SECONDARY_IP, TIME_SCALE,
};

/// One checker round at the test's scale.
fn checker_interval(scale: f64) -> Duration {
    Duration::from_secs_f64(INTERVAL_S as f64 * scale)
}

/// Slack for a busy 2-core machine on top of every documented bound below.
const MARGIN: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_of_broken_agents_never_moves_dns() {
    let rig = DataPlaneRig::start().await;
    let before = rig.dp.snapshot().polls(Some(&rig.primary_hc));
    rig.c.app.break_view("euw1");
    // Route 53 timing: 60 s; scaled.
    let window = Duration::from_secs_f64(60.0 * TIME_SCALE);
    let seen = rig.sample(window).await;
    // Evidence the bad event had its chance: euw1 voted the primary down, and every checker
    // polled the agents several times meanwhile.
    let euw1 = rig.c.status(2).await;
    let own = euw1
        .checks
        .iter()
        .find(|c| c.id == "app")
        .and_then(|c| c.observations.get("euw1"))
        .map(|o| o.status.clone());
    assert_eq!(own.as_deref(), Some("unhealthy"), "euw1's own vote");
    let after = rig.dp.snapshot().polls(Some(&rig.primary_hc));
    // 3 agents × 3 regions, one poll per checker interval.
    let min_polls =
        9 * ((window.as_secs_f64() / checker_interval(TIME_SCALE).as_secs_f64()) as u64 - 1);
    assert!(
        after - before >= min_polls,
        "the checkers polled {} times in the window, expected at least {min_polls}",
        after - before
    );
    assert_eq!(
        seen.first.keys().cloned().collect::<Vec<_>>(),
        [PRIMARY_IP.to_owned()],
        "DNS answered something else in {} queries: {:?}",
        seen.queries,
        seen.first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_moves_dns_to_the_secondary_within_the_bound_and_back() {
    let rig = DataPlaneRig::start().await;
    let t = rig.c.round();
    // Agents: fall_after rounds (+ one probe interval and one round to exchange the votes).
    let fall = t * (2 + 2);
    // Route 53: FailureThreshold polls of every checker, plus a whole interval of phase.
    let route53 = checker_interval(TIME_SCALE) * (u32::try_from(FAILURE_THRESHOLD).unwrap() + 1);
    // TTL: 0 here (the authoritative server is queried directly, no cache).
    let bound = fall + route53 + MARGIN;
    rig.c.app.set_down(true);
    let took = rig.wait_answer(bound, SECONDARY_IP).await;
    eprintln!("DNS answered the secondary {took:?} after the app failed (bound {bound:?})");
    assert_eq!(rig.dp.check_healthy(&rig.primary_hc), Some(false));
    assert_eq!(rig.dp.check_healthy(&rig.secondary_hc), Some(true));

    rig.c.app.set_down(false);
    // rise_after 3 rounds + hold-down 1 s, then the checkers.
    let rise = t * (3 + 2) + Duration::from_secs(1);
    let took = rig.wait_answer(rise + route53 + MARGIN, PRIMARY_IP).await;
    eprintln!("DNS answered the primary again {took:?} after the app recovered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_agent_gone_fails_open_to_the_primary() {
    let mut rig = DataPlaneRig::start().await;
    rig.c.stop_all(false).await;
    // Every agent check fails, so both calculated checks go unhealthy and Route 53 answers
    // the primary. Until both have, the two sides' checkers are not in step: the
    // secondary's check may still be healthy for up to one FailureThreshold of polls after
    // the primary's went, and DNS may answer the secondary meanwhile (Route 53 evaluates
    // each health check on its own; docs/route53.md).
    let route53 = checker_interval(TIME_SCALE) * (u32::try_from(FAILURE_THRESHOLD).unwrap() + 1);
    let end = Instant::now() + route53 + MARGIN;
    loop {
        let s = rig.dp.snapshot();
        let both_down = rig.dp.check_healthy(&rig.primary_hc) == Some(false)
            && rig.dp.check_healthy(&rig.secondary_hc) == Some(false);
        if both_down {
            assert!(s.failing(&rig.primary_hc) >= 3);
            break;
        }
        assert!(
            Instant::now() < end,
            "both calculated checks never went unhealthy: {s:#?}"
        );
        sleep(Duration::from_millis(50)).await;
    }
    let seen = rig.sample(checker_interval(TIME_SCALE) * 3).await;
    assert_eq!(
        seen.first.keys().cloned().collect::<Vec<_>>(),
        [PRIMARY_IP.to_owned()],
        "with every agent gone Route 53 must fail open: {:?}",
        seen.first
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_health_listener_fails_open_never_over() {
    let own = quorumgate::fdlimit::raise_nofile();
    assert!(
        own.soft >= 4_096,
        "the test needs RLIMIT_NOFILE >= 4096: {own:?}"
    );
    // use1 under systemd's default descriptor limit, so 2,000 idle connections saturate it.
    let rig = DataPlaneRig::start_with(TIME_SCALE, FAILURE_THRESHOLD, |spec| {
        spec.nofile = vec![("use1".to_owned(), 1_024)];
    })
    .await;
    let health = rig.c.written.agents[0]
        .health_url
        .clone()
        .expect("health listener");
    let to = std::net::SocketAddr::new(
        health
            .host_str()
            .and_then(|h| h.parse().ok())
            .expect("IP host"),
        health.port().expect("port"),
    );
    let cap = crate::support::metric(
        &rig.c.metrics(0).await,
        "quorumgate_http_max_connections",
        "listener=\"health\"",
    );
    let (warm, stop) = (
        tokio_util::sync::CancellationToken::new(),
        tokio_util::sync::CancellationToken::new(),
    );
    let flood = tokio::spawn(crate::flood::flood(to, warm.clone(), stop.clone()));
    warm.cancelled().await;
    let window = Duration::from_secs_f64(60.0 * TIME_SCALE);
    let seen = rig.sample(window).await;
    stop.cancel();
    let report = flood.await.expect("flood task");
    // Evidence the flood had its chance: it held more connections than the listener takes.
    assert!(
        report.max_open as f64 > cap,
        "the flood held {} connections, the listener takes {cap}: {report:?}",
        report.max_open
    );
    assert!(
        !seen.saw(SECONDARY_IP),
        "a flooded health listener moved DNS to the secondary: {:?}",
        seen.first
    );
    assert!(seen.saw(PRIMARY_IP), "{:?}", seen.first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_restarted_during_an_outage_never_send_dns_back_to_the_primary() {
    // Slower checkers for this one: all three agents restart at once, and Route 53 must not
    // see them all gone for FailureThreshold polls (that would fail open, to the primary,
    // whatever the agents answer once back). 3 polls of 2 s leave 4-6 s for a restart.
    let scale = 0.2;
    let threshold = 3;
    let mut rig = DataPlaneRig::start_with(scale, threshold, |_| {}).await;
    rig.c.app.set_down(true);
    let bound = rig.c.round() * 4 + checker_interval(scale) * (threshold as u32 + 1) + MARGIN;
    rig.wait_answer(bound, SECONDARY_IP).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let watch = {
        let (dns, stop) = (rig.dns(), stop.clone());
        tokio::spawn(async move {
            let mut answers: Vec<String> = Vec::new();
            let end = Instant::now() + Duration::from_secs(60);
            while !stop.is_cancelled() && Instant::now() < end {
                let a = quorumgate_testkit::dataplane::query(dns, super::RECORD_NAME, "A")
                    .await
                    .unwrap_or_default()
                    .join(",");
                answers.push(a);
                sleep(Duration::from_millis(20)).await;
            }
            answers
        })
    };
    // A fleet-wide restart: every agent at once (SIGTERM, as the .deb's upgrade does).
    let down_at = Instant::now();
    rig.c.stop_all(true).await;
    rig.c.spawn_stopped();
    for i in 0..rig.c.len() {
        rig.c
            .wait_until(
                Duration::from_secs(30),
                "agent ready after restart",
                || async { rig.c.health(i).await.is_some() },
            )
            .await;
    }
    let downtime = down_at.elapsed();
    // Until the first quorum verdict each agent answers its persisted decision (503 for the
    // broken primary), never the configured initial state.
    let healths = rig.c.healths().await;
    assert!(
        healths.iter().all(|h| *h == Some(503)),
        "primary's health right after restart: {healths:?}"
    );
    // Checkers keep polling the restarted agents for several thresholds' worth.
    sleep(checker_interval(scale) * (threshold as u32 + 2)).await;
    stop.cancel();
    let answers = watch.await.expect("DNS watch");
    assert!(answers.len() > 50, "only {} DNS queries", answers.len());
    let back = answers.iter().filter(|a| *a == PRIMARY_IP).count();
    assert_eq!(
        back, 0,
        "DNS answered the broken primary {back} of {} times after the restart (downtime {downtime:?})",
        answers.len()
    );
    assert_eq!(rig.answer().await, [SECONDARY_IP.to_owned()]);
}
