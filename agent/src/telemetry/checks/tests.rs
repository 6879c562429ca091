use std::collections::BTreeSet;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;

use super::*;

/// The sample lines (no comments, no blank lines) of an exposition text, with each
/// histogram's `_sum` value parsed apart (the exporter adds f64 seconds, we add integer
/// nanoseconds, so the last digit may differ).
fn samples(text: &str) -> (BTreeSet<String>, Vec<f64>) {
    let mut sums = Vec::new();
    let mut lines = BTreeSet::new();
    for l in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        match l.split_once("_sum{") {
            Some((_, rest)) => {
                let (labels, value) = rest.rsplit_once(' ').expect("value");
                lines.insert(format!("sum{{{labels}"));
                sums.push(value.parse().expect("sum"));
            }
            None => {
                lines.insert(l.to_owned());
            }
        }
    }
    (lines, sums)
}

const DURATIONS_MS: [u64; 6] = [0, 1, 3, 120, 999, 30_000];

/// The same series through the exporter (the way the agent recorded them before) and through
/// the hand-written registry give the same sample lines, so no query sees a difference.
#[test]
fn renders_the_same_samples_as_the_exporter() {
    let recorder = PrometheusBuilder::new()
        .set_buckets(&DURATION_BUCKETS)
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        let h = metrics::histogram!(PROBE_DURATION, "check" => "app", "kind" => "http");
        for ms in DURATIONS_MS {
            h.record(Duration::from_millis(ms).as_secs_f64());
        }
        metrics::counter!(PROBE_TOTAL, "check" => "app", "kind" => "http", "result" => "unhealthy", "reason" => "status")
            .increment(4);
        metrics::gauge!(DECISION, "check" => "app").set(1.0);
        metrics::gauge!(VERDICT, "check" => "app", "outcome" => "no_quorum").set(1.0);
        metrics::gauge!(VERDICT, "check" => "app", "outcome" => "healthy").set(0.0);
        metrics::gauge!(REPLICATION_LAG, "check" => "db").set(0.25);
        metrics::counter!(TRANSITIONS, "check" => "app", "to" => "unhealthy").increment(2);
    });
    let exporter = handle.render();

    let ours = CheckMetrics::new();
    let h = ours.probe_duration("app", "http");
    for ms in DURATIONS_MS {
        h.record(Duration::from_millis(ms));
    }
    ours.probe_total("app", "http", false, "status")
        .increment(4);
    ours.decision("app").set(1.0);
    ours.verdict("app", "no_quorum").set(1.0);
    ours.verdict("app", "healthy").set(0.0);
    ours.replication_lag("db").set(0.25);
    ours.transitions("app", "unhealthy").increment(2);
    let mut text = String::new();
    ours.render_into(&mut text);

    let ((ours, our_sums), (theirs, their_sums)) = (samples(&text), samples(&exporter));
    assert_eq!(ours, theirs, "ours:\n{text}\nexporter:\n{exporter}");
    assert_eq!(our_sums.len(), 1);
    assert!(
        (our_sums[0] - their_sums[0]).abs() < 1e-9,
        "{our_sums:?} {their_sums:?}"
    );
    assert!(text.contains(
        "quorumgate_probe_duration_seconds_bucket{check=\"app\",kind=\"http\",le=\"0.005\"} 3\n"
    ));
    assert!(
        text.contains("quorumgate_probe_duration_seconds_count{check=\"app\",kind=\"http\"} 6\n")
    );
}

#[test]
fn each_family_has_one_help_and_type_and_empty_families_are_left_out() {
    let m = CheckMetrics::new();
    let mut empty = String::new();
    m.render_into(&mut empty);
    assert_eq!(empty, "");

    for check in ["b", "a"] {
        m.decision(check).set(0.0);
        m.probe_duration(check, "tcp")
            .record(Duration::from_secs(20));
    }
    let mut text = String::new();
    m.render_into(&mut text);
    assert_eq!(
        text.matches("# TYPE quorumgate_decision gauge\n").count(),
        1
    );
    assert_eq!(
        text.matches("# TYPE quorumgate_probe_duration_seconds histogram\n")
            .count(),
        1
    );
    assert!(!text.contains("quorumgate_verdict"));
    // Series in label order; a sample beyond the last bound counts only in +Inf.
    let a = text
        .find("quorumgate_decision{check=\"a\"} 0\n")
        .expect("a");
    let b = text
        .find("quorumgate_decision{check=\"b\"} 0\n")
        .expect("b");
    assert!(a < b);
    assert!(text.contains("{check=\"a\",kind=\"tcp\",le=\"10\"} 0\n"));
    assert!(text.contains("{check=\"a\",kind=\"tcp\",le=\"+Inf\"} 1\n"));
    assert!(text.contains("quorumgate_probe_duration_seconds_sum{check=\"a\",kind=\"tcp\"} 20\n"));
}

#[test]
fn a_handle_registered_twice_is_the_same_series() {
    let m = CheckMetrics::new();
    m.transitions("app", "healthy").increment(1);
    m.transitions("app", "healthy").increment(2);
    assert_eq!(m.transitions("app", "healthy").get(), 3);
    let mut text = String::new();
    m.render_into(&mut text);
    assert_eq!(
        samples(&text).0,
        BTreeSet::from(["quorumgate_transitions_total{check=\"app\",to=\"healthy\"} 3".to_owned()])
    );
}

#[test]
fn label_values_and_special_floats_are_escaped_as_the_text_format_requires() {
    let m = CheckMetrics::new();
    m.replication_lag("a\"b\\c\nd").set(f64::INFINITY);
    m.replication_lag("e").set(f64::NAN);
    let mut text = String::new();
    m.render_into(&mut text);
    assert!(
        text.contains("quorumgate_replication_lag_seconds{check=\"a\\\"b\\\\c\\nd\"} +Inf\n"),
        "{text}"
    );
    assert!(
        text.contains("quorumgate_replication_lag_seconds{check=\"e\"} NaN\n"),
        "{text}"
    );
}
