//! `SdkRoute53`: the [`Route53Api`] port on the real aws-sdk-route53 client.
//!
//! - Credentials and region come from the standard AWS chain (environment, profile, web
//!   identity, ECS/EC2 roles), region defaulting to us-east-1, where the control plane lives;
//!   tests pass an endpoint and static credentials instead.
//! - The SDK has no read or operation timeout by default: a server that accepts and never
//!   answers would hang a call forever. Connect, attempt and operation timeouts are explicit.
//! - The SDK's own retries are off: every attempt goes through this adapter's loop, so every
//!   attempt takes a token of the shared [`RateLimiter`] (Route 53: 5 requests/s per account)
//!   and the retry budget (attempts and deadline) is this adapter's. `Throttling`,
//!   `PriorRequestNotComplete`, 5xx, timeouts and connection failures are retried with
//!   exponential backoff and jitter; everything else is final.
//! - Every attempt counts in `quorumgate_route53_requests_total{op,result}`.

use std::any::Any;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_route53::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_route53::operation::change_resource_record_sets::ChangeResourceRecordSetsError;
use aws_sdk_route53::types as sdk;
use aws_sdk_route53::Client;
use tokio::time::Instant;

use super::api::{ApiError, ApiFuture, Route53Api};
use super::convert;
use super::limiter::{Jitter, RateLimiter, RetryPolicy};
use super::types::{
    normalize_name, Change, ChangeInfo, HealthCheck, HealthCheckSpec, RecordSet, TagResource,
    TagsById,
};

/// The metric every attempt is counted in, by `op` and `result`.
pub const REQUESTS_TOTAL: &str = "quorumgate_route53_requests_total";

/// Bound on pages followed by the list calls.
const MAX_PAGES: usize = 100;
/// Route 53's ListTagsForResources takes at most 10 ids.
const TAG_BATCH: usize = 10;

pub use crate::aws::StaticCredentials;

/// How to reach Route 53 and how hard to try.
#[derive(Debug, Clone)]
pub struct SdkOptions {
    /// Endpoint override (the emulator in tests); `None`: the SDK's endpoint resolution.
    pub endpoint_url: Option<String>,
    /// `None`: the standard region chain, else us-east-1.
    pub region: Option<String>,
    /// `None`: the standard credentials chain.
    pub static_credentials: Option<StaticCredentials>,
    pub connect_timeout: Duration,
    /// One attempt (request and response); the SDK's operation timeout is the same, since
    /// the SDK makes one attempt per operation here.
    pub attempt_timeout: Duration,
    pub retry: RetryPolicy,
    /// Shared by every client of the process.
    pub limiter: Arc<RateLimiter>,
    /// Fixes the backoff jitter (tests); `None`: seeded from the OS.
    pub jitter_seed: Option<u64>,
}

impl Default for SdkOptions {
    fn default() -> Self {
        Self {
            endpoint_url: None,
            region: None,
            static_credentials: None,
            connect_timeout: Duration::from_secs(3),
            attempt_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            limiter: Arc::new(RateLimiter::route53_default()),
            jitter_seed: None,
        }
    }
}

impl SdkOptions {
    /// The options `[local.route53]` describes: endpoint override, region, timeouts (the
    /// operation timeout bounds the retries), and a token bucket at the configured rate.
    /// Credentials come from the standard AWS chain.
    #[must_use]
    pub fn from_config(c: &config::Route53Local) -> Self {
        let defaults = Self::default();
        Self {
            endpoint_url: c
                .endpoint_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_owned()),
            region: c.region.clone(),
            static_credentials: None,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            attempt_timeout: Duration::from_millis(c.attempt_timeout_ms),
            retry: RetryPolicy {
                deadline: Duration::from_millis(c.operation_timeout_ms),
                ..defaults.retry
            },
            limiter: Arc::new(RateLimiter::new(c.max_requests_per_second, 1)),
            jitter_seed: None,
        }
    }
}

/// Route 53 through aws-sdk-route53, with timeouts, a shared rate limit and retries.
#[derive(Debug)]
pub struct SdkRoute53 {
    client: Client,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    attempt_timeout: Duration,
    jitter: Jitter,
}

impl SdkRoute53 {
    /// Builds the client from the standard AWS configuration chain plus `options`.
    pub async fn load(options: SdkOptions) -> Self {
        let shared = crate::aws::sdk_config(crate::aws::Reach {
            region: options.region.as_deref(),
            // Route 53's control plane lives in us-east-1.
            fallback_region: Some("us-east-1"),
            endpoint_url: options.endpoint_url.as_deref(),
            static_credentials: options.static_credentials.as_ref(),
            connect_timeout: options.connect_timeout,
            attempt_timeout: options.attempt_timeout,
        })
        .await;
        Self {
            client: Client::new(&shared),
            limiter: options.limiter,
            retry: options.retry,
            attempt_timeout: options.attempt_timeout,
            jitter: options
                .jitter_seed
                .map_or_else(Jitter::from_os, Jitter::seeded),
        }
    }

    /// The underlying SDK client (tests set up zones with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn limiter(&self) -> &Arc<RateLimiter> {
        &self.limiter
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retry budget runs out. Every
    /// attempt waits for a token first.
    async fn call<T, E, Fut>(
        &self,
        op: &'static str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<T, SdkError<E>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let max_attempts = self.retry.max_attempts.max(1);
        // Belt and braces: the SDK's own attempt timeout should always fire first.
        let hard_limit = self.attempt_timeout + Duration::from_secs(2);
        let mut attempts = 0u32;
        loop {
            self.limiter.acquire().await;
            attempts += 1;
            let failure = match tokio::time::timeout(hard_limit, attempt()).await {
                Ok(Ok(value)) => {
                    count(op, "ok");
                    return Ok(value);
                }
                Ok(Err(e)) => classify(op, e),
                Err(_) => Failure::Retry {
                    label: "timeout",
                    detail: format!("no answer within {hard_limit:?}"),
                },
            };
            let (label, detail) = match failure {
                Failure::Final(e) => {
                    count(op, e.label());
                    return Err(e);
                }
                Failure::Retry { label, detail } => (label, detail),
            };
            count(op, label);
            let delay = self.retry.backoff(attempts, &self.jitter);
            let elapsed = started.elapsed();
            if attempts >= max_attempts || elapsed + delay >= self.retry.deadline {
                tracing::warn!(op, attempts, result = label, %detail, "route53 call gave up");
                return Err(ApiError::Unavailable {
                    op,
                    attempts,
                    elapsed_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                    last: detail,
                });
            }
            tracing::debug!(op, attempts, result = label, ?delay, %detail, "route53 call retrying");
            tokio::time::sleep(delay).await;
        }
    }
}

fn count(op: &'static str, result: &'static str) {
    metrics::counter!(REQUESTS_TOTAL, "op" => op, "result" => result).increment(1);
}

enum Failure {
    Retry { label: &'static str, detail: String },
    Final(ApiError),
}

fn classify<E>(op: &'static str, err: SdkError<E>) -> Failure
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = DisplayErrorContext(&err).to_string();
    let retry = |label| Failure::Retry {
        label,
        detail: detail.clone(),
    };
    match &err {
        SdkError::TimeoutError(_) => retry("timeout"),
        SdkError::DispatchFailure(f) if f.is_user() => {
            Failure::Final(ApiError::Malformed { op, detail })
        }
        SdkError::DispatchFailure(f) if f.is_timeout() => retry("timeout"),
        SdkError::DispatchFailure(f) if f.is_io() => retry("io"),
        SdkError::DispatchFailure(_) => retry("dispatch"),
        SdkError::ResponseError(_) => retry("response"),
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = e.code().unwrap_or("").to_owned();
            let message = e.message().unwrap_or("").to_owned();
            match code.as_str() {
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                    retry("throttling")
                }
                "PriorRequestNotComplete" => retry("prior_request_not_complete"),
                "InvalidChangeBatch" => Failure::Final(ApiError::InvalidChangeBatch {
                    messages: batch_messages(e),
                }),
                c if c.starts_with("NoSuch") => {
                    Failure::Final(ApiError::NotFound { op, code, message })
                }
                _ if status >= 500 => retry("server_error"),
                _ => Failure::Final(ApiError::Rejected { op, code, message }),
            }
        }
        _ => Failure::Final(ApiError::Malformed { op, detail }),
    }
}

/// Route 53 lists every reason of an InvalidChangeBatch in `<Messages>`; fall back to the
/// generic message.
fn batch_messages<E: ProvideErrorMetadata + 'static>(e: &E) -> Vec<String> {
    let any: &dyn Any = e;
    if let Some(ChangeResourceRecordSetsError::InvalidChangeBatch(icb)) = any.downcast_ref() {
        if !icb.messages().is_empty() {
            return icb.messages().to_vec();
        }
    }
    e.message().map(|m| vec![m.to_owned()]).unwrap_or_default()
}

fn malformed(op: &'static str) -> impl Fn(String) -> ApiError {
    move |detail| ApiError::Malformed { op, detail }
}

fn tag_type(resource: TagResource) -> sdk::TagResourceType {
    match resource {
        TagResource::HealthCheck => sdk::TagResourceType::Healthcheck,
        TagResource::HostedZone => sdk::TagResourceType::Hostedzone,
    }
}

impl Route53Api for SdkRoute53 {
    fn list_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        name: Option<&'a str>,
    ) -> ApiFuture<'a, Vec<RecordSet>> {
        Box::pin(async move {
            const OP: &str = "ListResourceRecordSets";
            let wanted = name.map(normalize_name);
            let mut next_name = wanted.clone();
            let mut next_type: Option<sdk::RrType> = None;
            let mut next_id: Option<String> = None;
            let mut out = Vec::new();
            for _ in 0..MAX_PAGES {
                let page = self
                    .call(OP, || {
                        self.client
                            .list_resource_record_sets()
                            .hosted_zone_id(zone_id)
                            .set_start_record_name(next_name.clone())
                            .set_start_record_type(next_type.clone())
                            .set_start_record_identifier(next_id.clone())
                            .max_items(300)
                            .send()
                    })
                    .await?;
                for r in page.resource_record_sets() {
                    let record = convert::record_from_sdk(r);
                    if wanted.as_deref().is_some_and(|w| w != record.name()) {
                        // Sorted by name: past the wanted one.
                        return Ok(out);
                    }
                    out.push(record);
                }
                if !page.is_truncated() {
                    return Ok(out);
                }
                next_name = page.next_record_name().map(str::to_owned);
                next_type = page.next_record_type().cloned();
                next_id = page.next_record_identifier().map(str::to_owned);
            }
            Err(ApiError::Malformed {
                op: OP,
                detail: format!("more than {MAX_PAGES} pages"),
            })
        })
    }

    fn change_record_sets<'a>(
        &'a self,
        zone_id: &'a str,
        changes: &'a [Change],
        comment: &'a str,
    ) -> ApiFuture<'a, ChangeInfo> {
        Box::pin(async move {
            const OP: &str = "ChangeResourceRecordSets";
            let batch = convert::batch_to_sdk(changes, comment).map_err(malformed(OP))?;
            let out = self
                .call(OP, || {
                    self.client
                        .change_resource_record_sets()
                        .hosted_zone_id(zone_id)
                        .change_batch(batch.clone())
                        .send()
                })
                .await?;
            convert::change_info_from_sdk(out.change_info()).map_err(malformed(OP))
        })
    }

    fn get_change<'a>(&'a self, change_id: &'a str) -> ApiFuture<'a, ChangeInfo> {
        Box::pin(async move {
            const OP: &str = "GetChange";
            let out = self
                .call(OP, || self.client.get_change().id(change_id).send())
                .await?;
            convert::change_info_from_sdk(out.change_info()).map_err(malformed(OP))
        })
    }

    fn create_health_check<'a>(
        &'a self,
        caller_reference: &'a str,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck> {
        Box::pin(async move {
            const OP: &str = "CreateHealthCheck";
            let config = convert::health_check_config_to_sdk(spec).map_err(malformed(OP))?;
            let out = self
                .call(OP, || {
                    self.client
                        .create_health_check()
                        .caller_reference(caller_reference)
                        .health_check_config(config.clone())
                        .send()
                })
                .await?;
            let hc = out
                .health_check()
                .ok_or_else(|| malformed(OP)("response without HealthCheck".into()))?;
            convert::health_check_from_sdk(hc).map_err(malformed(OP))
        })
    }

    fn list_health_checks(&self) -> ApiFuture<'_, Vec<HealthCheck>> {
        Box::pin(async move {
            const OP: &str = "ListHealthChecks";
            let mut marker: Option<String> = None;
            let mut out = Vec::new();
            for _ in 0..MAX_PAGES {
                let page = self
                    .call(OP, || {
                        self.client
                            .list_health_checks()
                            .set_marker(marker.clone())
                            .send()
                    })
                    .await?;
                for hc in page.health_checks() {
                    out.push(convert::health_check_from_sdk(hc).map_err(malformed(OP))?);
                }
                match page.next_marker() {
                    Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
                    _ => return Ok(out),
                }
            }
            Err(ApiError::Malformed {
                op: OP,
                detail: format!("more than {MAX_PAGES} pages"),
            })
        })
    }

    fn update_health_check<'a>(
        &'a self,
        id: &'a str,
        version: Option<i64>,
        spec: &'a HealthCheckSpec,
    ) -> ApiFuture<'a, HealthCheck> {
        Box::pin(async move {
            const OP: &str = "UpdateHealthCheck";
            let to_i32 = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
            let out = self
                .call(OP, || {
                    self.client
                        .update_health_check()
                        .health_check_id(id)
                        .set_health_check_version(version)
                        .set_ip_address(spec.ip_address.clone())
                        .set_port(spec.port.map(i32::from))
                        .set_resource_path(spec.resource_path.clone())
                        .set_fully_qualified_domain_name(spec.fqdn.clone())
                        .set_search_string(spec.search_string.clone())
                        .set_failure_threshold(spec.failure_threshold.map(to_i32))
                        .set_health_threshold(spec.health_threshold.map(to_i32))
                        .set_child_health_checks(
                            (!spec.children.is_empty()).then(|| spec.children.clone()),
                        )
                        .inverted(spec.inverted)
                        .disabled(spec.disabled)
                        .set_enable_sni(spec.enable_sni)
                        .set_regions((!spec.regions.is_empty()).then(|| {
                            spec.regions
                                .iter()
                                .map(|r| sdk::HealthCheckRegion::from(r.as_str()))
                                .collect()
                        }))
                        .send()
                })
                .await?;
            let hc = out
                .health_check()
                .ok_or_else(|| malformed(OP)("response without HealthCheck".into()))?;
            convert::health_check_from_sdk(hc).map_err(malformed(OP))
        })
    }

    fn delete_health_check<'a>(&'a self, id: &'a str) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            self.call("DeleteHealthCheck", || {
                self.client.delete_health_check().health_check_id(id).send()
            })
            .await
            .map(|_| ())
        })
    }

    fn list_tags<'a>(
        &'a self,
        resource: TagResource,
        ids: &'a [String],
    ) -> ApiFuture<'a, TagsById> {
        Box::pin(async move {
            let mut out = TagsById::new();
            for chunk in ids.chunks(TAG_BATCH) {
                let page = self
                    .call("ListTagsForResources", || {
                        self.client
                            .list_tags_for_resources()
                            .resource_type(tag_type(resource))
                            .set_resource_ids(Some(chunk.to_vec()))
                            .send()
                    })
                    .await?;
                for set in page.resource_tag_sets() {
                    let Some(id) = set.resource_id() else {
                        continue;
                    };
                    let tags = set
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value()?.to_owned())))
                        .collect();
                    out.insert(id.to_owned(), tags);
                }
            }
            Ok(out)
        })
    }

    fn change_tags<'a>(
        &'a self,
        resource: TagResource,
        id: &'a str,
        add: &'a BTreeMap<String, String>,
        remove: &'a [String],
    ) -> ApiFuture<'a, ()> {
        Box::pin(async move {
            let add: Vec<sdk::Tag> = add
                .iter()
                .map(|(k, v)| sdk::Tag::builder().key(k).value(v).build())
                .collect();
            self.call("ChangeTagsForResource", || {
                self.client
                    .change_tags_for_resource()
                    .resource_type(tag_type(resource))
                    .resource_id(id)
                    .set_add_tags((!add.is_empty()).then(|| add.clone()))
                    .set_remove_tag_keys((!remove.is_empty()).then(|| remove.to_vec()))
                    .send()
            })
            .await
            .map(|_| ())
        })
    }
}
