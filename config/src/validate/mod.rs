//! Raw → validated. One module per section; every function reports all it finds into the
//! [`Report`] and returns `None` if anything in its part was wrong.
//!
//! Adding a section: a field in [`RawConfig`], a module here with a
//! `fn(raw, path, report) -> Option<T>`, a field in [`SharedConfig`] (or `LocalConfig`), and
//! its canonical lines in [`crate::digest`].
//!
//! Order matters only where one section refers to another: `[[gates]]` name checks and need
//! the members' `health_url`s; `[[operators]]` must not reuse a member's key. A check reference
//! is judged against the ids the `[[checks]]` entries declare ([`checks::DeclaredChecks`]),
//! valid or not, so every mistake is reported in one run: an error inside a check neither
//! turns off the references to it nor hides a duplicate of its id.

mod checks;
mod cluster;
mod db;
mod gates;
mod local;
mod operators;
mod probe;
mod rds;
mod route53;

use figment::value::Value;
use serde::de::DeserializeOwned;

use crate::errors::{FieldPath, Report};
use crate::lenient;
use crate::model::{LocalConfig, SharedConfig};
use crate::raw::RawConfig;

/// Validates a whole raw configuration. `None` iff at least one error was reported.
pub(crate) fn validate(
    raw: &RawConfig,
    report: &mut Report,
) -> Option<(SharedConfig, LocalConfig)> {
    let root = FieldPath::root();
    let cluster = cluster::cluster(raw.cluster.as_ref(), &root.key("cluster"), report);
    let allow_single =
        cluster::allow_single_member(raw.cluster.as_ref(), &root.key("cluster"), report);
    let members = cluster::members(
        raw.members.as_deref(),
        allow_single,
        &root.key("members"),
        report,
    );
    let declared = checks::DeclaredChecks::of(raw.checks.as_deref());
    let checks = checks::checks(
        raw.checks.as_deref(),
        &declared,
        &root.key("checks"),
        report,
    );
    let gates = gates::gates(
        raw.gates.as_deref(),
        &declared,
        &members,
        &root.key("gates"),
        report,
    );
    let operators = operators::operators(
        raw.operators.as_deref(),
        &members,
        &root.key("operators"),
        report,
    );
    if let (Some(gates), Some(operators)) = (&gates, &operators) {
        operators_for_gates(gates.len(), operators.len(), &root, report);
    }
    let local = local::local(raw.local.as_ref(), &members, &root.key("local"), report);

    if let (Some(cluster), Some(checks)) = (&cluster, &checks) {
        ballot_fits(cluster.max_ballot_bytes, checks.len(), &root, report);
    }
    let shared = SharedConfig {
        cluster: cluster?,
        membership: members.membership?,
        members: members.valid,
        checks: checks?,
        gates: gates?,
        operators: operators?,
    };
    let local = local?;
    (!report.has_errors()).then_some((shared, local))
}

/// Every round's ballot carries one observation per check; the worst-case ballot must fit the
/// size limit, or peers would reject it as `too_large` exactly when details get long.
fn ballot_fits(max_bytes: usize, checks: usize, root: &FieldPath, report: &mut Report) {
    let worst = quorum::codec::max_wire_len(checks);
    if checks > quorum::ballot::MAX_OBSERVATIONS {
        report.error(
            &root.key("checks"),
            format!(
                "{checks} checks; one ballot carries at most {}",
                quorum::ballot::MAX_OBSERVATIONS
            ),
            "split the checks across several clusters",
        );
    } else if worst > max_bytes {
        report.error(
            &root.key("cluster").key("max_ballot_bytes"),
            format!("{max_bytes} bytes is too small for {checks} checks (a ballot may need {worst})"),
            format!("raise max_ballot_bytes to at least {worst} (at most 16777216), or use fewer checks"),
        );
    }
}

/// Without operators nobody can approve a failback or an RPO-gated failover, freeze a gate or
/// override it: valid, but rarely meant.
fn operators_for_gates(gates: usize, operators: usize, root: &FieldPath, report: &mut Report) {
    if gates > 0 && operators == 0 {
        report.warn(
            &root.key("operators"),
            format!("{gates} gate(s) but no [[operators]]: nobody can approve a failback or an RPO-gated failover, freeze a gate or override it"),
            "add an [[operators]] table (id and public key) for each person or pipeline allowed to sign commands",
        );
    }
}

/// The elements of an array of tables, each deserialized on its own so that each gets its own
/// path and one bad element doesn't hide the others. `None` entries failed.
fn elements<T: DeserializeOwned>(
    items: &[Value],
    path: &FieldPath,
    report: &mut Report,
) -> Vec<Option<T>> {
    items
        .iter()
        .enumerate()
        .map(|(i, v)| lenient::deserialize(v, &path.index(i), report))
        .collect()
}
