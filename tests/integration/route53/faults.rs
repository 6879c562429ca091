//! Faults injected in front of the emulator: the adapter's retries, backoff, timeouts and
//! token bucket against the real SDK.

use std::sync::Arc;
use std::time::Duration;

use quorumgate::route53::{ApiError, ApplyOutcome, RetryPolicy, SdkRoute53, WriteError};
use serde_json::json;

use super::emulator::max_in_window;
use super::{fence_now, gate_records, weighted, writer, Emulator};

/// Throttling, PriorRequestNotComplete and HTTP 500 answers are retried until the write goes
/// through, and the request rate at the emulator stays within Route 53's 5 requests/s.
#[tokio::test]
async fn throttling_prior_request_and_500_are_retried_within_the_budget() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let api = Arc::new(emu.client().await);
    let w = writer(api.clone(), &zone, "agent-a");
    emu.reset_stats().await;
    emu.fault(json!({"faults": [
        {"kind": "throttling", "count": 2, "op": "ListResourceRecordSets"},
        {"kind": "throttling", "count": 3, "op": "ChangeResourceRecordSets"},
        {"kind": "prior_request_not_complete", "count": 2, "op": "ChangeResourceRecordSets"},
        {"kind": "http_500", "count": 2, "op": "ChangeResourceRecordSets"},
    ]}))
    .await;

    let outcome = w.apply(0, &weighted(100, 0)).await.expect("apply");
    assert!(
        matches!(outcome, ApplyOutcome::Applied { epoch: 1, .. }),
        "{outcome:?}"
    );

    let (log, _) = emu.stats().await;
    let writes: Vec<_> = log
        .iter()
        .filter(|r| r.op == "ChangeResourceRecordSets")
        .collect();
    let outcomes: Vec<&str> = writes.iter().map(|r| r.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "throttling",
            "throttling",
            "throttling",
            "prior_request_not_complete",
            "prior_request_not_complete",
            "http_500",
            "http_500",
            "ok"
        ]
    );
    assert_eq!(writes.last().map(|r| r.status), Some(200));
    let faulted_reads = log
        .iter()
        .filter(|r| r.op == "ListResourceRecordSets" && r.outcome == "throttling")
        .count();
    assert_eq!(faulted_reads, 2);
    // The token bucket (4/s) holds across retries: never more than 5 requests in a second,
    // and the whole exchange took at least (n-1) intervals.
    assert!(max_in_window(&log, 1000) <= 5, "burst: {log:?}");
    let span = log.last().expect("log").t_ms - log.first().expect("log").t_ms;
    let n = u64::try_from(log.len()).expect("len");
    assert!(span + 200 >= (n - 1) * 250, "{n} requests in {span} ms");
    assert!(weighted(100, 0).matches(&gate_records(&api, &zone).await));
    assert_eq!(fence_now(&api, &zone).await.map(|f| f.epoch), Some(1));
}

/// Three writers sharing one token bucket stay within the budget together.
#[tokio::test]
async fn writers_sharing_a_token_bucket_stay_within_the_budget() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let limiter = Arc::new(quorumgate::route53::RateLimiter::route53_default());
    let mut tasks = Vec::new();
    for i in 0..3u8 {
        let mut options = emu.options();
        options.limiter = limiter.clone();
        let api = Arc::new(SdkRoute53::load(options).await);
        let zone = zone.clone();
        tasks.push(tokio::spawn(async move {
            let w = writer(api, &zone, &format!("agent-{i}"));
            // Everyone retries until their own state landed once (bounded).
            let mut epoch = 0;
            for _ in 0..10 {
                match w.apply(epoch, &weighted(10 * i, 100)).await.expect("apply") {
                    ApplyOutcome::Applied { .. } | ApplyOutcome::AlreadyInPlace { .. } => return,
                    ApplyOutcome::Stale { current, .. }
                    | ApplyOutcome::LostRace { current, .. } => {
                        epoch = current.map_or(0, |f| f.epoch);
                    }
                }
            }
            panic!("writer {i} never landed its state");
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let (log, _) = emu.stats().await;
    assert!(log.len() >= 9, "{log:?}");
    assert!(max_in_window(&log, 1000) <= 5, "burst: {log:?}");
}

/// When the retry budget runs out the write fails as a whole, and a later attempt applies it
/// exactly once.
#[tokio::test]
async fn exhausted_retries_fail_cleanly_and_a_later_apply_lands_once() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let mut options = emu.options();
    options.retry = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        deadline: Duration::from_secs(10),
    };
    let api = Arc::new(SdkRoute53::load(options).await);
    let w = writer(api.clone(), &zone, "agent-a");
    emu.fault(json!({"kind": "throttling", "count": 3, "op": "ChangeResourceRecordSets"}))
        .await;
    let err = w
        .apply(0, &weighted(100, 0))
        .await
        .expect_err("budget exhausted");
    assert!(
        matches!(
            err,
            WriteError::Api(ApiError::Unavailable { attempts: 3, .. })
        ),
        "{err:?}"
    );
    assert!(gate_records(&api, &zone).await.is_empty());
    assert_eq!(fence_now(&api, &zone).await, None);

    let outcome = w.apply(0, &weighted(100, 0)).await.expect("later");
    assert!(
        matches!(outcome, ApplyOutcome::Applied { epoch: 1, .. }),
        "{outcome:?}"
    );
    let accepted = emu
        .requests("ChangeResourceRecordSets")
        .await
        .iter()
        .filter(|r| r.status == 200)
        .count();
    assert_eq!(accepted, 1);
}

/// The emulator accepts connections and never answers: each attempt times out, the adapter
/// keeps retrying with backoff, and once the fault clears the change is applied exactly once.
#[tokio::test]
async fn stalled_emulator_times_out_retries_and_applies_once() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let mut options = emu.options();
    let attempt_timeout = Duration::from_millis(800);
    options.attempt_timeout = attempt_timeout;
    options.retry = RetryPolicy {
        max_attempts: 50,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        deadline: Duration::from_secs(60),
    };
    let api = Arc::new(SdkRoute53::load(options).await);
    let w = writer(api.clone(), &zone, "agent-a");
    emu.fault(json!({"kind": "stall", "count": 1000, "op": "ChangeResourceRecordSets"}))
        .await;

    let task = tokio::spawn(async move { w.apply(0, &weighted(100, 0)).await });

    let mut stalled = Vec::new();
    for _ in 0..300 {
        stalled = emu.requests("ChangeResourceRecordSets").await;
        if stalled.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        stalled.len() >= 3,
        "only {} stalled attempts",
        stalled.len()
    );
    assert!(stalled.iter().all(|r| r.outcome == "stall"));
    assert!(!task.is_finished(), "the write must still be retrying");
    // Attempts are spaced by the attempt timeout plus backoff: the timeout fired each time.
    for pair in stalled.windows(2) {
        let gap = pair[1].t_ms - pair[0].t_ms;
        assert!(
            gap + 20 >= 800 + 50,
            "gap {gap} ms between stalled attempts"
        );
    }

    emu.clear_faults().await;
    let outcome = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("write finishes after the fault clears")
        .expect("task")
        .expect("apply");
    assert!(
        matches!(outcome, ApplyOutcome::Applied { epoch: 1, .. }),
        "{outcome:?}"
    );

    let writes = emu.requests("ChangeResourceRecordSets").await;
    let applied: Vec<_> = writes.iter().filter(|r| r.outcome == "ok").collect();
    assert_eq!(applied.len(), 1, "{writes:?}");
    assert_eq!(applied[0].status, 200);
    assert!(weighted(100, 0).matches(&gate_records(&api, &zone).await));
    let fence = fence_now(&api, &zone).await.expect("fence");
    assert_eq!((fence.epoch, fence.by.as_str()), (1, "agent-a"));
}
