//! The strict Route 53 emulator (`tests/fixtures/moto_strict.py`) as the bench uses it: one
//! process on a loopback port it picks itself, a hosted zone, the gate's normal records at
//! fence epoch 1 (as `quorumgate provision` leaves them), and the request log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use bytes::Bytes;
use quorumgate::net;
use quorumgate::route53::{
    DesiredRecords, FencedWriter, GateTarget, RateLimiter, RecordSet, RecordTarget, RetryPolicy,
    SdkOptions, SdkRoute53, StaticCredentials, WriterOptions,
};
use serde_json::Value;
use tokio::process::{Child, ChildStdin, Command};

pub const ZONE_NAME: &str = "example.com";
pub const RECORD_NAME: &str = "app.example.com.";
pub const PRIMARY_IP: &str = "192.0.2.10";
pub const SECONDARY_IP: &str = "198.51.100.20";
/// TTL of the gate's A record (what resolvers may cache after a change).
pub const RECORD_TTL_S: u32 = 60;

/// The emulator's Python where `scripts/test-deps.sh` puts it (`QG_MOTO_PYTHON` overrides
/// it); an error naming the script when it is missing.
pub fn moto_python() -> anyhow::Result<PathBuf> {
    quorumgate_testkit::emulator::require_python()
}

/// One request as the emulator logged it.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Arrival, in the emulator's monotonic milliseconds.
    pub t_ms: u64,
    pub op: String,
    /// `ok` (forwarded to moto) or an injected fault's kind.
    pub outcome: String,
}

/// A running emulator; killed when dropped (it also exits when our end of its stdin closes).
#[derive(Debug)]
pub struct Emulator {
    pub url: String,
    child: Child,
    _stdin: ChildStdin,
}

impl Emulator {
    /// Starts the emulator; it exits by itself after `lifetime` in any case.
    pub async fn start(lifetime: Duration) -> anyhow::Result<Self> {
        let python = moto_python()?;
        let spawned =
            quorumgate_testkit::emulator::spawn(Command::new(&python), 0, lifetime.as_secs(), &[])
                .await?;
        let port = spawned.port;
        let emulator = Self {
            url: format!("http://127.0.0.1:{port}"),
            child: spawned.child,
            _stdin: spawned.stdin,
        };
        for _ in 0..100 {
            if emulator.admin(http::Method::GET, "/_health").await.0 == 200 {
                return Ok(emulator);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the emulator on port {port} never answered /_health")
    }

    /// An admin call: (status, body); status 0 when the emulator could not be reached.
    async fn admin(&self, method: http::Method, path: &str) -> (u16, String) {
        let Ok(url) = format!("{}{path}", self.url).parse() else {
            return (0, String::new());
        };
        let req = net::Request::get(url, None, 64 * 1024 * 1024).with_body(method, Bytes::new());
        match net::send(&req, Duration::from_secs(10)).await {
            Ok(r) => (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// Forgets the request log.
    pub async fn reset_requests(&self) -> anyhow::Result<()> {
        let (status, body) = self.admin(http::Method::DELETE, "/_stats").await;
        anyhow::ensure!(status == 200, "emulator DELETE /_stats: {status} {body}");
        Ok(())
    }

    /// Every request since the last reset.
    pub async fn requests(&self) -> anyhow::Result<Vec<Logged>> {
        let (status, body) = self.admin(http::Method::GET, "/_stats").await;
        anyhow::ensure!(status == 200, "emulator GET /_stats: {status} {body}");
        let v: Value = serde_json::from_str(&body).context("emulator stats JSON")?;
        let requests = v["requests"].as_array().context("stats without requests")?;
        Ok(requests
            .iter()
            .map(|r| Logged {
                t_ms: r["t_ms"].as_u64().unwrap_or(0),
                op: r["op"].as_str().unwrap_or("").to_owned(),
                outcome: r["outcome"].as_str().unwrap_or("").to_owned(),
            })
            .collect())
    }

    /// A client of the emulator for setting up (its own rate limiter: not the agents').
    async fn client(&self) -> SdkRoute53 {
        SdkRoute53::load(SdkOptions {
            endpoint_url: Some(self.url.clone()),
            region: Some("us-east-1".into()),
            static_credentials: Some(StaticCredentials {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
            }),
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 5,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(800),
                deadline: Duration::from_secs(30),
            },
            limiter: Arc::new(RateLimiter::route53_default()),
            jitter_seed: Some(1),
        })
        .await
    }

    /// Creates the hosted zone and writes the gate's normal records (the primary) through the
    /// fence, which leaves it at epoch 1. Returns the zone id (without `/hostedzone/`).
    pub async fn provision(&self) -> anyhow::Result<String> {
        let api = Arc::new(self.client().await);
        let out = api
            .client()
            .create_hosted_zone()
            .name(ZONE_NAME)
            .caller_reference("failover-e2e-bench")
            .send()
            .await
            .context("creating the hosted zone")?;
        let zone_id = out
            .hosted_zone()
            .context("CreateHostedZone returned no zone")?
            .id()
            .trim_start_matches("/hostedzone/")
            .to_owned();
        let writer = FencedWriter::new(
            api,
            GateTarget {
                zone_id: zone_id.clone(),
                zone_name: ZONE_NAME.to_owned(),
                gate: "app".to_owned(),
                agent: "provision".to_owned(),
            },
            WriterOptions {
                insync_poll: Duration::from_millis(300),
                insync_timeout: Duration::from_secs(10),
            },
        )?;
        let normal = DesiredRecords::new(
            ZONE_NAME,
            [RecordSet::new(
                RECORD_NAME,
                "A",
                RecordTarget::values(RECORD_TTL_S, [PRIMARY_IP]),
            )],
        )?;
        writer
            .apply(0, &normal)
            .await
            .context("writing the initial records")?;
        Ok(zone_id)
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
