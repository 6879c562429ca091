//! The relay's contract, on a real two-region topology with a TCP echo server: latency is
//! applied one way per direction, a cut blackholes (existing and new connections), cuts are
//! directional, and regions cannot bypass the relay. Needs root and iproute2.

use std::net::SocketAddrV4;
use std::time::Duration;

use quorumgate_testkit::{region_addr, Home, Topology};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{timeout, Instant};

const ECHO_PORT: u16 = 7007;

/// An echo server in region `home`, exposed through the relay; returns its VIP.
async fn echo_in(topo: &Topology, home: usize) -> SocketAddrV4 {
    let bind = SocketAddrV4::new(region_addr(home), ECHO_PORT);
    let listener = topo
        .in_region(home, move || async move { TcpListener::bind(bind).await })
        .await
        .expect("region thread")
        .expect("bind echo");
    topo.region_thread(home)
        .spawn(move || async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    return;
                };
                tokio::task::spawn_local(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        })
        .expect("spawn echo");
    topo.relay()
        .expose("echo", Home::Region(home), bind)
        .await
        .expect("expose echo")
}

/// One round trip of `msg` on `s`; `None` when nothing came back within `limit`.
async fn round_trip(s: &mut TcpStream, msg: &[u8], limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    s.write_all(msg).await.ok()?;
    let mut got = vec![0u8; msg.len()];
    timeout(limit, s.read_exact(&mut got)).await.ok()?.ok()?;
    assert_eq!(got, msg, "echo corrupted the data");
    Some(start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_applies_both_ways_and_cuts_blackhole() {
    let topo = Topology::create("relay", &["east", "west"]).expect("topology (root + iproute2)");
    let vip = echo_in(&topo, 1).await;
    topo.relay()
        .set_latency(0, Home::Region(1), Duration::from_millis(35));

    let relay_stats_before = topo.relay().stats(0, Home::Region(1));
    let (s, rtts) = topo
        .in_region(0, move || async move {
            let mut s = TcpStream::connect(vip).await.expect("connect via relay");
            s.set_nodelay(true).expect("nodelay");
            let mut rtts = Vec::new();
            for i in 0..3u8 {
                rtts.push(
                    round_trip(&mut s, &[i; 32], Duration::from_secs(5))
                        .await
                        .expect("echo answered"),
                );
            }
            (s, rtts)
        })
        .await
        .expect("region thread");
    // Same-region path: region 1 to its own echo VIP, zero latency by default.
    let rtt_same = topo
        .in_region(1, move || async move {
            let mut s = TcpStream::connect(vip).await.expect("connect same region");
            round_trip(&mut s, b"same", Duration::from_secs(5)).await
        })
        .await
        .expect("region thread")
        .expect("same-region echo");
    // Cut the link: the established connection stops forwarding.
    topo.relay().cut(0, Home::Region(1));
    let (s, blackholed) = topo
        .in_region(0, move || async move {
            let mut s = s;
            let r = round_trip(&mut s, b"during cut", Duration::from_millis(700)).await;
            (s, r)
        })
        .await
        .expect("region thread");
    // A new connection is accepted by the relay but nothing comes back.
    let new_blackholed = topo
        .in_region(0, move || async move {
            let mut s = TcpStream::connect(vip).await.ok()?;
            round_trip(&mut s, b"new during cut", Duration::from_millis(700)).await
        })
        .await
        .expect("region thread");
    // Region 1's own connections to the service use the link (1, Region(1)): untouched.
    let other_link_ok = topo
        .in_region(1, move || async move {
            let mut s = TcpStream::connect(vip).await.ok()?;
            round_trip(&mut s, b"other link", Duration::from_secs(5)).await
        })
        .await
        .expect("region thread");
    topo.relay().heal(0, Home::Region(1));
    let healed = topo
        .in_region(0, move || async move {
            let mut s = s;
            // The request held back during the cut is delivered on heal, then ours.
            let mut got = vec![0u8; b"during cut".len()];
            timeout(Duration::from_secs(5), s.read_exact(&mut got))
                .await
                .ok()?
                .ok()?;
            assert_eq!(got, b"during cut");
            round_trip(&mut s, b"after heal", Duration::from_secs(5)).await
        })
        .await
        .expect("region thread");

    for rtt in &rtts {
        // 35 ms each way: a round trip cannot be faster than 70 ms if the relay delays both
        // directions. (A correctness property of the relay, not a performance target.)
        assert!(
            *rtt >= Duration::from_millis(70),
            "round trip {rtt:?} < 2 x 35 ms: latency not applied both ways"
        );
    }
    assert!(
        rtt_same < Duration::from_millis(70),
        "the same-region link has no latency, but a round trip took {rtt_same:?}"
    );
    assert_eq!(blackholed, None, "a cut link still forwarded data");
    assert_eq!(
        new_blackholed, None,
        "a new connection on a cut link got an answer"
    );
    assert!(other_link_ok.is_some(), "cutting 0->1 affected 1->1");
    let healed = healed.expect("the link forwards again after heal");
    assert!(healed >= Duration::from_millis(70));

    let stats = topo.relay().stats(0, Home::Region(1));
    assert_eq!(relay_stats_before.connections, 0);
    assert_eq!(
        stats.connections, 2,
        "two connections opened from region 0 (one during the cut)"
    );
    assert!(
        stats.bytes >= 3 * 32 * 2,
        "bytes counted both ways: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_cannot_bypass_the_relay_and_isolate_cuts_both_ways() {
    let topo = Topology::create("bypass", &["a", "b"]).expect("topology (root + iproute2)");
    let vip = echo_in(&topo, 1).await;
    // Direct to region 1's address: the hub does not forward, so this never connects.
    let direct = SocketAddrV4::new(region_addr(1), ECHO_PORT);
    let bypass = topo
        .in_region(0, move || async move {
            timeout(Duration::from_millis(700), TcpStream::connect(direct)).await
        })
        .await
        .expect("region thread");
    assert!(
        !matches!(bypass, Ok(Ok(_))),
        "region 0 reached region 1 without the relay"
    );
    // The hub reaches a region address directly (how tests read agents' status).
    let from_hub = topo
        .in_hub(move || async move {
            let mut s = TcpStream::connect(direct).await.ok()?;
            round_trip(&mut s, b"hub", Duration::from_secs(5)).await
        })
        .await
        .expect("hub thread");
    assert!(from_hub.is_some(), "the hub cannot reach region 1 directly");

    topo.relay().isolate(1);
    assert!(topo.relay().is_cut(0, Home::Region(1)));
    assert!(topo.relay().is_cut(1, Home::Hub));
    assert!(!topo.relay().is_cut(1, Home::Region(1)));
    let via_relay = topo
        .in_region(0, move || async move {
            let mut s = TcpStream::connect(vip).await.ok()?;
            round_trip(&mut s, b"isolated", Duration::from_millis(700)).await
        })
        .await
        .expect("region thread");
    assert_eq!(via_relay, None, "an isolated region was reachable");
    topo.relay().heal_all();
    let via_relay = topo
        .in_region(0, move || async move {
            let mut s = TcpStream::connect(vip).await.ok()?;
            round_trip(&mut s, b"healed", Duration::from_secs(5)).await
        })
        .await
        .expect("region thread");
    assert!(via_relay.is_some(), "heal_all did not restore the link");
}
