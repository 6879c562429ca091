//! `[gates.drill]`: what guards a control-plane failover gate's game-day drills
//! (`quorumgate drill`) and the objectives a drill is judged against.

use quorum::gate::{GateKind, GateSpec};

use super::targets::check_ref;
use crate::errors::{FieldPath, Report};
use crate::model::{DrillConfig, Plane};
use crate::parse::duration_ms;
use crate::raw::{RawDrill, RawGateKind};
use crate::validate::checks::DeclaredChecks;

/// `Some(default)` when absent; `None`: an error was reported. `spec` is the gate once it
/// validated (the rules about its targets need it).
pub(super) fn drill(
    raw: Option<&RawDrill>,
    plane: Option<Plane>,
    kind: Option<RawGateKind>,
    spec: Option<&GateSpec>,
    checks: &DeclaredChecks,
    p: &FieldPath,
    report: &mut Report,
) -> Option<DrillConfig> {
    let Some(raw) = raw else {
        return (!report.has_error_at(p)).then(DrillConfig::default);
    };
    let mut ok = true;
    if plane == Some(Plane::Data) {
        report.error(
            p,
            "a data-plane gate never acts at run time, so there is no failover to drill",
            "use plane = \"control\", or remove [gates.drill]",
        );
        ok = false;
    }
    if kind == Some(RawGateKind::Weighted) {
        report.error(
            p,
            "a drill practises a failover and its failback: failover gates only",
            "remove [gates.drill] from the weighted gate",
        );
        ok = false;
    }
    let pair = spec.and_then(|s| match s.kind() {
        GateKind::Failover { primary, secondary } => Some((primary, secondary)),
        GateKind::Weighted { .. } => None,
    });
    let abort_path = p.key("abort_check");
    let abort_check = match &raw.abort_check {
        None => Some(None),
        Some(t) => match check_ref(t, checks, &abort_path, report) {
            Some(c) if pair.is_some_and(|(primary, _)| primary.check == c) => {
                report.error(
                    &abort_path,
                    format!(
                        "{:?} is the primary's own check: the drill makes it Unhealthy, so the drill would abort at once",
                        c.as_str()
                    ),
                    "name a check that shows the drill hurts (the standby's database, an end-to-end check), or remove abort_check; the secondary's own check always aborts a drill",
                );
                None
            }
            Some(c) => Some(Some(c)),
            None => None,
        },
    };
    let rto = match &raw.rto {
        None => Some(None),
        Some(d) => duration_ms(&d.0, &p.key("rto"), report).map(Some),
    };
    let rpo_path = p.key("rpo");
    let rpo = match &raw.rpo {
        None => Some(None),
        Some(d) => {
            let ms = duration_ms(&d.0, &rpo_path, report);
            if pair.is_some_and(|(_, secondary)| secondary.lag_check.is_none()) {
                report.error(
                    &rpo_path,
                    "an RPO objective needs the standby's measured replication lag, and the secondary target has no lag_check",
                    "add lag_check (and the gate's max_rpo) to the secondary target, or remove rpo",
                );
                None
            } else {
                ms.map(Some)
            }
        }
    };
    let config = DrillConfig {
        abort_check: abort_check?,
        rto_ms: rto?,
        rpo_ms: rpo?,
    };
    ok.then_some(config)
}
