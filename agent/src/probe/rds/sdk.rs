//! `SdkRds`: the [`RdsApi`] port on aws-sdk-rds.
//!
//! Built like the Route 53 adapter (`crate::route53::sdk`): region and credentials from the
//! standard AWS chain (tests pass static credentials and an endpoint), hyper 1 + rustls on
//! aws-lc-rs, explicit connect / attempt / operation timeouts, and the SDK's retries off.

use std::error::Error as StdError;
use std::time::Duration;

use aws_sdk_rds::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_rds::Client;

use super::{ClusterView, InstanceView, RdsApi, RdsFailure, RdsFuture};
use crate::probe::db::error_chain;
use crate::route53::StaticCredentials;

/// How to reach the RDS API.
#[derive(Debug, Clone)]
pub struct RdsOptions {
    /// `None`: the standard region chain; no region at all is an `error` at probe time.
    pub region: Option<String>,
    /// Endpoint override (an emulator, a VPC endpoint); `None`: the SDK's resolution.
    pub endpoint_url: Option<String>,
    /// Connect, attempt and operation timeout.
    pub timeout: Duration,
    /// `None`: the standard credentials chain.
    pub static_credentials: Option<StaticCredentials>,
}

/// RDS through aws-sdk-rds.
#[derive(Debug, Clone)]
pub struct SdkRds {
    client: Client,
}

impl SdkRds {
    /// Builds a client from the standard AWS chain plus `options`. Fails (reason `error`) when
    /// no region is configured anywhere.
    pub async fn load(options: RdsOptions) -> Result<Self, RdsFailure> {
        let shared = crate::aws::sdk_config(crate::aws::Reach {
            region: options.region.as_deref(),
            fallback_region: None,
            endpoint_url: options.endpoint_url.as_deref(),
            static_credentials: options.static_credentials.as_ref(),
            connect_timeout: options.timeout,
            attempt_timeout: options.timeout,
        })
        .await;
        if shared.region().is_none() {
            return Err(RdsFailure::new(
                "error",
                "no AWS region: set region in the rds table, or AWS_REGION / a profile region",
            ));
        }
        Ok(Self {
            client: Client::new(&shared),
        })
    }

    /// The underlying SDK client (tests create instances and clusters with it).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }
}

impl RdsApi for SdkRds {
    fn describe_instance<'a>(&'a self, id: &'a str) -> RdsFuture<'a, InstanceView> {
        Box::pin(async move {
            let out = self
                .client
                .describe_db_instances()
                .db_instance_identifier(id)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let db = out
                .db_instances()
                .iter()
                .find(|d| {
                    d.db_instance_identifier()
                        .is_some_and(|x| x.eq_ignore_ascii_case(id))
                })
                .ok_or_else(|| {
                    RdsFailure::new("not_found", format!("no DB instance {id} in the answer"))
                })?;
            Ok(InstanceView {
                id: id.to_owned(),
                status: db.db_instance_status().unwrap_or("").to_owned(),
                multi_az: db.multi_az().unwrap_or(false),
                replica_of: db
                    .read_replica_source_db_instance_identifier()
                    .map(str::to_owned),
            })
        })
    }

    fn describe_cluster<'a>(&'a self, id: &'a str) -> RdsFuture<'a, ClusterView> {
        Box::pin(async move {
            let out = self
                .client
                .describe_db_clusters()
                .db_cluster_identifier(id)
                .send()
                .await
                .map_err(|e| classify(&e))?;
            let cluster = out
                .db_clusters()
                .iter()
                .find(|c| {
                    c.db_cluster_identifier()
                        .is_some_and(|x| x.eq_ignore_ascii_case(id))
                })
                .ok_or_else(|| {
                    RdsFailure::new("not_found", format!("no DB cluster {id} in the answer"))
                })?;
            Ok(ClusterView {
                id: id.to_owned(),
                status: cluster.status().unwrap_or("").to_owned(),
                multi_az: cluster.multi_az().unwrap_or(false),
                members: cluster
                    .db_cluster_members()
                    .iter()
                    .map(|m| {
                        (
                            m.db_instance_identifier()
                                .unwrap_or("")
                                .to_ascii_lowercase(),
                            m.is_cluster_writer().unwrap_or(false),
                        )
                    })
                    .collect(),
            })
        })
    }
}

/// An SDK error → reason and detail.
fn classify<E>(err: &SdkError<E>) -> RdsFailure
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    match err {
        SdkError::TimeoutError(_) => RdsFailure::new("timeout", "operation timeout"),
        SdkError::DispatchFailure(f) if f.is_timeout() => {
            RdsFailure::new("timeout", scrub(&error_chain(err)))
        }
        SdkError::DispatchFailure(_) if crate::local_resource::in_chain(err) => {
            RdsFailure::new(crate::local_resource::REASON, scrub(&error_chain(err)))
        }
        SdkError::DispatchFailure(f) if f.is_io() => {
            RdsFailure::new("connect", scrub(&error_chain(err)))
        }
        SdkError::DispatchFailure(_) => {
            let text = error_chain(err);
            // Credentials are resolved just before sending; a chain that finds none fails the
            // dispatch ("failed to load credentials", "no providers in chain provided credentials").
            let reason = if text.to_ascii_lowercase().contains("credentials") {
                "auth"
            } else {
                "error"
            };
            RdsFailure::new(reason, scrub(&text))
        }
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = e.code().unwrap_or("");
            let message = e.message().unwrap_or("");
            let detail = if code.is_empty() {
                format!("HTTP {status}: {message}")
            } else {
                format!("{code}: {message}")
            };
            RdsFailure::new(reason_of(code, status), scrub(&detail))
        }
        SdkError::ResponseError(r) => RdsFailure::new(
            "error",
            scrub(&format!(
                "unreadable answer (HTTP {}): {}",
                r.raw().status().as_u16(),
                error_chain(err)
            )),
        ),
        _ => RdsFailure::new("error", scrub(&error_chain(err))),
    }
}

/// The reason code of an RDS API error code (and its HTTP status, for unknown codes).
#[must_use]
pub fn reason_of(code: &str, status: u16) -> &'static str {
    match code {
        "DBInstanceNotFound"
        | "DBInstanceNotFoundFault"
        | "DBClusterNotFoundFault"
        | "DBClusterNotFound" => "not_found",
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "InvalidSignatureException"
        | "MissingAuthenticationToken"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "RequestExpired" => "auth",
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "RequestThrottledException" => "throttled",
        _ => match status {
            401 | 403 => "auth",
            429 => "throttled",
            _ => "error",
        },
    }
}

/// Masks anything shaped like an AWS access key id (`AKIA…`, `ASIA…`: 4 + 16 upper-case
/// letters and digits). AWS never echoes a secret key, but an error may name the key id.
#[must_use]
pub fn scrub(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let key_like = rest.len() >= 20
            && (rest.starts_with(b"AKIA") || rest.starts_with(b"ASIA"))
            && rest[4..20]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            && rest.get(20).is_none_or(|b| !b.is_ascii_alphanumeric());
        if key_like {
            out.push_str("<access-key-id>");
            i += 20;
        } else {
            // Copy one char (the text is UTF-8; the key prefixes are ASCII).
            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    out
}
