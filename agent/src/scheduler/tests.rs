//! Scheduler tests on tokio's paused clock, with a fake probe runner whose runs take virtual time.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;

use config::probe::TcpProbe;

use super::*;
use crate::clock::Clock;

/// Wall clock derived from tokio's (paused) clock.
#[derive(Debug)]
struct VirtualClock {
    base: Instant,
}

impl Clock for VirtualClock {
    fn now(&self) -> UnixMillis {
        UnixMillis(1_000_000 + self.base.elapsed().as_millis() as u64)
    }
}

/// Each run takes the configured virtual time for its probe and is healthy.
#[derive(Debug, Default)]
struct Fake {
    delays: HashMap<String, Duration>,
    starts: Mutex<Vec<(String, Instant)>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl ProbeRunner for Fake {
    fn run(
        &self,
        spec: &ProbeSpec,
        _timeout: Duration,
    ) -> impl Future<Output = ProbeOutcome> + Send {
        let name = match spec {
            ProbeSpec::Tcp(t) => t.address.clone(),
            _ => String::new(),
        };
        let delay = self.delays.get(&name).copied().unwrap_or_default();
        async move {
            self.starts
                .lock()
                .expect("lock")
                .push((name, Instant::now()));
            let now_running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_running.fetch_max(now_running, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            ProbeOutcome::healthy(delay, "")
        }
    }
}

impl Fake {
    fn starts_of(&self, name: &str) -> Vec<Instant> {
        let starts = self.starts.lock().expect("lock");
        starts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, t)| *t)
            .collect()
    }
}

fn probe(name: &str, interval_ms: u64, timeout_ms: u64) -> ScheduledProbe {
    ScheduledProbe {
        key: ProbeKey::Check(CheckId::new(name).expect("id")),
        spec: ProbeSpec::Tcp(TcpProbe {
            address: name.to_owned(),
            tls: None,
        }),
        interval: Duration::from_millis(interval_ms),
        timeout: Duration::from_millis(timeout_ms),
    }
}

struct Run {
    fake: Arc<Fake>,
    handle: SchedulerHandle,
    rx: mpsc::Receiver<ProbeReport>,
    t0: Instant,
}

fn start(
    probes: Vec<ScheduledProbe>,
    delays: &[(&str, u64)],
    concurrency: usize,
    seed: u64,
) -> Run {
    let fake = Arc::new(Fake {
        delays: delays
            .iter()
            .map(|(n, ms)| ((*n).to_owned(), Duration::from_millis(*ms)))
            .collect(),
        ..Fake::default()
    });
    let t0 = Instant::now();
    let clock: SharedClock = Arc::new(VirtualClock { base: t0 });
    let (tx, rx) = mpsc::channel(1024);
    let handle = spawn(
        probes,
        Arc::clone(&fake),
        clock,
        concurrency,
        seed,
        tx,
        CancellationToken::new(),
    );
    Run {
        fake,
        handle,
        rx,
        t0,
    }
}

async fn recv_n(rx: &mut mpsc::Receiver<ProbeReport>, n: usize) -> Vec<ProbeReport> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(rx.recv().await.expect("scheduler stopped early"));
    }
    out
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[tokio::test(start_paused = true)]
async fn runs_at_fixed_rate_without_drift() {
    let p = probe("web", 1_000, 800);
    let offset = start_offset(7, &p.key, p.interval);
    let mut run = start(vec![p], &[("web", 300)], 4, 7);
    let reports = recv_n(&mut run.rx, 30).await;
    assert!(reports.iter().all(|r| !r.late && r.outcome.healthy));
    let starts = run.fake.starts_of("web");
    assert!(starts.len() >= 30);
    // The first run is at the seeded offset; run k at offset + k × interval, whatever each run
    // took (a 300 ms run would add 300 ms per round to a drifting scheduler).
    let first = ms(starts[0] - run.t0);
    assert!(
        first.abs_diff(ms(offset)) <= 1,
        "first run at {first} ms, offset {offset:?}"
    );
    for (k, s) in starts.iter().enumerate() {
        let expected = ms(starts[0] - run.t0) + 1_000 * k as u64;
        assert_eq!(ms(*s - run.t0), expected, "run {k}");
    }
    // observed_at comes from the injected clock: at the end of each run.
    assert_eq!(
        reports[0].observed_at,
        UnixMillis(1_000_000 + ms(starts[0] - run.t0) + 300)
    );
    assert_eq!(reports[0].key.to_string(), "web");
    assert_eq!(run.handle.overruns_total(), 0);
    assert_eq!(run.handle.last_overrun_at(), None);
}

#[test]
fn jitter_is_deterministic_spread_and_within_the_interval() {
    let interval = Duration::from_secs(10);
    let keys: Vec<ProbeKey> = (0..400)
        .map(|i| ProbeKey::Check(CheckId::new(format!("check-{i}")).expect("id")))
        .collect();
    let offsets: Vec<Duration> = keys.iter().map(|k| start_offset(42, k, interval)).collect();
    let again: Vec<Duration> = keys.iter().map(|k| start_offset(42, k, interval)).collect();
    assert_eq!(offsets, again);
    assert!(offsets.iter().all(|o| *o < interval));
    let other_seed: Vec<Duration> = keys.iter().map(|k| start_offset(43, k, interval)).collect();
    assert!(
        offsets
            .iter()
            .zip(&other_seed)
            .filter(|(a, b)| a == b)
            .count()
            < 4
    );
    // Roughly uniform: each tenth of the interval gets 40 ± 25 of 400.
    let mut buckets = [0u32; 10];
    for o in &offsets {
        buckets[(o.as_secs_f64() / 1.0) as usize] += 1;
    }
    assert!(buckets.iter().all(|b| (15..=65).contains(b)), "{buckets:?}");
    // A control probe named like a check gets its own slot.
    let check = ProbeKey::Check(CheckId::new("dns").expect("id"));
    let control = ProbeKey::Control("dns".into());
    assert_eq!(control.to_string(), "control:dns");
    assert_ne!(
        start_offset(1, &check, interval),
        start_offset(1, &control, interval)
    );
    assert_eq!(start_offset(1, &check, Duration::ZERO), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn saturated_probe_slots_make_starts_late_and_the_agent_starved() {
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let probes = names.iter().map(|n| probe(n, 1_000, 900)).collect();
    let delays: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 400)).collect();
    let mut run = start(probes, &delays, 2, 1);
    let reports = recv_n(&mut run.rx, 40).await;
    assert_eq!(run.fake.max_running.load(Ordering::SeqCst), 2);
    // 8 × 400 ms of work per second on 2 slots cannot keep up: late across many probes.
    assert!(run.handle.overruns_total() > 0);
    assert!(run.handle.last_overrun_at().is_some());
    assert!(run.handle.last_starved_at().is_some(), "many probes late");
    assert!(reports.iter().any(|r| r.late));
}

#[tokio::test(start_paused = true)]
async fn enough_permits_means_nothing_is_late() {
    let names: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
    let probes = names.iter().map(|n| probe(n, 1_000, 900)).collect();
    let delays: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 400)).collect();
    let mut run = start(probes, &delays, 8, 1);
    let reports = recv_n(&mut run.rx, 40).await;
    assert!(run.fake.max_running.load(Ordering::SeqCst) <= 8);
    assert_eq!(run.handle.overruns_total(), 0);
    assert_eq!(run.handle.last_starved_at(), None);
    assert!(reports.iter().all(|r| !r.late));
}

#[tokio::test(start_paused = true)]
async fn a_run_as_long_as_its_timeout_never_races_the_next_one() {
    // A hung target with a timeout just under the interval: each run ends 1 ms before the
    // next tick, and nothing is late or skipped.
    let mut run = start(vec![probe("hung", 1_000, 999)], &[("hung", 999)], 4, 3);
    let reports = recv_n(&mut run.rx, 10).await;
    assert!(reports.iter().all(|r| !r.late));
    assert_eq!(run.handle.overruns_total(), 0);
    let starts = run.fake.starts_of("hung");
    for pair in starts.windows(2) {
        assert_eq!(ms(pair[1] - pair[0]), 1_000);
    }
}

#[tokio::test(start_paused = true)]
async fn a_run_outlasting_its_tick_delays_only_its_own_next_run() {
    // The validator keeps timeout < interval; a run can still outlast its tick (a full
    // channel, a late start), which this simulates with a generous timeout.
    let probes = vec![probe("slow", 1_000, 5_000), probe("fast", 1_000, 500)];
    let mut run = start(probes, &[("slow", 2_500), ("fast", 10)], 4, 3);
    let mut slow = Vec::new();
    while slow.len() < 2 {
        let r = recv_n(&mut run.rx, 1).await.remove(0);
        if r.key.to_string() == "slow" {
            slow.push(r);
        } else {
            assert!(!r.late, "another check is not held back");
        }
    }
    assert!(!slow[0].late, "the first run started on time");
    assert!(slow[1].late, "the next run waited for the previous one");
    let starts = run.fake.starts_of("slow");
    // The owed tick's run starts as soon as the previous run ends; the tick missed beyond
    // that one is not made up.
    assert_eq!(ms(starts[1] - starts[0]), 2_500);
    assert_eq!(ms(starts[2] - starts[1]), 2_500);
    // Its own lateness: counted, but no sign of a starved agent.
    assert!(run.handle.overruns_total() >= 1);
    assert_eq!(run.handle.last_starved_at(), None);
}

#[tokio::test(start_paused = true)]
async fn a_late_tick_is_late_and_late_ticks_across_probes_are_starvation() {
    let mut run = start(vec![probe("web", 1_000, 500)], &[("web", 10)], 4, 9);
    let first = recv_n(&mut run.rx, 1).await.remove(0);
    assert!(!first.late);
    assert_eq!(run.handle.overruns_total(), 0);
    // The runtime stalls for 2.5 s (as a blocked worker would): the next tick fires late.
    tokio::time::advance(Duration::from_millis(2_500)).await;
    let next = recv_n(&mut run.rx, 1).await.remove(0);
    assert!(next.late);
    assert_eq!(run.handle.overruns_total(), 1);
    assert_eq!(run.handle.last_starved_at(), None, "one probe is not many");
    // Back on schedule afterwards.
    let later = recv_n(&mut run.rx, 3).await;
    assert!(later.iter().all(|r| !r.late));

    // The same stall under five probes: late across the scheduler, so starved.
    let probes = (0..5)
        .map(|i| probe(&format!("p{i}"), 1_000, 500))
        .collect();
    let mut run = start(probes, &[], 8, 9);
    recv_n(&mut run.rx, 5).await;
    tokio::time::advance(Duration::from_millis(2_500)).await;
    let late = recv_n(&mut run.rx, 5).await;
    assert!(late.iter().filter(|r| r.late).count() >= 3, "{late:?}");
    assert!(run.handle.last_starved_at().is_some());
}

#[tokio::test(start_paused = true)]
async fn shutdown_and_dropped_receiver_end_every_loop() {
    let run = start(
        vec![probe("a", 1_000, 500), probe("b", 1_000, 500)],
        &[],
        2,
        0,
    );
    run.handle.shutdown();
    run.handle.join().await;

    let mut run = start(vec![probe("a", 1_000, 500)], &[], 2, 0);
    recv_n(&mut run.rx, 1).await;
    drop(run.rx);
    run.handle.join().await;

    // The caller's token stops it too.
    let token = CancellationToken::new();
    let (tx, _rx) = mpsc::channel(1);
    let clock: SharedClock = Arc::new(VirtualClock {
        base: Instant::now(),
    });
    let handle = spawn(
        vec![probe("a", 1_000, 500)],
        Arc::new(Fake::default()),
        clock,
        1,
        0,
        tx,
        token.clone(),
    );
    token.cancel();
    handle.join().await;
}
