//! The log's behaviour on disk: chain, torn tails, failed appends, checkpoints, rotation,
//! indexed reads.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use quorum::{
    AgentId, Ballot, BallotBook, BookConfig, CheckId, ConfigDigest, Member, Membership,
    Observation, Reason, SignedBallot, SigningKey, Status, UnixMillis,
};
use serde_json::json;

use super::verify::Sealed;
use super::*;

fn trust<'a>(membership: &'a Membership, digest: &'a ConfigDigest) -> Trust<'a> {
    Trust {
        membership,
        digest,
        skew_ms: 1000,
        operators: &[],
    }
}

fn members() -> (Membership, Vec<SigningKey>) {
    let keys: Vec<SigningKey> = (1..=3).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
    let members = keys
        .iter()
        .enumerate()
        .map(|(i, k)| Member {
            id: AgentId::new(format!("a{i}")).unwrap(),
            region: "r".into(),
            key: k.verifying_key(),
        })
        .collect();
    (Membership::new(members).unwrap(), keys)
}

fn certificate(membership: &Membership, keys: &[SigningKey], digest: ConfigDigest) -> String {
    let cfg = BookConfig {
        max_ballot_bytes: 1 << 20,
        max_clock_skew_ms: 1000,
        max_valid_for_ms: u64::from(u32::MAX),
        config_digest: digest,
    };
    let mut book = BallotBook::new(membership.clone(), cfg);
    let check = CheckId::new("app").unwrap();
    for (i, k) in keys.iter().enumerate() {
        let obs = Observation::new(
            check.clone(),
            Status::Unhealthy,
            Reason::from_static("status"),
            1,
            UnixMillis(1000),
        );
        let b = Ballot::new(
            AgentId::new(format!("a{i}")).unwrap(),
            1,
            UnixMillis(1000),
            5000,
            digest,
            vec![obs],
        )
        .unwrap();
        book.handle_ballot(UnixMillis(1000), &SignedBallot::sign(&b, k).to_wire())
            .unwrap();
    }
    let cert = quorum::tally(&book, &check, UnixMillis(1000))
        .certificate
        .unwrap();
    STANDARD.encode(cert.to_bytes())
}

fn a0() -> AgentId {
    AgentId::new("a0").unwrap()
}

fn signed(key: &SigningKey) -> Options {
    Options {
        signer: Some(key.clone()),
        now: UnixMillis(500),
        ..Options::default()
    }
}

fn fill(log: &mut AuditLog, from: u64, n: u64) {
    for i in from..from + n {
        log.append(UnixMillis(i), "e", json!({ "i": i })).unwrap();
    }
}

fn events(path: &Path) -> Vec<String> {
    read_records(path)
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect()
}

#[test]
fn appends_chain_and_verify_then_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (membership, keys) = members();
    let digest = ConfigDigest([4; 32]);
    let cert = certificate(&membership, &keys, digest);
    {
        let mut log = AuditLog::open(&path, a0()).unwrap();
        log.append(UnixMillis(1), "started", json!({"version": "x"}))
            .unwrap();
        log.append(
            UnixMillis(2),
            "transition",
            json!({"check": "app", "certificate": cert}),
        )
        .unwrap();
    }
    // Reopening continues the chain.
    let mut log = AuditLog::open(&path, a0()).unwrap();
    let r = log
        .append(
            UnixMillis(3),
            "change_planned",
            json!({"gate": {"certificates": [cert]}}),
        )
        .unwrap();
    assert_eq!(r.seq, 2);
    let summary = verify_file(&path, &trust(&membership, &digest)).unwrap();
    assert_eq!(
        (summary.records, summary.certificates, summary.commands),
        (3, 2, 0)
    );
    assert_eq!((summary.unsealed, summary.sealed), (3, Sealed::Never));

    // Any edit of an earlier line breaks the chain at the next line (line 2, 1-based).
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"version\":\"x\"", "\"version\":\"y\"", 1),
    )
    .unwrap();
    let err = verify_file(&path, &trust(&membership, &digest)).unwrap_err();
    assert!(matches!(err, AuditError::Broken { line: 2, .. }), "{err}");

    // A dropped line is caught too.
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, format!("{}\n{}\n", lines[0], lines[2])).unwrap();
    assert!(verify_file(&path, &trust(&membership, &digest)).is_err());

    // A certificate under another digest does not verify.
    std::fs::write(&path, &text).unwrap();
    assert!(verify_file(&path, &trust(&membership, &ConfigDigest([5; 32]))).is_err());
    assert!(verify_file(&path, &trust(&membership, &digest)).is_ok());
}

/// A crash mid-append leaves a partial last line: open keeps its bytes aside, cuts it off,
/// says so in the log, and the chain goes on.
#[test]
fn a_torn_last_line_is_cut_off_kept_aside_and_recorded() {
    let (membership, _) = members();
    let digest = ConfigDigest([4; 32]);
    for torn in [
        &b"{\"seq\":3,\"prev\":\"ab"[..],      // cut short, no newline
        &b"{\"seq\":3,\"prev\":\"ab\"}\n"[..], // complete line, not a record
        &b"\0\0\0\0\0\0\0\0"[..],              // zeros from a lost block
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::open(&path, a0()).unwrap();
        fill(&mut log, 0, 3);
        drop(log);
        let good = std::fs::read(&path).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, torn).unwrap();
        let s = verify_file(&path, &trust(&membership, &digest)).unwrap();
        assert!(
            s.torn_now.is_some(),
            "verify reports an unrepaired torn tail"
        );

        let (mut log, history) = AuditLog::open_with_history(&path, a0()).unwrap();
        assert_eq!(history.len(), 3);
        let next = log.append(UnixMillis(9), "after", json!({})).unwrap();
        assert_eq!(next.seq, 4, "seq 3 is the audit_torn_tail record");
        let records = read_records(&path).unwrap();
        let repair = &records[3];
        assert_eq!(repair.event, "audit_torn_tail");
        assert_eq!(repair.body["bytes"], json!(torn.len()));
        assert_eq!(repair.body["sha256"], json!(sha_hex(torn)));
        let side = dir.path().join(repair.body["saved_to"].as_str().unwrap());
        assert_eq!(std::fs::read(side).unwrap(), torn, "nothing is lost");
        assert!(std::fs::read(&path).unwrap().starts_with(&good));
        let s = verify_file(&path, &trust(&membership, &digest)).unwrap();
        assert_eq!((s.records, s.torn_now, s.torn_repairs.len()), (5, None, 1));
    }
}

/// A bad line with more after it is not a crash: open refuses, naming the line and the fix.
#[test]
fn a_bad_line_before_the_last_is_a_hard_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, a0()).unwrap();
    fill(&mut log, 0, 3);
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, format!("{}\ngarbage\n{}\n", lines[0], lines[2])).unwrap();
    let err = AuditLog::open(&path, a0()).unwrap_err();
    assert!(matches!(err, AuditError::Broken { line: 2, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("line 2") && msg.contains("move it"), "{msg}");
}

/// A write cut short (disk full) is rolled back: the next append continues a valid chain.
#[test]
fn a_short_write_is_rolled_back_and_the_chain_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, a0()).unwrap();
    fill(&mut log, 0, 2);
    let before = std::fs::metadata(&path).unwrap().len();
    log.faults.short_write = Some(10);
    let err = log.append(UnixMillis(5), "lost", json!({})).unwrap_err();
    assert!(err.to_string().contains("short write"), "{err}");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
    let r = log.append(UnixMillis(6), "kept", json!({})).unwrap();
    assert_eq!(r.seq, 2);
    drop(log);
    let (membership, _) = members();
    let s = verify_file(&path, &trust(&membership, &ConfigDigest([4; 32]))).unwrap();
    assert_eq!((s.records, s.torn_now), (3, None));
    assert_eq!(events(&path), ["e", "e", "kept"]);
}

/// When even the rollback fails, every later append fails until a restart repairs the tail.
#[test]
fn a_failed_rollback_poisons_the_log_until_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, a0()).unwrap();
    fill(&mut log, 0, 2);
    log.faults.short_write = Some(10);
    log.faults.fail_truncate = true;
    assert!(log.append(UnixMillis(5), "lost", json!({})).is_err());
    let err = log.append(UnixMillis(6), "next", json!({})).unwrap_err();
    assert!(matches!(err, AuditError::Poisoned { .. }), "{err}");
    assert!(
        err.to_string().contains("until the agent restarts"),
        "{err}"
    );
    drop(log);
    let mut log = AuditLog::open(&path, a0()).unwrap();
    assert_eq!(
        log.append(UnixMillis(7), "after", json!({})).unwrap().seq,
        3
    );
    assert_eq!(events(&path), ["e", "e", "audit_torn_tail", "after"]);
}

/// Checkpoints seal the head with the agent's key; verify tells a sealed log, an unsealed
/// tail (records cut after the last checkpoint cannot hide their count) and a forged seal.
#[test]
fn checkpoints_seal_the_log_and_verify_reports_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (membership, keys) = members();
    let digest = ConfigDigest([4; 32]);
    let opts = Options {
        checkpoint_every: 4,
        checkpoint_after_ms: 100,
        ..signed(&keys[0])
    };
    let (mut log, _) = AuditLog::open_with(&path, a0(), opts.clone()).unwrap();
    fill(&mut log, 0, 4); // seq 0-3, checkpoint at seq 4
    assert_eq!(log.last_checkpoint(), Some(4));
    fill(&mut log, 10, 2); // seq 5-6
    assert!(
        log.seal_if_due(UnixMillis(50)).unwrap().is_none(),
        "not due yet"
    );
    let s = verify_file(&path, &trust(&membership, &digest)).unwrap();
    assert_eq!(
        (s.checkpoints, s.unsealed, s.sealed),
        (1, 2, Sealed::Periodic)
    );
    assert_eq!(log.seal_if_due(UnixMillis(200)).unwrap().unwrap().seq, 7);
    log.append(UnixMillis(201), "last", json!({})).unwrap();
    log.seal_shutdown(UnixMillis(202)).unwrap();
    drop(log);
    let s = verify_file(&path, &trust(&membership, &digest)).unwrap();
    assert_eq!(
        (s.records, s.checkpoints, s.unsealed, s.sealed),
        (10, 3, 0, Sealed::Shutdown)
    );

    // Cutting the shutdown checkpoint and the record before it leaves a visible tail.
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    std::fs::write(&path, lines[..8].join("\n") + "\n" + lines[8] + "\n").unwrap();
    let s = verify_file(&path, &trust(&membership, &digest)).unwrap();
    assert_eq!(
        (s.unsealed, s.sealed, s.last_checkpoint),
        (1, Sealed::Periodic, Some(7))
    );

    // A checkpoint signed by another member's key is an error.
    let forged = Options {
        signer: Some(keys[1].clone()),
        ..opts
    };
    std::fs::write(&path, &text).unwrap();
    let (mut log, _) = AuditLog::open_with(&path, a0(), forged).unwrap();
    log.seal_shutdown(UnixMillis(300)).unwrap();
    drop(log);
    let err = verify_file(&path, &trust(&membership, &digest)).unwrap_err();
    assert!(
        matches!(err, AuditError::Invalid { seq: 10, .. })
            && err.to_string().contains("does not verify"),
        "{err}"
    );
}

/// Rotation: the chain is carried into the new file, old files are kept up to the limit,
/// verify and replay read the whole set in order.
#[test]
fn rotation_carries_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let (membership, keys) = members();
    let digest = ConfigDigest([4; 32]);
    let opts = Options {
        rotate_bytes: 1000,
        keep_files: 2,
        ..signed(&keys[0])
    };
    let (mut log, _) = AuditLog::open_with(&path, a0(), opts.clone()).unwrap();
    fill(&mut log, 0, 30);
    drop(log);
    let listed = files::list(&path).unwrap();
    assert_eq!(
        listed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [2, 1, 0],
        "older files beyond keep_files are deleted"
    );
    for (_, p) in &listed {
        assert!(std::fs::metadata(p).unwrap().len() <= 1000 + 400);
    }
    // The new file begins with its link to the old one.
    let first = std::fs::read_to_string(&path).unwrap();
    let first: Record = serde_json::from_str(first.lines().next().unwrap()).unwrap();
    assert_eq!(first.event, "audit_continued");
    assert_eq!(first.body["previous_file"], json!("audit.jsonl.1"));
    let old = std::fs::read_to_string(files::numbered(&path, 1)).unwrap();
    let old_last = old.lines().last().unwrap();
    assert_eq!(first.prev, sha_hex(old_last.as_bytes()));
    assert!(
        old_last.contains("\"reason\":\"rotation\""),
        "the old file is sealed"
    );

    let s = verify_file(&path, &trust(&membership, &digest)).unwrap();
    assert_eq!(s.files, 3);
    assert!(s.first_seq > 0, "the oldest files were rotated away");
    let (mut log, history) = AuditLog::open_with(&path, a0(), opts).unwrap();
    assert_eq!(history.first().unwrap().seq, s.first_seq);
    assert_eq!(
        history.last().unwrap().seq + 1,
        log.append(UnixMillis(99), "x", json!({})).unwrap().seq
    );
    let seqs: Vec<u64> = history.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));

    // Cutting the head off the oldest file is not what rotation does.
    let oldest = files::list(&path).unwrap()[0].1.clone();
    let text = std::fs::read_to_string(&oldest).unwrap();
    let (_, rest) = text.split_once('\n').unwrap();
    std::fs::write(&oldest, rest).unwrap();
    let err = verify_file(&path, &trust(&membership, &digest)).unwrap_err();
    assert!(
        err.to_string().contains("its beginning was cut off"),
        "{err}"
    );
    std::fs::write(&oldest, &text).unwrap();
    assert!(verify_file(&path, &trust(&membership, &digest)).is_ok());

    // A removed middle file breaks the chain.
    drop(log);
    std::fs::remove_file(files::numbered(&path, 1)).unwrap();
    assert!(verify_file(&path, &trust(&membership, &digest)).is_err());
}

/// A crash between the rotation's rename and the new file's first record: open continues
/// the chain into a new file.
#[test]
fn a_crash_mid_rotation_is_continued_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let mut log = AuditLog::open(&path, a0()).unwrap();
    fill(&mut log, 0, 3);
    drop(log);
    files::rotate(&path, 4).unwrap();
    let mut log = AuditLog::open(&path, a0()).unwrap();
    assert_eq!(log.append(UnixMillis(9), "x", json!({})).unwrap().seq, 4);
    assert_eq!(events(&path), ["e", "e", "e", "audit_continued", "x"]);
}

/// Reads go through the open log's index: they start at the first block that can hold a
/// record at or after `since` (earlier blocks are not read), span rotated files, and stay
/// exact when the clock stepped back.
#[test]
fn reads_since_a_time_through_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let opts = Options {
        rotate_bytes: 64 * 1024,
        ..Options::default()
    };
    let (mut log, _) = AuditLog::open_with(&path, a0(), opts).unwrap();
    let n = 3 * u64::from(read::BLOCK_RECORDS) + 10;
    for i in 0..n {
        // at_ms 1000, 1001, …; one record in the middle is stamped before a clock step back.
        let at = if i == n - 100 { 5 } else { 1000 + i };
        log.append(
            UnixMillis(at),
            "e",
            json!({ "i": i, "pad": "x".repeat(10) }),
        )
        .unwrap();
    }
    assert!(files::list(&path).unwrap().len() > 1, "the log rotated");
    let (r, more) = read::read_since(&path, 1000 + n - 5, 10).unwrap();
    assert_eq!((r.len(), more), (5, false));
    assert_eq!(r[0].body["i"], json!(n - 5));
    let (r, more) = read::read_since(&path, 1000, 3).unwrap();
    assert_eq!((r.len(), more), (3, true));
    assert_eq!(r[0].body["i"], json!(0));
    let (r, _) = read::read_since(&path, 0, usize::MAX).unwrap();
    assert_eq!(
        r.len() as u64,
        n + files::list(&path).unwrap().len() as u64 - 1
    );

    // Overwrite the first record of the current file (in its first index block; the
    // records asked for are in a later one) with one far in the future: an indexed read
    // never looks there.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines().count() > read::BLOCK_RECORDS as usize + 5,
        "the current file has two blocks"
    );
    let first = text.lines().next().unwrap();
    let at = serde_json::from_str::<Record>(first).unwrap().at_ms;
    let fake = first.replacen(&format!("\"at_ms\":{at}"), "\"at_ms\":9999", 1);
    assert_eq!(fake.len(), first.len());
    std::fs::write(&path, text.replacen(first, &fake, 1)).unwrap();
    let (r, _) = read::read_since(&path, 1000 + n - 5, 100).unwrap();
    assert!(
        r.iter().all(|x| x.at_ms != 9999),
        "the indexed read skipped the old block"
    );
    drop(log);
    let (r, _) = read::read_since(&path, 1000 + n - 5, 100).unwrap();
    assert!(
        r.iter().any(|x| x.at_ms == 9999),
        "without the index every file is read"
    );
}
