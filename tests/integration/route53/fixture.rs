//! The emulator is strict where stock moto is not: each of these passes against
//! real Route 53 semantics and fails against stock moto 5.2.5.

use std::sync::Arc;

use quorumgate::route53::{
    ApiError, Change, ChangeStatus, RecordSet, RecordTarget, Route53Api, Routing,
};
use tokio::sync::Barrier;

use super::{zone_records, Emulator};

fn a(name: &str, ip: &str) -> RecordSet {
    RecordSet::new(name, "A", RecordTarget::values(60, [ip]))
}

fn messages(result: Result<quorumgate::route53::ChangeInfo, ApiError>) -> Vec<String> {
    match result {
        Err(ApiError::InvalidChangeBatch { messages }) => messages,
        other => panic!("expected InvalidChangeBatch, got {other:?}"),
    }
}

#[tokio::test]
async fn fixture_rejects_stale_deletes_duplicate_creates_and_partial_batches() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let api = emu.client().await;
    let before = zone_records(&api, &zone).await;

    let ok = api
        .change_record_sets(
            &zone,
            &[Change::create(a("a.example.com", "192.0.2.1"))],
            "",
        )
        .await
        .expect("create");
    assert!(!ok.id.is_empty());
    assert_eq!(ok.status, ChangeStatus::InSync);

    // CREATE over an existing name and type fails (stock moto adds a duplicate).
    let m = messages(
        api.change_record_sets(
            &zone,
            &[Change::create(a("a.example.com", "192.0.2.2"))],
            "",
        )
        .await,
    );
    assert_eq!(
        m,
        ["Tried to create resource record set [name='a.example.com.', type='A'] but it already exists"]
    );

    // A DELETE must match the current values (stock moto checks the history of writes).
    let m = messages(
        api.change_record_sets(
            &zone,
            &[Change::delete(a("a.example.com", "192.0.2.2"))],
            "",
        )
        .await,
    );
    assert_eq!(
        m,
        ["Tried to delete resource record set [name='a.example.com.', type='A'] but the values provided do not match the current values"]
    );
    let wrong_ttl = RecordSet::new(
        "a.example.com",
        "A",
        RecordTarget::values(300, ["192.0.2.1"]),
    );
    messages(
        api.change_record_sets(&zone, &[Change::delete(wrong_ttl)], "")
            .await,
    );

    let m = messages(
        api.change_record_sets(
            &zone,
            &[Change::delete(a("b.example.com", "192.0.2.1"))],
            "",
        )
        .await,
    );
    assert_eq!(
        m,
        ["Tried to delete resource record set [name='b.example.com.', type='A'] but it was not found"]
    );

    // All or nothing: the valid first change of a failing batch is not applied.
    messages(
        api.change_record_sets(
            &zone,
            &[
                Change::create(a("c.example.com", "192.0.2.3")),
                Change::delete(a("a.example.com", "192.0.2.9")),
            ],
            "",
        )
        .await,
    );
    let mut expected = before.clone();
    expected.push(a("a.example.com", "192.0.2.1"));
    expected.sort();
    let mut now = zone_records(&api, &zone).await;
    now.sort();
    assert_eq!(now, expected);

    // DELETE(exact current) + CREATE(new) in one batch is the compare-and-swap.
    api.change_record_sets(
        &zone,
        &[
            Change::delete(a("a.example.com", "192.0.2.1")),
            Change::create(a("a.example.com", "192.0.2.5")),
        ],
        "",
    )
    .await
    .expect("swap");
    messages(
        api.change_record_sets(
            &zone,
            &[
                Change::delete(a("a.example.com", "192.0.2.1")),
                Change::create(a("a.example.com", "192.0.2.6")),
            ],
            "",
        )
        .await,
    );

    // Every rejection was an HTTP 400 InvalidChangeBatch answered by moto itself.
    let writes = emu.requests("ChangeResourceRecordSets").await;
    let statuses: Vec<i64> = writes.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 400, 400, 400, 400, 400, 200, 400]);
}

#[tokio::test]
async fn fixture_deletes_by_set_identifier_only_under_its_own_name() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let api = emu.client().await;
    let w = |name: &str, weight: u8| {
        a(name, "192.0.2.1").with_routing("eu", Routing::Weighted { weight })
    };
    api.change_record_sets(
        &zone,
        &[
            Change::create(w("w.example.com", 10)),
            Change::create(w("v.example.com", 10)),
        ],
        "",
    )
    .await
    .expect("create two weighted records with the same set identifier");
    // Weight is part of the match.
    messages(
        api.change_record_sets(&zone, &[Change::delete(w("w.example.com", 20))], "")
            .await,
    );
    api.change_record_sets(&zone, &[Change::delete(w("w.example.com", 10))], "")
        .await
        .expect("delete one");
    let left = api
        .list_record_sets(&zone, Some("v.example.com"))
        .await
        .expect("list");
    assert_eq!(left, [w("v.example.com", 10)]);
    let gone = api
        .list_record_sets(&zone, Some("w.example.com"))
        .await
        .expect("list");
    assert!(gone.is_empty(), "{gone:?}");
}

/// Stock moto accepts all eight of these batches; Route 53 (and the fixture) exactly one.
#[tokio::test]
async fn fixture_accepts_one_of_eight_racing_compare_and_swap_batches() {
    let emu = Emulator::start().await;
    let zone = emu.create_zone("example.com").await;
    let setup = emu.client().await;
    setup
        .change_record_sets(
            &zone,
            &[Change::create(a("r.example.com", "192.0.2.100"))],
            "",
        )
        .await
        .expect("seed");
    let barrier = Arc::new(Barrier::new(8));
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let api = emu.client().await;
        let (zone, barrier) = (zone.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let batch = [
                Change::delete(a("r.example.com", "192.0.2.100")),
                Change::create(a("r.example.com", &format!("192.0.2.{i}"))),
            ];
            barrier.wait().await;
            api.change_record_sets(&zone, &batch, "").await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(ApiError::InvalidChangeBatch { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(won, 1);
    let records = setup
        .list_record_sets(&zone, Some("r.example.com"))
        .await
        .expect("list");
    assert_eq!(records.len(), 1, "{records:?}");
}
