//! Conversions between this crate's Route 53 types and aws-sdk-route53's.

use aws_sdk_route53::types as sdk;

use super::types::{
    Change, ChangeAction, ChangeInfo, ChangeStatus, FailoverRole, HealthCheck, HealthCheckKind,
    HealthCheckSpec, RecordKey, RecordSet, RecordTarget, Routing,
};

/// A conversion failed: the SDK refused to build a request or a response lacked a field.
pub type ConvertError = String;

pub fn record_from_sdk(r: &sdk::ResourceRecordSet) -> RecordSet {
    let key = RecordKey::new(r.name(), r.r#type().as_str(), r.set_identifier());
    let routing = routing_from_sdk(r);
    let target = match r.alias_target() {
        Some(a) => {
            RecordTarget::alias(a.hosted_zone_id(), a.dns_name(), a.evaluate_target_health())
        }
        None => RecordTarget::values(
            u32::try_from(r.ttl().unwrap_or(0)).unwrap_or(u32::MAX),
            r.resource_records().iter().map(|v| v.value().to_owned()),
        ),
    };
    RecordSet::from_parts(key, routing, target, r.health_check_id().map(str::to_owned))
}

fn routing_from_sdk(r: &sdk::ResourceRecordSet) -> Routing {
    let mut unsupported = Vec::new();
    if r.region().is_some() {
        unsupported.push("latency");
    }
    if r.geo_location().is_some() {
        unsupported.push("geolocation");
    }
    if r.geo_proximity_location().is_some() {
        unsupported.push("geoproximity");
    }
    if r.multi_value_answer().is_some() {
        unsupported.push("multivalue");
    }
    if r.cidr_routing_config().is_some() {
        unsupported.push("cidr");
    }
    if r.traffic_policy_instance_id().is_some() {
        unsupported.push("traffic-policy");
    }
    if !unsupported.is_empty() {
        return Routing::Unsupported(unsupported.join("+"));
    }
    match (r.weight(), r.failover()) {
        (Some(w), None) => match u8::try_from(w) {
            Ok(weight) => Routing::Weighted { weight },
            Err(_) => Routing::Unsupported(format!("weight {w}")),
        },
        (None, Some(sdk::ResourceRecordSetFailover::Primary)) => {
            Routing::Failover(FailoverRole::Primary)
        }
        (None, Some(sdk::ResourceRecordSetFailover::Secondary)) => {
            Routing::Failover(FailoverRole::Secondary)
        }
        (None, None) => Routing::Simple,
        (w, f) => Routing::Unsupported(format!("weight {w:?} failover {f:?}")),
    }
}

pub fn record_to_sdk(r: &RecordSet) -> Result<sdk::ResourceRecordSet, ConvertError> {
    let mut b = sdk::ResourceRecordSet::builder()
        .name(r.name())
        .r#type(sdk::RrType::from(r.record_type()))
        .set_set_identifier(r.set_identifier().map(str::to_owned))
        .set_health_check_id(r.health_check_id().map(str::to_owned));
    b = match r.routing() {
        Routing::Simple => b,
        Routing::Weighted { weight } => b.weight(i64::from(*weight)),
        Routing::Failover(FailoverRole::Primary) => {
            b.failover(sdk::ResourceRecordSetFailover::Primary)
        }
        Routing::Failover(FailoverRole::Secondary) => {
            b.failover(sdk::ResourceRecordSetFailover::Secondary)
        }
        Routing::Unsupported(what) => {
            return Err(format!("{}: cannot write routing policy {what}", r.key()))
        }
    };
    b = match r.target() {
        RecordTarget::Values { ttl, values } => {
            let mut b = b.ttl(i64::from(*ttl));
            for v in values {
                let rr = sdk::ResourceRecord::builder()
                    .value(v)
                    .build()
                    .map_err(|e| e.to_string())?;
                b = b.resource_records(rr);
            }
            b
        }
        RecordTarget::Alias {
            hosted_zone_id,
            dns_name,
            evaluate_target_health,
        } => b.alias_target(
            sdk::AliasTarget::builder()
                .hosted_zone_id(hosted_zone_id)
                .dns_name(dns_name)
                .evaluate_target_health(*evaluate_target_health)
                .build()
                .map_err(|e| e.to_string())?,
        ),
    };
    b.build().map_err(|e| e.to_string())
}

pub fn change_to_sdk(c: &Change) -> Result<sdk::Change, ConvertError> {
    let action = match c.action {
        ChangeAction::Create => sdk::ChangeAction::Create,
        ChangeAction::Delete => sdk::ChangeAction::Delete,
        ChangeAction::Upsert => sdk::ChangeAction::Upsert,
    };
    sdk::Change::builder()
        .action(action)
        .resource_record_set(record_to_sdk(&c.record)?)
        .build()
        .map_err(|e| e.to_string())
}

pub fn batch_to_sdk(changes: &[Change], comment: &str) -> Result<sdk::ChangeBatch, ConvertError> {
    let changes = changes
        .iter()
        .map(change_to_sdk)
        .collect::<Result<Vec<_>, _>>()?;
    sdk::ChangeBatch::builder()
        .comment(comment)
        .set_changes(Some(changes))
        .build()
        .map_err(|e| e.to_string())
}

pub fn change_info_from_sdk(info: Option<&sdk::ChangeInfo>) -> Result<ChangeInfo, ConvertError> {
    let info = info.ok_or("response without ChangeInfo")?;
    let id = info.id();
    let id = id.strip_prefix("/change/").unwrap_or(id).to_owned();
    let status = match info.status() {
        sdk::ChangeStatus::Insync => ChangeStatus::InSync,
        _ => ChangeStatus::Pending,
    };
    Ok(ChangeInfo { id, status })
}

pub fn health_check_config_to_sdk(
    spec: &HealthCheckSpec,
) -> Result<sdk::HealthCheckConfig, ConvertError> {
    let b = sdk::HealthCheckConfig::builder()
        .r#type(sdk::HealthCheckType::from(spec.kind.as_str()))
        .set_fully_qualified_domain_name(spec.fqdn.clone())
        .set_ip_address(spec.ip_address.clone())
        .set_port(spec.port.map(i32::from))
        .set_resource_path(spec.resource_path.clone())
        .set_search_string(spec.search_string.clone())
        .set_request_interval(spec.request_interval_s.map(to_i32))
        .set_failure_threshold(spec.failure_threshold.map(to_i32))
        .set_health_threshold(spec.health_threshold.map(to_i32))
        .set_child_health_checks(non_empty(&spec.children))
        .inverted(spec.inverted)
        .disabled(spec.disabled)
        .set_enable_sni(spec.enable_sni)
        .set_regions(non_empty(&spec.regions).map(|rs| {
            rs.iter()
                .map(|r| sdk::HealthCheckRegion::from(r.as_str()))
                .collect()
        }));
    b.build().map_err(|e| e.to_string())
}

pub fn health_check_from_sdk(hc: &sdk::HealthCheck) -> Result<HealthCheck, ConvertError> {
    let c = hc
        .health_check_config()
        .ok_or_else(|| format!("health check {} without config", hc.id()))?;
    let spec = HealthCheckSpec {
        kind: HealthCheckKind::parse(c.r#type().as_str()),
        fqdn: c.fully_qualified_domain_name().map(str::to_owned),
        ip_address: c.ip_address().map(str::to_owned),
        port: c.port().and_then(|p| u16::try_from(p).ok()),
        resource_path: c.resource_path().map(str::to_owned),
        search_string: c.search_string().map(str::to_owned),
        request_interval_s: c.request_interval().and_then(|v| u32::try_from(v).ok()),
        failure_threshold: c.failure_threshold().and_then(|v| u32::try_from(v).ok()),
        health_threshold: c.health_threshold().and_then(|v| u32::try_from(v).ok()),
        children: c.child_health_checks().to_vec(),
        inverted: c.inverted().unwrap_or(false),
        disabled: c.disabled().unwrap_or(false),
        enable_sni: c.enable_sni(),
        regions: c.regions().iter().map(|r| r.as_str().to_owned()).collect(),
    };
    Ok(HealthCheck {
        id: hc.id().to_owned(),
        caller_reference: hc.caller_reference().to_owned(),
        version: hc.health_check_version(),
        spec,
    })
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

fn non_empty(v: &[String]) -> Option<Vec<String>> {
    (!v.is_empty()).then(|| v.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_the_sdk_types() {
        let records = [
            RecordSet::new(
                "app.example.com",
                "A",
                RecordTarget::values(60, ["1.1.1.1", "2.2.2.2"]),
            )
            .with_routing("eu", Routing::Weighted { weight: 200 })
            .with_health_check("hc-1"),
            RecordSet::new(
                "app.example.com",
                "A",
                RecordTarget::alias("Z1", "lb.example.net", true),
            )
            .with_routing("p", Routing::Failover(FailoverRole::Primary)),
            RecordSet::new(
                "t.example.com",
                "TXT",
                RecordTarget::values(300, ["\"x y\""]),
            ),
        ];
        for r in records {
            let back = record_from_sdk(&record_to_sdk(&r).expect("to sdk"));
            assert_eq!(back, r);
        }
    }

    #[test]
    fn unmanaged_routing_is_marked_unsupported() {
        let sdk_record = sdk::ResourceRecordSet::builder()
            .name("x.example.com.")
            .r#type(sdk::RrType::A)
            .set_identifier("eu")
            .region(sdk::ResourceRecordSetRegion::EuWest1)
            .ttl(60)
            .resource_records(
                sdk::ResourceRecord::builder()
                    .value("1.1.1.1")
                    .build()
                    .expect("rr"),
            )
            .build()
            .expect("record");
        let r = record_from_sdk(&sdk_record);
        assert!(matches!(r.routing(), Routing::Unsupported(w) if w == "latency"));
        assert!(record_to_sdk(&r).is_err());
    }
}
