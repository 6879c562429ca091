//! `[cluster]` and `[[members]]`: protocol timing, the member list and the quorum group.

use std::collections::HashMap;

use figment::value::Value;
use quorum::{AgentId, Member, Membership, MembershipError, VerifyingKey};
use url::Url;

use super::elements;
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::{ClusterSettings, MemberConfig};
use crate::parse::{
    base_url, duration_or, fmt_ms, http_url, id_error, non_empty, or_default, public_key,
    ranged_or_default, required,
};
use crate::raw::{RawCluster, RawMember};

/// Fewest members for a fault-tolerant quorum (Q = 2 of 3 survives one loss).
const MIN_MEMBERS: usize = 3;

/// `peer_timeout` when unset: 1 s, or half of a `round_interval` of 1 s or less (a push must
/// end before the next round). A setting valid under the plain 1 s default keeps that value,
/// so the digest of an existing config does not change.
fn default_peer_timeout(round: Option<u64>) -> String {
    match round {
        Some(r) if r <= 1000 => fmt_ms((r / 2).max(1)),
        _ => defaults::PEER_TIMEOUT.to_owned(),
    }
}

/// `ballot_valid_for` when unset: 15 s, or 3 rounds when 15 s is not longer than a round.
fn default_ballot_valid_for(round: Option<u64>) -> String {
    match round {
        Some(r) if r >= 15_000 => fmt_ms(3 * r),
        _ => defaults::BALLOT_VALID_FOR.to_owned(),
    }
}

pub(super) fn cluster(
    raw: Option<&RawCluster>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<ClusterSettings> {
    let empty = RawCluster::default();
    let raw = match raw {
        Some(r) => r,
        None if report.has_error_at(path) => return None,
        None => &empty,
    };
    let name_path = path.key("name");
    let name = required(
        raw.name.as_ref(),
        &name_path,
        report,
        "add name = \"app-prod\" to [cluster]; it names the deployment",
    )
    .and_then(|t| {
        non_empty(
            &t.0,
            &name_path,
            report,
            "give the deployment a name, e.g. \"app-prod\"",
        )
    });

    let round_path = path.key("round_interval");
    let round = duration_or(
        raw.round_interval.as_ref(),
        defaults::ROUND_INTERVAL,
        &round_path,
        report,
    );
    let valid_path = path.key("ballot_valid_for");
    let valid_for = duration_or(
        raw.ballot_valid_for.as_ref(),
        &default_ballot_valid_for(round),
        &valid_path,
        report,
    );
    let skew = duration_or(
        raw.max_clock_skew.as_ref(),
        defaults::MAX_CLOCK_SKEW,
        &path.key("max_clock_skew"),
        report,
    );
    let peer_path = path.key("peer_timeout");
    let peer_default = default_peer_timeout(round);
    let peer_timeout = duration_or(raw.peer_timeout.as_ref(), &peer_default, &peer_path, report);

    let bytes_path = path.key("max_ballot_bytes");
    let max_bytes = ranged_or_default(
        raw.max_ballot_bytes.as_ref(),
        defaults::MAX_BALLOT_BYTES,
        (1, defaults::MAX_BALLOT_BYTES_LIMIT),
        &bytes_path,
        report,
        "use a size in bytes, e.g. 4194304 (4 MiB)",
    )
    .and_then(|n| usize::try_from(n).ok());

    let valid_for = valid_for.and_then(|v| match u32::try_from(v) {
        Ok(v) => Some(v),
        Err(_) => {
            report.error(
                &valid_path,
                format!("{} is too long", fmt_ms(v)),
                "use at most \"49days\" (it should be a few rounds)",
            );
            None
        }
    });
    if let (Some(r), Some(v)) = (round, valid_for) {
        let v = u64::from(v);
        if v <= r {
            report.error(
                &valid_path,
                format!(
                    "must be longer than round_interval ({}), is {}",
                    fmt_ms(r),
                    fmt_ms(v)
                ),
                format!("set it to 2-3 x round_interval, e.g. \"{}\"", fmt_ms(3 * r)),
            );
        } else if v < 2 * r {
            report.warn(
                &valid_path,
                format!("is less than 2 x round_interval ({}): one late ballot makes this agent's vote lapse", fmt_ms(r)),
                format!("set it to 2-3 x round_interval, e.g. \"{}\"", fmt_ms(3 * r)),
            );
        }
    }
    let operator_path = path.key("operator_max_valid_for");
    let operator_max_valid_for = duration_or(
        raw.operator_max_valid_for.as_ref(),
        defaults::OPERATOR_MAX_VALID_FOR,
        &operator_path,
        report,
    )
    .and_then(|v| {
        let limit = defaults::OPERATOR_MAX_VALID_FOR_LIMIT_MS;
        if v <= limit {
            return Some(v);
        }
        report.error(
            &operator_path,
            format!("must be at most {}, is {}", fmt_ms(limit), fmt_ms(v)),
            "use at most \"24h\": an approval or override should not outlive the incident it is for",
        );
        None
    });
    if let (Some(r), Some(p)) = (round, peer_timeout) {
        if p >= r {
            report.error(
                &peer_path,
                format!(
                    "must be shorter than round_interval ({}), is {}",
                    fmt_ms(r),
                    fmt_ms(p)
                ),
                format!("lower peer_timeout (e.g. \"{peer_default}\") or raise round_interval; unset, it follows round_interval"),
            );
        }
    }

    Some(ClusterSettings {
        name: name?,
        round_interval_ms: round?,
        ballot_valid_for_ms: valid_for.filter(|v| round.is_some_and(|r| u64::from(*v) > r))?,
        max_clock_skew_ms: skew?,
        max_ballot_bytes: max_bytes?,
        peer_timeout_ms: peer_timeout.filter(|p| round.is_some_and(|r| *p < r))?,
        allow_single_member: raw.allow_single_member.unwrap_or(false),
        operator_max_valid_for_ms: operator_max_valid_for?,
    })
}

/// `cluster.allow_single_member`; `None` when it was set to something invalid.
pub(super) fn allow_single_member(
    raw: Option<&RawCluster>,
    path: &FieldPath,
    report: &Report,
) -> Option<bool> {
    let raw = raw.and_then(|c| c.allow_single_member.as_ref());
    or_default(raw, false, &path.key("allow_single_member"), report)
}

/// The outcome of `[[members]]`.
#[derive(Debug, Default)]
pub(super) struct Members {
    /// The members that validated, in file order.
    pub valid: Vec<MemberConfig>,
    /// Every id that parsed, even of otherwise broken members (for `local.agent_id`).
    pub ids: Vec<AgentId>,
    /// Every member's id parsed: `ids` is the whole list.
    pub ids_complete: bool,
    /// How many `[[members]]` tables there are (valid or not).
    pub count: usize,
    /// Every public key that parsed, with its member's index (for `[[operators]]`).
    pub keys: Vec<(usize, VerifyingKey)>,
    /// Members that set no `health_url` (and did not set a bad one): index and id if it parsed.
    pub without_health_url: Vec<(usize, Option<AgentId>)>,
    /// `Some` iff every member validated and they form a quorum group.
    pub membership: Option<Membership>,
}

pub(super) fn members(
    raw: Option<&[Value]>,
    allow_single: Option<bool>,
    path: &FieldPath,
    report: &mut Report,
) -> Members {
    let mut out = Members::default();
    let Some(items) = raw else {
        if !report.has_error_at(path) {
            report.error(
                path,
                "no [[members]] configured",
                "add one [[members]] table per agent (3 or 5 is typical)",
            );
        }
        return out;
    };
    let mut first_id: HashMap<AgentId, usize> = HashMap::new();
    let mut first_key: HashMap<[u8; 32], usize> = HashMap::new();
    let mut first_url: HashMap<String, usize> = HashMap::new();
    let mut first_health_url: HashMap<String, usize> = HashMap::new();
    for (i, raw) in elements::<RawMember>(items, path, report)
        .into_iter()
        .enumerate()
    {
        let Some(raw) = raw else { continue };
        let p = path.index(i);
        let parts = member(&raw, &p, report);
        if let Some(id) = &parts.id {
            out.ids.push(id.clone());
            if let Some(&j) = first_id.get(id) {
                let problem = format!("duplicate id {:?} (also members[{j}])", id.as_str());
                report.error(&p.key("id"), problem, "give every member a unique id");
            } else {
                first_id.insert(id.clone(), i);
            }
        }
        if let Some(key) = &parts.public_key {
            out.keys.push((i, *key));
            if let Some(&j) = first_key.get(key.as_bytes()) {
                report.error(
                    &p.key("public_key"),
                    format!("same public key as members[{j}]"),
                    "every agent needs its own key pair: run `quorumgate keygen` on each host",
                );
            } else {
                first_key.insert(*key.as_bytes(), i);
            }
        }
        if let Some(url) = &parts.url {
            if let Some(&j) = first_url.get(url.as_str()) {
                report.error(
                    &p.key("url"),
                    format!("same URL as members[{j}]"),
                    "give each member the URL of its own agent",
                );
            } else {
                first_url.insert(url.to_string(), i);
            }
        }
        match &parts.health_url {
            Some(Some(url)) => {
                if let Some(&j) = first_health_url.get(url.as_str()) {
                    report.error(
                        &p.key("health_url"),
                        format!("same health URL as members[{j}]"),
                        "give each member the public URL of its own agent: Route 53 must check every agent, not one twice",
                    );
                } else {
                    first_health_url.insert(url.to_string(), i);
                }
            }
            Some(None) => out.without_health_url.push((i, parts.id.clone())),
            None => {}
        }
        if let (Some(id), Some(region), Some(url), Some(public_key), Some(health_url)) = (
            parts.id,
            parts.region,
            parts.url,
            parts.public_key,
            parts.health_url,
        ) {
            out.valid.push(MemberConfig {
                id,
                region,
                url,
                public_key,
                health_url,
            });
        }
    }

    let n = items.len();
    out.count = n;
    out.ids_complete = out.ids.len() == n;
    if n < MIN_MEMBERS && allow_single == Some(false) {
        report.error(
            path,
            format!("{n} member(s) configured; a quorum that survives the loss of one agent needs at least {MIN_MEMBERS}"),
            "add members (3 or 5 is typical), or set cluster.allow_single_member = true for a dev setup",
        );
    }
    if !report.has_error_at(path) && out.valid.len() == n {
        let list = out.valid.iter().map(|m| Member {
            id: m.id.clone(),
            region: m.region.clone(),
            key: m.public_key,
        });
        match Membership::new(list.collect()) {
            Ok(m) => out.membership = Some(m),
            Err(e) => membership_error(&e, &out.valid, path, report),
        }
    }
    out
}

/// One member's fields, each `None` if it was wrong.
struct MemberParts {
    id: Option<AgentId>,
    region: Option<String>,
    url: Option<Url>,
    public_key: Option<VerifyingKey>,
    /// `Some(None)`: not set.
    health_url: Option<Option<Url>>,
}

fn member(raw: &RawMember, p: &FieldPath, report: &mut Report) -> MemberParts {
    let id_path = p.key("id");
    let id = required(
        raw.id.as_ref(),
        &id_path,
        report,
        "add id = \"use1\" (the agent's unique id)",
    )
    .and_then(|t| {
        AgentId::new(t.0.as_str())
            .map_err(|e| id_error(&e, &t.0, &id_path, report))
            .ok()
    });
    let region_path = p.key("region");
    let region = required(
        raw.region.as_ref(),
        &region_path,
        report,
        "add region = \"us-east-1\"",
    )
    .and_then(|r| {
        non_empty(
            r,
            &region_path,
            report,
            "write the agent's region, e.g. \"us-east-1\"",
        )
    });
    let url_path = p.key("url");
    let url = required(
        raw.url.as_ref(),
        &url_path,
        report,
        "add url = \"https://use1.internal:9443\" (the agent's peer address)",
    )
    .and_then(|u| http_url(u, true, &url_path, report));
    let key_path = p.key("public_key");
    let key = required(
        raw.public_key.as_ref(),
        &key_path,
        report,
        "add public_key = \"…\" as printed by `quorumgate keygen`",
    )
    .and_then(|k| public_key(k, "agent", &key_path, report));
    let health_path = p.key("health_url");
    let health_url = match &raw.health_url {
        None if report.has_error_at(&health_path) => None,
        None => Some(None),
        Some(u) => base_url(u, "https://use1.example.com:8443", &health_path, report)
            .map(|u| public_health_url(u, &health_path, report))
            .map(Some),
    };
    MemberParts {
        id,
        region,
        url,
        public_key: key,
        health_url,
    }
}

/// Route 53's health checkers are on the public internet: an address they cannot reach is
/// almost certainly a mistake (but a test setup may want it), so warn.
fn public_health_url(url: Url, path: &FieldPath, report: &mut Report) -> Url {
    let unreachable = match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            ip.is_private() || ip.is_loopback() || ip.is_link_local() || ip.is_unspecified()
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback() || ip.is_unspecified() || (ip.segments()[0] & 0xfe00) == 0xfc00
        }
        _ => false,
    };
    if unreachable {
        report.warn(
            path,
            format!("{url} is not a public address; Route 53's health checkers cannot reach it"),
            "use the public name or address of this agent's health listener",
        );
    }
    url
}

/// Maps the quorum crate's verdict on the list to the field that causes it. Only reachable for
/// rules not already checked above (kept so a new rule there is never silently dropped).
fn membership_error(
    e: &MembershipError,
    members: &[MemberConfig],
    path: &FieldPath,
    report: &mut Report,
) {
    let index_of = |id: &AgentId| members.iter().rposition(|m| &m.id == id);
    let (at, fix) = match e {
        MembershipError::DuplicateId(id) => (
            index_of(id).map(|i| path.index(i).key("id")),
            "give every member a unique id",
        ),
        MembershipError::DuplicateKey(_, id) => (
            index_of(id).map(|i| path.index(i).key("public_key")),
            "every agent needs its own key pair",
        ),
        MembershipError::Empty => (
            None,
            "add one [[members]] table per agent (3 or 5 is typical)",
        ),
        MembershipError::TooMany(_) => (None, "configure at most 255 members"),
    };
    report.error(&at.unwrap_or_else(|| path.clone()), e.to_string(), fix);
}
