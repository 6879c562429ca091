//! Raw → validated. One module per section; every function reports all it finds into the
//! [`Report`] and returns `None` if anything in its part was wrong.
//!
//! Adding a section (e.g. `[[gates]]`): a field in [`RawConfig`], a module here with a
//! `fn(raw, path, report) -> Option<T>`, a field in [`SharedConfig`] (or `LocalConfig`), and
//! its canonical lines in [`crate::digest`].

mod checks;
mod cluster;
mod db;
mod local;
mod probe;

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
    let checks = checks::checks(raw.checks.as_deref(), &root.key("checks"), report);
    let local = local::local(raw.local.as_ref(), &members, &root.key("local"), report);

    if let (Some(cluster), Some(checks)) = (&cluster, &checks) {
        ballot_fits(cluster.max_ballot_bytes, checks.len(), &root, report);
    }
    let shared = SharedConfig {
        cluster: cluster?,
        membership: members.membership?,
        members: members.valid,
        checks: checks?,
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
