//! The pure judgement, the remembered writer, and the probe over a fake [`RdsApi`]: the paths
//! moto does not produce (`modifying`, `failing-over`, a promoted read replica, throttling,
//! access denied, an API that never answers).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::Mutex;

use super::sdk::{reason_of, scrub};
use super::*;

fn instance_spec(require_multi_az: bool) -> RdsProbe {
    RdsProbe {
        target: RdsTarget::Instance("app-db".into()),
        region: Some("us-east-1".into()),
        endpoint_url: None,
        require_multi_az,
    }
}

fn cluster_spec(expect_writer: Option<&str>, require_multi_az: bool) -> RdsProbe {
    RdsProbe {
        target: RdsTarget::Cluster {
            id: "app-aurora".into(),
            expect_writer: expect_writer.map(str::to_owned),
        },
        region: Some("us-east-1".into()),
        endpoint_url: None,
        require_multi_az,
    }
}

fn instance(status: &str, multi_az: bool, replica_of: Option<&str>) -> InstanceView {
    InstanceView {
        id: "app-db".into(),
        status: status.into(),
        multi_az,
        replica_of: replica_of.map(str::to_owned),
    }
}

fn cluster(status: &str, writer: Option<&str>, multi_az: bool) -> ClusterView {
    let members = ["app-aurora-1", "app-aurora-2"]
        .into_iter()
        .map(|m| (m.to_owned(), Some(m) == writer))
        .collect();
    ClusterView {
        id: "app-aurora".into(),
        status: status.into(),
        multi_az,
        members,
    }
}

#[test]
fn instance_table() {
    #[rustfmt::skip]
    let cases: &[(bool, InstanceView, bool, &str, &str)] = &[
        (false, instance("available", false, None), true, "ok", "instance app-db available, single-AZ"),
        (true, instance("available", true, None), true, "ok", "instance app-db available, Multi-AZ"),
        (true, instance("available", false, None), false, "not_multi_az", "not Multi-AZ"),
        (false, instance("modifying", true, None), false, "status", "status=modifying"),
        (false, instance("stopped", true, None), false, "status", "status=stopped"),
        (false, instance("storage-full", true, None), false, "status", "status=storage-full"),
        // status comes first: a stopped single-AZ instance is reported as `status`
        (true, instance("stopped", false, None), false, "status", "status=stopped"),
        (false, instance("available", false, Some("app-db-src")), true, "ok", "read replica of app-db-src"),
    ];
    for (multi, view, healthy, reason, detail) in cases {
        let v = judge_instance(&instance_spec(*multi), view);
        assert_eq!(
            (v.healthy, v.reason),
            (*healthy, *reason),
            "{view:?}: {v:?}"
        );
        assert!(v.detail.contains(detail), "{view:?}: {v:?}");
    }
}

/// (expect_writer, require_multi_az, answer, healthy, reason, part of the detail).
type ClusterCase = (
    Option<&'static str>,
    bool,
    ClusterView,
    bool,
    &'static str,
    &'static str,
);

#[test]
fn cluster_table_with_expect_writer() {
    #[rustfmt::skip]
    let cases: &[ClusterCase] = &[
        (Some("app-aurora-1"), false, cluster("available", Some("app-aurora-1"), false), true, "ok", "writer app-aurora-1"),
        (Some("APP-AURORA-1"), false, cluster("available", Some("app-aurora-1"), false), true, "ok", "writer app-aurora-1"),
        (Some("app-aurora-1"), false, cluster("available", Some("app-aurora-2"), true), false, "writer_changed", "writer is app-aurora-2, expect_writer is app-aurora-1"),
        (Some("app-aurora-1"), false, cluster("failing-over", Some("app-aurora-2"), true), false, "status", "status=failing-over"),
        (Some("app-aurora-1"), false, cluster("modifying", Some("app-aurora-1"), true), false, "status", "status=modifying"),
        (None, false, cluster("available", None, true), false, "no_writer", "no writer (members app-aurora-1, app-aurora-2)"),
        (None, true, cluster("available", Some("app-aurora-1"), false), false, "not_multi_az", "not Multi-AZ"),
        (Some("app-aurora-1"), true, cluster("available", Some("app-aurora-2"), false), false, "writer_changed", "expect_writer"),
        (None, true, cluster("available", Some("app-aurora-1"), true), true, "ok", "Multi-AZ"),
    ];
    for (expect, multi, view, healthy, reason, detail) in cases {
        let (v, _) = judge_cluster(&cluster_spec(*expect, *multi), view, None);
        assert_eq!(
            (v.healthy, v.reason),
            (*healthy, *reason),
            "{expect:?} {view:?}: {v:?}"
        );
        assert!(v.detail.contains(detail), "{view:?}: {v:?}");
    }
    let headless = ClusterView {
        members: Vec::new(),
        ..cluster("available", None, false)
    };
    let (v, learn) = judge_cluster(&cluster_spec(None, false), &headless, None);
    assert_eq!(v.reason, "no_writer");
    assert!(v.detail.contains("no instances"), "{v:?}");
    assert_eq!(learn, None);
}

#[test]
fn a_writer_is_learned_only_when_available_and_unpinned() {
    let spec = cluster_spec(None, false);
    let (_, learn) = judge_cluster(
        &spec,
        &cluster("available", Some("app-aurora-1"), false),
        None,
    );
    assert_eq!(learn.as_deref(), Some("app-aurora-1"));
    // Not while the cluster is not available, nor without a writer.
    let (_, learn) = judge_cluster(
        &spec,
        &cluster("failing-over", Some("app-aurora-1"), false),
        None,
    );
    assert_eq!(learn, None);
    // Learned even when Multi-AZ is missing: the writer's identity does not depend on it.
    let (v, learn) = judge_cluster(
        &cluster_spec(None, true),
        &cluster("available", Some("app-aurora-1"), false),
        None,
    );
    assert_eq!(
        (v.reason, learn.as_deref()),
        ("not_multi_az", Some("app-aurora-1"))
    );
    // Never with expect_writer.
    let (_, learn) = judge_cluster(
        &cluster_spec(Some("app-aurora-1"), false),
        &cluster("available", Some("app-aurora-1"), false),
        None,
    );
    assert_eq!(learn, None);
}

/// A fake RDS API: answers are queued per call; each call takes the next one.
#[derive(Debug, Default)]
struct Fake {
    instances: Mutex<VecDeque<Result<InstanceView, RdsFailure>>>,
    clusters: Mutex<VecDeque<Result<ClusterView, RdsFailure>>>,
    hang: bool,
}

impl Fake {
    fn clusters(answers: impl IntoIterator<Item = Result<ClusterView, RdsFailure>>) -> Self {
        Self {
            clusters: Mutex::new(answers.into_iter().collect()),
            ..Self::default()
        }
    }

    fn instances(answers: impl IntoIterator<Item = Result<InstanceView, RdsFailure>>) -> Self {
        Self {
            instances: Mutex::new(answers.into_iter().collect()),
            ..Self::default()
        }
    }
}

impl RdsApi for Fake {
    fn describe_instance<'a>(&'a self, _id: &'a str) -> RdsFuture<'a, InstanceView> {
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.instances
                .lock()
                .unwrap()
                .pop_front()
                .expect("an answer queued")
        })
    }

    fn describe_cluster<'a>(&'a self, _id: &'a str) -> RdsFuture<'a, ClusterView> {
        Box::pin(async move {
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.clusters
                .lock()
                .unwrap()
                .pop_front()
                .expect("an answer queued")
        })
    }
}

async fn reasons(api: &Fake, writers: &Writers, spec: &RdsProbe, n: usize) -> Vec<&'static str> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(match observe(api, writers, spec).await {
            Ok(v) => v.reason,
            Err(f) => f.reason,
        });
    }
    out
}

/// An undeclared failover stays `writer_changed` — through errors and status changes — until
/// the old writer is back; a restart (a fresh memory) accepts the new writer.
#[tokio::test]
async fn writer_change_is_sticky_until_failback_or_restart() {
    let spec = cluster_spec(None, false);
    let w1 = || Ok(cluster("available", Some("app-aurora-1"), false));
    let w2 = || Ok(cluster("available", Some("app-aurora-2"), false));
    let api = Fake::clusters([
        Ok(cluster("creating", None, false)),
        w1(),
        w1(),
        Ok(cluster("failing-over", Some("app-aurora-1"), false)),
        w2(),
        Err(RdsFailure::new("throttled", "Throttling: Rate exceeded")),
        w2(),
        w2(),
        w1(),
    ]);
    let writers = Writers::default();
    assert_eq!(
        reasons(&api, &writers, &spec, 9).await,
        [
            "status",
            "ok",
            "ok",
            "status",
            "writer_changed",
            "throttled",
            "writer_changed",
            "writer_changed",
            "ok"
        ]
    );
    assert_eq!(writers.remembered(&spec).as_deref(), Some("app-aurora-1"));

    // A restarted agent remembers what it sees first.
    let restarted = Writers::default();
    let api = Fake::clusters([w2(), w2(), w1()]);
    assert_eq!(
        reasons(&api, &restarted, &spec, 3).await,
        ["ok", "ok", "writer_changed"]
    );

    // expect_writer overrides the memory: the config names the new writer.
    let pinned = cluster_spec(Some("app-aurora-2"), false);
    let api = Fake::clusters([w2(), w1()]);
    assert_eq!(
        reasons(&api, &writers, &pinned, 2).await,
        ["ok", "writer_changed"]
    );
}

#[tokio::test]
async fn memory_is_per_cluster_region_and_endpoint() {
    let writers = Writers::default();
    let a = cluster_spec(None, false);
    let mut b = cluster_spec(None, false);
    b.region = Some("eu-west-1".into());
    let api = Fake::clusters([
        Ok(cluster("available", Some("app-aurora-1"), false)),
        Ok(cluster("available", Some("app-aurora-2"), false)),
    ]);
    assert_eq!(reasons(&api, &writers, &a, 1).await, ["ok"]);
    assert_eq!(reasons(&api, &writers, &b, 1).await, ["ok"]);
    assert_eq!(writers.remembered(&a).as_deref(), Some("app-aurora-1"));
    assert_eq!(writers.remembered(&b).as_deref(), Some("app-aurora-2"));
}

/// moto keeps showing a promoted read replica's source; the fake shows what RDS
/// does: before promotion a replica, after it a standalone instance. Health does not depend on
/// the role, the detail says it.
#[tokio::test]
async fn a_promoted_replica_is_reported_as_standalone() {
    let api = Fake::instances([
        Ok(instance("available", false, Some("app-db-use1"))),
        Ok(instance("modifying", false, Some("app-db-use1"))),
        Ok(instance("available", false, None)),
    ]);
    let writers = Writers::default();
    let spec = instance_spec(false);
    let before = observe(&api, &writers, &spec).await.unwrap();
    assert!(before.healthy && before.detail.contains("read replica of app-db-use1"));
    let during = observe(&api, &writers, &spec).await.unwrap();
    assert_eq!(
        (during.reason, during.detail.as_str()),
        ("status", "status=modifying (instance app-db)")
    );
    let after = observe(&api, &writers, &spec).await.unwrap();
    assert!(
        after.healthy && !after.detail.contains("replica"),
        "{after:?}"
    );
}

#[tokio::test]
async fn failures_are_outcomes() {
    let api = Fake::instances([
        Err(RdsFailure::new(
            "not_found",
            "DBInstanceNotFound: DBInstance app-db not found.",
        )),
        Err(RdsFailure::new(
            "auth",
            "AccessDenied: not authorized to perform rds:DescribeDBInstances",
        )),
        Err(RdsFailure::new("throttled", "Throttling: Rate exceeded")),
    ]);
    let writers = Writers::default();
    let spec = instance_spec(false);
    for want in ["not_found", "auth", "throttled"] {
        let start = Instant::now();
        let run = observe(&api, &writers, &spec);
        let o = finish(Ok(run.await), start, Duration::from_secs(1));
        assert!(!o.healthy);
        assert_eq!(o.reason.as_str(), want);
    }
}

#[tokio::test(start_paused = true)]
async fn an_api_that_never_answers_is_a_timeout() {
    let api = Fake {
        hang: true,
        ..Fake::default()
    };
    let writers = Writers::default();
    let spec = cluster_spec(None, false);
    let start = Instant::now();
    let timeout = Duration::from_secs(3);
    let o = finish(
        tokio::time::timeout(timeout, observe(&api, &writers, &spec)).await,
        start,
        timeout,
    );
    assert_eq!(o.reason.as_str(), "timeout");
    assert!(o.detail.contains("3s"), "{o:?}");
    assert_eq!(writers.remembered(&spec), None);
}

#[test]
fn error_codes_map_to_reasons() {
    #[rustfmt::skip]
    let cases: &[(&str, u16, &str)] = &[
        ("DBInstanceNotFound", 404, "not_found"),
        ("DBClusterNotFoundFault", 404, "not_found"),
        ("AccessDenied", 403, "auth"),
        ("InvalidClientTokenId", 403, "auth"),
        ("SignatureDoesNotMatch", 403, "auth"),
        ("ExpiredToken", 400, "auth"),
        ("Throttling", 400, "throttled"),
        ("RequestLimitExceeded", 400, "throttled"),
        ("", 403, "auth"),
        ("", 429, "throttled"),
        ("InternalFailure", 500, "error"),
        ("InvalidParameterValue", 400, "error"),
    ];
    for (code, status, want) in cases {
        assert_eq!(reason_of(code, *status), *want, "{code} {status}");
    }
}

#[test]
fn access_key_ids_are_scrubbed() {
    assert_eq!(
        scrub("The AWS Access Key Id AKIAIOSFODNN7EXAMPLE does not exist"),
        "The AWS Access Key Id <access-key-id> does not exist"
    );
    assert_eq!(scrub("ASIAIOSFODNN7EXAMPLE."), "<access-key-id>.");
    // Not key-shaped: left alone (too short, lower case, longer word).
    for s in [
        "AKIA123",
        "akiaiosfodnn7example",
        "AKIAIOSFODNN7EXAMPLEX",
        "é AKIA",
    ] {
        assert_eq!(scrub(s), s);
    }
}

#[test]
fn static_credentials_never_print() {
    let state = RdsState {
        credentials: Some(StaticCredentials {
            access_key_id: "testing".into(),
            secret_access_key: "hunter2-secret".into(),
        }),
        ..RdsState::default()
    };
    assert!(!format!("{state:?}").contains("hunter2-secret"));
}
