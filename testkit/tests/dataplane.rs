//! The emulated Route 53 data plane end to end: state through the real Route 53 API (the
//! strict emulator), checkers polling loopback endpoints, DNS answers over real UDP and TCP.
//!
//! The strict emulator needs its Python (`bash scripts/test-deps.sh`); without it the test
//! fails, naming that command. Every wait is a bounded poll with generous limits (a busy
//! 2-core machine).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_route53::types::{
    Change, ChangeAction, ChangeBatch, HealthCheckConfig, HealthCheckRegion, HealthCheckType,
    ResourceRecord, ResourceRecordSet, ResourceRecordSetFailover, RrType,
};
use aws_sdk_route53::Client;
use quorumgate_testkit::dataplane::client::exchange;
use quorumgate_testkit::dataplane::{self, source, DataPlane, Options, Source};
use support::{wait_for, Endpoint};
use tokio::process::Command;

const LIMIT: Duration = Duration::from_secs(60);
const APP: &str = "app.example.com";
const PRIMARY: &str = "192.0.2.10";
const SECONDARY: &str = "198.51.100.10";
const REGIONS: [&str; 3] = ["us-east-1", "us-west-2", "eu-west-1"];

/// Creates the zone's agent checks, calculated checks and failover pair; returns the zone id
/// and the calculated checks' ids (primary, secondary).
async fn provision(
    r53: &Client,
    primary: &[&Endpoint],
    secondary: &[&Endpoint],
) -> (String, String, String) {
    let zone = r53
        .create_hosted_zone()
        .name("example.com")
        .caller_reference("zone-1")
        .send()
        .await
        .expect("CreateHostedZone");
    let zone_id = zone.hosted_zone().expect("zone").id().to_owned();
    let mut calculated = Vec::new();
    for (target, endpoints) in [("use1", primary), ("usw2", secondary)] {
        let mut children = Vec::new();
        for (i, e) in endpoints.iter().enumerate() {
            let config = HealthCheckConfig::builder()
                .r#type(HealthCheckType::HttpStrMatch)
                .ip_address("127.0.0.1")
                .port(i32::from(e.addr.port()))
                .resource_path(format!("/v1/health/app-{target}"))
                .search_string("HEALTHY")
                .request_interval(10)
                .failure_threshold(2)
                .set_regions(Some(
                    REGIONS
                        .iter()
                        .map(|r| HealthCheckRegion::from(*r))
                        .collect(),
                ))
                .build()
                .expect("config");
            let hc = r53
                .create_health_check()
                .caller_reference(format!("agent-{i}-{target}"))
                .health_check_config(config)
                .send()
                .await
                .expect("CreateHealthCheck");
            children.push(hc.health_check().expect("hc").id().to_owned());
        }
        let config = HealthCheckConfig::builder()
            .r#type(HealthCheckType::Calculated)
            .set_child_health_checks(Some(children))
            .health_threshold(2)
            .build()
            .expect("config");
        let hc = r53
            .create_health_check()
            .caller_reference(format!("calculated-{target}"))
            .health_check_config(config)
            .send()
            .await
            .expect("CreateHealthCheck");
        calculated.push(hc.health_check().expect("hc").id().to_owned());
    }
    let pair = [
        (
            "use1",
            ResourceRecordSetFailover::Primary,
            PRIMARY,
            &calculated[0],
        ),
        (
            "usw2",
            ResourceRecordSetFailover::Secondary,
            SECONDARY,
            &calculated[1],
        ),
    ];
    let changes = pair
        .iter()
        .map(|(id, role, value, hc)| record_change(ChangeAction::Create, id, role, value, hc))
        .collect();
    change(r53, &zone_id, changes).await;
    (zone_id, calculated[0].clone(), calculated[1].clone())
}

fn record_change(
    action: ChangeAction,
    set_id: &str,
    role: &ResourceRecordSetFailover,
    value: &str,
    hc: &str,
) -> Change {
    let rrset = ResourceRecordSet::builder()
        .name(format!("{APP}."))
        .r#type(RrType::A)
        .ttl(60)
        .set_identifier(set_id)
        .failover(role.clone())
        .health_check_id(hc)
        .resource_records(ResourceRecord::builder().value(value).build().expect("rr"))
        .build()
        .expect("rrset");
    Change::builder()
        .action(action)
        .resource_record_set(rrset)
        .build()
        .expect("change")
}

async fn change(r53: &Client, zone_id: &str, changes: Vec<Change>) {
    let batch = ChangeBatch::builder()
        .set_changes(Some(changes))
        .build()
        .expect("batch");
    r53.change_resource_record_sets()
        .hosted_zone_id(zone_id)
        .change_batch(batch)
        .send()
        .await
        .expect("ChangeResourceRecordSets");
}

/// Waits until both the UDP and the TCP answer for `APP` are `want`.
async fn wait_answer(plane: &DataPlane, want: &str, why: &str) {
    let dns = plane.dns_addr();
    wait_for(why, LIMIT, || async move {
        let udp = dataplane::query(dns, APP, "A")
            .await
            .map_err(|e| e.to_string())?;
        let tcp = dataplane::query_tcp(dns, APP, "A")
            .await
            .map_err(|e| e.to_string())?;
        if udp == [want] && tcp == [want] {
            Ok(())
        } else {
            Err(format!("udp {udp:?} tcp {tcp:?}"))
        }
    })
    .await;
}

async fn wait_check(plane: &DataPlane, id: &str, healthy: bool, why: &str) {
    wait_for(why, LIMIT, || async move {
        match plane.check_healthy(id) {
            Some(h) if h == healthy => Ok(()),
            other => Err(format!("{id}: {other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_follows_the_agents_checks_through_the_route53_api() {
    let python = quorumgate_testkit::emulator::require_python().unwrap_or_else(|e| panic!("{e}"));
    let moto = quorumgate_testkit::emulator::spawn(Command::new(&python), 0, 600, &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let r53 = source::route53_client(&endpoint).await;

    let agents: Vec<Endpoint> = endpoints(4).await;
    let (primary, secondary) = (&agents[..2], &agents[2..]);
    let (zone_id, calc_primary, calc_secondary) = provision(
        &r53,
        &primary.iter().collect::<Vec<_>>(),
        &secondary.iter().collect::<Vec<_>>(),
    )
    .await;

    // Each region's checkers come from their own loopback address.
    let sources: BTreeMap<String, IpAddr> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                (*r).to_owned(),
                IpAddr::from([127, 0, 0, 2 + u8::try_from(i).expect("i")]),
            )
        })
        .collect();
    let plane = DataPlane::start(Options {
        source: Source::Route53 {
            endpoint: endpoint.clone(),
        },
        time_scale: 0.05,
        checkers_per_region: 1,
        seed: 7,
        status_listen: Some("127.0.0.1:0".parse().expect("addr")),
        refresh: Duration::from_millis(200),
        source_for_region: sources.clone(),
        ..Options::default()
    })
    .await
    .expect("start the data plane");

    // Everything healthy: the primary, over UDP and TCP, once every checker has polled.
    wait_answer(&plane, PRIMARY, "the primary answers").await;
    wait_for("every checker polled and healthy", LIMIT, || async {
        let snap = plane.snapshot();
        let checkers: Vec<_> = snap
            .checks
            .values()
            .flat_map(|c| c.checkers.iter())
            .collect();
        // 4 agent checks × 3 regions.
        let ready = checkers.len() == 12 && checkers.iter().all(|c| c.polls > 0 && c.healthy);
        if ready && snap.checks.values().all(|c| c.healthy) {
            Ok(())
        } else {
            Err(format!("{snap:?}"))
        }
    })
    .await;
    let seen = primary[0].seen();
    let peers: BTreeSet<IpAddr> = seen.iter().map(|s| s.peer).collect();
    let expected: BTreeSet<IpAddr> = sources.values().copied().collect();
    assert_eq!(
        peers, expected,
        "one checker per region, from its own address"
    );
    let first = &seen[0];
    assert_eq!(first.path, "/v1/health/app-use1");
    assert_eq!(first.host, format!("127.0.0.1:{}", primary[0].addr.port()));
    assert!(first
        .user_agent
        .starts_with("Amazon-Route53-Health-Check-Service"));

    // The zone's own SOA and NS (Route 53 made them with the zone) answer at the apex.
    let dns = plane.dns_addr();
    let soa = exchange(dns, "example.com", "SOA", false)
        .await
        .expect("soa");
    assert_eq!(
        (soa.rcode.as_str(), soa.authoritative, soa.answers.len()),
        ("NoError", true, 1),
        "{soa:?}"
    );
    let ns = exchange(dns, "example.com", "NS", true).await.expect("ns");
    assert!(
        !ns.answers.is_empty() && ns.answers.iter().all(|a| a.0 == "NS"),
        "{ns:?}"
    );

    // The status page says the same.
    let status = plane.status_addr().expect("status page");
    let body = http_get(status, "/status").await;
    let json: serde_json::Value = serde_json::from_str(&body).expect("status json");
    assert_eq!(json["checks"][&calc_primary]["healthy"], true, "{json}");

    // The primary's agents answer 503: the calculated check fails, the secondary answers.
    for e in primary {
        e.unhealthy();
    }
    wait_check(
        &plane,
        &calc_primary,
        false,
        "the primary's calculated check fails",
    )
    .await;
    wait_answer(&plane, SECONDARY, "the secondary takes over").await;

    // A record changed later through the API is picked up at the next refresh.
    let moved = "198.51.100.20";
    let upsert = record_change(
        ChangeAction::Upsert,
        "usw2",
        &ResourceRecordSetFailover::Secondary,
        moved,
        &calc_secondary,
    );
    change(&r53, &zone_id, vec![upsert]).await;
    wait_answer(&plane, moved, "the changed secondary answers").await;

    // Both sides unhealthy: Route 53 fails open to the primary.
    for e in secondary {
        e.unhealthy();
    }
    wait_check(
        &plane,
        &calc_secondary,
        false,
        "the secondary's calculated check fails",
    )
    .await;
    wait_answer(&plane, PRIMARY, "both unhealthy: the primary").await;
    assert_eq!(plane.check_healthy(&calc_primary), Some(false));

    // The primary recovers (FailureThreshold successes on its checkers): the primary.
    for e in primary {
        e.healthy();
    }
    wait_check(&plane, &calc_primary, true, "the primary recovers").await;
    wait_answer(&plane, PRIMARY, "the recovered primary answers").await;
    assert_eq!(plane.answer(APP, "A"), vec![PRIMARY.to_owned()]);

    plane.shutdown().await;
    drop(moto);
}

async fn endpoints(n: usize) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Endpoint::http().await);
    }
    out
}

/// A plain HTTP/1.1 GET; the body.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: status\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}
