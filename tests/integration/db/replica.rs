//! `replication_lag` against a real streaming replica (`pg_basebackup -R`).
//!
//! The primary keeps taking heartbeats (a write probe every [`INTERVAL`]); the replica's lag is
//! near zero while it replays, and grows at wall-clock rate once replay is paused — within one
//! heartbeat interval of the truth (the time since replay stopped).

use std::sync::Arc;
use std::time::Duration;

use config::probe::DbEngine;
use quorumgate::clock::{Clock, SystemClock};
use quorumgate::probe::{ProbeOutcome, Prober};
use tokio::time::Instant;

use super::servers::Postgres;
use super::{assert_reason, lag_probe, pg_write, prober, T};

/// How often the primary takes a heartbeat (the write check's interval).
const INTERVAL: Duration = Duration::from_millis(250);
/// Scheduling and replication slack on a busy 2-core machine.
const SLACK_MS: i64 = 250;

fn wall_ms() -> i64 {
    i64::try_from(SystemClock::default().now().0).expect("ms fit i64")
}

fn lag_of(o: &ProbeOutcome) -> i64 {
    assert_reason(o, "ok");
    i64::try_from(o.lag_ms.expect("a lag probe reports lag_ms")).expect("lag fits i64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replica_lag_is_near_zero_then_grows_at_wall_clock_rate_when_paused() {
    let primary = Postgres::start();
    let p: Arc<Prober> = Arc::new(prober("use1"));
    assert_reason(&p.probe(&pg_write(primary.port, true), T).await, "ok");
    let replica = Postgres::replica_of(&primary);

    // Heartbeats on the primary until the test ends.
    let writer = {
        let p = Arc::clone(&p);
        let spec = pg_write(primary.port, true);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(INTERVAL);
            loop {
                tick.tick().await;
                let o = p.probe(&spec, T).await;
                assert!(o.healthy, "primary write failed: {o:?}");
            }
        })
    };
    let lag = lag_probe(DbEngine::Postgres, replica.port);

    // Replicating: several consecutive samples all near zero (≤ one interval + slack).
    let near_zero = i64::try_from(INTERVAL.as_millis()).expect("ms") + SLACK_MS;
    let end = Instant::now() + Duration::from_secs(30);
    let mut good = 0;
    while good < 5 {
        let o = p.probe(&lag, T).await;
        assert!(o.detail.contains("standby"), "{o:?}");
        if lag_of(&o) <= near_zero {
            good += 1;
        } else {
            good = 0;
        }
        assert!(Instant::now() < end, "lag never settled near zero: {o:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A real standby takes no writes.
    assert_reason(
        &p.probe(&pg_write(replica.port, false), T).await,
        "read_only",
    );

    // Pause replay; the primary keeps writing.
    let paused_lo = wall_ms();
    replica.psql("SELECT pg_wal_replay_pause()");
    let end = Instant::now() + Duration::from_secs(10);
    while replica.psql("SELECT pg_get_wal_replay_pause_state()") != "paused" {
        assert!(Instant::now() < end, "replay did not pause");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let paused_hi = wall_ms();

    // Truth: the time since replay stopped, somewhere in [paused_lo, paused_hi]. The newest
    // replayed heartbeat was written at most one interval before that, so the measured lag is
    // within one interval (plus slack) of the truth — at every sample, as it grows.
    let interval_ms = i64::try_from(INTERVAL.as_millis()).expect("ms");
    let mut samples = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = p.probe(&lag, T).await;
        let now = wall_ms();
        let measured = lag_of(&o);
        let (truth_lo, truth_hi) = (now - paused_hi, now - paused_lo);
        assert!(
            measured >= truth_lo - SLACK_MS && measured <= truth_hi + interval_ms + SLACK_MS,
            "measured {measured} ms, truth {truth_lo}..{truth_hi} ms: {o:?}"
        );
        samples.push((now, measured));
        if measured >= 3_000 {
            break;
        }
        assert!(Instant::now() < end, "lag did not grow: {samples:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Wall-clock rate: between the first and last sample, lag grew as much as time passed.
    let (t0, l0) = samples[0];
    let (t1, l1) = samples[samples.len() - 1];
    assert!(
        ((l1 - l0) - (t1 - t0)).abs() <= 100,
        "lag grew {} ms in {} ms: {samples:?}",
        l1 - l0,
        t1 - t0
    );

    // Resumed: back near zero.
    replica.psql("SELECT pg_wal_replay_resume()");
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let o = p.probe(&lag, T).await;
        if lag_of(&o) <= near_zero {
            break;
        }
        assert!(Instant::now() < end, "lag did not recover: {o:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    writer.abort();
}
