//! Watching DNS during a drill, from the drill command's own vantage point.
//!
//! Two sources. A resolver (`--resolver IP:PORT`; best the zone's authoritative name servers,
//! since a recursive resolver adds its cache): hickory-resolver against exactly that server,
//! without a cache, asking for the gate's record every 200 ms. Or, without one, the Route 53
//! API (`ListResourceRecordSets` once a second, within the request budget): what Route 53
//! holds, not what resolvers answer — the report says which it was. Each answer is mapped back
//! to the gate's target whose answer it is; only changes are kept.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use config::{GateConfig, RecordAnswer};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::TokioResolver;
use quorum::gate::DesiredState;
use tokio_util::sync::CancellationToken;

use super::report::{DnsReport, DnsSample};
use crate::clock::SharedClock;
use crate::gates::records::state_from_records;
use crate::probe::dns::build_resolver;
use crate::route53::Route53Api;

/// How long one DNS query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(1);

enum Source {
    Resolver {
        addr: SocketAddr,
        resolver: Box<TokioResolver>,
    },
    Route53(Arc<dyn Route53Api>),
}

/// Samples the gate's answer. See the module docs.
pub struct Observer {
    source: Source,
    gate: GateConfig,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("source", &self.label())
            .finish_non_exhaustive()
    }
}

/// A name in the form answers are compared in: lower case, fully qualified.
fn norm_name(s: &str) -> String {
    let mut n = s.trim().to_ascii_lowercase();
    if !n.ends_with('.') {
        n.push('.');
    }
    n
}

/// An answer value in the form answers are compared in.
fn norm_value(s: &str) -> String {
    match s.trim().parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => norm_name(s),
    }
}

impl Observer {
    /// Asks `addr` (UDP) directly, with no cache.
    pub fn resolver(addr: SocketAddr, gate: GateConfig) -> anyhow::Result<Self> {
        let resolver = build_resolver(addr, false, QUERY_TIMEOUT)
            .map_err(|e| anyhow::anyhow!("resolver {addr}: {e}"))?;
        Ok(Self {
            source: Source::Resolver {
                addr,
                resolver: Box::new(resolver),
            },
            gate,
        })
    }

    /// Reads the records through the Route 53 API.
    pub fn route53(api: Arc<dyn Route53Api>, gate: GateConfig) -> Self {
        Self {
            source: Source::Route53(api),
            gate,
        }
    }

    /// For the report: `resolver 127.0.0.1:53` or `route53-api`.
    #[must_use]
    pub fn label(&self) -> String {
        match &self.source {
            Source::Resolver { addr, .. } => format!("resolver {addr}"),
            Source::Route53(_) => "route53-api".to_owned(),
        }
    }

    /// Between two samples: resolvers are cheap, the API has a budget shared with the agents.
    #[must_use]
    pub fn interval(&self) -> Duration {
        match self.source {
            Source::Resolver { .. } => Duration::from_millis(200),
            Source::Route53(_) => Duration::from_secs(1),
        }
    }

    /// The answer now, and the target whose answer it is.
    pub async fn sample(&self) -> Result<(String, Option<String>), String> {
        match &self.source {
            Source::Resolver { resolver, .. } => self.ask(resolver).await,
            Source::Route53(api) => {
                let records = api
                    .list_record_sets(&self.gate.zone_id, Some(&self.gate.record_name))
                    .await
                    .map_err(|e| e.to_string())?;
                let mine: Vec<_> = records
                    .into_iter()
                    .filter(|r| r.name() == self.gate.record_name)
                    .collect();
                let text = mine
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let target = match state_from_records(&self.gate, &mine) {
                    Some(DesiredState::Failover { active }) => Some(active.to_string()),
                    _ => None,
                };
                Ok((text, target))
            }
        }
    }

    async fn ask(&self, resolver: &TokioResolver) -> Result<(String, Option<String>), String> {
        let rtype = match self.gate.record_type.as_str() {
            "AAAA" => RecordType::AAAA,
            "CNAME" => RecordType::CNAME,
            _ => RecordType::A,
        };
        let mut name = Name::from_ascii(&self.gate.record_name).map_err(|e| e.to_string())?;
        name.set_fqdn(true);
        let lookup = tokio::time::timeout(QUERY_TIMEOUT, resolver.lookup(name, rtype))
            .await
            .map_err(|_| "timeout".to_owned())?
            .map_err(|e| e.to_string())?;
        let seen: BTreeSet<String> = lookup
            .answers()
            .iter()
            .filter(|r| r.record_type() == rtype)
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0.to_string()),
                RData::AAAA(a) => Some(a.0.to_string()),
                RData::CNAME(c) => Some(norm_name(&c.0.to_string())),
                _ => None,
            })
            .collect();
        let target = self.gate.targets.iter().find_map(|t| match &t.answer {
            RecordAnswer::Values(v) => {
                let want: BTreeSet<String> = v.iter().map(|s| norm_value(s)).collect();
                (want == seen).then(|| t.id.to_string())
            }
            // An alias answers with its target's addresses, which the config does not know.
            RecordAnswer::Alias { .. } => None,
        });
        let text = format!("[{}]", seen.into_iter().collect::<Vec<_>>().join(", "));
        Ok((text, target))
    }
}

/// Samples until `stop` fires, keeping every change of the answer (the first sample too) in
/// `into`, which the caller may read meanwhile.
pub async fn observe(
    observer: Observer,
    clock: SharedClock,
    stop: CancellationToken,
    into: Arc<Mutex<DnsReport>>,
) {
    let note = (observer
        .gate
        .targets
        .iter()
        .any(|t| matches!(t.answer, RecordAnswer::Alias { .. }))
        && matches!(observer.source, Source::Resolver { .. }))
    .then(|| {
        "the gate's targets are aliases, whose addresses a resolver answers with: answers cannot be matched to targets; observe through the Route 53 API instead (no --resolver)".to_owned()
    });
    {
        let mut r = lock(&into);
        r.source = observer.label();
        r.note = note;
    }
    let mut last: Option<String> = None;
    let mut ticker = tokio::time::interval(observer.interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            () = stop.cancelled() => break,
            r = observer.sample() => r,
        };
        let at_ms = clock.now().0;
        let mut report = lock(&into);
        report.queries += 1;
        let (answer, target) = match result {
            Ok(a) => a,
            Err(e) => {
                report.errors += 1;
                (format!("error: {e}"), None)
            }
        };
        if last.as_deref() != Some(answer.as_str()) {
            last = Some(answer.clone());
            report.samples.push(DnsSample {
                at_ms,
                answer,
                target,
            });
        }
    }
}

fn lock(report: &Mutex<DnsReport>) -> std::sync::MutexGuard<'_, DnsReport> {
    report
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_compare_in_one_form() {
        assert_eq!(norm_value(" 192.0.2.1 "), "192.0.2.1");
        assert_eq!(norm_value("2001:DB8::1"), "2001:db8::1");
        assert_eq!(norm_value("App.Example.COM"), "app.example.com.");
        assert_eq!(norm_name("a.example.net."), "a.example.net.");
    }
}
