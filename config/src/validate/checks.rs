//! `[[checks]]`: what the quorum decides on, with each check's hysteresis policy.

use std::collections::HashMap;

use figment::value::Value;
use quorum::{After, CheckId, DecisionPolicy, State};

use super::{elements, probe};
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::CheckConfig;
use crate::parse::{
    duration_ms, duration_or, duration_or_zero, fmt_ms, id_error, or_default, required,
};
use crate::raw::{RawAfter, RawCheck, RawState};

/// The check ids the file declares, read from every `[[checks]]` entry whether or not the rest
/// of the entry is valid: references (gate targets, `lag_check`, `abort_check`) and duplicate
/// ids are judged against these, so a mistake inside one check never hides a mistake in a
/// reference to it, nor a later duplicate of its id.
#[derive(Debug, Default)]
pub(super) struct DeclaredChecks {
    /// Per entry, in file order: its id if it is a valid check id, and its probe kind if it
    /// has exactly one probe table.
    entries: Vec<Option<(CheckId, Option<&'static str>)>>,
}

/// The probe tables a check may have, as their `ProbeSpec::kind` names.
const PROBE_KINDS: [&str; 7] = [
    "http",
    "tcp",
    "dns",
    "postgres",
    "mysql",
    "replication_lag",
    "rds",
];

impl DeclaredChecks {
    pub(super) fn of(raw: Option<&[Value]>) -> Self {
        let entries = raw
            .unwrap_or_default()
            .iter()
            .map(|v| {
                let Value::Dict(_, d) = v else { return None };
                let Some(Value::String(_, id)) = d.get("id") else {
                    return None;
                };
                let id = CheckId::new(id.as_str()).ok()?;
                let mut kinds = PROBE_KINDS.iter().filter(|k| d.contains_key(**k));
                let kind = match (kinds.next(), kinds.next()) {
                    (Some(k), None) => Some(*k),
                    _ => None,
                };
                Some((id, kind))
            })
            .collect();
        Self { entries }
    }

    /// Whether some entry declares `id`.
    pub(super) fn contains(&self, id: &CheckId) -> bool {
        self.ids().any(|c| c == id)
    }

    /// The probe kind of the first entry declaring `id`, when it is clear.
    pub(super) fn kind_of(&self, id: &CheckId) -> Option<&'static str> {
        self.entries
            .iter()
            .flatten()
            .find(|(c, _)| c == id)
            .and_then(|(_, k)| *k)
    }

    /// Every declared id, in file order (duplicates included).
    pub(super) fn ids(&self) -> impl Iterator<Item = &CheckId> {
        self.entries.iter().flatten().map(|(c, _)| c)
    }

    fn id_at(&self, i: usize) -> Option<&CheckId> {
        self.entries.get(i).and_then(|e| e.as_ref()).map(|(c, _)| c)
    }
}

pub(super) fn checks(
    raw: Option<&[Value]>,
    declared: &DeclaredChecks,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Vec<CheckConfig>> {
    let items = match raw {
        Some(items) if !items.is_empty() => items,
        _ => {
            if !report.has_error_at(path) {
                report.error(
                    path,
                    "no [[checks]] configured",
                    "add at least one [[checks]] table",
                );
            }
            return None;
        }
    };
    let mut out = Vec::with_capacity(items.len());
    let mut first_id: HashMap<CheckId, usize> = HashMap::new();
    for (i, raw) in elements::<RawCheck>(items, path, report)
        .into_iter()
        .enumerate()
    {
        let p = path.index(i);
        // A check with other errors still takes its id: a later duplicate is reported too.
        if let Some(id) = declared.id_at(i) {
            if let Some(&j) = first_id.get(id) {
                let problem = format!("duplicate id {:?} (also checks[{j}])", id.as_str());
                report.error(&p.key("id"), problem, "give every check a unique id");
            } else {
                first_id.insert(id.clone(), i);
            }
        }
        let Some(raw) = raw else { continue };
        out.extend(check(&raw, &p, report));
    }
    (out.len() == items.len() && !report.has_error_at(path)).then_some(out)
}

fn check(raw: &RawCheck, p: &FieldPath, report: &mut Report) -> Option<CheckConfig> {
    let id_path = p.key("id");
    let id = required(
        raw.id.as_ref(),
        &id_path,
        report,
        "add id = \"app\" (the check's unique id)",
    )
    .and_then(|t| {
        CheckId::new(t.0.as_str())
            .map_err(|e| id_error(&e, &t.0, &id_path, report))
            .ok()
    });

    let interval = duration_or(
        raw.interval.as_ref(),
        defaults::CHECK_INTERVAL,
        &p.key("interval"),
        report,
    );
    let timeout_path = p.key("timeout");
    let mut timeout = duration_or(
        raw.timeout.as_ref(),
        defaults::CHECK_TIMEOUT,
        &timeout_path,
        report,
    );
    if let (Some(i), Some(t)) = (interval, timeout) {
        if t >= i {
            report.error(
                &timeout_path,
                format!(
                    "must be shorter than interval ({}), is {}",
                    fmt_ms(i),
                    fmt_ms(t)
                ),
                "lower timeout or raise interval: a probe must finish before the next one starts",
            );
            timeout = None;
        }
    }

    let fall = after(
        raw.fall_after.as_ref(),
        defaults::FALL_AFTER_ROUNDS,
        &p.key("fall_after"),
        report,
    );
    let rise = after(
        raw.rise_after.as_ref(),
        defaults::RISE_AFTER_ROUNDS,
        &p.key("rise_after"),
        report,
    );
    // "0s": no hold-down, a transition may follow the previous one at once.
    let hold_down = duration_or_zero(
        raw.hold_down.as_ref(),
        defaults::HOLD_DOWN,
        &p.key("hold_down"),
        report,
    );
    let initial = or_default(
        raw.initial.as_ref(),
        RawState::Healthy,
        &p.key("initial"),
        report,
    )
    .map(|s| match s {
        RawState::Healthy => State::Healthy,
        RawState::Unhealthy => State::Unhealthy,
    });
    let probe = probe::probe(raw.probes(), timeout, "checks", p, report);

    let policy = DecisionPolicy {
        initial: initial?,
        fall_after: fall?,
        rise_after: rise?,
        hold_down_ms: hold_down?,
    };
    Some(CheckConfig {
        id: id?,
        interval_ms: interval?,
        timeout_ms: timeout?,
        policy,
        probe: probe?,
    })
}

/// `fall_after` / `rise_after`: rounds ≥ 1, or a positive duration.
fn after(
    raw: Option<&RawAfter>,
    default_rounds: u32,
    path: &FieldPath,
    report: &mut Report,
) -> Option<After> {
    match or_default(
        raw,
        RawAfter::Rounds(i64::from(default_rounds)),
        path,
        report,
    )? {
        RawAfter::Rounds(n) => match u32::try_from(n) {
            Ok(n) if n >= 1 => Some(After::Rounds(n)),
            _ => {
                report.error(
                    path,
                    format!("must be at least 1 round, is {n}"),
                    "give a number of consecutive rounds (e.g. 3) or a duration (e.g. \"15s\")",
                );
                None
            }
        },
        RawAfter::Duration(s) => duration_ms(&s, path, report).map(After::Millis),
    }
}
