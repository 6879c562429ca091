//! `[[checks]]`: what the quorum decides on, with each check's hysteresis policy.

use std::collections::HashMap;

use figment::value::Value;
use quorum::{After, CheckId, DecisionPolicy, State};

use super::{elements, probe};
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::CheckConfig;
use crate::parse::{duration_ms, duration_or, fmt_ms, id_error, or_default, required};
use crate::raw::{RawAfter, RawCheck, RawState};

pub(super) fn checks(
    raw: Option<&[Value]>,
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
        let Some(raw) = raw else { continue };
        let p = path.index(i);
        let check = check(&raw, &p, report);
        if let Some(c) = &check {
            if let Some(&j) = first_id.get(&c.id) {
                let problem = format!("duplicate id {:?} (also checks[{j}])", c.id.as_str());
                report.error(&p.key("id"), problem, "give every check a unique id");
            } else {
                first_id.insert(c.id.clone(), i);
            }
        }
        out.extend(check);
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
    let hold_down = duration_or(
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
