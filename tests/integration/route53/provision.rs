//! The data plane end to end: `plan` / `provision` against the strict emulator, driven by the
//! real SDK, through the library and through the real binary with a TOML config. Plus the
//! fixture's health-check strictness (stock moto 5.2.5 fails each of those assertions).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use quorumgate::provision::{self, Action, GateStatus, ObjectId, Plan, TAG_CLUSTER, TAG_OBJECT};
use quorumgate::route53::{
    ApiError, Fence, HealthCheck, HealthCheckSpec, RateLimiter, RecordSet, Route53Api, Routing,
    SdkOptions, SdkRoute53, TagResource,
};

use super::Emulator;
use crate::support::exe;

/// (field, from, to)
type Field<'a> = (&'a str, &'a str, &'a str);

/// Three members on public names (quorum 2), a failover data-plane gate `app` and a weighted
/// data-plane gate `web` sharing check `app-use1`, pointed at the emulator.
fn config_toml(endpoint: &str, zone_id: &str, interval: u32) -> String {
    format!(
        r#"
[cluster]
name = "prod"

[[members]]
id = "euc1"
region = "eu-central-1"
url = "https://euc1.internal:9443"
public_key = "7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E="
health_url = "https://euc1.example.com:8443/"

[[members]]
id = "use1"
region = "us-east-1"
url = "https://use1.internal:9443"
public_key = "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w="
health_url = "https://use1.example.com:8443/"

[[members]]
id = "usw2"
region = "us-west-2"
url = "https://usw2.internal:9443"
public_key = "gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q="
health_url = "https://usw2.example.com:8443/"

[[checks]]
id = "app-use1"
[checks.http]
url = "https://use1.app.internal/healthz"

[[checks]]
id = "app-usw2"
[checks.http]
url = "https://usw2.app.internal/healthz"

[[checks]]
id = "app-euc1"
[checks.http]
url = "https://euc1.app.internal/healthz"

[[gates]]
id = "app"
plane = "data"
zone_id = "{zone_id}"
zone = "example.com"
record = "app.example.com"
type = "A"
ttl = 60
kind = "failover"
health_check_interval = {interval}
health_check_failure_threshold = 2
health_check_regions = ["us-east-1", "eu-west-1", "ap-southeast-1"]

[[gates.targets]]
id = "use1"
check = "app-use1"
role = "primary"
values = ["192.0.2.10"]

[[gates.targets]]
id = "usw2"
check = "app-usw2"
role = "secondary"
values = ["198.51.100.10"]

[[gates]]
id = "web"
plane = "data"
zone_id = "{zone_id}"
zone = "example.com"
record = "www.example.com"
kind = "weighted"
health_check_interval = {interval}
health_check_failure_threshold = 2
health_check_regions = ["us-east-1", "eu-west-1", "ap-southeast-1"]

[[gates.targets]]
id = "use1"
check = "app-use1"
weight = 100
values = ["192.0.2.20"]

[[gates.targets]]
id = "euc1"
check = "app-euc1"
weight = 50
alias = {{ zone_id = "Z2FDTNDATAQYW2", name = "lb-euc1.example.net" }}

[local]
agent_id = "use1"
listen = "127.0.0.1:0"
key_file = "/nonexistent/quorumgate.key"

[local.route53]
endpoint_url = "{endpoint}"
region = "us-east-1"
connect_timeout = "2s"
attempt_timeout = "5s"
operation_timeout = "30s"
max_requests_per_second = 5
insync_timeout = "0s"
"#
    )
}

/// An emulator with zone example.com, the config for it, and a client.
struct Rig {
    emu: Emulator,
    zone: String,
    api: Arc<SdkRoute53>,
}

impl Rig {
    async fn start() -> Self {
        let emu = Emulator::start().await;
        let zone = emu.create_zone("example.com").await;
        // Route 53's budget is the adapter's business (tests/integration/route53/faults.rs);
        // here a faster bucket keeps these tests short.
        let options = SdkOptions {
            limiter: Arc::new(RateLimiter::new(50, 10)),
            ..emu.options()
        };
        let api = Arc::new(SdkRoute53::load(options).await);
        Self { emu, zone, api }
    }

    fn config(&self, interval: u32) -> config::Config {
        config::Config::from_toml_str(&config_toml(&self.emu.url, &self.zone, interval))
            .expect("test config is valid")
    }

    fn dyn_api(&self) -> Arc<dyn Route53Api> {
        self.api.clone()
    }

    async fn plan(&self, interval: u32) -> Plan {
        provision::plan(self.dyn_api(), &self.config(interval).shared, &options())
            .await
            .expect("plan")
    }

    async fn provision(&self, interval: u32) -> Plan {
        let p = self.plan(interval).await;
        provision::apply(self.dyn_api(), &p, &options())
            .await
            .expect("apply");
        p
    }

    async fn checks(&self) -> Vec<HealthCheck> {
        self.api.list_health_checks().await.expect("list")
    }

    async fn tags(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        let ids: Vec<String> = self.checks().await.into_iter().map(|h| h.id).collect();
        self.api
            .list_tags(TagResource::HealthCheck, &ids)
            .await
            .expect("tags")
    }

    /// Health-check id by `quorumgate:object` tag.
    async fn owned(&self) -> BTreeMap<String, HealthCheck> {
        let tags = self.tags().await;
        self.checks()
            .await
            .into_iter()
            .filter_map(|h| {
                let t = tags.get(&h.id)?;
                let object = t.get(TAG_OBJECT)?.clone();
                (t.get(TAG_CLUSTER)? == "prod").then_some((object, h))
            })
            .collect()
    }

    async fn records(&self, name: &str) -> Vec<RecordSet> {
        self.api
            .list_record_sets(&self.zone, Some(name))
            .await
            .expect("records")
    }

    /// Operations (since the last reset) whose request path names `id`.
    async fn requests_naming(&self, id: &str) -> Vec<String> {
        let (status, body) = self.emu.admin(http::Method::GET, "/_stats", "").await;
        assert_eq!(status, 200, "stats: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("stats json");
        v["requests"]
            .as_array()
            .expect("requests")
            .iter()
            .filter(|r| r["path"].as_str().is_some_and(|p| p.contains(id)))
            .map(|r| r["op"].as_str().unwrap_or("").to_owned())
            .collect()
    }

    /// Operations the emulator saw since the last reset that are not reads.
    async fn writes_since_reset(&self) -> Vec<String> {
        let (log, _) = self.emu.stats().await;
        log.into_iter()
            .map(|r| r.op)
            .filter(|op| !op.starts_with("List") && !op.starts_with("Get"))
            .collect()
    }
}

fn options() -> provision::Options {
    provision::Options {
        writer: quorumgate::route53::WriterOptions {
            insync_poll: std::time::Duration::from_millis(100),
            insync_timeout: std::time::Duration::ZERO,
        },
        ..provision::Options::default()
    }
}

#[tokio::test]
async fn provision_creates_agent_and_calculated_checks_and_the_records_that_carry_them() {
    let rig = Rig::start().await;
    let p = rig.provision(10).await;
    assert_eq!(p.counts().create, 12);
    assert_eq!(p.counts().gate_writes, 2);

    let owned = rig.owned().await;
    assert_eq!(owned.len(), 12, "{:?}", owned.keys());
    for (object, t) in rig.tags().await {
        let object_tag = &t[TAG_OBJECT];
        assert!(ObjectId::parse(object_tag).is_some(), "{object}: {t:?}");
        assert_eq!(t["Name"], format!("quorumgate prod {object_tag}"));
    }
    let agent = &owned["agent/usw2/app-use1"];
    assert_eq!(agent.spec.kind.as_str(), "HTTPS_STR_MATCH");
    assert_eq!(agent.spec.fqdn.as_deref(), Some("usw2.example.com"));
    assert_eq!(agent.spec.port, Some(8443));
    assert_eq!(
        agent.spec.resource_path.as_deref(),
        Some("/v1/health/app-use1")
    );
    assert_eq!(agent.spec.search_string.as_deref(), Some("HEALTHY"));
    assert_eq!(agent.spec.request_interval_s, Some(10));
    assert_eq!(agent.spec.failure_threshold, Some(2));
    assert_eq!(agent.spec.enable_sni, Some(true));
    let mut regions = agent.spec.regions.clone();
    regions.sort();
    assert_eq!(regions, ["ap-southeast-1", "eu-west-1", "us-east-1"]);
    assert!(agent.caller_reference.starts_with("qg-") && agent.caller_reference.len() <= 64);

    for check in ["app-use1", "app-usw2", "app-euc1"] {
        let calc = &owned[&format!("calculated/{check}")];
        assert_eq!(calc.spec.kind.as_str(), "CALCULATED");
        assert_eq!(calc.spec.health_threshold, Some(2));
        let mut children = calc.spec.children.clone();
        children.sort();
        let mut want: Vec<String> = ["euc1", "use1", "usw2"]
            .iter()
            .map(|m| owned[&format!("agent/{m}/{check}")].id.clone())
            .collect();
        want.sort();
        assert_eq!(children, want, "children of calculated/{check}");
    }

    // Failover records: PRIMARY and SECONDARY, each carrying its target's calculated check.
    let app = rig.records("app.example.com").await;
    let app: Vec<&RecordSet> = app.iter().filter(|r| r.record_type() == "A").collect();
    assert_eq!(app.len(), 2);
    for r in &app {
        let (set, check) = match r.routing() {
            Routing::Failover(quorumgate::route53::FailoverRole::Primary) => ("use1", "app-use1"),
            _ => ("usw2", "app-usw2"),
        };
        assert_eq!(r.set_identifier(), Some(set));
        assert_eq!(
            r.health_check_id(),
            Some(owned[&format!("calculated/{check}")].id.as_str())
        );
    }
    // Weighted records, one with an alias.
    let www = rig.records("www.example.com").await;
    assert_eq!(www.len(), 2);
    assert!(www
        .iter()
        .any(|r| r.routing() == &Routing::Weighted { weight: 50 }
            && r.health_check_id() == Some(owned["calculated/app-euc1"].id.as_str())));
    // Both behind fences written by `provision`.
    let fence = rig.records("_quorumgate.app.example.com").await;
    let fence = Fence::from_record(&fence[0]).expect("fence");
    assert_eq!((fence.epoch, fence.by.as_str()), (1, "provision"));
}

#[tokio::test]
async fn a_second_provision_has_nothing_to_do_and_sends_no_write() {
    let rig = Rig::start().await;
    rig.provision(10).await;
    rig.emu.reset_stats().await;

    let p = rig.provision(10).await;
    assert!(!p.has_changes(), "{}", provision::render::plan(&p));
    assert!(p
        .gates
        .iter()
        .all(|g| g.status == GateStatus::InPlace { epoch: 1 }));
    let writes = rig.writes_since_reset().await;
    assert!(writes.is_empty(), "a no-op provision wrote: {writes:?}");
    let (log, _) = rig.emu.stats().await;
    assert!(!log.is_empty(), "it did read");
}

#[tokio::test]
async fn plan_shows_exactly_the_manual_drift_and_foreign_checks_are_never_touched() {
    let rig = Rig::start().await;
    rig.provision(10).await;
    let owned = rig.owned().await;

    // 1. Someone edits a record's TTL behind the fence's back.
    let before = rig
        .records("app.example.com")
        .await
        .into_iter()
        .find(|r| r.set_identifier() == Some("usw2"))
        .expect("secondary");
    let edited = RecordSet::from_parts(
        before.key().clone(),
        before.routing().clone(),
        quorumgate::route53::RecordTarget::values(300, ["198.51.100.10"]),
        before.health_check_id().map(str::to_owned),
    );
    rig.api
        .change_record_sets(
            &rig.zone,
            &[
                quorumgate::route53::Change::delete(before),
                quorumgate::route53::Change::create(edited),
            ],
            "by hand",
        )
        .await
        .expect("manual record edit");
    // 2. ...and a health check's search string.
    let target = &owned["agent/euc1/app-usw2"];
    rig.api
        .client()
        .update_health_check()
        .health_check_id(&target.id)
        .search_string("OK")
        .send()
        .await
        .expect("manual health-check edit");
    // 3. ...and creates a foreign, untagged check with our settings.
    let foreign_spec = HealthCheckSpec {
        regions: vec![
            "us-east-1".into(),
            "eu-west-1".into(),
            "ap-southeast-1".into(),
        ],
        request_interval_s: Some(10),
        failure_threshold: Some(2),
        ..HealthCheckSpec::https_string_match(
            "euc1.example.com",
            8443,
            "/v1/health/app-usw2",
            "HEALTHY",
        )
    };
    let foreign = rig
        .api
        .create_health_check("someone-else", &foreign_spec)
        .await
        .expect("foreign check");

    let p = rig.plan(10).await;
    let text = provision::render::plan(&p);
    let changed: Vec<(String, Action, Vec<&str>)> = p
        .checks
        .changes
        .iter()
        .filter(|c| c.action != Action::Unchanged)
        .map(|c| {
            (
                c.object.to_string(),
                c.action,
                c.fields.iter().map(|f| f.field).collect(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        [(
            "agent/euc1/app-usw2".to_owned(),
            Action::Update,
            vec!["search_string"]
        )],
        "{text}"
    );
    assert!(p.checks.obsolete.is_empty(), "{text}");
    assert_eq!(p.checks.foreign, 1, "{text}");
    let GateStatus::Write { epoch: 1, records } = &p.gates[0].status else {
        panic!("gate app should need a write:\n{text}");
    };
    let drift: Vec<(String, Action, Vec<Field<'_>>)> = records
        .iter()
        .filter(|r| r.action != Action::Unchanged)
        .map(|r| {
            (
                r.key.to_string(),
                r.action,
                r.fields
                    .iter()
                    .map(|f| (f.field, f.from.as_str(), f.to.as_str()))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        drift,
        [(
            "app.example.com. A [usw2]".to_owned(),
            Action::Update,
            vec![("ttl", "300", "60")]
        )],
        "{text}"
    );
    assert_eq!(
        p.gates[1].status,
        GateStatus::InPlace { epoch: 1 },
        "{text}"
    );
    assert!(text.contains("search_string: OK -> HEALTHY"), "{text}");
    assert!(text.contains("ttl: 300 -> 60"), "{text}");
    assert!(
        text.contains("1 health check(s) without this cluster's tag"),
        "{text}"
    );

    // provision repairs exactly that, and never touches the foreign check.
    rig.emu.reset_stats().await;
    provision::apply(rig.dyn_api(), &p, &options())
        .await
        .expect("apply");
    let touched = rig.requests_naming(&foreign.id).await;
    assert!(
        touched.is_empty(),
        "the foreign check was touched: {touched:?}"
    );
    let mut writes = rig.writes_since_reset().await;
    writes.sort();
    assert_eq!(
        writes,
        ["ChangeResourceRecordSets", "UpdateHealthCheck"],
        "only the drift is repaired"
    );
    assert!(!rig.plan(10).await.has_changes());
    let still = rig
        .checks()
        .await
        .into_iter()
        .find(|h| h.id == foreign.id)
        .expect("foreign check still there");
    assert_eq!(still.version, foreign.version, "and unchanged");
}

#[tokio::test]
async fn an_interval_change_replaces_and_changing_back_uses_fresh_caller_references() {
    let rig = Rig::start().await;
    rig.provision(10).await;
    let first = rig.owned().await;

    // The interval is immutable: 9 agent checks replaced, 3 calculated updated in place.
    let p = rig.provision(30).await;
    let c = p.counts();
    assert_eq!((c.replace, c.update, c.create, c.delete), (9, 3, 0, 0));
    let second = rig.owned().await;
    assert_eq!(second.len(), 12, "old checks deleted");
    for (object, hc) in &second {
        if object.starts_with("agent/") {
            assert_ne!(hc.id, first[object].id);
            assert_eq!(hc.spec.request_interval_s, Some(30));
        } else {
            assert_eq!(hc.id, first[object].id, "{object} kept its id");
            assert_eq!(hc.version, 2, "{object} updated once");
        }
    }
    // Records still point at the same calculated checks: no record write was needed.
    assert!(matches!(p.gates[0].status, GateStatus::InPlace { .. }));

    // Back to 10 s: the generation-0 references belong to deleted checks, which Route 53
    // refuses; provision moves to generation 1.
    rig.provision(10).await;
    let third = rig.owned().await;
    assert_eq!(third.len(), 12);
    for (object, hc) in &third {
        if object.starts_with("agent/") {
            assert!(
                hc.caller_reference.ends_with("-1"),
                "{object}: {}",
                hc.caller_reference
            );
            assert_eq!(hc.spec.request_interval_s, Some(10));
        }
    }
    assert!(!rig.plan(10).await.has_changes());
}

fn write_config(dir: &Path, rig: &Rig) -> std::path::PathBuf {
    let path = dir.join("quorumgate.toml");
    std::fs::write(&path, config_toml(&rig.emu.url, &rig.zone, 10)).expect("write config");
    path
}

fn run(args: &[&str], path: &Path, with_credentials: bool) -> Output {
    let mut cmd = Command::new(exe());
    cmd.args(args)
        .arg("--config")
        .arg(path)
        .env_remove("QUORUMGATE_CONFIG")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN");
    if with_credentials {
        cmd.env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
    }
    cmd.output().expect("run quorumgate")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_binary_plans_provisions_and_prints_terraform() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), &rig);

    let out = run(&["plan", "--detailed-exitcode"], &path, true);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("+   create    agent/euc1/app-euc1"), "{t}");
    assert!(t.contains("Plan: 12 to create"), "{t}");
    assert!(rig.checks().await.is_empty(), "plan changed nothing");

    let out = run(&["provision"], &path, true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Applied:"), "{}", text(&out));
    assert_eq!(rig.owned().await.len(), 12);

    let out = run(&["plan", "--detailed-exitcode"], &path, true);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes"), "{}", text(&out));
    let out = run(&["provision"], &path, true);
    assert!(text(&out).contains("Nothing to do."), "{}", text(&out));

    // Terraform needs neither credentials nor the API (the emulator is gone).
    drop(rig);
    let out = run(&["provision", "--terraform"], &path, false);
    assert!(out.status.success(), "{}", text(&out));
    let hcl = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        hcl.matches("resource \"aws_route53_health_check\"").count(),
        12
    );
    assert_eq!(hcl.matches("resource \"aws_route53_record\"").count(), 4);
    assert!(hcl.contains("health_check_id = aws_route53_health_check.calculated_app_use1.id"));
}

#[tokio::test]
async fn the_binary_reports_config_problems_and_api_failures() {
    let rig = Rig::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    let toml = config_toml(&rig.emu.url, &rig.zone, 10)
        .replace("health_url = \"https://euc1.example.com:8443/\"\n", "");
    std::fs::write(&path, toml).expect("write");
    let out = run(&["plan"], &path, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("health_url"), "{}", text(&out));

    // A zone that does not exist: an error naming it, exit 1.
    let path = dir.path().join("nozone.toml");
    std::fs::write(&path, config_toml(&rig.emu.url, "ZNOSUCHZONE1", 10)).expect("write");
    let out = run(&["plan"], &path, true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("NoSuchHostedZone"), "{}", text(&out));
}

// ---------------------------------------------------------------------------------------------
// The fixture's health checks are strict where stock moto 5.2.5 is not.

#[tokio::test]
async fn fixture_health_checks_follow_route53_caller_reference_and_version_rules() {
    let emu = Emulator::start().await;
    let api = emu.client().await;
    let spec = HealthCheckSpec {
        regions: vec![
            "us-east-1".into(),
            "eu-west-1".into(),
            "ap-southeast-1".into(),
        ],
        ..HealthCheckSpec::https_string_match("a.example.com", 443, "/v1/health/x", "HEALTHY")
    };
    let a = api
        .create_health_check("ref-a", &spec)
        .await
        .expect("create");
    assert_eq!(a.version, 1);

    // Same CallerReference and settings: the same check (stock moto makes a second one).
    let again = api
        .create_health_check("ref-a", &spec)
        .await
        .expect("repeat");
    assert_eq!(again.id, a.id);
    assert_eq!(api.list_health_checks().await.expect("list").len(), 1);
    // Same reference, other settings: refused.
    let other = HealthCheckSpec {
        port: Some(8443),
        ..spec.clone()
    };
    let err = api
        .create_health_check("ref-a", &other)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, ApiError::Rejected { code, .. } if code == "HealthCheckAlreadyExists"),
        "{err:?}"
    );

    // An update changes only what it carries (stock moto drops the regions), bumps the
    // version (stock moto keeps 1) and refuses a stale version (stock moto accepts it).
    let updated = HealthCheckSpec {
        search_string: Some("OK".into()),
        ..spec.clone()
    };
    let no_regions = HealthCheckSpec {
        regions: vec![],
        ..updated.clone()
    };
    let u = api
        .update_health_check(&a.id, Some(1), &no_regions)
        .await
        .expect("update");
    assert_eq!(u.version, 2);
    assert_eq!(u.spec.search_string.as_deref(), Some("OK"));
    assert_eq!(
        u.spec.regions.len(),
        3,
        "regions kept: {:?}",
        u.spec.regions
    );
    let err = api
        .update_health_check(&a.id, Some(1), &updated)
        .await
        .expect_err("stale version");
    assert!(
        matches!(&err, ApiError::Rejected { code, .. } if code == "HealthCheckVersionMismatch"),
        "{err:?}"
    );

    // A calculated check keeps its children through an update of its threshold.
    let calc = api
        .create_health_check("ref-c", &HealthCheckSpec::calculated(1, vec![a.id.clone()]))
        .await
        .expect("calculated");
    let u = api
        .update_health_check(&calc.id, None, &HealthCheckSpec::calculated(1, vec![]))
        .await
        .expect("update calculated");
    assert_eq!(u.spec.children, std::slice::from_ref(&a.id));
    assert_eq!(u.version, 2);

    // Delete: then NoSuchHealthCheck, and the deleted check's reference is refused for good.
    api.delete_health_check(&calc.id).await.expect("delete");
    api.delete_health_check(&a.id).await.expect("delete");
    let err = api.delete_health_check(&a.id).await.expect_err("gone");
    assert!(
        matches!(&err, ApiError::NotFound { code, .. } if code == "NoSuchHealthCheck"),
        "{err:?}"
    );
    let err = api
        .create_health_check("ref-a", &spec)
        .await
        .expect_err("deleted reference");
    assert!(
        matches!(&err, ApiError::Rejected { code, .. } if code == "HealthCheckAlreadyExists"),
        "{err:?}"
    );
    assert!(api.list_health_checks().await.expect("list").is_empty());
}
