//! The fenced writer against the strict in-memory Route 53.

use std::sync::Arc;
use std::time::Duration;

use super::*;

const ZONE: &str = "Z1";

fn api() -> Arc<MemoryRoute53> {
    let api = Arc::new(MemoryRoute53::new());
    api.add_zone(ZONE, "example.com");
    api
}

fn writer(api: &Arc<MemoryRoute53>, agent: &str) -> FencedWriter {
    let options = WriterOptions {
        insync_poll: Duration::from_secs(1),
        insync_timeout: Duration::from_secs(10),
    };
    FencedWriter::new(
        api.clone(),
        GateTarget {
            zone_id: ZONE.into(),
            zone_name: "example.com".into(),
            gate: "app".into(),
            agent: agent.into(),
        },
        options,
    )
    .expect("writer")
}

/// A weighted pair: eu gets `eu` weight, us the rest of 100.
fn desired(eu: u8) -> DesiredRecords {
    let rec = |set: &str, weight: u8, ip: &str| {
        RecordSet::new("app.example.com", "A", RecordTarget::values(60, [ip]))
            .with_routing(set, Routing::Weighted { weight })
    };
    DesiredRecords::new(
        "example.com",
        [rec("eu", eu, "192.0.2.1"), rec("us", 100 - eu, "192.0.2.2")],
    )
    .expect("desired")
}

fn fence_now(api: &MemoryRoute53) -> Option<Fence> {
    api.records(ZONE)
        .iter()
        .find(|r| r.name() == "_quorumgate.app.example.com.")
        .map(|r| Fence::from_record(r).expect("fence"))
}

fn gate_records(api: &MemoryRoute53) -> Vec<RecordSet> {
    api.records(ZONE)
        .into_iter()
        .filter(|r| r.name() == "app.example.com.")
        .collect()
}

#[tokio::test(start_paused = true)]
async fn first_write_creates_the_fence_and_the_records() {
    let api = api();
    let w = writer(&api, "agent-a");
    let d = desired(100);
    let outcome = w.apply(0, &d).await.expect("apply");
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                epoch: 1,
                in_sync: true,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(d.matches(&gate_records(&api)));
    assert_eq!(
        fence_now(&api),
        Some(Fence {
            epoch: 1,
            digest: d.digest(),
            by: "agent-a".into(),
            changes: Vec::new(),
        })
    );
}

#[tokio::test(start_paused = true)]
async fn reapplying_the_same_state_sends_nothing() {
    let api = api();
    let w = writer(&api, "a");
    w.apply(0, &desired(100)).await.expect("apply");
    let writes = api.requests("ChangeResourceRecordSets");
    let reads = api.requests("ListResourceRecordSets");
    for expected in [1, 0, 7] {
        let outcome = w.apply(expected, &desired(100)).await.expect("re-apply");
        assert_eq!(outcome, ApplyOutcome::AlreadyInPlace { epoch: 1 });
    }
    assert_eq!(api.requests("ChangeResourceRecordSets"), writes);
    // Two reads per apply: the fence and the one record name.
    assert_eq!(api.requests("ListResourceRecordSets"), reads + 6);
}

#[tokio::test(start_paused = true)]
async fn a_change_is_delete_exact_plus_create_with_the_fence_swap() {
    let api = api();
    let w = writer(&api, "a");
    w.apply(0, &desired(100)).await.expect("apply");
    let Plan::Write(write) = w.plan(1, &desired(0)).await.expect("plan") else {
        panic!("expected a write");
    };
    let actions: Vec<String> = write
        .changes
        .iter()
        .map(|c| format!("{} {}", c.action.as_str(), c.record.key()))
        .collect();
    assert_eq!(
        actions,
        [
            "DELETE app.example.com. A [eu]",
            "DELETE app.example.com. A [us]",
            "DELETE _quorumgate.app.example.com. TXT",
            "CREATE app.example.com. A [eu]",
            "CREATE app.example.com. A [us]",
            "CREATE _quorumgate.app.example.com. TXT",
        ]
    );
    assert!(write
        .changes
        .iter()
        .all(|c| c.action != ChangeAction::Upsert));
    assert_eq!(write.next.epoch, 2);
    let outcome = w.commit(write).await.expect("commit");
    assert!(
        matches!(outcome, ApplyOutcome::Applied { epoch: 2, .. }),
        "{outcome:?}"
    );
    assert!(desired(0).matches(&gate_records(&api)));
}

#[tokio::test(start_paused = true)]
async fn a_stale_writer_sends_nothing() {
    let api = api();
    writer(&api, "a").apply(0, &desired(100)).await.expect("1");
    writer(&api, "a").apply(1, &desired(50)).await.expect("2");
    let writes = api.requests("ChangeResourceRecordSets");
    let outcome = writer(&api, "b")
        .apply(1, &desired(0))
        .await
        .expect("stale");
    assert!(
        matches!(&outcome, ApplyOutcome::Stale { expected_epoch: 1, current: Some(f) } if f.epoch == 2),
        "{outcome:?}"
    );
    assert_eq!(api.requests("ChangeResourceRecordSets"), writes);
    assert!(desired(50).matches(&gate_records(&api)));
}

#[tokio::test(start_paused = true)]
async fn the_loser_of_a_race_changes_nothing_and_reports_the_winner() {
    let api = api();
    writer(&api, "a")
        .apply(0, &desired(100))
        .await
        .expect("setup");
    let (wa, wb) = (writer(&api, "a"), writer(&api, "b"));
    let Plan::Write(a_write) = wa.plan(1, &desired(0)).await.expect("plan a") else {
        panic!("a should write");
    };
    let b = wb.apply(1, &desired(30)).await.expect("b");
    assert!(matches!(b, ApplyOutcome::Applied { epoch: 2, .. }), "{b:?}");
    let a = wa.commit(a_write).await.expect("a");
    match a {
        ApplyOutcome::LostRace { current, messages } => {
            assert_eq!(current.map(|f| (f.epoch, f.by)), Some((2, "b".to_owned())));
            assert!(
                messages[0].contains("but the values provided do not match"),
                "{messages:?}"
            );
        }
        other => panic!("expected LostRace, got {other:?}"),
    }
    assert!(desired(30).matches(&gate_records(&api)));
    assert_eq!(fence_now(&api).map(|f| f.epoch), Some(2));
}

#[tokio::test(start_paused = true)]
async fn losing_to_a_writer_with_the_same_state_is_already_in_place() {
    let api = api();
    let (wa, wb) = (writer(&api, "a"), writer(&api, "b"));
    let Plan::Write(a_write) = wa.plan(0, &desired(100)).await.expect("plan") else {
        panic!("a should write");
    };
    wb.apply(0, &desired(100)).await.expect("b");
    let a = wa.commit(a_write).await.expect("a");
    assert_eq!(a, ApplyOutcome::AlreadyInPlace { epoch: 1 });
}

#[tokio::test(start_paused = true)]
async fn of_eight_racing_writers_exactly_one_wins_each_round() {
    let api = api();
    let writers: Vec<FencedWriter> = (0..8).map(|i| writer(&api, &format!("w{i}"))).collect();
    for round in 0..3u64 {
        let mut plans = Vec::new();
        for (i, w) in writers.iter().enumerate() {
            let d =
                desired(u8::try_from(10 * i).expect("weight") + u8::try_from(round).expect("r"));
            match w.plan(round, &d).await.expect("plan") {
                Plan::Write(p) => plans.push((w, p)),
                Plan::Done(o) => panic!("writer {i} did not plan a write: {o:?}"),
            }
        }
        let mut applied = 0;
        for (w, p) in plans {
            match w.commit(p).await.expect("commit") {
                ApplyOutcome::Applied { epoch, .. } => {
                    assert_eq!(epoch, round + 1);
                    applied += 1;
                }
                ApplyOutcome::LostRace { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(applied, 1, "round {round}");
        assert_eq!(fence_now(&api).map(|f| f.epoch), Some(round + 1));
    }
}

#[tokio::test(start_paused = true)]
async fn insync_is_polled_with_a_bound() {
    let api = api();
    api.set_pending_polls(2);
    let w = writer(&api, "a");
    let outcome = w.apply(0, &desired(100)).await.expect("apply");
    assert!(
        matches!(outcome, ApplyOutcome::Applied { in_sync: true, .. }),
        "{outcome:?}"
    );
    assert_eq!(api.requests("GetChange"), 3);

    api.set_pending_polls(1_000);
    let t0 = tokio::time::Instant::now();
    let outcome = w.apply(1, &desired(0)).await.expect("apply");
    assert!(
        matches!(
            outcome,
            ApplyOutcome::Applied {
                epoch: 2,
                in_sync: false,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(t0.elapsed() <= Duration::from_secs(10));
    assert!(api.requests("GetChange") <= 3 + 10);
}

#[tokio::test(start_paused = true)]
async fn api_failures_are_errors_and_leave_the_zone_alone() {
    let api = api();
    let w = writer(&api, "a");
    api.fail_next(
        "ChangeResourceRecordSets",
        ApiError::Unavailable {
            op: "ChangeResourceRecordSets",
            attempts: 10,
            elapsed_ms: 1,
            last: "throttled".into(),
        },
    );
    let err = w.apply(0, &desired(100)).await.expect_err("unavailable");
    assert!(
        matches!(err, WriteError::Api(ApiError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(api.records(ZONE).is_empty());
    // Later, the same write goes through.
    let outcome = w.apply(0, &desired(100)).await.expect("retry later");
    assert!(matches!(outcome, ApplyOutcome::Applied { epoch: 1, .. }));
}

#[tokio::test(start_paused = true)]
async fn refuses_unmanageable_records_and_broken_fences() {
    let api = api();
    let w = writer(&api, "a");
    let latency = RecordSet::new(
        "app.example.com",
        "A",
        RecordTarget::values(60, ["192.0.2.9"]),
    )
    .with_routing("x", Routing::Unsupported("latency".into()));
    api.change_record_sets(ZONE, &[Change::create(latency)], "")
        .await
        .expect("seed");
    let err = w.apply(0, &desired(100)).await.expect_err("unmanageable");
    assert!(matches!(err, WriteError::Unmanageable { .. }), "{err:?}");

    let api = self::api();
    let w = writer(&api, "a");
    let broken = RecordSet::new(
        "_quorumgate.app.example.com",
        "TXT",
        RecordTarget::values(60, ["\"hello\""]),
    );
    api.change_record_sets(ZONE, &[Change::create(broken)], "")
        .await
        .expect("seed");
    let err = w.apply(0, &desired(100)).await.expect_err("bad fence");
    assert!(matches!(err, WriteError::BadFence { .. }), "{err:?}");

    // A fence at the last epoch (planted, or corrupt) cannot advance: a clear error, never an
    // overflow or a wrap to epoch 0.
    let api = self::api();
    let w = writer(&api, "a");
    let last = Fence {
        epoch: u64::MAX,
        digest: "ab".repeat(32),
        by: "mallory".into(),
        changes: Vec::new(),
    };
    api.change_record_sets(
        ZONE,
        &[Change::create(last.record("_quorumgate.app.example.com."))],
        "",
    )
    .await
    .expect("seed");
    let err = w
        .apply(u64::MAX, &desired(100))
        .await
        .expect_err("exhausted fence");
    assert!(
        matches!(err, WriteError::FenceExhausted { epoch: u64::MAX }),
        "{err:?}"
    );
    assert!(gate_records(&api).is_empty(), "nothing was written");
}

#[test]
fn writer_targets_are_validated() {
    let api: Arc<dyn Route53Api> = api();
    let target = |gate: &str, agent: &str| GateTarget {
        zone_id: ZONE.into(),
        zone_name: "example.com".into(),
        gate: gate.into(),
        agent: agent.into(),
    };
    assert!(FencedWriter::new(api.clone(), target("app", "a"), WriterOptions::default()).is_ok());
    assert!(
        FencedWriter::new(api.clone(), target("App.X", "a"), WriterOptions::default()).is_err()
    );
    assert!(FencedWriter::new(api, target("app", "a b"), WriterOptions::default()).is_err());
}

#[tokio::test(start_paused = true)]
async fn desired_records_for_another_zone_are_refused() {
    let api = api();
    let w = writer(&api, "a");
    let other = DesiredRecords::new(
        "example.org",
        [RecordSet::new(
            "www.example.org",
            "A",
            RecordTarget::values(60, ["192.0.2.1"]),
        )],
    )
    .expect("desired");
    let err = w.apply(0, &other).await.expect_err("zone mismatch");
    assert!(matches!(err, WriteError::ZoneMismatch { .. }), "{err:?}");
}
