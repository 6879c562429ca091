//! One `/metrics` render at 1,000 checks. Figures and the command: `benches/README.md`.
//!
//! The series are the ones an agent with 1,000 HTTP checks holds in steady state: per check a
//! probe-duration histogram with 15 new samples (a 15 s scrape interval at 1 s probes), one
//! `probe_total` series (every tenth check also an unhealthy one), the decision gauge, the three
//! verdict gauges, and a transition counter on every tenth check; plus the agent-wide series
//! (rounds, ballots from two peers, pushes, build info).
//!
//! - `metrics_render/exporter/1000`: everything recorded through the `metrics` macros into
//!   `metrics-exporter-prometheus`, as the agent did before, and `PrometheusHandle::render`.
//! - `metrics_render/agent/1000`: what `/metrics` does now: the exporter renders the
//!   agent-wide series and `telemetry::checks` appends the per-check ones.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use quorumgate::telemetry::checks::{self, CheckMetrics, DURATION_BUCKETS};

const CHECKS: usize = 1_000;
const SAMPLES_PER_SCRAPE: u64 = 15;

fn check(i: usize) -> String {
    format!("app-{i:04}")
}

fn new_recorder() -> (PrometheusRecorder, PrometheusHandle) {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

/// The series every agent has whatever its number of checks.
fn agent_wide() {
    metrics::counter!("quorumgate_rounds_total").increment(1_000);
    metrics::gauge!("quorumgate_abstaining").set(0.0);
    metrics::gauge!("quorumgate_build_info", "version" => "0.1.0", "config_digest" => "ab12")
        .set(1.0);
    metrics::counter!("quorumgate_probe_overruns_total").increment(0);
    for peer in ["usw2", "euw1"] {
        metrics::counter!("quorumgate_ballots_accepted_total", "from" => peer).increment(1_000);
        metrics::counter!("quorumgate_peer_push_total", "peer" => peer, "result" => "ok")
            .increment(1_000);
    }
}

fn sample_ms(i: usize, k: u64) -> u64 {
    // Spread over the low buckets, as loopback and LAN probes are.
    (i as u64 * 7 + k * 13) % 300
}

fn render(c: &mut Criterion) {
    let mut g = c.benchmark_group("metrics_render");
    g.throughput(Throughput::Elements(CHECKS as u64));

    // Before: every series in the exporter.
    let (recorder, before) = new_recorder();
    let histograms: Vec<metrics::Histogram> = metrics::with_local_recorder(&recorder, || {
        agent_wide();
        (0..CHECKS)
            .map(|i| {
                let check = check(i);
                let h = metrics::histogram!("quorumgate_probe_duration_seconds", "check" => check.clone(), "kind" => "http");
                metrics::counter!("quorumgate_probe_total", "check" => check.clone(), "kind" => "http", "result" => "healthy", "reason" => "ok").increment(100);
                if i % 10 == 0 {
                    metrics::counter!("quorumgate_probe_total", "check" => check.clone(), "kind" => "http", "result" => "unhealthy", "reason" => "status").increment(3);
                    metrics::counter!("quorumgate_transitions_total", "check" => check.clone(), "to" => "unhealthy").increment(1);
                }
                metrics::gauge!("quorumgate_decision", "check" => check.clone()).set(1.0);
                for (outcome, v) in [("healthy", 1.0), ("unhealthy", 0.0), ("no_quorum", 0.0)] {
                    metrics::gauge!("quorumgate_verdict", "check" => check.clone(), "outcome" => outcome).set(v);
                }
                h
            })
            .collect()
    });
    let fill_exporter = || {
        for (i, h) in histograms.iter().enumerate() {
            for k in 0..SAMPLES_PER_SCRAPE {
                h.record(Duration::from_millis(sample_ms(i, k)).as_secs_f64());
            }
        }
    };
    g.bench_function(BenchmarkId::new("exporter", CHECKS), |b| {
        b.iter_batched(
            fill_exporter,
            |()| black_box(before.render()),
            BatchSize::PerIteration,
        );
    });

    // Now: agent-wide series in the exporter, per-check ones hand-rendered.
    let (recorder, handle) = new_recorder();
    metrics::with_local_recorder(&recorder, agent_wide);
    let registry = CheckMetrics::new();
    let histograms: Vec<checks::Histogram> = (0..CHECKS)
        .map(|i| {
            let check = check(i);
            let h = registry.probe_duration(&check, "http");
            registry
                .probe_total(&check, "http", true, "ok")
                .increment(100);
            if i % 10 == 0 {
                registry
                    .probe_total(&check, "http", false, "status")
                    .increment(3);
                registry.transitions(&check, "unhealthy").increment(1);
            }
            registry.decision(&check).set(1.0);
            for (outcome, v) in [("healthy", 1.0), ("unhealthy", 0.0), ("no_quorum", 0.0)] {
                registry.verdict(&check, outcome).set(v);
            }
            h
        })
        .collect();
    let fill_agent = || {
        for (i, h) in histograms.iter().enumerate() {
            for k in 0..SAMPLES_PER_SCRAPE {
                h.record(Duration::from_millis(sample_ms(i, k)));
            }
        }
    };
    g.bench_function(BenchmarkId::new("agent", CHECKS), |b| {
        b.iter_batched(
            fill_agent,
            |()| {
                let mut out = handle.render();
                registry.render_into(&mut out);
                black_box(out)
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();

    // The two renders carry the same samples (apart from float noise in the sums).
    let lines = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty() && !l.contains("_sum{"))
            .count()
    };
    let mut now = handle.render();
    registry.render_into(&mut now);
    println!(
        "sample lines: exporter {}, agent {}; bytes: agent {}",
        lines(&before.render()),
        lines(&now),
        now.len()
    );
}

criterion_group!(benches, render);
criterion_main!(benches);
