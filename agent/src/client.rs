//! HTTP client helpers the operator-side commands share (`status`, `drill`, `demo`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use url::Url;

use crate::net;
use crate::status::Status;

/// Fetches `/v1/status` from an agent.
pub async fn fetch_status(
    base: &Url,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> anyhow::Result<Status> {
    let req = net::Request::get(base.join("v1/status")?, Some(tls), 64 * 1024 * 1024);
    let resp = net::send(&req, timeout)
        .await
        .map_err(|e| anyhow::anyhow!("{base}: {e}"))?;
    anyhow::ensure!(resp.status.is_success(), "{base}: HTTP {}", resp.status);
    serde_json::from_slice(&resp.body)
        .with_context(|| format!("{base}: status is not the expected JSON"))
}
