//! Route 53's documented health and routing rules as pure functions: no I/O, no clock, and
//! randomness passed in by the caller.
//!
//! Sources (the AWS Route 53 Developer Guide and API Reference):
//! - "How Amazon Route 53 determines whether a health check is healthy";
//! - "How Amazon Route 53 chooses records when health checking is configured";
//! - "Weighted routing" (health checks and weight-0 records);
//! - `HealthCheckConfig` (Inverted, Disabled, HealthThreshold) and `ResourceRecordSet`
//!   (Failover, AliasTarget.EvaluateTargetHealth) in the API Reference.

use std::collections::BTreeMap;
use std::time::Duration;

use super::model::{FailoverRole, HealthCheck, HealthCheckKind, Record, Routing, State, Zone};

/// "Route 53 must be able to establish a TCP connection with the endpoint within four seconds"
/// (HTTP and HTTPS checks).
pub const HTTP_CONNECT: Duration = Duration::from_secs(4);
/// "the endpoint must respond with an HTTP status code of 2xx or 3xx within two seconds after
/// connecting"; string matching: "it must receive the response body from the endpoint within
/// the next two seconds".
pub const HTTP_RESPONSE: Duration = Duration::from_secs(2);
/// "Route 53 must be able to establish a TCP connection with the endpoint within ten seconds"
/// (TCP checks).
pub const TCP_CONNECT: Duration = Duration::from_secs(10);
/// "The string must appear entirely in the first 5,120 bytes of the response body".
pub const SEARCH_WINDOW: usize = 5120;
/// No scaled timeout goes below this: at time scales of a few percent a loaded test machine
/// would otherwise fail healthy endpoints.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(200);
/// How many alias hops are followed before a chain counts as broken.
pub const MAX_ALIAS_DEPTH: usize = 8;

/// `d` scaled by `time_scale`, floored at [`MIN_TIMEOUT`].
#[must_use]
pub fn scaled_timeout(d: Duration, time_scale: f64) -> Duration {
    d.mul_f64(time_scale.max(0.0)).max(MIN_TIMEOUT)
}

/// One health checker's view of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckerView {
    pub healthy: bool,
    /// The latest result, if any.
    pub last_ok: Option<bool>,
    /// How many results in a row equal `last_ok`.
    pub streak: u32,
}

impl Default for CheckerView {
    /// "Route 53 considers a new health check to be healthy until there's enough data to
    /// determine the actual status".
    fn default() -> Self {
        Self {
            healthy: true,
            last_ok: None,
            streak: 0,
        }
    }
}

/// One result folded into a checker's view: FailureThreshold consecutive results against the
/// current status flip it, in either direction ("The number of consecutive health checks that
/// an endpoint must pass or fail for Amazon Route 53 to change the current status of the
/// endpoint from unhealthy to healthy or vice versa").
#[must_use]
pub fn checker_step(view: CheckerView, ok: bool, failure_threshold: u32) -> CheckerView {
    let streak = if view.last_ok == Some(ok) {
        view.streak.saturating_add(1)
    } else {
        1
    };
    let healthy = if ok != view.healthy && streak >= failure_threshold.max(1) {
        ok
    } else {
        view.healthy
    };
    CheckerView {
        healthy,
        last_ok: Some(ok),
        streak,
    }
}

/// "If more than 18% of health checkers report that an endpoint is healthy, Route 53 considers
/// it healthy. If 18% of health checkers or fewer report that an endpoint is healthy, Route 53
/// considers it unhealthy." No checkers yet: healthy (a new check has no data).
#[must_use]
pub fn endpoint_healthy(healthy_checkers: usize, checkers: usize) -> bool {
    checkers == 0 || healthy_checkers * 100 > checkers * 18
}

/// Whether one HTTP(S) response counts as a success: "an HTTP status code of 2xx or 3xx", and
/// for the string-matching kinds the search string "entirely in the first 5,120 bytes of the
/// response body". `body` is whatever the checker read (only its first [`SEARCH_WINDOW`]
/// bytes are looked at).
#[must_use]
pub fn http_success(kind: HealthCheckKind, status: u16, body: &[u8], search: &str) -> bool {
    if !(200..400).contains(&status) {
        return false;
    }
    if !kind.is_str_match() {
        return true;
    }
    let window = &body[..body.len().min(SEARCH_WINDOW)];
    let needle = search.as_bytes();
    needle.is_empty() || window.windows(needle.len()).any(|w| w == needle)
}

/// Disabled and Inverted applied to a measured status. Disabled: "Route 53 considers the
/// status of the health check to always be healthy ... If you want to stop routing traffic to a
/// resource, change the value of Inverted" (so Disabled + Inverted is unhealthy). Inverted:
/// "Route 53 considers the health check to be unhealthy when the status is healthy and vice
/// versa".
#[must_use]
pub fn apply_flags(measured: bool, inverted: bool, disabled: bool) -> bool {
    let status = disabled || measured;
    status != inverted
}

/// HealthThreshold over the children's statuses: "If you specify a number greater than the
/// number of child health checks, Route 53 always considers this health check to be unhealthy.
/// If you specify 0, Route 53 always considers this health check to be healthy."
#[must_use]
pub fn calculated_healthy(health_threshold: u32, children: &[bool]) -> bool {
    let healthy = children.iter().filter(|h| **h).count();
    u32::try_from(healthy).unwrap_or(u32::MAX) >= health_threshold
}

/// The status of every health check in `state`, given each endpoint check's checker views
/// (`views[id]`, one `healthy` per checker; missing: no checker yet). Calculated checks use
/// their children's final statuses (a disabled child is healthy, an unknown child unhealthy),
/// nested up to a few levels (a cycle counts as unhealthy).
#[must_use]
pub fn evaluate(state: &State, views: &BTreeMap<String, Vec<bool>>) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for hc in &state.health_checks {
        let status = status_of(state, views, hc, 0);
        out.insert(hc.id.clone(), status);
    }
    out
}

fn status_of(
    state: &State,
    views: &BTreeMap<String, Vec<bool>>,
    hc: &HealthCheck,
    depth: usize,
) -> bool {
    if hc.disabled {
        return apply_flags(true, hc.inverted, true);
    }
    let measured = if hc.kind == HealthCheckKind::Calculated {
        if depth > MAX_ALIAS_DEPTH {
            false
        } else {
            let children: Vec<bool> = hc
                .children
                .iter()
                .map(|c| {
                    state
                        .health_check(c)
                        .is_some_and(|child| status_of(state, views, child, depth + 1))
                })
                .collect();
            calculated_healthy(hc.health_threshold, &children)
        }
    } else {
        let checkers = views.get(&hc.id).map_or(&[][..], Vec::as_slice);
        endpoint_healthy(checkers.iter().filter(|h| **h).count(), checkers.len())
    };
    apply_flags(measured, hc.inverted, false)
}

/// Health check statuses by id; an id not in it (a check deleted, or never there) is treated
/// like a record without a health check.
pub type Statuses = BTreeMap<String, bool>;

/// The records of `zone` named `name` with type `rtype` (both normalized).
#[must_use]
pub fn group<'z>(zone: &'z Zone, name: &str, rtype: &str) -> Vec<&'z Record> {
    zone.records
        .iter()
        .filter(|r| r.name == name && r.rtype == rtype)
        .collect()
}

/// Whether one record is healthy: "If a record in a group of records that have the same name
/// and type doesn't have an associated health check, Route 53 always considers it healthy";
/// an alias with EvaluateTargetHealth also needs a healthy record at its target (same zone,
/// same type, by these same rules).
#[must_use]
pub fn record_healthy(zone: &Zone, statuses: &Statuses, record: &Record, depth: usize) -> bool {
    let own = record
        .health_check_id
        .as_ref()
        .and_then(|id| statuses.get(id))
        .copied()
        .unwrap_or(true);
    let target = match &record.alias {
        Some(a) if a.evaluate_target_health => {
            depth < MAX_ALIAS_DEPTH
                && group(zone, &a.dns_name, &record.rtype)
                    .iter()
                    .any(|r| record_healthy(zone, statuses, r, depth + 1))
        }
        _ => true,
    };
    own && target
}

/// The records of one (name, type) group that may answer a query now.
///
/// - Simple: every record.
/// - Failover (`ResourceRecordSet.Failover`): "When the primary resource record set is
///   healthy, Route 53 responds to DNS queries with the applicable value from the primary
///   resource record set regardless of the health of the secondary"; "When the primary ... is
///   unhealthy and the secondary ... is healthy, Route 53 responds ... from the secondary";
///   "When the secondary resource record set is unhealthy, Route 53 responds ... from the
///   primary resource record set regardless of the health of the primary".
/// - Weighted: the healthy records of non-zero weight; "If all the records that have a weight
///   greater than 0 are unhealthy, then Route 53 considers the zero-weighted records"; and "If
///   no record is healthy, all records are healthy" (then again non-zero weights first).
///
/// A group mixing policies (Route 53 refuses that) is treated by its first record's policy.
#[must_use]
pub fn eligible<'z>(group: &[&'z Record], healthy: &dyn Fn(&Record) -> bool) -> Vec<&'z Record> {
    let Some(first) = group.first() else {
        return Vec::new();
    };
    match first.routing {
        Routing::Simple => group.to_vec(),
        Routing::Failover { .. } => {
            let role = |want: FailoverRole| {
                group
                    .iter()
                    .copied()
                    .find(|r| matches!(r.routing, Routing::Failover { role } if role == want))
            };
            match (role(FailoverRole::Primary), role(FailoverRole::Secondary)) {
                (Some(p), Some(s)) => {
                    if healthy(p) || !healthy(s) {
                        vec![p]
                    } else {
                        vec![s]
                    }
                }
                (Some(only), None) | (None, Some(only)) => vec![only],
                (None, None) => Vec::new(),
            }
        }
        Routing::Weighted { .. } => {
            let weight = |r: &Record| match r.routing {
                Routing::Weighted { weight } => weight,
                _ => 0,
            };
            let nonzero: Vec<&Record> = group.iter().copied().filter(|r| weight(r) > 0).collect();
            let zero: Vec<&Record> = group.iter().copied().filter(|r| weight(r) == 0).collect();
            let healthy_of = |rs: &[&'z Record]| -> Vec<&'z Record> {
                rs.iter().copied().filter(|r| healthy(r)).collect()
            };
            let h = healthy_of(&nonzero);
            if !h.is_empty() {
                return h;
            }
            let h = healthy_of(&zero);
            if !h.is_empty() {
                return h;
            }
            if nonzero.is_empty() {
                zero
            } else {
                nonzero
            }
        }
    }
}

/// One record of `eligible` picked by weight with `random` in `[0, 1)` (Simple and Failover
/// groups have one eligible record, or answer all of theirs: see [`answer_records`]).
/// Weighted: "weight for a specified record / sum of the weights for all records"; all
/// weights zero: uniform.
#[must_use]
pub fn pick_weighted<'z>(eligible: &[&'z Record], random: f64) -> Option<&'z Record> {
    let weight = |r: &Record| match r.routing {
        Routing::Weighted { weight } => f64::from(weight),
        _ => 0.0,
    };
    let total: f64 = eligible.iter().map(|r| weight(r)).sum();
    let random = random.clamp(0.0, 1.0 - f64::EPSILON);
    if total <= 0.0 {
        let n = eligible.len();
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let i = ((random * n as f64) as usize).min(n.saturating_sub(1));
        return eligible.get(i).copied();
    }
    let mut point = random * total;
    for r in eligible {
        let w = weight(r);
        if point < w {
            return Some(r);
        }
        point -= w;
    }
    eligible.last().copied()
}

/// The records answering a query for (`name`, `rtype`) in `zone`: the eligible set, one of
/// it picked by weight for a weighted group.
#[must_use]
pub fn answer_records<'z>(
    zone: &'z Zone,
    statuses: &Statuses,
    name: &str,
    rtype: &str,
    random: f64,
) -> Vec<&'z Record> {
    let g = group(zone, name, rtype);
    let healthy = |r: &Record| record_healthy(zone, statuses, r, 0);
    let el = eligible(&g, &healthy);
    match el.first().map(|r| r.routing) {
        Some(Routing::Weighted { .. }) => pick_weighted(&el, random).into_iter().collect(),
        _ => el,
    }
}

/// What a query for (`name`, `rtype`) answers: the values and TTL, an alias replaced by its
/// target's answer (same zone, same type). `None`: no record of that name and type.
#[must_use]
pub fn resolve(
    zone: &Zone,
    statuses: &Statuses,
    name: &str,
    rtype: &str,
    random: f64,
) -> Option<(u32, Vec<String>)> {
    resolve_at(zone, statuses, name, rtype, random, 0)
}

fn resolve_at(
    zone: &Zone,
    statuses: &Statuses,
    name: &str,
    rtype: &str,
    random: f64,
    depth: usize,
) -> Option<(u32, Vec<String>)> {
    let records = answer_records(zone, statuses, name, rtype, random);
    if records.is_empty() {
        return None;
    }
    let mut ttl = u32::MAX;
    let mut values = Vec::new();
    for r in records {
        match &r.alias {
            Some(a) => {
                if depth >= MAX_ALIAS_DEPTH {
                    continue;
                }
                if let Some((t, v)) =
                    resolve_at(zone, statuses, &a.dns_name, rtype, random, depth + 1)
                {
                    ttl = ttl.min(t);
                    values.extend(v);
                }
            }
            None => {
                ttl = ttl.min(r.ttl.unwrap_or(300));
                values.extend(r.values.iter().cloned());
            }
        }
    }
    Some((if ttl == u32::MAX { 60 } else { ttl }, values))
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "selection_tests.rs"]
mod selection_tests;
