//! `[local.route53]`: how this agent reaches the Route 53 API (outside the digest).

use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::Route53Local;
use crate::parse::{
    base_url, duration_or, duration_or_zero, fmt_ms, is_region_code, ranged_or_default,
};
use crate::raw::RawRoute53;

pub(super) fn route53(
    raw: Option<&RawRoute53>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Route53Local> {
    let empty = RawRoute53::default();
    let raw = match raw {
        Some(r) => r,
        None if report.has_error_at(path) => return None,
        None => &empty,
    };
    let endpoint_url = match &raw.endpoint_url {
        None => Some(None),
        Some(u) => base_url(
            u,
            "http://127.0.0.1:5000",
            &path.key("endpoint_url"),
            report,
        )
        .map(Some),
    };
    let region_path = path.key("region");
    let region = match &raw.region {
        None => Some(None),
        Some(r) if is_region_code(r) => Some(Some(r.clone())),
        Some(r) => {
            report.error(
                &region_path,
                format!("{r:?} is not an AWS region code"),
                "write a region like \"us-east-1\" (Route 53's API lives there), or remove it to use the standard region chain",
            );
            None
        }
    };
    let connect = duration_or(
        raw.connect_timeout.as_ref(),
        defaults::ROUTE53_CONNECT_TIMEOUT,
        &path.key("connect_timeout"),
        report,
    );
    let attempt = duration_or(
        raw.attempt_timeout.as_ref(),
        defaults::ROUTE53_ATTEMPT_TIMEOUT,
        &path.key("attempt_timeout"),
        report,
    );
    let operation_path = path.key("operation_timeout");
    let mut operation = duration_or(
        raw.operation_timeout.as_ref(),
        defaults::ROUTE53_OPERATION_TIMEOUT,
        &operation_path,
        report,
    );
    if let (Some(a), Some(o)) = (attempt, operation) {
        if o <= a {
            report.error(
                &operation_path,
                format!(
                    "must be longer than attempt_timeout ({}), is {}",
                    fmt_ms(a),
                    fmt_ms(o)
                ),
                "raise operation_timeout (it covers every retry of one call) or lower attempt_timeout",
            );
            operation = None;
        }
    }
    let rps_path = path.key("max_requests_per_second");
    let rps = ranged_or_default(
        raw.max_requests_per_second.as_ref(),
        defaults::ROUTE53_MAX_REQUESTS_PER_SECOND,
        (1, defaults::ROUTE53_MAX_REQUESTS_PER_SECOND_LIMIT),
        &rps_path,
        report,
        "Route 53 allows 5 requests per second per account, shared by every agent and tool: e.g. 4",
    )
    .and_then(|n| u32::try_from(n).ok());
    let insync = duration_or_zero(
        raw.insync_timeout.as_ref(),
        defaults::ROUTE53_INSYNC_TIMEOUT,
        &path.key("insync_timeout"),
        report,
    );
    Some(Route53Local {
        endpoint_url: endpoint_url?,
        region: region?,
        connect_timeout_ms: connect?,
        attempt_timeout_ms: attempt?,
        operation_timeout_ms: operation?,
        max_requests_per_second: rps?,
        insync_timeout_ms: insync?,
    })
}
