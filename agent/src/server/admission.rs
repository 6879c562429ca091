//! Connection admission for one listener: a cap on its connections, idle connections shed to
//! make room for new ones, and a reserve at the top for light sources.
//!
//! **Shedding.** When a listener's free slots run low, an idle connection is closed for each
//! new one, so that a legitimate request from a new source is not refused while idle
//! connections hold the slots (a distributed flood of idle connections did exactly that).
//! Order: first connections that sent no complete request head within [`FRESH_GRACE`] of being
//! accepted, oldest first; then keep-alive connections idle between requests, longest idle
//! first; and only when the listener is completely full, connections still within their grace,
//! oldest first (refusing the newcomer instead would lock every new client out for as long as
//! the flood keeps the slots young; closing the oldest gives each connection at least
//! `cap / arrival rate` to send its request). A connection in the middle of a request is never
//! shed.
//!
//! **Light-source reserve.** Below `total - reserve` free slots any source is admitted; above
//! it only a source holding fewer than `light` connections, and a heavy source never sheds
//! others. One host holding many connections (slowloris, a stuck client, a runaway scraper)
//! cannot take the last slots nor churn out other clients' connections: a peer holds at most
//! two (one push, one pull), a Route 53 checker address or a Prometheus a few.
//!
//! A source is an IPv4 address or an IPv6 /64 (one host usually owns a whole /64, so counting
//! single IPv6 addresses would reserve nothing).

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a new connection may take to send its request head before it counts as idle.
/// Route 53 checkers send their request at once: over plain HTTP it arrives with the
/// connection's first data (one one-way trip after the handshake), over HTTPS after one more
/// round trip for TLS 1.3. 500 ms covers a TLS 1.3 handshake plus the request between any two
/// regions (the longest inter-region round trips are around 300 ms) with room for a busy
/// agent; longer would let a flood that churns its connections hold more slots past grace.
pub(super) const FRESH_GRACE: Duration = Duration::from_millis(500);

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The listener holds its maximum number of connections and none can be shed.
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

/// What kind of connection was shed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shed {
    /// No complete request head since it was accepted.
    NoRequest,
    /// A keep-alive connection idle between requests.
    KeepAlive,
}

impl Shed {
    /// The `idle` field of the shed log line.
    pub(super) fn label(self) -> &'static str {
        match self {
            Shed::NoRequest => "no_request",
            Shed::KeepAlive => "keep_alive",
        }
    }
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepted; no complete request head yet.
    Fresh,
    /// Handling a request.
    Busy,
    /// Between requests since then.
    Idle(Instant),
}

#[derive(Debug)]
struct Conn {
    source: IpAddr,
    accepted_at: Instant,
    phase: Phase,
    shed: CancellationToken,
}

/// Every connection of a listener, with the fresh and the idle ones also indexed by age so
/// that choosing what to shed costs O(log n) however large the flood.
#[derive(Debug, Default)]
struct Table {
    conns: HashMap<u64, Conn>,
    /// `(accepted_at, id)` of the connections in [`Phase::Fresh`].
    fresh: BTreeSet<(Instant, u64)>,
    /// `(idle since, id)` of the connections in [`Phase::Idle`].
    idle: BTreeSet<(Instant, u64)>,
    per_source: HashMap<IpAddr, usize>,
    next_id: u64,
    /// Connections shed whose tasks have not yet closed them: each still holds a descriptor.
    closing: usize,
}

impl Table {
    fn insert(&mut self, id: u64, conn: Conn) {
        self.index(id, &conn, true);
        *self.per_source.entry(conn.source).or_default() += 1;
        self.conns.insert(id, conn);
    }

    /// Adds `conn` to (or removes it from) the index of its phase.
    fn index(&mut self, id: u64, conn: &Conn, add: bool) {
        let (set, key) = match conn.phase {
            Phase::Fresh => (&mut self.fresh, (conn.accepted_at, id)),
            Phase::Idle(since) => (&mut self.idle, (since, id)),
            Phase::Busy => return,
        };
        if add {
            set.insert(key);
        } else {
            set.remove(&key);
        }
    }

    /// Moves connection `id` (if not shed) to `phase`, re-indexing it.
    fn set_phase(&mut self, id: u64, phase: Phase) {
        let Some(mut conn) = self.conns.remove(&id) else {
            return;
        };
        self.index(id, &conn, false);
        conn.phase = phase;
        self.index(id, &conn, true);
        self.conns.insert(id, conn);
    }

    /// Forgets connection `id` (shed, or its task ended); `None` when it was already gone.
    fn remove(&mut self, id: u64) -> Option<Conn> {
        let conn = self.conns.remove(&id)?;
        self.index(id, &conn, false);
        if let Some(n) = self.per_source.get_mut(&conn.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&conn.source);
            }
        }
        Some(conn)
    }

    /// The connection to close to make room, if any: a fresh one past [`FRESH_GRACE`]
    /// (oldest first), else a keep-alive one (longest idle first), else, when `full`, a fresh
    /// one still within its grace (oldest first). Busy connections are never chosen. Ties go to
    /// the lower (older) id.
    fn victim(&self, now: Instant, full: bool) -> Option<(u64, Shed)> {
        let oldest_fresh = self.fresh.first().map(|&(_, id)| (id, Shed::NoRequest));
        if let Some(&(at, _)) = self.fresh.first() {
            if now.saturating_duration_since(at) >= FRESH_GRACE {
                return oldest_fresh;
            }
        }
        if let Some(&(_, id)) = self.idle.first() {
            return Some((id, Shed::KeepAlive));
        }
        oldest_fresh.filter(|_| full)
    }

    /// Sheds the connection [`Self::victim`] chooses: forgets it and tells its task. Returns
    /// its kind and source.
    fn shed(&mut self, now: Instant, full: bool) -> Option<(Shed, IpAddr)> {
        let (id, kind) = self.victim(now, full)?;
        let c = self.remove(id)?;
        c.shed.cancel();
        self.closing += 1;
        Some((kind, c.source))
    }
}

/// The table, and a wake-up for the accept loop each time a shed connection is closed.
#[derive(Debug, Default)]
struct Inner {
    table: Mutex<Table>,
    closed: Notify,
}

type Shared = Arc<Inner>;

fn lock(t: &Shared) -> MutexGuard<'_, Table> {
    // The table is consistent after every statement; a panic elsewhere leaves it usable.
    t.table.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Admits connections to one listener.
#[derive(Debug)]
pub(super) struct Admission {
    table: Shared,
    total: usize,
    /// Free slots below which only light sources are admitted.
    reserve: usize,
    /// A source holding fewer connections than this is light.
    light: usize,
    /// Free slots at or below which every admission sheds an idle connection (when there is
    /// one past its grace), so that a burst of new clients finds room.
    low_water: usize,
}

/// Held for the life of one admitted connection; frees its slot when dropped.
#[derive(Debug)]
pub(super) struct Ticket {
    id: u64,
    table: Shared,
    shed: CancellationToken,
}

impl Admission {
    pub(super) fn new(total: usize, reserve: usize, light: usize) -> Self {
        Self {
            table: Arc::default(),
            total,
            reserve,
            light,
            low_water: (total / 32).max(1),
        }
    }

    /// Admits a connection from `peer` at `now`, shedding an idle one if the listener runs
    /// low (its kind and source are returned), or says why not. Never waits.
    pub(super) fn admit(
        &self,
        peer: IpAddr,
        now: Instant,
    ) -> Result<(Ticket, Option<(Shed, IpAddr)>), Refused> {
        let source = source_of(peer);
        let mut t = lock(&self.table);
        let held = t.per_source.get(&source).copied().unwrap_or(0);
        let free = self.total.saturating_sub(t.conns.len());
        if held >= self.light && free <= self.reserve {
            return Err(Refused::HeavySource);
        }
        let shed = if free <= self.low_water {
            t.shed(now, free == 0)
        } else {
            None
        };
        if t.conns.len() >= self.total {
            return Err(Refused::ConnectionLimit);
        }
        let id = t.next_id;
        t.next_id += 1;
        let token = CancellationToken::new();
        t.insert(
            id,
            Conn {
                source,
                accepted_at: now,
                phase: Phase::Fresh,
                shed: token.clone(),
            },
        );
        Ok((
            Ticket {
                id,
                table: Arc::clone(&self.table),
                shed: token,
            },
            shed,
        ))
    }

    /// Sheds one idle connection (past its grace, or keep-alive) to free a descriptor, as
    /// after `accept` failed for lack of one.
    /// Connections shed and not yet closed by their tasks.
    pub(super) fn closing(&self) -> usize {
        lock(&self.table).closing
    }

    /// Resolves when a shed connection was closed (at once if one was since the last call).
    pub(super) async fn closed(&self) {
        self.table.closed.notified().await;
    }

    pub(super) fn shed_one(&self, now: Instant) -> Option<(Shed, IpAddr)> {
        lock(&self.table).shed(now, false)
    }
}

impl Ticket {
    /// Fires when the connection was shed: its task closes it.
    pub(super) fn shed_signal(&self) -> CancellationToken {
        self.shed.clone()
    }

    /// A request head arrived: the connection is busy (never shed) until [`Self::end_request`].
    pub(super) fn begin_request(&self) {
        lock(&self.table).set_phase(self.id, Phase::Busy);
    }

    /// The response is on its way; the connection is idle (keep-alive) from `now`.
    pub(super) fn end_request(&self, now: Instant) {
        lock(&self.table).set_phase(self.id, Phase::Idle(now));
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = lock(&self.table);
        if t.remove(self.id).is_none() {
            // Shed earlier: its task is ending now, and its socket is dropped with it.
            t.closing = t.closing.saturating_sub(1);
            drop(t);
            self.table.closed.notify_one();
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
mod tests;
