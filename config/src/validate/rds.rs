//! `[….rds]` → [`RdsProbe`]: one DB instance or DB cluster, watched through the RDS API.

use crate::errors::{FieldPath, Report};
use crate::parse::{base_url, is_region_code};
use crate::probe::{RdsProbe, RdsTarget};
use crate::raw::RawRds;

/// RDS limits DB instance and DB cluster identifiers to 63 characters.
const MAX_ID_LEN: usize = 63;

const ID_RULE: &str =
    "1-63 letters, digits and hyphens, starting with a letter, without a trailing or double hyphen";

pub(super) fn rds(raw: &RawRds, p: &FieldPath, report: &mut Report) -> Option<RdsProbe> {
    let target = target(raw, p, report);
    let region_path = p.key("region");
    let region = match &raw.region {
        None => Some(None),
        Some(r) if is_region_code(r) => Some(Some(r.clone())),
        Some(r) => {
            report.error(
                &region_path,
                format!("{r:?} is not an AWS region code"),
                "write the region the DB lives in, e.g. \"us-east-1\", or remove it to use the standard region chain",
            );
            None
        }
    };
    let endpoint_url = match &raw.endpoint_url {
        None => Some(None),
        Some(u) => base_url(
            u,
            "https://rds.us-east-1.amazonaws.com",
            &p.key("endpoint_url"),
            report,
        )
        .map(Some),
    };
    let require_multi_az = match raw.require_multi_az {
        Some(b) => Some(b),
        None if report.has_error_at(&p.key("require_multi_az")) => None,
        None => Some(false),
    };
    Some(RdsProbe {
        target: target?,
        region: region?,
        endpoint_url: endpoint_url?,
        require_multi_az: require_multi_az?,
    })
}

/// Exactly one of `instance` / `cluster`; `expect_writer` only with `cluster`.
fn target(raw: &RawRds, p: &FieldPath, report: &mut Report) -> Option<RdsTarget> {
    let instance = raw
        .instance
        .as_ref()
        .map(|i| identifier(i, "instance", "app-db", &p.key("instance"), report));
    let cluster = raw
        .cluster
        .as_ref()
        .map(|c| identifier(c, "cluster", "app-aurora", &p.key("cluster"), report));
    let writer = raw.expect_writer.as_ref().map(|w| {
        identifier(
            w,
            "instance",
            "app-aurora-1",
            &p.key("expect_writer"),
            report,
        )
    });
    match (instance, cluster, writer) {
        (Some(_), Some(_), _) => {
            report.error(
                &p.key("cluster"),
                "only one of instance and cluster is allowed",
                "keep instance (a DB instance) or cluster (an Aurora or Multi-AZ DB cluster); use two checks to watch both",
            );
            None
        }
        (Some(_), None, Some(_)) => {
            report.error(
                &p.key("expect_writer"),
                "is only used with cluster (a DB instance has no writer to choose)",
                "remove it, or probe the DB cluster: cluster = \"…\"",
            );
            None
        }
        (Some(i), None, None) => i.map(RdsTarget::Instance),
        (None, Some(c), w) => Some(RdsTarget::Cluster {
            id: c?,
            expect_writer: match w {
                None => None,
                Some(valid) => Some(valid?),
            },
        }),
        (None, None, _) => {
            if !report.has_error_at(&p.key("instance")) && !report.has_error_at(&p.key("cluster")) {
                report.error(
                    p,
                    "names no DB instance or cluster",
                    "add instance = \"app-db\" (a DB instance) or cluster = \"app-aurora\" (an Aurora or Multi-AZ DB cluster)",
                );
            }
            None
        }
    }
}

/// An RDS identifier, lower-cased (RDS stores and compares them so).
fn identifier(
    raw: &str,
    what: &str,
    example: &str,
    p: &FieldPath,
    report: &mut Report,
) -> Option<String> {
    if is_rds_identifier(raw) {
        Some(raw.to_ascii_lowercase())
    } else {
        report.error(
            p,
            format!("{raw:?} is not a DB {what} identifier"),
            format!("write the identifier ({ID_RULE}), e.g. \"{example}\", not an ARN or endpoint"),
        );
        None
    }
}

fn is_rds_identifier(s: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.ends_with('-')
        && !s.contains("--")
}

#[cfg(test)]
mod tests {
    use super::is_rds_identifier;

    #[test]
    fn identifiers_follow_the_rds_rules() {
        for ok in ["a", "app-db", "App-DB-1", &"a".repeat(63)] {
            assert!(is_rds_identifier(ok), "{ok}");
        }
        for bad in [
            "",
            "1db",
            "-db",
            "db-",
            "app--db",
            "app_db",
            "app.db",
            "arn:aws:rds:us-east-1:123456789012:db:app-db",
            &"a".repeat(64),
        ] {
            assert!(!is_rds_identifier(bad), "{bad}");
        }
    }
}
