//! The AWS SDK set-up shared by every client of the agent (Route 53, RDS): the standard
//! region and credentials chains, an endpoint override, explicit timeouts (the SDK has none
//! by default), and the SDK's own retries off (callers retry within their own budgets).

use std::time::Duration;

use aws_config::meta::region::RegionProviderChain;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_route53::config::Credentials;

/// Static credentials (tests and the emulator); production uses the standard chain.
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// How one client reaches AWS.
#[derive(Debug, Clone, Copy)]
pub struct Reach<'a> {
    /// `None`: the standard region chain, then `fallback_region` if given.
    pub region: Option<&'a str>,
    pub fallback_region: Option<&'static str>,
    /// Endpoint override (an emulator, a VPC endpoint).
    pub endpoint_url: Option<&'a str>,
    /// `None`: the standard credentials chain.
    pub static_credentials: Option<&'a StaticCredentials>,
    pub connect_timeout: Duration,
    /// One attempt, and the SDK's operation timeout (it makes one attempt per operation).
    pub attempt_timeout: Duration,
}

/// The shared SDK configuration for `reach`.
pub async fn sdk_config(reach: Reach<'_>) -> SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(reach.connect_timeout)
        .operation_attempt_timeout(reach.attempt_timeout)
        .operation_timeout(reach.attempt_timeout)
        .build();
    let mut region =
        RegionProviderChain::first_try(reach.region.map(|r| Region::new(r.to_owned())))
            .or_default_provider();
    if let Some(fallback) = reach.fallback_region {
        region = region.or_else(Region::from_static(fallback));
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(region)
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts);
    if let Some(url) = reach.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    if let Some(c) = reach.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            &c.access_key_id,
            &c.secret_access_key,
            None,
            None,
            "quorumgate-static",
        ));
    }
    loader.load().await
}
