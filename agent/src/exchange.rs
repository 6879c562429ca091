//! Peer exchange: push our ballot to every peer after each round, pull peers' ballots to
//! catch up (at start, and for any peer whose ballot we lack or has expired).
//!
//! Signatures carry the trust, not the transport: whatever arrives goes through the book.
//! One request per peer at a time, a short timeout and no retries — the next round is the retry.
//! A ballot pushed while the peer's previous request still runs waits in a one-ballot slot
//! (the newest replaces an older one) and goes out when that request ends, so an early ballot
//! is never silently dropped and a slow peer never builds a queue.
//!
//! A call that fails for lack of a local resource (descriptors, ports, buffers) tells the node,
//! which then abstains: this agent cannot see, whatever the peers say.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use quorum::AgentId;
use url::Url;

use crate::bundle;
use crate::clock::SharedClock;
use crate::intake::Intake;
use crate::net;
use crate::node::Node;
use crate::telemetry as t;

#[derive(Debug)]
struct Peer {
    id: AgentId,
    ballots_url: Url,
    /// A request to this peer is running. Set and cleared with `pending` locked.
    busy: AtomicBool,
    /// The newest ballot pushed while busy: sent when the running request ends.
    pending: Mutex<Option<Bytes>>,
}

impl Peer {
    fn pending(&self) -> std::sync::MutexGuard<'_, Option<Bytes>> {
        // An Option cannot be left half-written; keep using it after a panic elsewhere.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Claims the peer for a request; `false` when one is already running.
    fn claim(&self) -> bool {
        let _slot = self.pending();
        !self.busy.swap(true, Ordering::AcqRel)
    }

    /// Ends a request: hands back the ballot that waited for it (the peer stays claimed), or
    /// frees the peer.
    fn release(&self) -> Option<Bytes> {
        let mut slot = self.pending();
        let next = slot.take();
        if next.is_none() {
            self.busy.store(false, Ordering::Release);
        }
        next
    }
}

/// Talks to every other member.
#[derive(Debug)]
pub struct Exchange {
    peers: Vec<Arc<Peer>>,
    node: Arc<Mutex<Node>>,
    /// Pulled ballots are checked with it before the node lock is taken.
    intake: Intake,
    clock: SharedClock,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    max_bytes: usize,
    agent_header: HeaderValue,
}

impl Exchange {
    /// Builds the peer list from the node's config (every member but us).
    pub fn new(
        node: Arc<Mutex<Node>>,
        clock: SharedClock,
        tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Self> {
        let (peers, timeout, max_bytes, me, intake) = {
            let n = node
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let cfg = n.config();
            let me = cfg.local.agent_id.clone();
            let mut peers = Vec::new();
            for m in cfg.shared.members.iter().filter(|m| m.id != me) {
                let ballots_url = m.url.join("v1/ballots")?;
                peers.push(Arc::new(Peer {
                    id: m.id.clone(),
                    ballots_url,
                    busy: AtomicBool::new(false),
                    pending: Mutex::new(None),
                }));
            }
            let c = &cfg.shared.cluster;
            // A bundle holds one ballot per member.
            let max_bytes = c
                .max_ballot_bytes
                .saturating_mul(cfg.shared.members.len())
                .saturating_add(64);
            (
                peers,
                Duration::from_millis(c.peer_timeout_ms),
                max_bytes,
                me,
                n.intake(),
            )
        };
        let agent_header = HeaderValue::from_str(me.as_str())?;
        Ok(Self {
            peers,
            node,
            intake,
            clock,
            tls,
            timeout,
            max_bytes,
            agent_header,
        })
    }

    fn request(&self, url: &Url, method: Method, body: Bytes) -> net::Request {
        net::Request {
            url: url.clone(),
            method,
            headers: vec![
                (
                    HeaderName::from_static("x-quorumgate-agent"),
                    self.agent_header.clone(),
                ),
                (
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                ),
            ],
            host: None,
            server_name: None,
            body,
            tls: Some(Arc::clone(&self.tls)),
            max_body_bytes: self.max_bytes,
        }
    }

    /// Pushes `wire` to every peer; to a peer still busy with a previous request, it is sent
    /// when that request ends (replacing any older ballot waiting there). Returns at once.
    pub fn push_all(self: &Arc<Self>, wire: &Arc<Vec<u8>>) {
        let body = Bytes::from(wire.as_ref().clone());
        for peer in &self.peers {
            {
                let mut slot = peer.pending();
                if peer.busy.swap(true, Ordering::AcqRel) {
                    if slot.replace(body.clone()).is_some() {
                        self.record_push(
                            &peer.id,
                            "replaced: a newer ballot took the waiting one's place".to_owned(),
                            "replaced",
                        );
                    }
                    continue;
                }
            }
            self.spawn_push(Arc::clone(peer), body.clone());
        }
    }

    /// Sends `body` to a claimed peer, then whatever waited for it, then frees the peer.
    fn spawn_push(self: &Arc<Self>, peer: Arc<Peer>, body: Bytes) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut body = Some(body);
            while let Some(b) = body.take() {
                this.push_one(&peer, b).await;
                body = peer.release();
            }
        });
    }

    async fn push_one(&self, peer: &Peer, body: Bytes) {
        let req = self.request(&peer.ballots_url, Method::POST, body);
        let (summary, label) = match net::send(&req, self.timeout).await {
            Ok(r) if r.status.is_success() => ("ok".to_owned(), "ok"),
            Ok(r) => {
                let text = String::from_utf8_lossy(&r.body);
                (
                    format!("http {}: {}", r.status.as_u16(), text.trim()),
                    "rejected",
                )
            }
            Err(e) => {
                if e.is_local_resource() {
                    self.local_resource(&format!("push to {}: {e}", peer.id));
                }
                (format!("{}: {e}", e.reason()), e.reason())
            }
        };
        self.record_push(&peer.id, summary, label);
    }

    fn local_resource(&self, what: &str) {
        let now = self.clock.now();
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record_local_resource(now, what.to_owned());
    }

    fn record_push(&self, peer: &AgentId, summary: String, label: &'static str) {
        metrics::counter!(t::PEER_PUSH, "peer" => peer.to_string(), "result" => label).increment(1);
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .set_push_result(peer.clone(), summary);
    }

    /// Pulls from the given peers (all when `only` is `None`) and waits for the answers.
    pub async fn pull(self: &Arc<Self>, only: Option<&[AgentId]>) {
        let mut tasks = tokio::task::JoinSet::new();
        for peer in &self.peers {
            if only.is_some_and(|ids| !ids.contains(&peer.id)) || !peer.claim() {
                continue;
            }
            let this = Arc::clone(self);
            let peer = Arc::clone(peer);
            tasks.spawn(async move {
                let result = this.pull_one(&peer).await;
                if let Some(waiting) = peer.release() {
                    this.spawn_push(Arc::clone(&peer), waiting);
                }
                let label = match &result {
                    Ok(n) => {
                        tracing::debug!(peer = %peer.id, ballots = n, "pulled ballots");
                        "ok"
                    }
                    Err(e) => {
                        tracing::debug!(peer = %peer.id, error = %e, "pull failed");
                        if e.downcast_ref::<net::NetError>()
                            .is_some_and(net::NetError::is_local_resource)
                        {
                            this.local_resource(&format!("pull from {}: {e}", peer.id));
                        }
                        "error"
                    }
                };
                metrics::counter!(t::PEER_PULL, "peer" => peer.id.to_string(), "result" => label)
                    .increment(1);
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    async fn pull_one(&self, peer: &Peer) -> anyhow::Result<usize> {
        let req = self.request(&peer.ballots_url, Method::GET, Bytes::new());
        let resp = net::send(&req, self.timeout).await?;
        anyhow::ensure!(resp.status.is_success(), "http {}", resp.status);
        anyhow::ensure!(
            !resp.body_truncated,
            "bundle larger than {} bytes",
            self.max_bytes
        );
        let items = bundle::decode(&resp.body)?;
        let source = format!("pull:{}", peer.id);
        // Decoding and signatures before the lock; rejections are counted by the intake.
        let checked: Vec<_> = items
            .iter()
            .filter_map(|wire| self.intake.precheck(wire, &source).ok())
            .collect();
        let now = self.clock.now();
        let mut node = self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for pre in checked {
            // A stale copy of our own ballot is normal.
            let _ = node.admit(now, pre, &source);
        }
        Ok(items.len())
    }

    /// Peers whose ballot we lack or which no longer counts: candidates for a catch-up pull.
    #[must_use]
    pub fn stale_peers(&self, live: &BTreeMap<AgentId, bool>) -> Vec<AgentId> {
        self.peers
            .iter()
            .filter(|p| !live.get(&p.id).copied().unwrap_or(false))
            .map(|p| p.id.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> Peer {
        Peer {
            id: AgentId::new("b").expect("id"),
            ballots_url: "http://127.0.0.1:1/v1/ballots".parse().expect("url"),
            busy: AtomicBool::new(false),
            pending: Mutex::new(None),
        }
    }

    #[test]
    fn one_request_at_a_time_and_the_newest_waiting_ballot_goes_next() {
        let p = peer();
        assert!(p.claim(), "a free peer is claimed");
        assert!(!p.claim(), "one request at a time");
        *p.pending() = Some(Bytes::from_static(b"older"));
        *p.pending() = Some(Bytes::from_static(b"newer"));
        assert_eq!(p.release().as_deref(), Some(&b"newer"[..]), "newest wins");
        assert!(!p.claim(), "still claimed while the waiting ballot is sent");
        assert_eq!(p.release(), None);
        assert!(p.claim(), "free again once nothing waits");
    }
}
