//! A minimal DNS client for tests: one question to one server over UDP or TCP, no cache, no
//! retries beyond the timeout, hickory-proto messages.

use std::net::SocketAddr;
use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use hickory_server::proto::op::{Message, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

/// How long one exchange may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsAnswer {
    /// `NoError`, `NXDomain`, `Refused`, ...
    pub rcode: String,
    pub authoritative: bool,
    /// Answer section: (type, TTL, value in presentation form).
    pub answers: Vec<(String, u32, String)>,
    /// Authority section types (an SOA on negative answers).
    pub authority: Vec<String>,
}

impl DnsAnswer {
    /// The values, in order (what `dig +short` prints).
    #[must_use]
    pub fn values(&self) -> Vec<String> {
        self.answers.iter().map(|(_, _, v)| v.clone()).collect()
    }
}

/// Asks `dns` for (`name`, `rtype`) over UDP (`tcp` false) or TCP.
pub async fn exchange(
    dns: SocketAddr,
    name: &str,
    rtype: &str,
    tcp: bool,
) -> anyhow::Result<DnsAnswer> {
    let mut qname = Name::from_ascii(name).with_context(|| format!("name {name:?}"))?;
    qname.set_fqdn(true);
    let qtype = RecordType::from_str(&rtype.to_ascii_uppercase())
        .map_err(|e| anyhow::anyhow!("record type {rtype:?}: {e}"))?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = false;
    msg.add_query(Query::query(qname, qtype));
    let id = msg.metadata.id;
    let bytes = msg.to_vec().context("encoding the query")?;
    let reply = tokio::time::timeout(QUERY_TIMEOUT, async {
        if tcp {
            tcp_exchange(dns, &bytes).await
        } else {
            udp_exchange(dns, &bytes, id).await
        }
    })
    .await
    .with_context(|| format!("no answer from {dns} within {QUERY_TIMEOUT:?}"))??;
    let m = Message::from_vec(&reply).context("decoding the answer")?;
    anyhow::ensure!(
        m.metadata.id == id,
        "answer id {} for query {id}",
        m.metadata.id
    );
    Ok(DnsAnswer {
        rcode: format!("{:?}", m.metadata.response_code),
        authoritative: m.metadata.authoritative,
        answers: m
            .answers
            .iter()
            .map(|r| (r.record_type().to_string(), r.ttl, presentation(&r.data)))
            .collect(),
        authority: m
            .authorities
            .iter()
            .map(|r| r.record_type().to_string())
            .collect(),
    })
}

/// A value as `dig +short` prints it: TXT strings quoted (and `"` and `\` escaped), the rest
/// in hickory's presentation form.
fn presentation(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|s| {
                let s = String::from_utf8_lossy(s)
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"");
                format!("\"{s}\"")
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

async fn udp_exchange(dns: SocketAddr, query: &[u8], id: u16) -> anyhow::Result<Vec<u8>> {
    let bind: SocketAddr = if dns.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    let socket = UdpSocket::bind(bind).await?;
    socket.connect(dns).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        // A stray datagram (an earlier query's late answer) is skipped.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            return Ok(buf[..n].to_vec());
        }
    }
}

async fn tcp_exchange(dns: SocketAddr, query: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(dns).await?;
    let len = u16::try_from(query.len()).context("query too long")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).await?;
    Ok(reply)
}

fn values_of(answer: DnsAnswer) -> anyhow::Result<Vec<String>> {
    let code = ResponseCode::NoError;
    let nx = ResponseCode::NXDomain;
    anyhow::ensure!(
        answer.rcode == format!("{code:?}") || answer.rcode == format!("{nx:?}"),
        "DNS answered {}",
        answer.rcode
    );
    Ok(answer.values())
}

/// The answer values (what `dig +short` prints) of a real query over UDP; NXDOMAIN and NODATA
/// are an empty list, any other error code an error.
pub async fn query(dns: SocketAddr, name: &str, rtype: &str) -> anyhow::Result<Vec<String>> {
    values_of(exchange(dns, name, rtype, false).await?)
}

/// [`query`] over TCP.
pub async fn query_tcp(dns: SocketAddr, name: &str, rtype: &str) -> anyhow::Result<Vec<String>> {
    values_of(exchange(dns, name, rtype, true).await?)
}
