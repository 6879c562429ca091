//! The emulated data plane without the Route 53 API: state from a file or given directly,
//! checkers against loopback endpoints, answers over real DNS queries. Bounded polls only.

mod support;

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use quorumgate_testkit::dataplane::client::exchange;
use quorumgate_testkit::dataplane::model::{
    FailoverRole, HealthCheck, HealthCheckKind, Record, Routing, State, Zone,
};
use quorumgate_testkit::dataplane::{self, DataPlane, Options, Source};
use support::{wait_for, Endpoint};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const LIMIT: Duration = Duration::from_secs(60);

fn check(id: &str, kind: HealthCheckKind, e: &Endpoint) -> HealthCheck {
    let mut hc = HealthCheck::new(id, kind);
    hc.ip_address = Some(IpAddr::from([127, 0, 0, 1]));
    hc.port = Some(e.addr.port());
    hc.resource_path = Some("/v1/health/app".into());
    if kind.is_str_match() {
        hc.search_string = Some("HEALTHY".into());
    }
    hc.request_interval_s = 10;
    hc.failure_threshold = 2;
    hc.regions = vec!["us-east-1".into(), "us-west-2".into(), "eu-west-1".into()];
    hc
}

fn record(
    name: &str,
    rtype: &str,
    routing: Routing,
    set_id: Option<&str>,
    hc: Option<&str>,
    values: &[&str],
) -> Record {
    Record {
        name: name.into(),
        rtype: rtype.into(),
        ttl: Some(60),
        set_identifier: set_id.map(str::to_owned),
        routing,
        health_check_id: hc.map(str::to_owned),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
        alias: None,
    }
}

fn failover(role: FailoverRole) -> Routing {
    Routing::Failover { role }
}

/// A zone with a failover pair on `hc-p`/`hc-s`, a weighted pair, a TXT, a CNAME.
fn state(primary: &Endpoint, secondary: &Endpoint) -> State {
    let kind = HealthCheckKind::HttpStrMatch;
    State {
        health_checks: vec![check("hc-p", kind, primary), check("hc-s", kind, secondary)],
        zones: vec![Zone {
            id: "Z1".into(),
            name: "example.com".into(),
            records: vec![
                record(
                    "app.example.com",
                    "A",
                    failover(FailoverRole::Primary),
                    Some("p"),
                    Some("hc-p"),
                    &["192.0.2.10"],
                ),
                record(
                    "app.example.com",
                    "A",
                    failover(FailoverRole::Secondary),
                    Some("s"),
                    Some("hc-s"),
                    &["198.51.100.10"],
                ),
                record(
                    "www.example.com",
                    "A",
                    Routing::Weighted { weight: 100 },
                    Some("a"),
                    Some("hc-p"),
                    &["192.0.2.1"],
                ),
                record(
                    "www.example.com",
                    "A",
                    Routing::Weighted { weight: 0 },
                    Some("b"),
                    None,
                    &["192.0.2.2"],
                ),
                record(
                    "txt.example.com",
                    "TXT",
                    Routing::Simple,
                    None,
                    None,
                    &["\"v=emulated\""],
                ),
                record(
                    "alias.example.com",
                    "CNAME",
                    Routing::Simple,
                    None,
                    None,
                    &["app.example.com."],
                ),
            ],
        }],
    }
}

fn options(source: Source) -> Options {
    Options {
        source,
        time_scale: 0.05,
        seed: 11,
        refresh: Duration::from_millis(100),
        ..Options::default()
    }
}

async fn wait_values(plane: &DataPlane, name: &str, rtype: &str, want: &[&str], why: &str) {
    let dns = plane.dns_addr();
    wait_for(why, LIMIT, || async move {
        let got = dataplane::query(dns, name, rtype)
            .await
            .map_err(|e| e.to_string())?;
        if got == want {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_serves_dns_and_is_read_again() {
    let (primary, secondary) = (Endpoint::http().await, Endpoint::http().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    let write = |s: &State| {
        std::fs::write(&path, serde_json::to_vec_pretty(s).expect("json")).expect("write")
    };
    let mut st = state(&primary, &secondary);
    write(&st);
    let plane = DataPlane::start(options(Source::File(path.clone())))
        .await
        .expect("start");
    let dns = plane.dns_addr();

    wait_values(
        &plane,
        "app.example.com",
        "A",
        &["192.0.2.10"],
        "the primary",
    )
    .await;
    // Weighted: the weight-0 record only when every other one is unhealthy.
    wait_values(
        &plane,
        "www.example.com",
        "A",
        &["192.0.2.1"],
        "the weighted record",
    )
    .await;
    let txt = exchange(dns, "txt.example.com", "TXT", true)
        .await
        .expect("txt");
    assert_eq!(txt.values(), ["\"v=emulated\""], "{txt:?}");
    assert_eq!(txt.answers[0].1, 60, "the record's TTL");
    // A CNAME and its in-zone target's answer.
    let cname = exchange(dns, "alias.example.com", "A", false)
        .await
        .expect("cname");
    assert_eq!(
        cname.values(),
        ["app.example.com.", "192.0.2.10"],
        "{cname:?}"
    );
    // SOA and NS at the apex, made up for a file that has none.
    let soa = exchange(dns, "example.com", "SOA", false)
        .await
        .expect("soa");
    assert_eq!(
        (soa.rcode.as_str(), soa.authoritative, soa.answers.len()),
        ("NoError", true, 1),
        "{soa:?}"
    );
    let ns = exchange(dns, "example.com", "NS", false).await.expect("ns");
    assert_eq!(ns.answers.len(), 1, "{ns:?}");
    // NXDOMAIN with the SOA; an existing name without the type: NOERROR, no answer, the SOA.
    let nx = exchange(dns, "nope.example.com", "A", false)
        .await
        .expect("nx");
    assert_eq!(
        (nx.rcode.as_str(), nx.authority.as_slice()),
        ("NXDomain", &["SOA".to_owned()][..]),
        "{nx:?}"
    );
    let nodata = exchange(dns, "app.example.com", "AAAA", false)
        .await
        .expect("nodata");
    assert_eq!(
        (
            nodata.rcode.as_str(),
            nodata.answers.len(),
            nodata.authority.len()
        ),
        ("NoError", 0, 1),
        "{nodata:?}"
    );
    // Outside every zone: REFUSED.
    let refused = exchange(dns, "example.org", "A", false)
        .await
        .expect("refused");
    assert_eq!(refused.rcode, "Refused");
    assert!(dataplane::query(dns, "example.org", "A").await.is_err());

    // The primary fails: the secondary, and the weight-0 record takes over www.
    primary.unhealthy();
    wait_values(
        &plane,
        "app.example.com",
        "A",
        &["198.51.100.10"],
        "the secondary",
    )
    .await;
    wait_values(
        &plane,
        "www.example.com",
        "A",
        &["192.0.2.2"],
        "the weight-0 record",
    )
    .await;
    assert_eq!(plane.check_healthy("hc-p"), Some(false));
    let snap = plane.snapshot();
    let last = snap.checks["hc-p"].checkers[0]
        .last
        .clone()
        .expect("observation");
    assert_eq!((last.ok, last.status), (false, Some(503)), "{last:?}");

    // The file changes: the new secondary value is served after the next refresh.
    st.zones[0].records[1].values = vec!["198.51.100.99".into()];
    write(&st);
    wait_values(
        &plane,
        "app.example.com",
        "A",
        &["198.51.100.99"],
        "the re-read file",
    )
    .await;
    assert!(plane.snapshot().refreshes > 1);

    // Disabling the primary's check makes it healthy (and stops its checkers).
    st.health_checks[0].disabled = true;
    write(&st);
    wait_values(
        &plane,
        "app.example.com",
        "A",
        &["192.0.2.10"],
        "disabled: healthy",
    )
    .await;
    assert!(plane.snapshot().checks["hc-p"].checkers.is_empty());
    // Disabled and inverted: unhealthy.
    st.health_checks[0].inverted = true;
    write(&st);
    wait_values(
        &plane,
        "app.example.com",
        "A",
        &["198.51.100.99"],
        "disabled + inverted: unhealthy",
    )
    .await;

    // A broken file keeps the last good state and reports why.
    std::fs::write(&path, "{ not json").expect("write");
    assert!(plane.refresh_now().await.is_err());
    assert!(plane.snapshot().source_error.is_some());
    assert_eq!(plane.answer("app.example.com", "A"), ["198.51.100.99"]);
    plane.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_string_must_be_in_the_first_5120_bytes() {
    let (near, far) = (Endpoint::http().await, Endpoint::http().await);
    let mut body = vec![b'x'; 5120 - "HEALTHY".len()];
    body.extend_from_slice(b"HEALTHY");
    near.set(200, body);
    let mut body = vec![b'x'; 5121];
    body.extend_from_slice(b"HEALTHY");
    far.set(200, body);
    let kind = HealthCheckKind::HttpStrMatch;
    let st = State {
        health_checks: vec![check("near", kind, &near), check("far", kind, &far)],
        zones: vec![],
    };
    let plane = DataPlane::start(options(Source::Static(st)))
        .await
        .expect("start");
    wait_for(
        "the check with HEALTHY past 5,120 bytes fails",
        LIMIT,
        || async {
            match plane.check_healthy("far") {
                Some(false) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    let snap = plane.snapshot();
    let error = snap.checks["far"].checkers[0]
        .last
        .clone()
        .and_then(|o| o.error)
        .unwrap_or_default();
    assert!(error.contains("5120"), "{error}");
    // Ending exactly at byte 5,120 is fine: every checker has polled, all healthy.
    let near = &snap.checks["near"];
    assert!(near.healthy, "{near:?}");
    assert!(
        near.checkers
            .iter()
            .all(|c| c.polls > 0 && c.last.as_ref().is_some_and(|o| o.ok)),
        "{near:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_checks_accept_any_certificate_and_send_sni_only_when_enabled() {
    // Certificates self-signed, so never valid: "HTTPS health checks don't validate SSL/TLS
    // certificates".
    let plain = Endpoint::https(&["app.example.com"]).await;
    let sni = Endpoint::https(&["app.example.com"]).await;
    let other = Endpoint::https(&["localhost"]).await;
    let https = |id: &str, kind, e: &Endpoint, enable_sni: bool| {
        let mut hc = check(id, kind, e);
        hc.fqdn = Some("app.example.com".into());
        hc.enable_sni = enable_sni;
        hc
    };
    let checks = vec![
        https("no-sni", HealthCheckKind::HttpsStrMatch, &plain, false),
        https("sni", HealthCheckKind::Https, &sni, true),
        https("sni-other-name", HealthCheckKind::Https, &other, true),
    ];
    let plane = DataPlane::start(options(Source::Static(State {
        health_checks: checks,
        zones: vec![],
    })))
    .await
    .expect("start");
    wait_for("every HTTPS endpoint polled", LIMIT, || async {
        if [&plain, &sni, &other].iter().all(|e| e.seen().len() >= 3) {
            Ok(())
        } else {
            Err("not yet".to_owned())
        }
    })
    .await;
    let snap = plane.snapshot();
    for id in ["no-sni", "sni", "sni-other-name"] {
        let c = &snap.checks[id];
        let all_ok = c
            .checkers
            .iter()
            .all(|k| k.last.as_ref().is_some_and(|o| o.ok));
        assert!(c.healthy && all_ok, "{id}: {c:?}");
    }
    let app = Some("app.example.com".to_owned());
    assert!(
        plain.handshakes().iter().all(Option::is_none),
        "{:?}",
        plain.handshakes()
    );
    assert!(sni.seen().iter().all(|s| s.sni == app), "{:?}", sni.seen());
    // A certificate without the FQDN: "a health checker will retry the handshake. In the
    // second attempt, the health checker will omit FullyQualifiedDomainName".
    let handshakes = other.handshakes();
    assert!(handshakes.contains(&app), "{handshakes:?}");
    assert!(
        other.seen().iter().all(|s| s.sni.is_none()),
        "{:?}",
        other.seen()
    );
    // The FQDN is the Host header, with the port (not 443).
    assert_eq!(
        sni.seen()[0].host,
        format!("app.example.com:{}", sni.addr.port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_its_addresses_and_serves() {
    let (primary, secondary) = (Endpoint::http().await, Endpoint::http().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&state(&primary, &secondary)).expect("json"),
    )
    .expect("write");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_route53-dataplane"))
        .arg("--state-file")
        .arg(&path)
        .args([
            "--time-scale",
            "0.05",
            "--exit-on-stdin-eof",
            "--max-lifetime-s",
            "120",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::time::timeout(LIMIT, BufReader::new(stdout).lines().next_line())
        .await
        .expect("LISTENING in time")
        .expect("read")
        .expect("a line");
    let mut fields = line.strip_prefix("LISTENING ").expect(&line).split(' ');
    let dns = fields
        .next()
        .and_then(|f| f.strip_prefix("dns="))
        .expect(&line);
    let status = fields
        .next()
        .and_then(|f| f.strip_prefix("status="))
        .expect(&line);
    assert!(status.parse::<std::net::SocketAddr>().is_ok(), "{line}");
    let dns = dns.parse().expect("dns addr");
    assert_eq!(
        dataplane::query(dns, "app.example.com", "A")
            .await
            .expect("query"),
        ["192.0.2.10"]
    );
    // Closing stdin ends it.
    drop(child.stdin.take());
    let status = tokio::time::timeout(LIMIT, child.wait())
        .await
        .expect("exit in time")
        .expect("wait");
    assert!(status.success(), "{status}");
}
