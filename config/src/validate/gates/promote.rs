//! `[gates.promote]`: the database action of a control-plane failover (off when absent).

use crate::errors::{FieldPath, Report};
use crate::model::{Plane, PromoteAction, PromoteConfig};
use crate::parse::{base_url, is_region_code};
use crate::raw::{RawGateKind, RawPromote};

/// `Some(None)`: no promotion configured; `None`: an error was reported.
pub(super) fn promote(
    raw: Option<&RawPromote>,
    plane: Option<Plane>,
    kind: Option<RawGateKind>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<Option<PromoteConfig>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    let mut ok = true;
    if plane == Some(Plane::Data) {
        report.error(
            p,
            "a data-plane gate never acts at run time, so it cannot promote a database",
            "use plane = \"control\", or remove [gates.promote]",
        );
        ok = false;
    }
    if kind == Some(RawGateKind::Weighted) {
        report.error(
            p,
            "only a failover gate has a standby to promote",
            "remove [gates.promote] from the weighted gate",
        );
        ok = false;
    }
    let ident = |field: &str, value: &str, report: &mut Report| -> Option<String> {
        if is_db_identifier(value) {
            Some(value.to_ascii_lowercase())
        } else {
            report.error(
                &p.key(field),
                format!("{value:?} is not an RDS identifier"),
                "use 1-63 letters, digits or hyphens, starting with a letter, e.g. \"app-db-replica\"",
            );
            None
        }
    };
    let action = match (&raw.rds_read_replica, &raw.aurora_cluster) {
        (Some(instance), None) => {
            if raw.target_instance.is_some() {
                report.error(
                    &p.key("target_instance"),
                    "applies to aurora_cluster only",
                    "remove target_instance (PromoteReadReplica promotes rds_read_replica itself)",
                );
                ok = false;
            }
            ident("rds_read_replica", instance, report)
                .map(|instance| PromoteAction::RdsReadReplica { instance })
        }
        (None, Some(cluster)) => {
            let cluster = ident("aurora_cluster", cluster, report);
            let target = match &raw.target_instance {
                Some(t) => ident("target_instance", t, report).map(Some),
                None => Some(None),
            };
            match (cluster, target) {
                (Some(cluster), Some(target_instance)) => Some(PromoteAction::AuroraFailover {
                    cluster,
                    target_instance,
                }),
                _ => None,
            }
        }
        _ => {
            report.error(
                p,
                "needs exactly one of rds_read_replica and aurora_cluster",
                "set rds_read_replica = \"<replica instance>\" (PromoteReadReplica) or aurora_cluster = \"<cluster>\" (FailoverDBCluster)",
            );
            None
        }
    };
    let region = match &raw.region {
        Some(r) if is_region_code(r) => Some(Some(r.clone())),
        Some(r) => {
            report.error(
                &p.key("region"),
                format!("{r:?} is not an AWS region code"),
                "use a region code like \"us-east-1\", or remove region for the standard chain",
            );
            None
        }
        None => Some(None),
    };
    let endpoint_url = match &raw.endpoint_url {
        Some(u) => base_url(
            u,
            "https://rds.us-east-1.amazonaws.com",
            &p.key("endpoint_url"),
            report,
        )
        .map(Some),
        None => Some(None),
    };
    let config = PromoteConfig {
        action: action?,
        region: region?,
        endpoint_url: endpoint_url?,
    };
    ok.then_some(Some(config))
}

/// RDS DB instance and cluster identifiers: 1–63 letters, digits or hyphens, a letter first,
/// no trailing hyphen, no two hyphens in a row.
fn is_db_identifier(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !s.ends_with('-')
        && !s.contains("--")
}
