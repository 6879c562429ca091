//! Where the state comes from: the Route 53 API (aws-sdk-route53 against an endpoint override:
//! ListHostedZones, ListResourceRecordSets and ListHealthChecks, all paginated) or a JSON file.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_route53::config::Credentials;
use aws_sdk_route53::types as sdk;
use aws_sdk_route53::Client;

use super::model::{
    normalize_name, Alias, FailoverRole, HealthCheck, HealthCheckKind, Record, Routing, State, Zone,
};

/// Bound on the pages any one list call follows.
const MAX_PAGES: usize = 1000;

/// A Route 53 client for an emulator at `endpoint`: region us-east-1, the dummy static
/// credentials every test uses, explicit timeouts, a few quick retries (the strict emulator can
/// be asked to throttle).
pub async fn route53_client(endpoint: &str) -> Client {
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build();
    let shared = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint.trim_end_matches('/'))
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "quorumgate-testkit",
        ))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(timeouts)
        .load()
        .await;
    Client::new(&shared)
}

/// Reads a `State` JSON file.
pub async fn load_file(path: &Path) -> anyhow::Result<State> {
    let text = tokio::fs::read_to_string(path)
        .await
        .with_context(|| format!("reading {}", path.display()))?;
    let state: State =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    Ok(state.normalized())
}

/// Reads every hosted zone with its record sets, then every health check.
pub async fn load_route53(client: &Client) -> anyhow::Result<State> {
    let mut zones = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_hosted_zones()
            .set_marker(marker.clone())
            .send()
            .await
            .context("ListHostedZones")?;
        for z in page.hosted_zones() {
            let id = z.id().trim_start_matches("/hostedzone/").to_owned();
            let records = list_records(client, &id).await?;
            zones.push(Zone {
                id,
                name: normalize_name(z.name()),
                records,
            });
        }
        match page.next_marker() {
            Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
            _ => break,
        }
    }
    let health_checks = list_health_checks(client).await?;
    Ok(State {
        health_checks,
        zones,
    }
    .normalized())
}

async fn list_records(client: &Client, zone_id: &str) -> anyhow::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut next_name: Option<String> = None;
    let mut next_type: Option<sdk::RrType> = None;
    let mut next_id: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_resource_record_sets()
            .hosted_zone_id(zone_id)
            .set_start_record_name(next_name.clone())
            .set_start_record_type(next_type.clone())
            .set_start_record_identifier(next_id.clone())
            .send()
            .await
            .with_context(|| format!("ListResourceRecordSets {zone_id}"))?;
        out.extend(
            page.resource_record_sets()
                .iter()
                .filter_map(record_from_sdk),
        );
        if !page.is_truncated() {
            return Ok(out);
        }
        next_name = page.next_record_name().map(str::to_owned);
        next_type = page.next_record_type().cloned();
        next_id = page.next_record_identifier().map(str::to_owned);
    }
    anyhow::bail!("ListResourceRecordSets {zone_id}: more than {MAX_PAGES} pages")
}

/// One record set; `None` for a routing policy the data plane does not model (latency,
/// geolocation, multivalue, ...), which it then never answers.
fn record_from_sdk(r: &sdk::ResourceRecordSet) -> Option<Record> {
    if r.region().is_some()
        || r.geo_location().is_some()
        || r.geo_proximity_location().is_some()
        || r.multi_value_answer().is_some()
        || r.cidr_routing_config().is_some()
    {
        return None;
    }
    let routing = match (r.weight(), r.failover()) {
        (Some(w), _) => Routing::Weighted {
            weight: u32::try_from(w).unwrap_or(0),
        },
        (None, Some(sdk::ResourceRecordSetFailover::Primary)) => Routing::Failover {
            role: FailoverRole::Primary,
        },
        (None, Some(sdk::ResourceRecordSetFailover::Secondary)) => Routing::Failover {
            role: FailoverRole::Secondary,
        },
        (None, _) => Routing::Simple,
    };
    Some(Record {
        name: r.name().to_owned(),
        rtype: r.r#type().as_str().to_owned(),
        ttl: r.ttl().and_then(|t| u32::try_from(t).ok()),
        set_identifier: r.set_identifier().map(str::to_owned),
        routing,
        health_check_id: r.health_check_id().map(str::to_owned),
        values: r
            .resource_records()
            .iter()
            .map(|v| unwrap_moto_value(v.value()))
            .collect(),
        alias: r.alias_target().map(|a| Alias {
            dns_name: a.dns_name().to_owned(),
            evaluate_target_health: a.evaluate_target_health(),
        }),
    })
}

/// The strict emulator (moto) lists the SOA it creates with a zone as a Python dict's repr,
/// `{'Value': 'ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400'}`;
/// Route 53 itself never does. Anything else is kept as is.
fn unwrap_moto_value(value: &str) -> String {
    value
        .strip_prefix("{'Value': '")
        .and_then(|v| v.strip_suffix("'}"))
        .unwrap_or(value)
        .to_owned()
}

async fn list_health_checks(client: &Client) -> anyhow::Result<Vec<HealthCheck>> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = client
            .list_health_checks()
            .set_marker(marker.clone())
            .send()
            .await
            .context("ListHealthChecks")?;
        out.extend(
            page.health_checks()
                .iter()
                .filter_map(health_check_from_sdk),
        );
        match page.next_marker() {
            Some(next) if page.is_truncated() => marker = Some(next.to_owned()),
            _ => return Ok(out),
        }
    }
    anyhow::bail!("ListHealthChecks: more than {MAX_PAGES} pages")
}

/// One health check; `None` for a kind not modelled (CloudWatch alarms, recovery controls).
fn health_check_from_sdk(hc: &sdk::HealthCheck) -> Option<HealthCheck> {
    let c = hc.health_check_config()?;
    let kind = HealthCheckKind::parse(c.r#type().as_str())?;
    let to_u32 =
        |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).unwrap_or(default);
    Some(HealthCheck {
        id: hc.id().to_owned(),
        kind,
        ip_address: c.ip_address().and_then(|ip| ip.parse::<IpAddr>().ok()),
        fqdn: c.fully_qualified_domain_name().map(str::to_owned),
        port: c.port().and_then(|p| u16::try_from(p).ok()),
        resource_path: c.resource_path().map(str::to_owned),
        search_string: c.search_string().map(str::to_owned),
        request_interval_s: to_u32(c.request_interval(), 30),
        failure_threshold: to_u32(c.failure_threshold(), 3),
        regions: c.regions().iter().map(|r| r.as_str().to_owned()).collect(),
        inverted: c.inverted().unwrap_or(false),
        disabled: c.disabled().unwrap_or(false),
        // Absent: Route 53's default, on for the HTTPS kinds.
        enable_sni: c.enable_sni().unwrap_or(kind.is_https()),
        children: c.child_health_checks().to_vec(),
        health_threshold: to_u32(c.health_threshold(), 0),
    })
}

#[cfg(test)]
mod tests {
    use super::unwrap_moto_value;

    #[test]
    fn the_emulators_soa_repr_is_unwrapped() {
        let soa = "ns-2048.awsdns-64.com. hostmaster.example.com. 1 7200 900 1209600 86400";
        assert_eq!(unwrap_moto_value(&format!("{{'Value': '{soa}'}}")), soa);
        assert_eq!(unwrap_moto_value(soa), soa);
        assert_eq!(unwrap_moto_value("\"v=spf1 -all\""), "\"v=spf1 -all\"");
    }
}
