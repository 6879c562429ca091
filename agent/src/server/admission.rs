//! Connection admission for one listener: a cap on all its connections, and a reserve at the
//! top of it for light sources, so that one host holding many connections (slowloris, a stuck
//! client, a runaway scraper) cannot take every slot and lock out the peers' ballot pushes,
//! which open one connection per ballot.
//!
//! Below `total - reserve` connections every connection is admitted, so a legitimate busy
//! source (a load balancer, a NAT, a load test) can use most of the listener. Above it, only a
//! source holding fewer than `light` connections is admitted: a peer holds at most two (one
//! push, one pull), a Route 53 checker address or a Prometheus a few.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64, so counting
//! single IPv6 addresses would reserve nothing). An attacker with more than `reserve / light`
//! sources can still fill the listener; the defence against that is the deployment's: Route 53
//! on the separate health listener, and the peer listener reachable by the peers only
//! (docs/runbook.md).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The listener holds its maximum number of connections.
    ConnectionLimit,
    /// The listener is into its reserve and this source is not light.
    HeavySource,
}

impl Refused {
    /// The `reason` label of `quorumgate_http_rejected_total`.
    pub(super) fn reason(self) -> &'static str {
        match self {
            Refused::ConnectionLimit => "connection_limit",
            Refused::HeavySource => "heavy_source",
        }
    }
}

type Table = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Admits connections to one listener.
#[derive(Debug)]
pub(super) struct Admission {
    total: Arc<Semaphore>,
    /// Connections held, by source.
    per_source: Table,
    /// Free slots below which only light sources are admitted.
    reserve: usize,
    /// A source holding fewer connections than this is light.
    light: usize,
}

/// Held for the life of one admitted connection; frees its slots when dropped.
#[derive(Debug)]
pub(super) struct Ticket {
    _permit: OwnedSemaphorePermit,
    source: IpAddr,
    table: Table,
}

impl Admission {
    pub(super) fn new(total: usize, reserve: usize, light: usize) -> Self {
        Self {
            total: Arc::new(Semaphore::new(total)),
            per_source: Arc::default(),
            reserve,
            light,
        }
    }

    /// Admits a connection from `peer`, or says why not. Never waits.
    pub(super) fn admit(&self, peer: IpAddr) -> Result<Ticket, Refused> {
        let source = source_of(peer);
        let mut table = self
            .per_source
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let held = table.get(&source).copied().unwrap_or(0);
        if held >= self.light && self.total.available_permits() <= self.reserve {
            return Err(Refused::HeavySource);
        }
        let permit = Arc::clone(&self.total)
            .try_acquire_owned()
            .map_err(|_| Refused::ConnectionLimit)?;
        table.insert(source, held + 1);
        Ok(Ticket {
            _permit: permit,
            source,
            table: Arc::clone(&self.per_source),
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.table.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = table.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                table.remove(&self.source);
            }
        }
    }
}

/// The key a connection is counted under: the IPv4 address (also when IPv4-mapped), or the
/// IPv6 /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_heavy_source_cannot_take_the_reserve() {
        // 8 slots, the last 3 for sources holding fewer than 2.
        let a = Admission::new(8, 3, 2);
        let flood: Vec<Ticket> = (0..5)
            .map(|_| a.admit(ip("10.0.0.1")).expect("below the reserve"))
            .collect();
        assert_eq!(a.admit(ip("10.0.0.1")).err(), Some(Refused::HeavySource));
        // Light sources still get in, one connection each…
        let peer = a.admit(ip("10.0.0.2")).expect("a peer");
        let peer2 = a.admit(ip("10.0.0.3")).expect("another peer");
        // …and a second one while the reserve lasts.
        let peer_again = a.admit(ip("10.0.0.2")).expect("the peer's pull");
        assert_eq!(
            a.admit(ip("10.0.0.4")).err(),
            Some(Refused::ConnectionLimit)
        );
        drop((peer, peer2, peer_again, flood));
        assert!(a.per_source.lock().expect("lock").is_empty());
        assert_eq!(a.total.available_permits(), 8);
    }

    #[test]
    fn a_busy_source_may_use_everything_below_the_reserve() {
        let a = Admission::new(8, 3, 2);
        let held: Vec<Ticket> = (0..5)
            .map(|_| a.admit(ip("10.0.0.1")).expect("below the reserve"))
            .collect();
        assert_eq!(held.len(), 5);
        drop(held);
        // Freed slots are the source's again.
        assert!(a.admit(ip("10.0.0.1")).is_ok());
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        // No slot above the reserve: every source may hold one connection.
        let a = Admission::new(10, 10, 1);
        let _t = a.admit(ip("2001:db8:1:2::1")).expect("first");
        assert_eq!(
            a.admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refused::HeavySource)
        );
        assert!(a.admit(ip("2001:db8:1:3::1")).is_ok());
        let _u = a.admit(ip("192.0.2.7")).expect("v4");
        assert_eq!(
            a.admit(ip("::ffff:192.0.2.7")).err(),
            Some(Refused::HeavySource)
        );
    }
}
