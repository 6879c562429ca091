//! One strict Route 53 emulator process per test (tests/fixtures/moto_strict.py), on a free
//! loopback port it picks itself, plus helpers for its admin endpoints.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quorumgate::net;
use quorumgate::route53::{RateLimiter, RetryPolicy, SdkOptions, SdkRoute53, StaticCredentials};
use serde_json::Value;
use tokio::process::{Child, ChildStdin, Command};

/// One request as the fixture logged it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub t_ms: u64,
    pub op: String,
    /// `ok` (forwarded to moto) or the fault kind.
    pub outcome: String,
    /// HTTP status (-1: stalled, never answered).
    pub status: i64,
}

/// A running emulator; killed when dropped (and it exits by itself when our stdin pipe closes).
pub struct Emulator {
    pub url: String,
    child: Child,
    _stdin: ChildStdin,
}

impl Emulator {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(args: &[&str]) -> Self {
        let python =
            quorumgate_testkit::emulator::require_python().unwrap_or_else(|e| panic!("{e}"));
        let spawned = quorumgate_testkit::emulator::spawn(Command::new(&python), 0, 600, args)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let port = spawned.port;
        let emulator = Self {
            url: format!("http://127.0.0.1:{port}"),
            child: spawned.child,
            _stdin: spawned.stdin,
        };
        for _ in 0..100 {
            if emulator.admin(http::Method::GET, "/_health", "").await.0 == 200 {
                return emulator;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("emulator on port {port} never answered /_health");
    }

    /// An admin call: (status, body).
    pub async fn admin(&self, method: http::Method, path: &str, body: &str) -> (u16, String) {
        let req = net::Request {
            url: format!("{}{path}", self.url).parse().expect("url"),
            method,
            headers: vec![(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            )],
            host: None,
            server_name: None,
            body: Bytes::from(body.to_owned()),
            tls: None,
            max_body_bytes: 64 * 1024 * 1024,
        };
        match net::send(&req, Duration::from_secs(10)).await {
            Ok(r) => (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            ),
            Err(_) => (0, String::new()),
        }
    }

    /// Queues a fault plan (see the fixture's docstring).
    pub async fn fault(&self, plan: Value) {
        let (status, body) = self
            .admin(http::Method::POST, "/_fault", &plan.to_string())
            .await;
        assert_eq!(status, 200, "queueing fault {plan}: {body}");
    }

    /// Drops queued faults and releases stalled requests.
    pub async fn clear_faults(&self) {
        let (status, body) = self.admin(http::Method::DELETE, "/_fault", "").await;
        assert_eq!(status, 200, "clearing faults: {body}");
    }

    /// The fixture's request log and the number of requests stalled right now.
    pub async fn stats(&self) -> (Vec<Logged>, u64) {
        let (status, body) = self.admin(http::Method::GET, "/_stats", "").await;
        assert_eq!(status, 200, "stats: {body}");
        let v: Value = serde_json::from_str(&body).expect("stats json");
        let requests = v["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .map(|r| Logged {
                t_ms: r["t_ms"].as_u64().unwrap_or(0),
                op: r["op"].as_str().unwrap_or("").to_owned(),
                outcome: r["outcome"].as_str().unwrap_or("").to_owned(),
                status: r["status"].as_i64().unwrap_or(0),
            })
            .collect();
        (requests, v["stalled_now"].as_u64().unwrap_or(0))
    }

    pub async fn requests(&self, op: &str) -> Vec<Logged> {
        self.stats()
            .await
            .0
            .into_iter()
            .filter(|r| r.op == op)
            .collect()
    }

    pub async fn reset_stats(&self) {
        let (status, _) = self.admin(http::Method::DELETE, "/_stats", "").await;
        assert_eq!(status, 200);
    }

    /// Options for a client of this emulator: short timeouts, quick retries, its own limiter.
    pub fn options(&self) -> SdkOptions {
        SdkOptions {
            endpoint_url: Some(self.url.clone()),
            region: Some("us-east-1".into()),
            static_credentials: Some(StaticCredentials {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
            }),
            connect_timeout: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
            retry: RetryPolicy {
                max_attempts: 20,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(800),
                deadline: Duration::from_secs(60),
            },
            limiter: Arc::new(RateLimiter::route53_default()),
            jitter_seed: Some(1),
        }
    }

    pub async fn client(&self) -> SdkRoute53 {
        SdkRoute53::load(self.options()).await
    }

    /// Creates a hosted zone (directly through the SDK) and returns its id.
    pub async fn create_zone(&self, name: &str) -> String {
        let api = self.client().await;
        let out = api
            .client()
            .create_hosted_zone()
            .name(name)
            .caller_reference(format!("test-{name}"))
            .send()
            .await
            .expect("create hosted zone");
        let id = out.hosted_zone().expect("zone").id();
        id.trim_start_matches("/hostedzone/").to_owned()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// The largest number of logged requests that started within any `window_ms`.
pub fn max_in_window(log: &[Logged], window_ms: u64) -> usize {
    let mut times: Vec<u64> = log.iter().map(|r| r.t_ms).collect();
    times.sort_unstable();
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|&&t| t < times[i] + window_ms)
                .count()
        })
        .max()
        .unwrap_or(0)
}
