//! The `dns` probe: ask one nameserver one question, compare the answer set.
//!
//! hickory-resolver against exactly the configured nameserver (no system configuration, no hosts
//! file) with its response cache disabled, so every probe really asks. Answers are compared in a
//! normalized presentation form: IPs for A/AAAA, lowercase fully qualified names for CNAME/NS,
//! `preference name.` for MX, the concatenated character strings for TXT.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::probe::{DnsProbe, DnsRecordType, DnsTransport};
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use tokio::time::Instant;

use super::{ProbeOutcome, Prober};

/// Resolvers by (nameserver, transport, timeout): built once, reused by every probe of that
/// nameserver. Their caches are disabled, so sharing them never answers a probe from memory.
#[derive(Default)]
pub struct ResolverCache {
    resolvers: Mutex<HashMap<(SocketAddr, bool, Duration), Arc<TokioResolver>>>,
}

impl std::fmt::Debug for ResolverCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolverCache").finish_non_exhaustive()
    }
}

impl ResolverCache {
    fn get(
        &self,
        nameserver: SocketAddr,
        transport: DnsTransport,
        timeout: Duration,
    ) -> Result<Arc<TokioResolver>, NetError> {
        let tcp = transport == DnsTransport::Tcp;
        let key = (nameserver, tcp, timeout);
        // The map holds no invariant a panicking holder could break; keep using it.
        let mut map = self
            .resolvers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(r) = map.get(&key) {
            return Ok(Arc::clone(r));
        }
        let resolver = Arc::new(build_resolver(nameserver, tcp, timeout)?);
        map.insert(key, Arc::clone(&resolver));
        Ok(resolver)
    }
}

/// A resolver that asks `nameserver` directly and caches nothing, with no hosts file and two
/// tries of `timeout / 2`: what a probe (and the drill's DNS watch) must see is the server's
/// answer now.
pub(crate) fn build_resolver(
    nameserver: SocketAddr,
    tcp: bool,
    timeout: Duration,
) -> Result<TokioResolver, NetError> {
    let mut ns = if tcp {
        NameServerConfig::tcp(nameserver.ip())
    } else {
        NameServerConfig::udp(nameserver.ip())
    };
    for conn in &mut ns.connections {
        conn.port = nameserver.port();
    }
    let mut builder = Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    );
    let opts = builder.options_mut();
    // No cache: a capacity of 0, and any entry that slips in expires at once.
    opts.cache_size = 0;
    opts.positive_max_ttl = Some(Duration::ZERO);
    opts.negative_max_ttl = Some(Duration::ZERO);
    opts.use_hosts_file = ResolveHosts::Never;
    // Two tries (one retry) per probe: a lost UDP datagram is not an outage. The probe's own
    // deadline bounds the total.
    opts.timeout = timeout / 2;
    opts.attempts = 1;
    opts.num_concurrent_reqs = 1;
    opts.try_tcp_on_error = false;
    builder.build()
}

fn record_type(t: DnsRecordType) -> RecordType {
    match t {
        DnsRecordType::A => RecordType::A,
        DnsRecordType::Aaaa => RecordType::AAAA,
        DnsRecordType::Cname => RecordType::CNAME,
        DnsRecordType::Txt => RecordType::TXT,
        DnsRecordType::Mx => RecordType::MX,
        DnsRecordType::Ns => RecordType::NS,
    }
}

/// Probes `spec` once within `timeout`.
pub async fn probe(prober: &Prober, spec: &DnsProbe, timeout: Duration) -> ProbeOutcome {
    let start = Instant::now();
    let error = |detail: String| ProbeOutcome::unhealthy("error", Duration::ZERO, detail);
    let mut name = match Name::from_ascii(&spec.name) {
        Ok(n) => n,
        Err(e) => return error(format!("invalid name {:?}: {e}", spec.name)),
    };
    name.set_fqdn(true);
    let expected = match normalize_expected(spec.record_type, &spec.expect) {
        Ok(e) => e,
        Err(detail) => return error(detail),
    };
    let resolver = match prober
        .resolvers
        .get(spec.nameserver, spec.transport, timeout)
    {
        Ok(r) => r,
        Err(e) => return error(format!("building resolver: {e}")),
    };
    let rtype = record_type(spec.record_type);
    let result = tokio::time::timeout(timeout, resolver.lookup(name, rtype)).await;
    let latency = start.elapsed();
    let lookup = match result {
        Err(_) => {
            return ProbeOutcome::unhealthy(
                "timeout",
                latency,
                format!("no answer from {} within {timeout:?}", spec.nameserver),
            )
        }
        Ok(Err(e)) => return failure(&e, latency),
        Ok(Ok(lookup)) => lookup,
    };
    let seen: BTreeSet<String> = lookup
        .answers()
        .iter()
        .filter(|r| r.record_type() == rtype)
        .filter_map(|r| present(&r.data))
        .collect();
    if seen.is_empty() {
        return ProbeOutcome::unhealthy("dns_empty", latency, format!("no {rtype} records"));
    }
    if !expected.is_empty() && seen != expected {
        return ProbeOutcome::unhealthy(
            "dns_mismatch",
            latency,
            format!("got {} want {}", list(&seen), list(&expected)),
        );
    }
    ProbeOutcome::healthy(latency, list(&seen))
}

fn failure(e: &NetError, latency: Duration) -> ProbeOutcome {
    let (reason, detail) = match e {
        NetError::Dns(DnsError::NoRecordsFound(nr))
            if nr.response_code == ResponseCode::NXDomain =>
        {
            ("dns_nxdomain", "NXDOMAIN".to_owned())
        }
        NetError::Dns(DnsError::NoRecordsFound(_)) => ("dns_empty", "no records".to_owned()),
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => {
            ("dns_servfail", "SERVFAIL".to_owned())
        }
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => {
            ("dns_refused", "REFUSED".to_owned())
        }
        _ if crate::local_resource::in_chain(e) => (crate::local_resource::REASON, e.to_string()),
        NetError::Timeout => ("timeout", e.to_string()),
        NetError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            ("connect_refused", e.to_string())
        }
        _ => ("dns", e.to_string()),
    };
    ProbeOutcome::unhealthy(reason, latency, detail)
}

fn list(set: &BTreeSet<String>) -> String {
    let items: Vec<&str> = set.iter().map(String::as_str).collect();
    format!("[{}]", items.join(", "))
}

fn fqdn_lower(name: &Name) -> String {
    let mut n = name.to_lowercase();
    n.set_fqdn(true);
    n.to_string()
}

/// An answer in the normalized presentation form; `None` for types we never ask for.
fn present(data: &RData) -> Option<String> {
    Some(match data {
        RData::A(a) => a.0.to_string(),
        RData::AAAA(a) => a.0.to_string(),
        RData::CNAME(c) => fqdn_lower(&c.0),
        RData::NS(n) => fqdn_lower(&n.0),
        RData::MX(mx) => format!("{} {}", mx.preference, fqdn_lower(&mx.exchange)),
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect(),
        _ => return None,
    })
}

/// The configured answers in the form [`present`] produces.
fn normalize_expected(t: DnsRecordType, expect: &[String]) -> Result<BTreeSet<String>, String> {
    expect
        .iter()
        .map(|e| {
            let e = e.trim();
            let bad = || format!("expected {t:?} answer {e:?} is malformed");
            match t {
                DnsRecordType::A | DnsRecordType::Aaaa => e
                    .parse::<IpAddr>()
                    .map(|ip| ip.to_string())
                    .map_err(|_| bad()),
                DnsRecordType::Cname | DnsRecordType::Ns => normalize_name(e).ok_or_else(bad),
                DnsRecordType::Mx => {
                    let mut parts = e.split_whitespace();
                    match (
                        parts.next().map(str::parse::<u16>),
                        parts.next().and_then(normalize_name),
                        parts.next(),
                    ) {
                        (Some(Ok(pref)), Some(name), None) => Ok(format!("{pref} {name}")),
                        _ => Err(bad()),
                    }
                }
                DnsRecordType::Txt => Ok(unquote_txt(e)),
            }
        })
        .collect()
}

fn normalize_name(s: &str) -> Option<String> {
    Name::from_ascii(s).ok().map(|n| fqdn_lower(&n))
}

/// `"v=spf1 " "-all"` → `v=spf1 -all`; unquoted text is taken as is.
fn unquote_txt(s: &str) -> String {
    if !s.starts_with('"') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut in_quotes = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', _) => in_quotes = !in_quotes,
            ('\\', true) => out.extend(chars.next()),
            (c, true) => out.push(c),
            (_, false) => {} // whitespace between strings
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use config::probe::ProbeSpec;
    use hickory_resolver::proto::op::{Message, MessageType};
    use hickory_resolver::proto::rr::rdata::{A, SOA, TXT};
    use hickory_resolver::proto::rr::Record;
    use quorum::AgentId;
    use tokio::net::UdpSocket;

    use super::*;

    /// A tiny authoritative server: `ok.test.` A 192.0.2.1 and 192.0.2.2, `txt.test.` TXT,
    /// `empty.test.` exists with no A, `fail.test.` SERVFAIL, `refuse.test.` REFUSED, anything
    /// else NXDOMAIN. Long TTLs (and an SOA on negative answers), so that a caching resolver
    /// would answer repeats from memory. Counts the queries it answers.
    async fn dns_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = socket.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&count);
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                let reply = answer(&query).to_vec().expect("encode");
                let _ = socket.send_to(&reply, peer).await;
            }
        });
        (addr, count)
    }

    fn answer(query: &Message) -> Message {
        let mut m = Message::response(query.metadata.id, query.metadata.op_code);
        m.metadata.message_type = MessageType::Response;
        m.metadata.authoritative = true;
        m.metadata.recursion_desired = query.metadata.recursion_desired;
        m.add_queries(query.queries.clone());
        let q = &query.queries[0];
        let name = q.name().to_lowercase().to_string();
        match (name.as_str(), q.query_type()) {
            ("ok.test.", RecordType::A) => {
                for ip in [[192, 0, 2, 2], [192, 0, 2, 1]] {
                    m.add_answer(Record::from_rdata(
                        q.name().clone(),
                        300,
                        RData::A(A::from(std::net::Ipv4Addr::from(ip))),
                    ));
                }
            }
            ("txt.test.", RecordType::TXT) => {
                m.add_answer(Record::from_rdata(
                    q.name().clone(),
                    300,
                    RData::TXT(TXT::new(vec!["v=ok ".into(), "1".into()])),
                ));
            }
            ("ok.test." | "empty.test." | "txt.test.", _) => {}
            ("fail.test.", _) => m.metadata.response_code = ResponseCode::ServFail,
            ("refuse.test.", _) => m.metadata.response_code = ResponseCode::Refused,
            _ => m.metadata.response_code = ResponseCode::NXDomain,
        }
        if m.answers.is_empty() {
            let zone = Name::from_ascii("test.").expect("name");
            let soa = SOA::new(zone.clone(), zone.clone(), 1, 300, 300, 300, 300);
            m.add_authority(Record::from_rdata(zone, 300, RData::SOA(soa)));
        }
        m
    }

    fn spec(
        nameserver: SocketAddr,
        name: &str,
        record_type: DnsRecordType,
        expect: &[&str],
    ) -> ProbeSpec {
        ProbeSpec::Dns(DnsProbe {
            name: name.into(),
            record_type,
            nameserver,
            transport: DnsTransport::Udp,
            expect: expect.iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    const T: Duration = Duration::from_secs(2);

    fn prober() -> Prober {
        Prober::new(AgentId::new("agent-a").expect("id"))
    }

    #[tokio::test]
    async fn answers_are_judged() {
        let (ns, count) = dns_server().await;
        let p = prober();
        let cases: &[(&str, DnsRecordType, &[&str], &str)] = &[
            (
                "ok.test",
                DnsRecordType::A,
                &["192.0.2.1", "192.0.2.2"],
                "ok",
            ),
            (
                "OK.test.",
                DnsRecordType::A,
                &[" 192.0.2.2", "192.0.2.1"],
                "ok",
            ),
            ("ok.test", DnsRecordType::A, &[], "ok"),
            ("ok.test", DnsRecordType::A, &["192.0.2.1"], "dns_mismatch"),
            (
                "ok.test",
                DnsRecordType::A,
                &["192.0.2.1", "192.0.2.3"],
                "dns_mismatch",
            ),
            ("txt.test", DnsRecordType::Txt, &["\"v=ok \" \"1\""], "ok"),
            ("txt.test", DnsRecordType::Txt, &["v=ok 1"], "ok"),
            ("txt.test", DnsRecordType::Txt, &["v=other"], "dns_mismatch"),
            ("missing.test", DnsRecordType::A, &[], "dns_nxdomain"),
            ("empty.test", DnsRecordType::A, &[], "dns_empty"),
            ("fail.test", DnsRecordType::A, &[], "dns_servfail"),
            ("refuse.test", DnsRecordType::A, &[], "dns_refused"),
            ("ok.test", DnsRecordType::A, &["not-an-ip"], "error"),
        ];
        for (name, t, expect, want) in cases {
            let o = p.probe(&spec(ns, name, *t, expect), T).await;
            assert_eq!(o.reason.as_str(), *want, "{name} {t:?} {expect:?}: {o:?}");
            assert_eq!(o.healthy, *want == "ok");
        }
        let o = p
            .probe(&spec(ns, "ok.test", DnsRecordType::A, &["192.0.2.9"]), T)
            .await;
        assert_eq!(o.detail, "got [192.0.2.1, 192.0.2.2] want [192.0.2.9]");
        assert!(count.load(Ordering::SeqCst) >= cases.len() - 1);
    }

    #[tokio::test]
    async fn every_probe_really_asks() {
        let (ns, count) = dns_server().await;
        let p = prober();
        for i in 0..3 {
            let o = p
                .probe(&spec(ns, "ok.test", DnsRecordType::A, &[]), T)
                .await;
            assert!(o.healthy, "{o:?}");
            assert_eq!(
                count.load(Ordering::SeqCst),
                2 * i + 1,
                "answer {i} came from a cache"
            );
            let o = p
                .probe(&spec(ns, "missing.test", DnsRecordType::A, &[]), T)
                .await;
            assert_eq!(o.reason.as_str(), "dns_nxdomain");
            assert_eq!(
                count.load(Ordering::SeqCst),
                2 * i + 2,
                "negative answer {i} came from a cache"
            );
        }
    }

    #[tokio::test]
    async fn silent_nameserver_is_timeout() {
        // Bound but never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let ns = silent.local_addr().expect("addr");
        let timeout = Duration::from_millis(300);
        let start = std::time::Instant::now();
        let o = prober()
            .probe(&spec(ns, "ok.test", DnsRecordType::A, &[]), timeout)
            .await;
        assert_eq!(o.reason.as_str(), "timeout", "{o:?}");
        assert!(start.elapsed() < timeout * 3, "{:?}", start.elapsed());
        drop(silent);
    }

    #[test]
    fn expected_answers_are_normalized() {
        let n = |t, e: &[&str]| {
            normalize_expected(t, &e.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
        };
        assert_eq!(
            n(DnsRecordType::Aaaa, &["2001:DB8:0::1"]).expect("ok"),
            BTreeSet::from(["2001:db8::1".to_owned()])
        );
        assert_eq!(
            n(DnsRecordType::Cname, &["Mail.Example.com"]).expect("ok"),
            BTreeSet::from(["mail.example.com.".to_owned()])
        );
        assert_eq!(
            n(DnsRecordType::Mx, &["10  MX.example.com."]).expect("ok"),
            BTreeSet::from(["10 mx.example.com.".to_owned()])
        );
        assert!(n(DnsRecordType::Mx, &["mx.example.com"]).is_err());
        assert_eq!(unquote_txt(r#""a\"b" "c""#), "a\"bc");
    }
}
