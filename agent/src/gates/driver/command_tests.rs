//! Operator commands through the driver, with a real audit log on disk: the order
//! verify → audit → commit → apply, and what a failed append leaves behind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use config::Config;
use quorum::operator::{Action, OperatorCommand, SignedCommand};
use quorum::{ClusterId, GateId, OperatorId, SigningKey, UnixMillis};

use super::{CommandError, CommandOutcome, DriverOptions, GateDriver};
use crate::audit::{AuditLog, SharedAudit};
use crate::clock::{Clock, SystemClock};
use crate::keys;

const ALICE: [u8; 32] = [41; 32];

fn config(cluster: &str, seeds: [u8; 3]) -> Config {
    let member = |id: &str, seed: u8| {
        let key = SigningKey::from_bytes(&[seed; 32]);
        format!(
            "[[members]]\nid = \"{id}\"\nregion = \"r{seed}\"\nurl = \"http://127.0.0.1:{}/\"\npublic_key = \"{}\"\n",
            9000 + u16::from(seed),
            keys::public_key_base64(&key.verifying_key())
        )
    };
    let check = |id: &str| {
        format!("[[checks]]\nid = \"{id}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n[checks.http]\nurl = \"http://127.0.0.1:1/{id}\"\n")
    };
    let alice = SigningKey::from_bytes(&ALICE);
    let toml = format!(
        "[cluster]\nname = \"{cluster}\"\nround_interval = \"1s\"\nballot_valid_for = \"4s\"\npeer_timeout = \"500ms\"\n{}{}{}{}{}\
         [[gates]]\nid = \"app\"\nplane = \"control\"\nmode = \"dry-run\"\nzone_id = \"Z1\"\nzone = \"example.com\"\nrecord = \"app.example.com\"\nkind = \"failover\"\n\
         [[gates.targets]]\nid = \"p\"\ncheck = \"app\"\nrole = \"primary\"\nvalues = [\"192.0.2.1\"]\n\
         [[gates.targets]]\nid = \"s\"\ncheck = \"standby\"\nrole = \"secondary\"\nvalues = [\"192.0.2.2\"]\n\
         [[operators]]\nid = \"alice\"\npublic_key = \"{}\"\n\
         [local]\nagent_id = \"a\"\nkey_file = \"/nonexistent\"\n",
        member("a", seeds[0]),
        member("b", seeds[1]),
        member("c", seeds[2]),
        check("app"),
        check("standby"),
        keys::public_key_base64(&alice.verifying_key()),
    );
    Config::from_toml_str(&toml).expect("valid test config")
}

struct Rig {
    driver: Arc<GateDriver>,
    audit: SharedAudit,
    _dir: tempfile::TempDir,
}

fn rig(cfg: &Config) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = AuditLog::open(&dir.path().join("audit.log"), cfg.local.agent_id.clone())
        .expect("audit log");
    let audit: SharedAudit = Arc::new(Mutex::new(log));
    let driver = Arc::new(
        GateDriver::new(
            cfg,
            None,
            BTreeMap::new(),
            Some(Arc::clone(&audit)),
            Arc::new(SystemClock::default()),
            DriverOptions::default(),
        )
        .expect("driver"),
    );
    Rig {
        driver,
        audit,
        _dir: dir,
    }
}

fn freeze(cfg: &Config, now: UnixMillis) -> Vec<u8> {
    let cmd = OperatorCommand::new(
        ClusterId::new(&cfg.shared.cluster.name, &cfg.shared.membership),
        OperatorId::new("alice").unwrap(),
        GateId::new("app").unwrap(),
        Action::Freeze,
        now.0,
        now,
        60_000,
    );
    SignedCommand::sign(&cmd, &SigningKey::from_bytes(&ALICE))
        .unwrap()
        .to_wire()
}

fn frozen_by(rig: &Rig, now: UnixMillis) -> Option<String> {
    rig.driver.status(now)[0].frozen_by.clone()
}

/// A command whose audit record could not be written was not applied, and its seq is still
/// unused: re-sending the same saved bytes once the log is writable applies it (before, the
/// resend was answered "duplicate" and the CLI reported success for a command never applied).
#[tokio::test]
async fn a_command_that_could_not_be_audited_is_applied_when_resent() {
    let cfg = config("t", [1, 2, 3]);
    let rig = rig(&cfg);
    let now = SystemClock::default().now();
    let wire = freeze(&cfg, now);

    rig.audit.lock().unwrap().fail_writes_for_test();
    let err = rig
        .driver
        .handle_command(now, &wire)
        .await
        .expect_err("no audit, no command");
    assert!(matches!(err, CommandError::Audit(_)), "{err}");
    assert_eq!(frozen_by(&rig, now), None, "not applied");

    rig.audit.lock().unwrap().reopen_for_test();
    let outcome = rig.driver.handle_command(now, &wire).await.expect("resend");
    assert!(
        matches!(outcome, CommandOutcome::Applied { .. }),
        "{outcome:?}"
    );
    assert_eq!(frozen_by(&rig, now).as_deref(), Some("alice"));
    // Now it was committed: the same bytes again are a harmless duplicate.
    assert_eq!(
        rig.driver.handle_command(now, &wire).await.expect("again"),
        CommandOutcome::Duplicate
    );
}

/// A command signed for another cluster — another name, or the same name with another
/// member list (a member re-keyed) — is refused, counted as `wrong_cluster`, names both
/// clusters, and changes nothing: no audit record, no freeze, no seq used.
#[tokio::test]
async fn a_command_signed_for_another_cluster_is_refused_and_changes_nothing() {
    let cfg = config("prod", [1, 2, 3]);
    let rig = rig(&cfg);
    let now = SystemClock::default().now();
    for other in [config("staging", [1, 2, 3]), config("prod", [1, 2, 4])] {
        let err = rig
            .driver
            .handle_command(now, &freeze(&other, now))
            .await
            .expect_err("another cluster's command");
        assert_eq!(err.reason(), "wrong_cluster", "{err}");
        let shown = err.to_string();
        assert!(shown.contains("this agent is cluster \"prod\""), "{shown}");
        assert_eq!(frozen_by(&rig, now), None);
    }
    let log = rig.audit.lock().unwrap().path().to_owned();
    let records = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!records.contains("operator_command"), "{records}");
    // This cluster's own command, same operator, same gate, same seq: applied.
    let outcome = rig.driver.handle_command(now, &freeze(&cfg, now)).await;
    assert!(
        matches!(outcome, Ok(CommandOutcome::Applied { .. })),
        "{outcome:?}"
    );
    assert_eq!(frozen_by(&rig, now).as_deref(), Some("alice"));
}
