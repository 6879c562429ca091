use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn admit(a: &Admission, peer: &str, now: Instant) -> Result<Ticket, Refused> {
    a.admit(ip(peer), now).map(|(t, _)| t)
}

fn held(a: &Admission) -> usize {
    lock(&a.table).conns.len()
}

#[test]
fn a_heavy_source_cannot_take_the_reserve() {
    let now = Instant::now();
    // 8 slots, the last 3 for sources holding fewer than 2.
    let a = Admission::new(8, 3, 2);
    let flood: Vec<Ticket> = (0..5)
        .map(|_| admit(&a, "10.0.0.1", now).expect("below the reserve"))
        .collect();
    // Busy connections are never shed, so the limits below are the caps themselves.
    for t in &flood {
        t.begin_request();
    }
    assert_eq!(admit(&a, "10.0.0.1", now).err(), Some(Refused::HeavySource));
    // Light sources still get in, one connection each…
    let peer = admit(&a, "10.0.0.2", now).expect("a peer");
    let peer2 = admit(&a, "10.0.0.3", now).expect("another peer");
    // …and a second one while the reserve lasts.
    let peer_again = admit(&a, "10.0.0.2", now).expect("the peer's pull");
    for t in [&peer, &peer2, &peer_again] {
        t.begin_request();
    }
    assert_eq!(
        admit(&a, "10.0.0.4", now).err(),
        Some(Refused::ConnectionLimit)
    );
    drop((peer, peer2, peer_again, flood));
    let t = lock(&a.table);
    assert!(t.per_source.is_empty() && t.conns.is_empty());
    assert!(t.fresh.is_empty() && t.idle.is_empty());
}

#[test]
fn a_busy_source_may_use_everything_below_the_reserve() {
    let now = Instant::now();
    let a = Admission::new(8, 3, 2);
    let held: Vec<Ticket> = (0..5)
        .map(|_| admit(&a, "10.0.0.1", now).expect("below the reserve"))
        .collect();
    assert_eq!(held.len(), 5);
    drop(held);
    // Freed slots are the source's again.
    assert!(admit(&a, "10.0.0.1", now).is_ok());
}

#[test]
fn a_heavy_source_never_sheds_other_connections() {
    let t0 = Instant::now();
    let a = Admission::new(8, 3, 2);
    let idle: Vec<Ticket> = (1..=5)
        .map(|i| admit(&a, &format!("10.0.1.{i}"), t0).expect("light"))
        .collect();
    let _mine: Vec<Ticket> = (0..2)
        .map(|_| admit(&a, "10.0.0.1", t0).expect("within the slots"))
        .collect();
    // At the low-water mark, with connections past their grace, yet the heavy source gets
    // none of them.
    let later = t0 + FRESH_GRACE + ms(1);
    assert_eq!(
        admit(&a, "10.0.0.1", later).err(),
        Some(Refused::HeavySource)
    );
    assert!(idle.iter().all(|t| !t.shed_signal().is_cancelled()));
    // A light source does.
    assert!(admit(&a, "10.0.2.1", later).is_ok());
    assert!(idle[0].shed_signal().is_cancelled());
}

#[test]
fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
    let now = Instant::now();
    // No slot above the reserve: every source may hold one connection.
    let a = Admission::new(10, 10, 1);
    let _t = admit(&a, "2001:db8:1:2::1", now).expect("first");
    assert_eq!(
        admit(&a, "2001:db8:1:2:ffff::9", now).err(),
        Some(Refused::HeavySource)
    );
    assert!(admit(&a, "2001:db8:1:3::1", now).is_ok());
    let _u = admit(&a, "192.0.2.7", now).expect("v4");
    assert_eq!(
        admit(&a, "::ffff:192.0.2.7", now).err(),
        Some(Refused::HeavySource)
    );
}

fn conn(accepted_at: Instant, phase: Phase) -> Conn {
    Conn {
        source: ip("10.0.0.1"),
        accepted_at,
        phase,
        shed: CancellationToken::new(),
    }
}

/// The order in which shedding empties a table of `conns` at `now`.
fn shed_order(conns: Vec<(u64, Conn)>, now: Instant, full: bool) -> Vec<(u64, Shed)> {
    let mut t = Table::default();
    for (id, c) in conns {
        t.insert(id, c);
    }
    let mut order = Vec::new();
    while let Some((id, kind)) = t.victim(now, full) {
        assert_eq!(t.shed(now, full).map(|(k, _)| k), Some(kind));
        assert!(!t.conns.contains_key(&id));
        order.push((id, kind));
    }
    order
}

#[test]
fn idle_connections_are_shed_in_order_and_busy_ones_never() {
    let t0 = Instant::now();
    let now = t0 + ms(600);
    let conns = || {
        Vec::from([
            // Accepted 500 ms before `now`: just past its grace.
            (1, conn(t0 + ms(100), Phase::Fresh)),
            (2, conn(t0, Phase::Fresh)),
            (3, conn(t0, Phase::Idle(t0 + ms(50)))),
            (4, conn(t0 + ms(10), Phase::Idle(t0 + ms(20)))),
            (5, conn(t0, Phase::Busy)),
            // Still within its grace.
            (6, conn(t0 + ms(450), Phase::Fresh)),
            (7, conn(t0 + ms(300), Phase::Fresh)),
        ])
    };
    use Shed::{KeepAlive, NoRequest};
    // Fresh past grace (oldest first), then keep-alive (longest idle first); never 5, and
    // 6 and 7 not while there is room.
    assert_eq!(
        shed_order(conns(), now, false),
        [
            (2, NoRequest),
            (1, NoRequest),
            (4, KeepAlive),
            (3, KeepAlive)
        ]
    );
    // When full, the young fresh ones go last, oldest first.
    assert_eq!(
        shed_order(conns(), now, true),
        [
            (2, NoRequest),
            (1, NoRequest),
            (4, KeepAlive),
            (3, KeepAlive),
            (7, NoRequest),
            (6, NoRequest)
        ]
    );
}

#[test]
fn a_new_connection_takes_the_slot_of_an_idle_one() {
    let t0 = Instant::now();
    // 4 slots, no reserve; the low-water mark is 1 free slot.
    let a = Admission::new(4, 0, 100);
    let first: Vec<Ticket> = (1..=4)
        .map(|i| admit(&a, &format!("10.0.0.{i}"), t0 + ms(i)).expect("room"))
        .collect();
    // The second serves a request and goes idle; the others never send one.
    first[1].begin_request();
    first[1].end_request(t0 + ms(10));
    // Full, but the oldest fresh one is past its grace: shed for the newcomer.
    let later = t0 + ms(2) + FRESH_GRACE;
    let (n1, shed) = a.admit(ip("10.0.1.1"), later).expect("room made");
    assert_eq!(shed, Some((Shed::NoRequest, ip("10.0.0.1"))));
    assert!(first[0].shed_signal().is_cancelled());
    assert_eq!(held(&a), 4);
    // Next the keep-alive one (the other fresh ones are within their grace)…
    let (n2, shed) = a.admit(ip("10.0.1.2"), later).expect("room made");
    assert_eq!(shed, Some((Shed::KeepAlive, ip("10.0.0.2"))));
    assert!(first[1].shed_signal().is_cancelled());
    // …then, the listener being full, the oldest fresh one even within its grace.
    n1.begin_request();
    n2.begin_request();
    let (n3, shed) = a.admit(ip("10.0.1.3"), later).expect("room made");
    assert_eq!(shed, Some((Shed::NoRequest, ip("10.0.0.3"))));
    assert!(first[2].shed_signal().is_cancelled());
    assert!(!first[3].shed_signal().is_cancelled());
    // Shed connections hold their descriptors until their tasks drop them.
    assert_eq!(a.closing(), 3);
    // A shed ticket's drop frees no slot again, only its descriptor.
    drop(first);
    assert_eq!(held(&a), 3);
    assert_eq!(a.closing(), 0);
    let n4 = admit(&a, "10.0.1.4", later).expect("the freed slot");
    let n5 = admit(&a, "10.0.1.5", later).expect("room made");
    assert!(n3.shed_signal().is_cancelled());
    // Every connection busy: nothing to shed, the listener refuses.
    n4.begin_request();
    n5.begin_request();
    assert_eq!(
        admit(&a, "10.0.1.6", later).err(),
        Some(Refused::ConnectionLimit)
    );
}
