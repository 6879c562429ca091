//! Database probe tables: parsing, defaults, one case per rule, the digest and secrets.

use std::collections::HashMap;

use super::{errors, ok, Edit, Set};
use crate::probe::{DbEngine, PasswordSource, ProbeSpec, SslMode, DEFAULT_HEARTBEAT_TABLE};

const PG: &str = r#"{ id = "db-write", postgres = { host = "db.internal", dbname = "orders", user = "qg", password_env = "QG_PW" } }"#;
const MY: &str = r#"{ id = "db-write", mysql = { host = "10.0.0.5", dbname = "billing", user = "qg", password_file = "/run/secrets/pw" } }"#;
const LAG: &str = r#"{ id = "db-lag", replication_lag = { engine = "postgres", host = "replica.internal", dbname = "orders", user = "qg" } }"#;

/// The base config plus one database check appended as `checks[3]`, then `edits`.
fn with<'a>(check: &'a str, edits: &[Edit<'a>]) -> Vec<Edit<'a>> {
    let mut all = vec![Set("checks.3", check)];
    all.extend_from_slice(edits);
    all
}

#[test]
fn defaults_fill_in() {
    let c = ok(&with(PG, &[]));
    let ProbeSpec::Postgres(w) = &c.shared.checks[3].probe else {
        panic!("{:?}", c.shared.checks[3].probe)
    };
    assert_eq!(w.conn.port, 5432);
    assert_eq!(w.conn.sslmode, SslMode::VerifyFull);
    assert_eq!(w.conn.table, DEFAULT_HEARTBEAT_TABLE);
    assert!(!w.create_table);
    // the check's default timeout is 2s
    assert_eq!(w.conn.connect_timeout_ms, 2000);
    assert_eq!(w.conn.statement_timeout_ms, 2000);
    assert_eq!(w.conn.lock_timeout_ms, 1000);
    assert_eq!(w.conn.password, PasswordSource::Env("QG_PW".into()));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let c = ok(&with(MY, &[]));
    let ProbeSpec::Mysql(w) = &c.shared.checks[3].probe else {
        panic!("{:?}", c.shared.checks[3].probe)
    };
    assert_eq!(w.conn.port, 3306);
    assert_eq!(
        w.conn.password,
        PasswordSource::File("/run/secrets/pw".into())
    );

    let c = ok(&with(
        LAG,
        &[Set("checks.3.replication_lag.max_lag", r#""30s""#)],
    ));
    let ProbeSpec::ReplicationLag(l) = &c.shared.checks[3].probe else {
        panic!("{:?}", c.shared.checks[3].probe)
    };
    assert_eq!(l.engine, DbEngine::Postgres);
    assert_eq!(l.max_lag_ms, Some(30_000));
    assert_eq!(l.conn.password, PasswordSource::None);
    assert_eq!(c.shared.checks[3].probe.kind(), "replication_lag");
}

#[test]
fn control_probes_may_be_database_probes() {
    let c = ok(&[Set(
        "local.control.1",
        r#"{ id = "regional-db", timeout = "1s", postgres = { host = "db.internal", dbname = "d", user = "u", sslmode = "disable" } }"#,
    )]);
    assert_eq!(c.local.control[1].probe.kind(), "postgres");
}

type Case = (
    &'static str,
    &'static [Edit<'static>],
    &'static str,
    &'static str,
);

/// (check, edits, expected error path, substring of the problem).
#[rustfmt::skip]
const CASES: &[Case] = &[
    (PG, &[Set("checks.3.postgres.hots", r#""x""#)], "checks[3].postgres.hots", "unknown key"),
    (PG, &[Set("checks.3.postgres.host", r#""db.internal:5432""#)], "checks[3].postgres.host", "not a DNS name"),
    (PG, &[Set("checks.3.postgres.port", "0")], "checks[3].postgres.port", "between 1 and 65535"),
    (PG, &[Set("checks.3.postgres.port", "65536")], "checks[3].postgres.port", "between 1 and 65535"),
    (PG, &[Set("checks.3.postgres.dbname", r#""""#)], "checks[3].postgres.dbname", "empty"),
    (PG, &[Set("checks.3.postgres.user", r#"" ""#)], "checks[3].postgres.user", "empty"),
    (PG, &[Set("checks.3.postgres.password", r#""pw""#)], "checks[3].postgres.password_env", "only one password source"),
    (PG, &[Set("checks.3.postgres.password_env", r#""1PW""#)], "checks[3].postgres.password_env", "not an environment variable"),
    (MY, &[Set("checks.3.mysql.password_file", r#""""#)], "checks[3].mysql.password_file", "empty"),
    (PG, &[Set("checks.3.postgres.sslmode", r#""require""#)], "checks[3].postgres.sslmode", "unknown value"),
    (PG, &[Set("checks.3.postgres.sslmode", r#""disable""#), Set("checks.3.postgres.ca_file", r#""/ca.pem""#)], "checks[3].postgres.ca_file", "only used with sslmode"),
    (PG, &[Set("checks.3.postgres.connect_timeout", r#""3s""#)], "checks[3].postgres.connect_timeout", "not be longer than the probe's timeout"),
    (PG, &[Set("checks.3.postgres.statement_timeout", r#""0s""#)], "checks[3].postgres.statement_timeout", "at least 1ms"),
    (PG, &[Set("checks.3.postgres.lock_timeout", r#""2s""#)], "checks[3].postgres.lock_timeout", "shorter than statement_timeout"),
    (PG, &[Set("checks.3.postgres.table", r#""heart beat""#)], "checks[3].postgres.table", "not a table name"),
    (PG, &[Set("checks.3.postgres.table", r#""a.b.c""#)], "checks[3].postgres.table", "not a table name"),
    (PG, &[Set("checks.3.postgres.table", r#""hb\"; DROP TABLE x; --""#)], "checks[3].postgres.table", "not a table name"),
    (PG, &[Set("checks.3.postgres.create_table", r#""yes""#)], "checks[3].postgres.create_table", "expected a boolean"),
    (PG, &[Set("checks.3.postgres.max_lag", r#""5s""#)], "checks[3].postgres.max_lag", "only used in a [replication_lag]"),
    (MY, &[Set("checks.3.mysql.engine", r#""mysql""#)], "checks[3].mysql.engine", "only used in a [replication_lag]"),
    (LAG, &[Set("checks.3.replication_lag.engine", r#""oracle""#)], "checks[3].replication_lag.engine", "unknown value"),
    (LAG, &[Set("checks.3.replication_lag.create_table", "true")], "checks[3].replication_lag.create_table", "only used by the write probes"),
    (LAG, &[Set("checks.3.replication_lag.max_lag", r#""soon""#)], "checks[3].replication_lag.max_lag", "not a duration"),
    (PG, &[Set("checks.3.tcp", r#"{ address = "x:1" }"#)], "checks[3]", "has 2 probes"),
];

#[test]
fn every_rule_reports_its_path() {
    let mut failures = Vec::new();
    for (check, edits, path, problem) in CASES {
        let errs = match super::load(&with(check, edits)) {
            Ok(_) => {
                failures.push(format!("{edits:?}: no error at all"));
                continue;
            }
            Err(e) => e,
        };
        match errs.at(path) {
            Some(e) if e.problem.contains(problem) && !e.fix.is_empty() => {}
            Some(e) => failures.push(format!(
                "{edits:?}: {path}: problem {:?} lacks {problem:?}",
                e.problem
            )),
            None => failures.push(format!("{edits:?}: no error at {path}; got:\n{errs}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_required_settings_are_all_reported() {
    let errs = errors(&[Set("checks.3", r#"{ id = "x", postgres = {} }"#)]);
    for key in ["host", "dbname", "user"] {
        let path = format!("checks[3].postgres.{key}");
        assert!(
            errs.at(&path).is_some_and(|e| e.problem == "is required"),
            "{path}: {errs}"
        );
    }
    let errs = errors(&[Set(
        "checks.3",
        r#"{ id = "x", replication_lag = { host = "h", dbname = "d", user = "u" } }"#,
    )]);
    assert!(
        errs.at("checks[3].replication_lag.engine").is_some(),
        "{errs}"
    );
}

#[test]
fn mysql_lock_timeout_in_whole_seconds_warns() {
    let c = ok(&with(
        MY,
        &[Set("checks.3.mysql.lock_timeout", r#""1500ms""#)],
    ));
    assert!(
        c.warnings.iter().any(
            |w| w.path == "checks[3].mysql.lock_timeout" && w.problem.contains("whole seconds")
        ),
        "{:?}",
        c.warnings
    );
}

/// The password never appears in any error, warning, Debug output or digest line, whatever
/// is wrong around it (a wrong type included: serde errors print the value they found).
#[test]
fn passwords_never_leak() {
    const PW: &str = "s3cr3t-Pa55w0rd-9931";
    let inline = format!(
        r#"{{ id = "db-write", postgres = {{ host = "db.internal", dbname = "orders", user = "qg", password = "{PW}" }} }}"#
    );
    // valid with a warning about the inline password
    let c = ok(&with(&inline, &[]));
    let w = c
        .warnings
        .iter()
        .find(|w| w.path == "checks[3].postgres.password")
        .expect("inline password warning");
    assert!(!w.to_string().contains(PW));
    assert!(!format!("{c:?}").contains(PW), "Debug of Config leaks");
    let lines = crate::digest::canonical_lines(&c.shared).join("\n");
    assert!(
        !lines.contains(PW) && !lines.contains("password"),
        "{lines}"
    );

    let numeric = r#"{ id = "db-write", postgres = { host = "db.internal", dbname = "orders", user = "qg", password = 918273645, password_env = "X" } }"#;
    let broken: Vec<Vec<Edit<'_>>> = vec![
        with(
            &inline,
            &[Set("checks.3.postgres.password_env", r#""QG_PW""#)],
        ),
        with(&inline, &[Set("checks.3.postgres.port", r#""x""#)]),
        with(&inline, &[Set("checks.3.postgres.bogus", "1")]),
        with(numeric, &[]),
    ];
    for edits in &broken {
        let errs = errors(edits);
        let text = format!("{errs}\n{errs:?}");
        assert!(!text.contains(PW) && !text.contains("918273645"), "{text}");
    }
}

#[test]
fn digest_covers_the_target_but_not_the_password() {
    let base = ok(&with(PG, &[])).digest;
    let same: &[&[Edit<'_>]] = &[
        &[Set("checks.3.postgres.password_env", r#""OTHER""#)],
        &[
            Set("checks.3.postgres.password_env", r#""OTHER""#),
            Set("checks.3.postgres.password_env", r#""QG_PW""#),
            Set("checks.3.postgres.port", "5432"),
            Set("checks.3.postgres.table", r#""quorumgate_heartbeat""#),
            Set("checks.3.postgres.create_table", "false"),
            Set("checks.3.postgres.sslmode", r#""verify-full""#),
            Set("checks.3.postgres.lock_timeout", r#""1s""#),
        ],
    ];
    for edits in same {
        assert_eq!(ok(&with(PG, edits)).digest, base, "{edits:?}");
    }
    // A different password source entirely (file, inline) doesn't change it either.
    let file = PG.replace(r#"password_env = "QG_PW""#, r#"password_file = "/pw""#);
    assert_eq!(ok(&with(&file, &[])).digest, base);

    let changes: &[&[Edit<'_>]] = &[
        &[Set("checks.3.postgres.host", r#""db2.internal""#)],
        &[Set("checks.3.postgres.port", "5433")],
        &[Set("checks.3.postgres.dbname", r#""orders2""#)],
        &[Set("checks.3.postgres.user", r#""qg2""#)],
        &[Set("checks.3.postgres.sslmode", r#""verify-ca""#)],
        &[Set("checks.3.postgres.ca_file", r#""/ca.pem""#)],
        &[Set("checks.3.postgres.connect_timeout", r#""1s""#)],
        &[Set("checks.3.postgres.statement_timeout", r#""1s""#)],
        &[Set("checks.3.postgres.lock_timeout", r#""500ms""#)],
        &[Set("checks.3.postgres.table", r#""ops.hb""#)],
        &[Set("checks.3.postgres.create_table", "true")],
    ];
    let mut seen: HashMap<String, usize> = HashMap::new();
    seen.insert(base.to_hex(), usize::MAX);
    for (i, edits) in changes.iter().enumerate() {
        let d = ok(&with(PG, edits)).digest.to_hex();
        if let Some(j) = seen.insert(d, i) {
            panic!("{edits:?} gives the same digest as case {j}");
        }
    }
    // The kind and the lag settings count too.
    let my = PG.replace("postgres =", "mysql =");
    assert_ne!(ok(&with(&my, &[])).digest, base);
    let lag = ok(&with(LAG, &[])).digest;
    assert_ne!(
        ok(&with(
            LAG,
            &[Set("checks.3.replication_lag.max_lag", r#""9s""#)]
        ))
        .digest,
        lag
    );
    assert_ne!(
        ok(&with(
            LAG,
            &[Set("checks.3.replication_lag.engine", r#""mysql""#)]
        ))
        .digest,
        lag
    );
}
