//! The descriptor budget: how many connections each HTTP listener may hold, derived from the
//! process's descriptor limit (`RLIMIT_NOFILE`) so that a connection flood can never take the
//! descriptors the agent needs to do its job.
//!
//! Why: with a fixed listener cap above what the limit allows (the old 1,024 per listener
//! against systemd's default soft limit of 1,024), a flood of idle connections exhausted the
//! descriptors, the agent's own probes failed with "Too many open files" and turned into
//! Unhealthy votes. Now the probes, the peer exchange and a fixed base are reserved first and
//! the listeners share only what is left.
//!
//! At start the soft limit is raised to the hard limit where allowed (a service manager that
//! forbids it leaves it as it is: the budget is computed from whatever soft limit results).

use config::Config;

/// Descriptors every agent holds regardless of its config: stdio, the audit log, the runtime's
/// epoll/eventfd/signal pipes, the listeners, resolver sockets, files read during TLS set-up,
/// and the accepted sockets in flight between `accept` and admission.
pub const BASE_RESERVE: u64 = 64;
/// Per listener: connections shed but not yet closed by their tasks (each still holds its
/// descriptor); the accept loop waits rather than exceed it.
pub const CLOSING_PER_LISTENER: u64 = 32;
/// Per peer: one ballot push in flight, one pull, and room for a connection being closed while
/// the next opens.
pub const PER_PEER: u64 = 4;
/// The most connections one listener may hold however high the limit: every connection costs
/// a task and buffers (around 10 KiB idle), and no legitimate use of a health agent needs more.
pub const MAX_LISTENER_CONNECTIONS: usize = 8_192;
/// Below this many slots per listener the budget is starved (warned at start).
pub const MIN_SANE_CONNECTIONS: usize = 64;
/// A starved listener still gets this many slots, taken from the reserve's slack: the agent
/// starts and answers a few health checks rather than refusing to start.
pub const STARVED_CONNECTIONS: usize = 16;

/// What the agent needs descriptors for, besides its listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Needs {
    /// `local.probe_concurrency`: probes in flight, one socket each.
    pub probe_concurrency: usize,
    /// Database probes: each keeps one dedicated connection open between runs.
    pub db_probes: usize,
    /// Control probes (they share the scheduler's concurrency, but are counted on their own so
    /// abstention keeps working when every check probe is in flight).
    pub control_probes: usize,
    /// Other members.
    pub peers: usize,
    /// Whether the public health listener (`local.health_listen`) is configured.
    pub health_listener: bool,
}

impl Needs {
    /// What `cfg` needs.
    #[must_use]
    pub fn of(cfg: &Config) -> Self {
        use config::probe::ProbeSpec;
        let db_probes = cfg
            .shared
            .checks
            .iter()
            .filter(|c| {
                matches!(
                    c.probe,
                    ProbeSpec::Postgres(_) | ProbeSpec::Mysql(_) | ProbeSpec::ReplicationLag(_)
                )
            })
            .count();
        Self {
            probe_concurrency: cfg.local.probe_concurrency,
            db_probes,
            control_probes: cfg.local.control.len(),
            peers: cfg.shared.members.len().saturating_sub(1),
            health_listener: cfg.local.health_listener.is_some(),
        }
    }
}

/// The connection caps derived from a descriptor limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// The soft `RLIMIT_NOFILE` the budget is computed from.
    pub limit: u64,
    /// Descriptors kept for everything but the listeners.
    pub reserve: u64,
    /// Most connections of the full listener (`local.listen`).
    pub full: usize,
    /// Most connections of the public health listener, when configured.
    pub health: Option<usize>,
    /// The limit leaves less than [`MIN_SANE_CONNECTIONS`] per listener: the caps are
    /// [`STARVED_CONNECTIONS`] and may eat into the reserve.
    pub starved: bool,
}

/// Splits `limit` descriptors: the reserve first, then what is left shared equally between the
/// listeners, each capped at [`MAX_LISTENER_CONNECTIONS`]. Pure, so the arithmetic is tested.
///
/// The equal split: with a health listener the public traffic (and any flood) goes there,
/// while the full listener serves the peers and the operator; neither may starve the other.
#[must_use]
pub fn budget(limit: u64, needs: &Needs) -> Budget {
    let listeners: u64 = if needs.health_listener { 2 } else { 1 };
    let reserve = BASE_RESERVE
        + CLOSING_PER_LISTENER * listeners
        + to_u64(needs.probe_concurrency)
        + to_u64(needs.db_probes)
        + to_u64(needs.control_probes)
        + PER_PEER * to_u64(needs.peers);
    let share = limit.saturating_sub(reserve) / listeners;
    let share = usize::try_from(share).unwrap_or(usize::MAX);
    let (cap, starved) = if share < MIN_SANE_CONNECTIONS {
        (STARVED_CONNECTIONS, true)
    } else {
        (share.min(MAX_LISTENER_CONNECTIONS), false)
    };
    Budget {
        limit,
        reserve,
        full: cap,
        health: needs.health_listener.then_some(cap),
        starved,
    }
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The descriptor limit after [`raise_nofile`].
#[derive(Debug)]
pub struct NofileLimit {
    /// The soft limit in force (`u64::MAX` when unlimited).
    pub soft: u64,
    /// The hard limit (`u64::MAX` when unlimited).
    pub hard: u64,
    /// The soft limit before, when it was raised.
    pub raised_from: Option<u64>,
    /// Why raising failed, when it was tried and refused.
    pub raise_error: Option<std::io::Error>,
}

/// Linux's default `fs.nr_open`: a soft limit above it is refused, so an unlimited hard limit
/// is approached only this far.
const NR_OPEN_DEFAULT: u64 = 1 << 20;

/// Reads `RLIMIT_NOFILE` and raises the soft limit to the hard limit (at most
/// [`NR_OPEN_DEFAULT`]) when it is lower. A refusal (a seccomp filter, a container) is
/// reported, not fatal: the budget then uses the soft limit as it is.
#[must_use]
pub fn raise_nofile() -> NofileLimit {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    let hard = now.maximum.unwrap_or(u64::MAX);
    let target = hard.min(NR_OPEN_DEFAULT.max(soft));
    if soft >= target {
        return NofileLimit {
            soft,
            hard,
            raised_from: None,
            raise_error: None,
        };
    }
    let new = Rlimit {
        current: Some(target),
        maximum: now.maximum,
    };
    match setrlimit(Resource::Nofile, new) {
        Ok(()) => NofileLimit {
            soft: target,
            hard,
            raised_from: Some(soft),
            raise_error: None,
        },
        Err(e) => NofileLimit {
            soft,
            hard,
            raised_from: None,
            raise_error: Some(e.into()),
        },
    }
}

/// Raises the limit, computes the budget for `cfg` and logs it (one info line; a warning when
/// raising was refused or the budget is starved).
#[must_use]
pub fn budget_for(cfg: &Config) -> Budget {
    let nofile = raise_nofile();
    if let Some(e) = &nofile.raise_error {
        tracing::warn!(soft = nofile.soft, hard = nofile.hard, error = %e, "could not raise the descriptor limit (RLIMIT_NOFILE) to its hard limit");
    }
    let b = budget(nofile.soft, &Needs::of(cfg));
    tracing::info!(
        nofile_soft = b.limit,
        nofile_hard = nofile.hard,
        raised_from = nofile.raised_from,
        reserve = b.reserve,
        full_listener_connections = b.full,
        health_listener_connections = b.health,
        "descriptor budget"
    );
    if b.starved {
        tracing::warn!(
            nofile_soft = b.limit,
            reserve = b.reserve,
            connections = STARVED_CONNECTIONS,
            "the descriptor limit leaves almost nothing for the listeners after the probes' and \
             peers' reserve; each listener gets a small cap. Raise LimitNOFILE= (systemd) or \
             `ulimit -n`, or lower local.probe_concurrency"
        );
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(probe_concurrency: usize, peers: usize, health_listener: bool) -> Needs {
        Needs {
            probe_concurrency,
            db_probes: 2,
            control_probes: 1,
            peers,
            health_listener,
        }
    }

    #[test]
    fn the_reserve_comes_first_and_one_listener_takes_the_rest() {
        // 64 base + 32 closing + 64 probes + 2 db + 1 control + 4 × 2 peers = 171.
        let b = budget(1024, &needs(64, 2, false));
        assert_eq!(b.reserve, 171);
        assert_eq!(b.full, 1024 - 171);
        assert_eq!(b.health, None);
        assert!(!b.starved);
    }

    #[test]
    fn two_listeners_split_what_is_left_and_never_take_the_reserve() {
        // Another 32 for the second listener's closing connections.
        let b = budget(1024, &needs(64, 2, true));
        assert_eq!(b.reserve, 203);
        assert_eq!(b.full, (1024 - 203) / 2);
        assert_eq!(b.health, Some((1024 - 203) / 2));
        assert!(b.full as u64 + b.health.unwrap_or(0) as u64 + b.reserve <= 1024);
    }

    #[test]
    fn a_high_limit_is_capped_per_listener() {
        for limit in [65_536, u64::MAX] {
            let b = budget(limit, &needs(64, 2, true));
            assert_eq!(b.full, MAX_LISTENER_CONNECTIONS);
            assert_eq!(b.health, Some(MAX_LISTENER_CONNECTIONS));
        }
        // The unit's LimitNOFILE=65536 holds both caps and the reserve of thousands of
        // probes in flight.
        let b = budget(65_536, &needs(4_096, 15, true));
        assert!(
            2 * MAX_LISTENER_CONNECTIONS as u64 + b.reserve <= 65_536,
            "{b:?}"
        );
    }

    #[test]
    fn a_tiny_limit_starts_starved_with_a_small_cap() {
        for limit in [0, 100, 171 + MIN_SANE_CONNECTIONS as u64 - 1] {
            let b = budget(limit, &needs(64, 2, false));
            assert!(b.starved, "{limit}: {b:?}");
            assert_eq!(b.full, STARVED_CONNECTIONS);
        }
        let b = budget(171 + MIN_SANE_CONNECTIONS as u64, &needs(64, 2, false));
        assert!(!b.starved);
        assert_eq!(b.full, MIN_SANE_CONNECTIONS);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        let after = raise_nofile();
        assert!(
            after.soft >= before.current.unwrap_or(u64::MAX),
            "{after:?}"
        );
        assert!(after.soft <= after.hard, "{after:?}");
    }
}
