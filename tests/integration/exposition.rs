//! `/metrics` of an agent with many checks is valid Prometheus text: `promtool check metrics`
//! accepts it, and every family is one contiguous block with one `# TYPE` line. The per-check
//! series are rendered by hand (`telemetry::checks`) and appended to the exporter's text, so
//! this is what keeps the two from clashing.
//!
//! Needs `promtool` (Debian's `prometheus` package, `bash scripts/test-deps.sh`).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{metric, TestCluster, CHECK};

const HEALTHY: usize = 160;
const FAILING: usize = 20;
const TCP: usize = 20;
const LIMIT: Duration = Duration::from_secs(90);

/// `HEALTHY` + `FAILING` HTTP checks and `TCP` TCP checks on the test app, every 2 s (three
/// agents × 200 checks stay a modest load on a busy machine). The failing ones expect a 204
/// the app never sends, and fall after one round, so they make transitions.
fn checks(target: &str, tcp: &str) -> String {
    let mut toml = String::new();
    let mut add = |id: String, body: String| {
        toml.push_str(&format!(
            "\n[[checks]]\nid = \"{id}\"\ninterval = \"2s\"\ntimeout = \"1s\"\nfall_after = 1\n{body}"
        ));
    };
    for i in 0..HEALTHY {
        add(
            format!("ok-{i:03}"),
            format!("[checks.http]\nurl = \"{target}\"\n"),
        );
    }
    for i in 0..FAILING {
        add(
            format!("bad-{i:03}"),
            format!("[checks.http]\nurl = \"{target}\"\nexpect_status = [204]\n"),
        );
    }
    for i in 0..TCP {
        add(
            format!("tcp-{i:03}"),
            format!("[checks.tcp]\naddress = \"{tcp}\"\n"),
        );
    }
    toml
}

/// Metric name of a sample line.
fn name_of(line: &str) -> &str {
    line.split(['{', ' ']).next().unwrap_or(line)
}

/// The family a sample belongs to, given the `# TYPE`s seen (histogram suffixes folded).
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types.get(base).is_some_and(|t| t == "histogram") {
                return base;
            }
        }
    }
    name
}

/// Checks what promtool does not: one `# TYPE` per family, each family's samples in one
/// block, every value a number. Returns the families.
fn check_structure(text: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    let mut done = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "second TYPE for {name}"
            );
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let family = family_of(name_of(line), &types).to_owned();
        if current.as_ref() != Some(&family) {
            if let Some(prev) = current.replace(family.clone()) {
                done.insert(prev);
            }
            assert!(!done.contains(&family), "{family} is split in two blocks");
        }
        let value = line.rsplit_once(' ').expect("value").1;
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value: {line}"
        );
    }
    types
}

fn promtool_check(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is missing: run `bash scripts/test-deps.sh` (Debian's `prometheus`)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_an_agent_with_many_checks_are_valid_exposition_text() {
    let c = TestCluster::start(|spec| {
        let tcp = spec
            .target_url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        spec.extra_shared = checks(&spec.target_url, &tcp);
    })
    .await;
    let all: Vec<String> = (0..HEALTHY)
        .map(|i| format!("ok-{i:03}"))
        .chain((0..FAILING).map(|i| format!("bad-{i:03}")))
        .chain((0..TCP).map(|i| format!("tcp-{i:03}")))
        .chain([CHECK.to_owned()])
        .collect();

    // Wait until every per-check family has its series: each check probed at least once and
    // tallied, and each failing check decided unhealthy (a transition).
    let latest = RefCell::new(String::new());
    c.wait_until(LIMIT, "every check probed, tallied and decided", || async {
        let text = c.metrics(0).await;
        let per_check = all.iter().all(|check| {
            let kind = if check.starts_with("tcp") {
                "tcp"
            } else {
                "http"
            };
            let count = metric(
                &text,
                "quorumgate_probe_duration_seconds_count",
                &format!("check=\"{check}\",kind=\"{kind}\""),
            );
            let verdicts: f64 = ["healthy", "unhealthy", "no_quorum"]
                .iter()
                .map(|o| {
                    metric(
                        &text,
                        "quorumgate_verdict",
                        &format!("check=\"{check}\",outcome=\"{o}\""),
                    )
                })
                .sum();
            count >= 1.0 && verdicts == 1.0
        });
        let failed = (0..FAILING).all(|i| {
            metric(
                &text,
                "quorumgate_transitions_total",
                &format!("check=\"bad-{i:03}\",to=\"unhealthy\""),
            ) >= 1.0
        });
        *latest.borrow_mut() = text;
        per_check && failed
    })
    .await;
    let text = latest.into_inner();

    let types = check_structure(&text);
    for (family, kind) in [
        ("quorumgate_probe_duration_seconds", "histogram"),
        ("quorumgate_probe_total", "counter"),
        ("quorumgate_decision", "gauge"),
        ("quorumgate_verdict", "gauge"),
        ("quorumgate_transitions_total", "counter"),
        ("quorumgate_rounds_total", "counter"),
        ("quorumgate_ballots_accepted_total", "counter"),
    ] {
        assert_eq!(
            types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    // Every check has its decision and its healthy-probe or failure counts.
    for check in &all {
        assert!(
            text.contains(&format!("quorumgate_decision{{check=\"{check}\"}} ")),
            "no decision for {check}"
        );
        assert!(
            text.contains(&format!("quorumgate_probe_total{{check=\"{check}\",")),
            "no probe_total for {check}"
        );
    }
    assert_eq!(
        metric(&text, "quorumgate_decision", "check=\"bad-000\""),
        0.0,
        "a failing check is decided unhealthy"
    );
    assert!(text
        .contains("quorumgate_probe_total{check=\"bad-000\",kind=\"http\",result=\"unhealthy\","));
    promtool_check(&text);
}

/// Every labelled counter the alerts take an `increase()` or `rate()` of is there at 0 from
/// the start, for every reason: one forged ballot must show as an increase from 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerted_counters_are_registered_at_zero_from_the_start() {
    let cluster = TestCluster::start(|_| {}).await;
    let text = cluster.metrics(0).await;
    let has = |name: &str, labels: &str| {
        let line = format!("{name}{{{labels}}} ");
        text.lines().any(|l| l.starts_with(&line))
    };
    let mut missing = Vec::new();
    for reason in quorum::Rejection::REASONS {
        let labels = format!("reason=\"{reason}\"");
        if !has("quorumgate_ballots_rejected_total", &labels) {
            missing.push(format!("quorumgate_ballots_rejected_total{{{labels}}}"));
        }
    }
    for result in quorum::operator::CommandRejection::REASONS
        .into_iter()
        .chain(["accepted", "duplicate", "audit_failed"])
    {
        let labels = format!("result=\"{result}\"");
        if !has("quorumgate_operator_commands_total", &labels) {
            missing.push(format!("quorumgate_operator_commands_total{{{labels}}}"));
        }
    }
    for peer in [cluster.id(1), cluster.id(2)] {
        let labels = format!("peer=\"{peer}\",result=\"ok\"");
        if !has("quorumgate_peer_push_total", &labels) {
            missing.push(format!("quorumgate_peer_push_total{{{labels}}}"));
        }
    }
    for name in [
        "quorumgate_audit_errors_total",
        "quorumgate_decisions_write_errors_total",
    ] {
        if !text.lines().any(|l| l.starts_with(&format!("{name} "))) {
            missing.push(name.to_owned());
        }
    }
    assert!(missing.is_empty(), "not registered: {missing:?}\n{text}");
}
