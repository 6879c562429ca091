//! The authoritative DNS server: every zone of the state on one loopback port, UDP and TCP, with
//! hickory-server. Answers come from record selection ([`rules`]) at the moment of the query.
//!
//! - A name with records of the asked type: those records (failover/weighted selection, aliases
//!   replaced by their target's answer), with the record's TTL, authoritative.
//! - No records of that type but a CNAME (not an alias): the CNAME, then the target's answer
//!   when the target is in the same zone.
//! - The name exists with other types only (or has names below it): NOERROR, no answer, the
//!   zone's SOA in the authority section.
//! - Not in the zone: NXDOMAIN with the SOA. Outside every zone: REFUSED.
//! - SOA and NS at the apex come from the zone's own records (Route 53 creates them), or are
//!   made up for a state file that has none.

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{Name, RData, Record as DnsRecord, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};

use super::model::{in_zone, State, Zone};
use super::rules::{self, Statuses};

/// TTL of the made-up SOA/NS of a zone that has none.
const SYNTH_TTL: u32 = 900;

/// One answer RR in presentation form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rr {
    pub name: String,
    pub rtype: String,
    pub ttl: u32,
    pub value: String,
}

/// How a query is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Not in any zone served here.
    Refused,
    /// No such name in the zone; the zone's SOA.
    NxDomain { soa: Rr },
    /// NOERROR: the answers (empty: the name exists without that type, and `soa` is set).
    Answer { answers: Vec<Rr>, soa: Option<Rr> },
}

/// The zone's SOA record (its own, or a made-up one when it has none that parses).
fn soa_of(zone: &Zone) -> Rr {
    let own = rules::group(zone, &zone.name, "SOA")
        .first()
        .and_then(|r| Some((r.ttl.unwrap_or(SYNTH_TTL), r.values.first()?.clone())))
        .filter(|(_, v)| RData::try_from_str(RecordType::SOA, v).is_ok());
    let (ttl, value) = own.unwrap_or_else(|| {
        (
            SYNTH_TTL,
            format!(
                "ns-1.dataplane.invalid. hostmaster.{} 1 7200 900 1209600 86400",
                zone.name
            ),
        )
    });
    Rr {
        name: zone.name.clone(),
        rtype: "SOA".into(),
        ttl,
        value,
    }
}

fn rrs(name: &str, rtype: &str, ttl: u32, values: Vec<String>) -> Vec<Rr> {
    values
        .into_iter()
        .map(|value| Rr {
            name: name.to_owned(),
            rtype: rtype.to_owned(),
            ttl,
            value,
        })
        .collect()
}

/// What a query for normalized `name` and `rtype` answers now.
#[must_use]
pub fn lookup(state: &State, statuses: &Statuses, name: &str, rtype: &str, random: f64) -> Lookup {
    let Some(zone) = state.zone_for(name) else {
        return Lookup::Refused;
    };
    let soa = soa_of(zone);
    if let Some((ttl, values)) = rules::resolve(zone, statuses, name, rtype, random) {
        // Empty: an alias whose target has no record of the type.
        let soa = values.is_empty().then_some(soa);
        return Lookup::Answer {
            answers: rrs(name, rtype, ttl, values),
            soa,
        };
    }
    if name == zone.name && matches!(rtype, "SOA" | "NS") {
        let answers = if rtype == "SOA" {
            vec![soa]
        } else {
            rrs(
                name,
                "NS",
                SYNTH_TTL,
                vec!["ns-1.dataplane.invalid.".into()],
            )
        };
        return Lookup::Answer { answers, soa: None };
    }
    if rtype != "CNAME" {
        if let Some((ttl, values)) = rules::resolve(zone, statuses, name, "CNAME", random) {
            let mut answers = rrs(name, "CNAME", ttl, values.clone());
            for target in values {
                let target = super::model::normalize_name(&target);
                if in_zone(&target, &zone.name) {
                    if let Some((t, v)) = rules::resolve(zone, statuses, &target, rtype, random) {
                        answers.extend(rrs(&target, rtype, t, v));
                    }
                }
            }
            return Lookup::Answer { answers, soa: None };
        }
    }
    let suffix = format!(".{name}");
    let exists = name == zone.name
        || zone
            .records
            .iter()
            .any(|r| r.name == name || r.name.ends_with(&suffix));
    if exists {
        Lookup::Answer {
            answers: Vec::new(),
            soa: Some(soa),
        }
    } else {
        Lookup::NxDomain { soa }
    }
}

/// Answers a query for normalized `name` and `rtype`.
pub type Lookuper = Arc<dyn Fn(&str, &str) -> Lookup + Send + Sync>;

/// The hickory-server request handler.
pub struct Handler {
    lookup: Lookuper,
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").finish_non_exhaustive()
    }
}

fn to_record(rr: &Rr) -> Option<DnsRecord> {
    let name = Name::from_ascii(&rr.name).ok()?;
    let rtype = RecordType::from_str(&rr.rtype).ok()?;
    let data = RData::try_from_str(rtype, &rr.value).ok()?;
    Some(DnsRecord::from_rdata(name, rr.ttl, data))
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let builder = MessageResponseBuilder::from_message_request(request);
        let mut meta = Metadata::response_from_request(&request.metadata);
        let query = match request.queries.queries() {
            [q] if request.metadata.message_type == MessageType::Query
                && request.metadata.op_code == OpCode::Query =>
            {
                q
            }
            _ => {
                let resp = builder.error_msg(&request.metadata, ResponseCode::NotImp);
                return send(&mut response_handle, resp, request).await;
            }
        };
        let name = super::model::normalize_name(&query.name().to_string());
        let rtype = query.query_type().to_string();
        let (code, answers, soa) = match (self.lookup)(&name, &rtype) {
            Lookup::Refused => (ResponseCode::Refused, Vec::new(), None),
            Lookup::NxDomain { soa } => (ResponseCode::NXDomain, Vec::new(), Some(soa)),
            Lookup::Answer { answers, soa } => (ResponseCode::NoError, answers, soa),
        };
        meta.authoritative = code != ResponseCode::Refused;
        meta.response_code = code;
        let answers: Vec<DnsRecord> = answers.iter().filter_map(to_record).collect();
        let soa: Vec<DnsRecord> = soa.iter().filter_map(to_record).collect();
        let resp = builder.build(meta, answers.iter(), [], soa.iter(), []);
        send(&mut response_handle, resp, request).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    resp: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
        impl Iterator<Item = &'a DnsRecord> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match handle.send_response(resp).await {
        Ok(info) => info,
        Err(_) => {
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.response_code = ResponseCode::ServFail;
            hickory_server::proto::op::Header {
                metadata: meta,
                counts: hickory_server::proto::op::HeaderCounts::default(),
            }
            .into()
        }
    }
}

/// Binds UDP and TCP on the same address (port 0: one free for both) and serves `lookup`.
pub async fn serve(
    listen: SocketAddr,
    lookup: Lookuper,
) -> anyhow::Result<(Server<Handler>, SocketAddr)> {
    let mut last_err = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(listen)
            .await
            .with_context(|| format!("binding DNS UDP {listen}"))?;
        let addr = udp.local_addr()?;
        match TcpListener::bind(addr).await {
            Ok(tcp) => {
                let mut server = Server::new(Handler {
                    lookup: Arc::clone(&lookup),
                });
                server.register_socket(udp);
                server.register_listener(tcp, Duration::from_secs(5), 64 * 1024);
                return Ok((server, addr));
            }
            Err(e) if listen.port() == 0 => last_err = Some(e),
            Err(e) => return Err(e).with_context(|| format!("binding DNS TCP {addr}")),
        }
    }
    Err(anyhow::anyhow!(
        "no port free for both UDP and TCP: {last_err:?}"
    ))
}
