//! Per-check series, kept outside the Prometheus exporter and rendered by hand.
//!
//! At 1,000 checks these are ~20,000 of the agent's ~20,100 exposition lines. Through
//! `metrics-exporter-prometheus` a render cost ~12 ms of CPU per scrape: every series' key is
//! re-parsed and its labels re-escaped into fresh strings, every histogram sample is drained
//! into a per-key distribution, and the families are regrouped in hash maps. Here each series
//! keeps its label set rendered once, at registration, next to plain atomics, so a scrape is
//! one walk that appends text. Names, label sets, bucket bounds and number formatting are the
//! exporter's, so queries, rules and dashboards see the same series as before.
//!
//! A registry is process-wide ([`global`]) like the `metrics` crate's recorder; handles are
//! registered once per check and updated without a lookup.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, PoisonError, RwLock};
use std::time::Duration;

pub const PROBE_DURATION: &str = "quorumgate_probe_duration_seconds";
pub const PROBE_TOTAL: &str = "quorumgate_probe_total";
pub const DECISION: &str = "quorumgate_decision";
pub const VERDICT: &str = "quorumgate_verdict";
pub const TRANSITIONS: &str = "quorumgate_transitions_total";
pub const REPLICATION_LAG: &str = "quorumgate_replication_lag_seconds";

/// Upper bounds (seconds, inclusive) of the probe-duration buckets; `+Inf` is implied.
pub const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A monotonically increasing count.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn increment(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    #[must_use]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (an `f64`, stored as its bits).
#[derive(Clone, Debug)]
pub struct Gauge(Arc<AtomicU64>);

impl Default for Gauge {
    fn default() -> Self {
        Self(Arc::new(AtomicU64::new(0.0_f64.to_bits())))
    }
}

impl Gauge {
    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    #[must_use]
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

#[derive(Debug, Default)]
struct HistogramCells {
    /// Per-bucket (not cumulative) counts; the last cell is the `+Inf` overflow. The count is
    /// their sum, so a scrape racing a record still shows monotonic buckets and `+Inf = count`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A duration histogram with [`DURATION_BUCKETS`].
#[derive(Clone, Debug, Default)]
pub struct Histogram(Arc<HistogramCells>);

impl Histogram {
    pub fn record(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = DURATION_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(DURATION_BUCKETS.len());
        self.0.buckets[i].fetch_add(1, Ordering::Relaxed);
        // u64 nanoseconds overflow after 584 years of summed probe time.
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    #[must_use]
    pub fn count(&self) -> u64 {
        self.0
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .sum()
    }
}

/// One metric family: its series by rendered label set (`check="a",kind="http"`), in label
/// order so the output is stable.
#[derive(Debug)]
struct Family<T> {
    name: &'static str,
    help: &'static str,
    series: RwLock<BTreeMap<String, T>>,
}

impl<T: Clone + Default> Family<T> {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            series: RwLock::new(BTreeMap::new()),
        }
    }

    fn get_or_register(&self, labels: String) -> T {
        // A panic while holding the lock cannot leave the map half-updated: keep using it.
        let read = self.series.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(t) = read.get(&labels) {
            return t.clone();
        }
        drop(read);
        let mut write = self.series.write().unwrap_or_else(PoisonError::into_inner);
        write.entry(labels).or_default().clone()
    }

    /// `# HELP` and `# TYPE`, then `value(labels, series)` for each series, or nothing if the
    /// family has no series yet (as the exporter does).
    fn render(&self, out: &mut String, kind: &str, mut value: impl FnMut(&mut String, &str, &T)) {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        if series.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {kind}", self.name);
        for (labels, t) in series.iter() {
            value(out, labels, t);
        }
        out.push('\n');
    }
}

/// The per-check series of this process.
#[derive(Debug)]
pub struct CheckMetrics {
    probe_duration: Family<Histogram>,
    probe_total: Family<Counter>,
    replication_lag: Family<Gauge>,
    decision: Family<Gauge>,
    verdict: Family<Gauge>,
    transitions: Family<Counter>,
    /// Length of the last render, to size the next one's buffer in one allocation.
    last_len: AtomicUsize,
    /// `le="…"` of each bucket, formatted once.
    le_labels: Vec<String>,
}

impl Default for CheckMetrics {
    fn default() -> Self {
        Self::new()
    }
}

static GLOBAL: LazyLock<CheckMetrics> = LazyLock::new(CheckMetrics::new);

/// The process-wide registry that the scheduler and the node record into and `/metrics` renders.
#[must_use]
pub fn global() -> &'static CheckMetrics {
    &GLOBAL
}

impl CheckMetrics {
    #[must_use]
    pub fn new() -> Self {
        let le_labels = DURATION_BUCKETS
            .iter()
            .map(|le| format!(",le=\"{le}\"}} "))
            .chain(std::iter::once(",le=\"+Inf\"} ".to_owned()))
            .collect();
        Self {
            probe_duration: Family::new(PROBE_DURATION, "Probe run time, by check and kind"),
            probe_total: Family::new(
                PROBE_TOTAL,
                "Probe results, by check, kind, result (healthy, unhealthy) and reason",
            ),
            replication_lag: Family::new(
                REPLICATION_LAG,
                "Replication lag measured by this agent's replication_lag probe (now - newest \
                 heartbeat), by check",
            ),
            decision: Family::new(DECISION, "Decided state per check: 1 healthy, 0 unhealthy"),
            verdict: Family::new(
                VERDICT,
                "Last tally per check: 1 for the current outcome label, 0 otherwise",
            ),
            transitions: Family::new(TRANSITIONS, "Decision transitions, by check and new state"),
            last_len: AtomicUsize::new(0),
            le_labels,
        }
    }

    #[must_use]
    pub fn probe_duration(&self, check: &str, kind: &str) -> Histogram {
        self.probe_duration
            .get_or_register(labels(&[("check", check), ("kind", kind)]))
    }

    #[must_use]
    pub fn probe_total(&self, check: &str, kind: &str, healthy: bool, reason: &str) -> Counter {
        let result = if healthy { "healthy" } else { "unhealthy" };
        self.probe_total.get_or_register(labels(&[
            ("check", check),
            ("kind", kind),
            ("result", result),
            ("reason", reason),
        ]))
    }

    #[must_use]
    pub fn replication_lag(&self, check: &str) -> Gauge {
        self.replication_lag
            .get_or_register(labels(&[("check", check)]))
    }

    #[must_use]
    pub fn decision(&self, check: &str) -> Gauge {
        self.decision.get_or_register(labels(&[("check", check)]))
    }

    #[must_use]
    pub fn verdict(&self, check: &str, outcome: &str) -> Gauge {
        self.verdict
            .get_or_register(labels(&[("check", check), ("outcome", outcome)]))
    }

    #[must_use]
    pub fn transitions(&self, check: &str, to: &str) -> Counter {
        self.transitions
            .get_or_register(labels(&[("check", check), ("to", to)]))
    }

    /// Appends every family in the Prometheus text format (version 0.0.4).
    pub fn render_into(&self, out: &mut String) {
        let start = out.len();
        out.reserve(self.last_len.load(Ordering::Relaxed) + 4096);
        let hist = &self.probe_duration;
        hist.render(out, "histogram", |out, labels, h| {
            let mut cumulative = 0_u64;
            for (cell, le) in h.0.buckets.iter().zip(&self.le_labels) {
                cumulative += cell.load(Ordering::Relaxed);
                line(out, hist.name, "_bucket{", labels, le);
                push_u64(out, cumulative);
            }
            line(out, hist.name, "_sum{", labels, "} ");
            // Exact below 2^53 ns (104 days of summed probe time); approximate beyond.
            #[allow(clippy::cast_precision_loss)]
            push_f64(out, h.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9);
            line(out, hist.name, "_count{", labels, "} ");
            push_u64(out, cumulative);
        });
        for family in [&self.probe_total, &self.transitions] {
            family.render(out, "counter", |out, labels, c| {
                line(out, family.name, "{", labels, "} ");
                push_u64(out, c.get());
            });
        }
        for family in [&self.decision, &self.verdict, &self.replication_lag] {
            family.render(out, "gauge", |out, labels, g| {
                line(out, family.name, "{", labels, "} ");
                push_f64(out, g.get());
            });
        }
        self.last_len.store(out.len() - start, Ordering::Relaxed);
    }
}

/// `name<open>labels<close>`: the start of a sample line, up to its value.
fn line(out: &mut String, name: &str, open: &str, labels: &str, close: &str) {
    out.push_str(name);
    out.push_str(open);
    out.push_str(labels);
    out.push_str(close);
}

fn push_u64(out: &mut String, v: u64) {
    let _ = writeln!(out, "{v}");
}

/// As the exporter writes values (Rust's shortest round-trip `Display`), except infinities,
/// which the text format spells `+Inf` / `-Inf`.
fn push_f64(out: &mut String, v: f64) {
    if v == f64::INFINITY {
        out.push_str("+Inf\n");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf\n");
    } else {
        let _ = writeln!(out, "{v}");
    }
}

/// `k1="v1",k2="v2"` with the values escaped as the text format requires.
fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

#[cfg(test)]
mod tests;
