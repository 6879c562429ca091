//! Issue 4, scenario 5: a gate's optional database promotion (`[gates.promote]`) against the
//! emulator's RDS — fenced, audited, and run once, by the agent whose record batch won.

use quorumgate::target_app::TargetApp;

use super::gate_rig::{failover_gate, standby_check, GateRig};
use super::{Emulator, GATE, RECORD_NAME};

/// An RDS Postgres instance `db-primary` and its read replica `db-replica` in the emulator.
async fn create_replica(emu: &Emulator) -> aws_sdk_rds::Client {
    let conf = aws_sdk_rds::Config::builder()
        .behavior_version(aws_sdk_rds::config::BehaviorVersion::latest())
        .region(aws_sdk_rds::config::Region::new("us-east-1"))
        .endpoint_url(&emu.url)
        .credentials_provider(aws_sdk_rds::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .build();
    let rds = aws_sdk_rds::Client::from_conf(conf);
    rds.create_db_instance()
        .db_instance_identifier("db-primary")
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("qgadmin")
        .master_user_password("emulator-only-pw")
        .send()
        .await
        .expect("create db-primary");
    rds.create_db_instance_read_replica()
        .db_instance_identifier("db-replica")
        .source_db_instance_identifier("db-primary")
        .send()
        .await
        .expect("create db-replica");
    rds
}

/// A gate rig whose failover gate promotes `db-replica`, and the emulator's RDS client.
async fn promoting_rig() -> (GateRig, TargetApp, aws_sdk_rds::Client) {
    let standby = TargetApp::start().await.expect("standby app");
    let rig = GateRig::start(1, |_, zone_id| {
        // The endpoint comes from AWS_ENDPOINT_URL_RDS (set by the rig), as in production from
        // the standard chain.
        [
            standby_check(&standby.url()),
            failover_gate(
                GATE,
                zone_id,
                RECORD_NAME,
                "wait_period = \"1s\"\nwriter_stagger = \"500ms\"",
            ),
            "\n[gates.promote]\nrds_read_replica = \"db-replica\"\nregion = \"us-east-1\"\n"
                .to_owned(),
        ]
        .concat()
    })
    .await;
    let rds = create_replica(&rig.emu).await;
    (rig, standby, rds)
}

/// Takes the primary down and waits until every agent is at the secondary (epoch 2, idle) and
/// the winner has audited its promotion's outcome.
async fn fail_over_and_wait_for_the_promotion(rig: &GateRig) {
    rig.c.app.set_down(true);
    rig.wait_gates("every agent at active=secondary, epoch 2, idle", |g| {
        g.current == "active=secondary" && g.epoch == 2 && !g.busy
    })
    .await;
    rig.c
        .wait_until(
            std::time::Duration::from_secs(30),
            "the winner audited the promotion's outcome",
            || async {
                (0..rig.c.len()).any(|i| !rig.audit_events(i, "gate_promote_outcome").is_empty())
            },
        )
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_promotes_the_read_replica_once_through_the_fence() {
    let (rig, _standby, rds) = promoting_rig().await;
    // The emulator refuses to stop a read replica; after a promotion it no longer does. That is
    // the only trace of the promotion it keeps (DescribeDBInstances still names the source).
    let stop = || {
        rds.stop_db_instance()
            .db_instance_identifier("db-replica")
            .send()
    };
    assert!(stop().await.is_err(), "a read replica cannot be stopped");
    rig.emu.reset_stats().await;

    fail_over_and_wait_for_the_promotion(&rig).await;

    let promotes = rig.emu.requests("PromoteReadReplica").await;
    assert_eq!(promotes.len(), 1, "promoted exactly once: {promotes:?}");
    assert_eq!(promotes[0].status, 200);
    let mut promoted_by = Vec::new();
    for i in 0..rig.c.len() {
        let intents = rig.audit_events(i, "gate_promote");
        let outcomes = rig.audit_events(i, "gate_promote_outcome");
        assert_eq!(intents.len(), outcomes.len(), "an outcome for every intent");
        if intents.is_empty() {
            continue;
        }
        assert_eq!(intents[0]["epoch"], 2, "{intents:?}");
        assert_eq!(outcomes[0]["result"], "started", "{outcomes:?}");
        let writes = rig.audit_events(i, "gate_write");
        assert_eq!(writes.len(), 1, "only the writer whose batch won promotes");
        promoted_by.push(rig.c.id(i).to_owned());
    }
    // Which member wins is a liveness choice (see `gates::failover_pair_moves_once…`); that
    // the winner, and only the winner, promotes is the safety property.
    let fence = super::fence_now(&rig.api, &rig.zone_id)
        .await
        .expect("fence");
    assert_eq!(
        promoted_by,
        std::slice::from_ref(&fence.by),
        "the fence's winner, and no one else"
    );
    let m = rig
        .c
        .metrics(
            rig.c
                .written
                .agents
                .iter()
                .position(|a| a.id == fence.by)
                .expect("the fence names a member"),
        )
        .await;
    assert_eq!(
        crate::support::metric(
            &m,
            "quorumgate_gate_promotions_total",
            "gate=\"app\",result=\"started\""
        ),
        1.0,
        "{m}"
    );
    stop()
        .await
        .expect("the promoted instance is a replica no more");
    rig.verify_audits();
}

/// The winning batch lands but its answer is lost: the SDK's retry is refused (the fence
/// moved), and the re-read shows our own fence one epoch on. That batch won, so the winner
/// promotes. (Before, the retry's refusal read as "already in place" and DNS pointed at a
/// replica nobody promoted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_whose_answer_was_lost_still_promotes() {
    let (rig, _standby, _rds) = promoting_rig().await;
    // The agents' attempt timeout is 2 s: the first batch is applied and its answer held
    // 3 s, so the SDK retries it.
    rig.emu
        .fault(serde_json::json!({
            "kind": "stall_response", "count": 1, "op": "ChangeResourceRecordSets", "stall_ms": 3000
        }))
        .await;
    rig.emu.reset_stats().await;
    fail_over_and_wait_for_the_promotion(&rig).await;
    let fence = super::fence_now(&rig.api, &rig.zone_id)
        .await
        .expect("fence");
    let winner = rig
        .c
        .written
        .agents
        .iter()
        .position(|a| a.id == fence.by)
        .expect("the fence names a member");
    let changes = rig.emu.requests("ChangeResourceRecordSets").await;
    assert!(
        changes.iter().any(|r| r.outcome.contains("stall")),
        "the fault held an answer: {changes:?}"
    );
    let outcomes = rig.audit_events(winner, "gate_outcome");
    assert!(
        outcomes
            .iter()
            .any(|o| o["result"] == "won" && o["epoch"] == 2),
        "the winner knew its batch won: {outcomes:?}"
    );
    let promotes = rig.emu.requests("PromoteReadReplica").await;
    assert_eq!(promotes.len(), 1, "promoted exactly once: {promotes:?}");
    for i in 0..rig.c.len() {
        let intents = rig.audit_events(i, "gate_promote");
        assert_eq!(
            intents.len(),
            usize::from(i == winner),
            "only the winner promotes"
        );
    }
    rig.verify_audits();
}
