//! Probe tables (`http`, `tcp`, `dns`, the database tables of [`db`] and the `rds` table of
//! [`rds`]) of checks and control probes → [`ProbeSpec`].

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{db, rds};
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::parse::{
    duration_ms, fmt_ms, host_port, http_url, is_dns_name, non_empty, opt_file_path, or_default,
    ranged_or_default, required, server_name, socket_addr_or_ip,
};
use crate::probe::{
    DbEngine, DnsProbe, DnsRecordType, DnsTransport, HttpProbe, ProbeSpec, TcpProbe, TlsVerify,
};
use crate::raw::{RawDns, RawDnsTransport, RawDnsType, RawHttp, RawProbes, RawTcp};

/// Headers the agent sets itself; overriding them would break the request.
const RESERVED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "connection"];

/// Exactly one probe table. `timeout_ms`: the probe's timeout if valid (for `latency_threshold`).
/// `table`: `checks` or `local.control`, for the fix text.
pub(super) fn probe(
    raw: RawProbes<'_>,
    timeout_ms: Option<u64>,
    table: &str,
    p: &FieldPath,
    report: &mut Report,
) -> Option<ProbeSpec> {
    let present: Vec<&str> = [
        ("http", raw.http.is_some()),
        ("tcp", raw.tcp.is_some()),
        ("dns", raw.dns.is_some()),
        ("postgres", raw.postgres.is_some()),
        ("mysql", raw.mysql.is_some()),
        ("replication_lag", raw.replication_lag.is_some()),
        ("rds", raw.rds.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match present.as_slice() {
        [_] => {}
        [] => {
            // A probe table that serde rejected outright is not "missing".
            if !KINDS.iter().any(|k| report.has_error_at(&p.key(k))) {
                report.error(
                    p,
                    "has no probe",
                    format!(
                        "add exactly one of the tables [{table}.http], [{table}.tcp], [{table}.dns], \
                         [{table}.postgres], [{table}.mysql], [{table}.replication_lag] or [{table}.rds]"
                    ),
                );
            }
            return None;
        }
        many => {
            report.error(
                p,
                format!(
                    "has {} probes ({}); one is allowed",
                    many.len(),
                    many.join(", ")
                ),
                "keep exactly one probe table (use separate entries for more probes)",
            );
            return None;
        }
    }
    if let Some(h) = raw.http {
        http(h, timeout_ms, &p.key("http"), report).map(ProbeSpec::Http)
    } else if let Some(t) = raw.tcp {
        tcp(t, &p.key("tcp"), report).map(ProbeSpec::Tcp)
    } else if let Some(d) = raw.dns {
        dns(d, &p.key("dns"), report).map(ProbeSpec::Dns)
    } else if let Some(d) = raw.postgres {
        db::write(
            d,
            DbEngine::Postgres,
            timeout_ms,
            &p.key("postgres"),
            report,
        )
        .map(ProbeSpec::Postgres)
    } else if let Some(d) = raw.mysql {
        db::write(d, DbEngine::Mysql, timeout_ms, &p.key("mysql"), report).map(ProbeSpec::Mysql)
    } else if let Some(d) = raw.replication_lag {
        db::lag(d, timeout_ms, &p.key("replication_lag"), report).map(ProbeSpec::ReplicationLag)
    } else {
        raw.rds
            .and_then(|r| rds::rds(r, &p.key("rds"), report))
            .map(ProbeSpec::Rds)
    }
}

/// Every probe table's key.
const KINDS: [&str; 7] = [
    "http",
    "tcp",
    "dns",
    "postgres",
    "mysql",
    "replication_lag",
    "rds",
];

fn http(
    raw: &RawHttp,
    timeout_ms: Option<u64>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<HttpProbe> {
    let url_path = p.key("url");
    let url = required(
        raw.url.as_ref(),
        &url_path,
        report,
        "add url = \"https://app.internal/healthz\"",
    )
    .and_then(|u| http_url(u, false, &url_path, report));

    let method_path = p.key("method");
    let method = or_default(
        raw.method.as_ref(),
        defaults::HTTP_METHOD.to_owned(),
        &method_path,
        report,
    )
    .and_then(|m| {
        let upper = m.to_ascii_uppercase();
        if http::Method::from_bytes(upper.as_bytes()).is_ok() {
            Some(upper)
        } else {
            report.error(
                &method_path,
                format!("{m:?} is not an HTTP method"),
                "use GET, HEAD, POST, …",
            );
            None
        }
    });

    let status_path = p.key("expect_status");
    let statuses = or_default(
        raw.expect_status.as_ref(),
        vec![i64::from(defaults::HTTP_EXPECT_STATUS)],
        &status_path,
        report,
    );
    let statuses = statuses.and_then(|list| expect_status(&list, &status_path, report));

    let body_path = p.key("body_contains");
    let body_contains = match &raw.body_contains {
        None => Some(None),
        Some(b) if b.is_empty() => {
            report.error(
                &body_path,
                "must not be empty",
                "remove it, or give the text the body must contain",
            );
            None
        }
        Some(b) => Some(Some(b.clone())),
    };

    let headers = headers(raw, &p.key("headers"), report);

    let host_path = p.key("host");
    let host = match &raw.host {
        None => Some(None),
        Some(h) if !h.contains('@') && h.parse::<http::uri::Authority>().is_ok() => {
            Some(Some(h.clone()))
        }
        Some(h) => {
            report.error(
                &host_path,
                format!("{h:?} is not a host[:port]"),
                "write the Host header value, e.g. \"app.example.com\"",
            );
            None
        }
    };

    let lat_path = p.key("latency_threshold");
    let latency =
        match &raw.latency_threshold {
            None => Some(None),
            Some(d) => {
                duration_ms(&d.0, &lat_path, report).and_then(|ms| match timeout_ms {
                    Some(t) if ms >= t => {
                        report.error(
                    &lat_path,
                    format!("must be shorter than the timeout ({}), is {}", fmt_ms(t), fmt_ms(ms)),
                    "lower latency_threshold (a probe slower than the timeout already fails)",
                );
                        None
                    }
                    _ => Some(Some(ms)),
                })
            }
        };

    let body_bytes_path = p.key("max_body_bytes");
    let max_body = ranged_or_default(
        raw.max_body_bytes.as_ref(),
        defaults::HTTP_MAX_BODY_BYTES,
        (1, defaults::MAX_BODY_BYTES_LIMIT),
        &body_bytes_path,
        report,
        "e.g. 65536",
    )
    .and_then(|n| usize::try_from(n).ok());

    let mut tls = tls_verify(raw.ca_file.as_ref(), raw.server_name.as_ref(), p, report);
    if url.as_ref().is_some_and(|u| u.scheme() == "http") {
        for (key, set) in [
            ("ca_file", raw.ca_file.is_some()),
            ("server_name", raw.server_name.is_some()),
        ] {
            if set {
                report.error(
                    &p.key(key),
                    "has no effect on an http:// URL",
                    "remove it, or use an https:// URL",
                );
                tls = None;
            }
        }
    }

    Some(HttpProbe {
        url: url?,
        method: method?,
        expect_status: statuses?,
        body_contains: body_contains?,
        headers: headers?,
        host: host?,
        tls: tls?,
        latency_threshold_ms: latency?,
        max_body_bytes: max_body?,
    })
}

/// Statuses in 100..=599, never empty; sorted and de-duplicated (a set).
fn expect_status(list: &[i64], p: &FieldPath, report: &mut Report) -> Option<Vec<u16>> {
    if list.is_empty() {
        report.error(
            p,
            "must not be empty",
            "list the healthy statuses, e.g. [200] or [200, 204]",
        );
        return None;
    }
    let mut out = Vec::with_capacity(list.len());
    for (i, &s) in list.iter().enumerate() {
        match u16::try_from(s) {
            Ok(s) if (100..=599).contains(&s) => out.push(s),
            _ => report.error(
                &p.index(i),
                format!("{s} is not an HTTP status"),
                "use statuses from 100 to 599",
            ),
        }
    }
    if out.len() != list.len() {
        return None;
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// Header names are case-insensitive, so they are lower-cased (and sorted: TOML tables have no
/// order), which keeps the digest independent of spelling.
fn headers(raw: &RawHttp, p: &FieldPath, report: &mut Report) -> Option<Vec<(String, String)>> {
    let Some(map) = &raw.headers else {
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(map.len());
    let mut ok = true;
    for (name, value) in map {
        let hp = p.key(name);
        let lower = name.to_ascii_lowercase();
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            report.error(
                &hp,
                format!("{name:?} is not a valid header name"),
                "use letters, digits and '-', e.g. \"X-Env\"",
            );
            ok = false;
        } else if RESERVED_HEADERS.contains(&lower.as_str()) {
            let fix = if lower == "host" {
                "use the probe's `host` setting instead"
            } else {
                "remove it; the agent sets it"
            };
            report.error(&hp, format!("header {name:?} cannot be set here"), fix);
            ok = false;
        } else if out.iter().any(|(n, _): &(String, String)| n == &lower) {
            report.error(
                &hp,
                format!("header {name:?} is given twice (names are case-insensitive)"),
                "keep one of them",
            );
            ok = false;
        } else if http::HeaderValue::from_str(value).is_err() {
            report.error(
                &hp,
                "the value contains control characters",
                "use printable text",
            );
            ok = false;
        } else {
            out.push((lower, value.clone()));
        }
    }
    out.sort();
    ok.then_some(out)
}

/// `ca_file` / `server_name` of an http or tcp probe, both optional.
fn tls_verify(
    ca_file: Option<&String>,
    name: Option<&String>,
    p: &FieldPath,
    report: &mut Report,
) -> Option<TlsVerify> {
    let ca_file = opt_file_path(ca_file, "/etc/ssl/app-ca.pem", &p.key("ca_file"), report);
    let server_name = match name {
        None => Some(None),
        Some(n) => server_name(n, &p.key("server_name"), report).map(Some),
    };
    Some(TlsVerify {
        ca_file: ca_file?,
        server_name: server_name?,
    })
}

fn tcp(raw: &RawTcp, p: &FieldPath, report: &mut Report) -> Option<TcpProbe> {
    let addr_path = p.key("address");
    let address = required(
        raw.address.as_ref(),
        &addr_path,
        report,
        "add address = \"db.internal:5432\"",
    )
    .and_then(|a| host_port(a, &addr_path, report));
    let use_tls = or_default(raw.tls.as_ref(), false, &p.key("tls"), report);
    let verify = tls_verify(raw.ca_file.as_ref(), raw.server_name.as_ref(), p, report);
    if use_tls == Some(false) {
        for (key, set) in [
            ("ca_file", raw.ca_file.is_some()),
            ("server_name", raw.server_name.is_some()),
        ] {
            if set {
                report.error(
                    &p.key(key),
                    "is only used with tls = true",
                    "set tls = true, or remove it",
                );
            }
        }
    }
    let tls = match use_tls? {
        true => Some(verify?),
        false if raw.ca_file.is_some() || raw.server_name.is_some() => return None,
        false => None,
    };
    Some(TcpProbe {
        address: address?,
        tls,
    })
}

fn dns(raw: &RawDns, p: &FieldPath, report: &mut Report) -> Option<DnsProbe> {
    let name_path = p.key("name");
    let name = required(
        raw.name.as_ref(),
        &name_path,
        report,
        "add name = \"app.internal\"",
    )
    .and_then(|n| {
        if is_dns_name(n) {
            Some(n.clone())
        } else {
            report.error(
                &name_path,
                format!("{n:?} is not a DNS name"),
                "write a name like \"app.internal\" or \"app.example.com.\"",
            );
            None
        }
    });
    let record_type = or_default(
        raw.record_type.as_ref(),
        RawDnsType::A,
        &p.key("type"),
        report,
    )
    .map(|t| match t {
        RawDnsType::A => DnsRecordType::A,
        RawDnsType::Aaaa => DnsRecordType::Aaaa,
        RawDnsType::Cname => DnsRecordType::Cname,
        RawDnsType::Txt => DnsRecordType::Txt,
        RawDnsType::Mx => DnsRecordType::Mx,
        RawDnsType::Ns => DnsRecordType::Ns,
    });
    let ns_path = p.key("nameserver");
    let nameserver = required(
        raw.nameserver.as_ref(),
        &ns_path,
        report,
        "add nameserver = \"10.0.0.2:53\"",
    )
    .and_then(|n| socket_addr_or_ip(n, defaults::DNS_PORT, &ns_path, report, "10.0.0.2:53"));
    let transport = or_default(
        raw.transport.as_ref(),
        RawDnsTransport::Udp,
        &p.key("transport"),
        report,
    )
    .map(|t| match t {
        RawDnsTransport::Udp => DnsTransport::Udp,
        RawDnsTransport::Tcp => DnsTransport::Tcp,
    });
    let expect = match (record_type, &raw.expect) {
        (_, None) => Some(Vec::new()),
        (Some(t), Some(list)) => dns_expect(t, list, &p.key("expect"), report),
        (None, Some(_)) => None,
    };
    Some(DnsProbe {
        name: name?,
        record_type: record_type?,
        nameserver: nameserver?,
        transport: transport?,
        expect: expect?,
    })
}

/// Expected answers: addresses must parse for A/AAAA (and are normalised); a set, so sorted.
fn dns_expect(
    t: DnsRecordType,
    list: &[String],
    p: &FieldPath,
    report: &mut Report,
) -> Option<Vec<String>> {
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let ip = match t {
            DnsRecordType::A => Some(
                item.parse::<Ipv4Addr>()
                    .map(|a| a.to_string())
                    .map_err(|_| "an IPv4 address"),
            ),
            DnsRecordType::Aaaa => Some(
                item.parse::<Ipv6Addr>()
                    .map(|a| a.to_string())
                    .map_err(|_| "an IPv6 address"),
            ),
            _ => None,
        };
        match ip {
            Some(Ok(norm)) => out.push(norm),
            Some(Err(what)) => {
                report.error(
                    &p.index(i),
                    format!("{item:?} is not {what}"),
                    format!("write each expected answer as {what}"),
                );
            }
            None => out.extend(non_empty(
                item,
                &p.index(i),
                report,
                "remove the empty answer",
            )),
        }
    }
    if out.len() != list.len() {
        return None;
    }
    out.sort();
    out.dedup();
    Some(out)
}
