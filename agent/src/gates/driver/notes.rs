//! Logs and metrics for what a gate machine notes.

use quorum::gate::machine::{Note, Outcome, Promoted};
use quorum::GateId;

use crate::telemetry as t;

pub(super) fn log(gate: &GateId, note: &Note) {
    let g = gate.to_string();
    match note {
        Note::Evaluation {
            code,
            previous,
            hold,
            alert,
            detail,
        } => {
            metrics::gauge!(t::GATE_HOLD, "gate" => g.clone(), "reason" => *previous).set(0.0);
            if *hold {
                metrics::gauge!(t::GATE_HOLD, "gate" => g.clone(), "reason" => *code).set(1.0);
                if *alert {
                    tracing::error!(gate = g, reason = code, "gate cannot act: {detail}");
                } else if *code != "no_change" {
                    tracing::info!(gate = g, reason = code, "gate holds: {detail}");
                }
            }
        }
        Note::Resynced { was, now, epoch } => {
            tracing::warn!(gate = g, %was, %now, epoch, "gate state re-read from Route 53");
        }
        Note::RecordsMissing => {
            tracing::info!(gate = g, "gate records not in Route 53 yet; the first change creates them (see `quorumgate provision`)");
        }
        Note::RecordsForeign => {
            tracing::warn!(gate = g, "gate records are in no state this gate produces (edited by hand?); keeping the state it had");
        }
        Note::Failed {
            what,
            failures,
            retry_in_ms,
            error,
        } => {
            tracing::warn!(
                gate = g,
                failures,
                retry_in_ms,
                kind = error.label,
                "route53 {what} failed, will retry: {error}"
            );
        }
        Note::Serving { from, to } => {
            tracing::info!(gate = g, %from, %to, "data-plane gate: Route 53 serves another target by the quorum's decisions");
        }
        Note::Decided { change, epoch } => {
            tracing::warn!(
                gate = g, mode = change.mode.as_str(), from = %change.from, to = %change.to,
                reason = change.reason.code(), epoch,
                certificates = %change.certificates.iter().map(|c| c.digest_hex()).collect::<Vec<_>>().join(","),
                "gate change decided"
            );
        }
        Note::WriteEnded { to, outcome } => {
            let (mode, label) = match outcome {
                Outcome::DryRun => ("dry-run", "dry_run"),
                other => ("live", other.label()),
            };
            metrics::counter!(t::GATE_CHANGES, "gate" => g.clone(), "mode" => mode, "result" => label)
                .increment(1);
            match outcome {
                Outcome::Won { epoch } => {
                    tracing::warn!(gate = g, %to, epoch, "our batch landed although its answer was lost (the fence names us)")
                }
                Outcome::Failed(e) => {
                    tracing::warn!(gate = g, %to, kind = e.label, "write failed: {e}")
                }
                other => tracing::info!(gate = g, %to, result = other.label(), "write ended"),
            }
        }
        Note::PromoteEnded { epoch, result } => {
            let label = match result {
                Ok(Promoted::Started) => "started",
                Ok(Promoted::AlreadyDone(_)) => "already_done",
                Err(_) => "error",
            };
            metrics::counter!(t::GATE_PROMOTIONS, "gate" => g.clone(), "result" => label)
                .increment(1);
            match result {
                Err(e) => tracing::error!(gate = g, epoch, "database promotion failed: {e}"),
                Ok(Promoted::AlreadyDone(why)) => {
                    tracing::warn!(gate = g, epoch, "database promotion: already done: {why}")
                }
                Ok(Promoted::Started) => {
                    tracing::warn!(gate = g, epoch, "database promotion started")
                }
            }
        }
        Note::DrillNoPromotion { epoch } => {
            tracing::warn!(gate = g, epoch, "drill: the database is not promoted");
        }
        Note::NotPersisted { what, error } => {
            tracing::error!(
                gate = g,
                what,
                "{what} not persisted; not acting on it: {error}"
            );
        }
        Note::Inconsistent(why) => tracing::error!(gate = g, "gate state: {why}"),
    }
}
