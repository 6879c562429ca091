//! The audit log across a crash: a torn last line left by `kill -9` is repaired at the next
//! start, the log verifies and says so, and a clean shutdown seals it.

use std::io::Write as _;
use std::process::Command;

use crate::support::{exe, TestCluster};

fn verify(c: &TestCluster, i: usize) -> (bool, String) {
    let a = &c.written.agents[i];
    let out = Command::new(exe())
        .args(["verify", "--config"])
        .arg(&a.config_path)
        .arg("--audit")
        .arg(a.state_dir.join("audit.jsonl"))
        .output()
        .expect("run verify --audit");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_audit_tail_after_kill_9_is_repaired_at_restart() {
    let mut c = TestCluster::start(|_| {}).await;
    let state_dir = c.written.agents[0].state_dir.clone();
    let path = state_dir.join("audit.jsonl");
    c.kill(0).await;
    let torn = br#"{"seq":12345,"prev":"00ff","at_ms":1,"agent":"#;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open audit.jsonl");
    f.write_all(torn).expect("append a torn half-line");
    drop(f);
    let (ok, text) = verify(&c, 0);
    assert!(ok && text.contains("WARNING: torn last line"), "{text}");

    c.restart(0).await;
    let records = quorumgate::audit::read_records(&path).expect("the log reads");
    let repair = records
        .iter()
        .find(|r| r.event == "audit_torn_tail")
        .expect("the repair is recorded");
    assert_eq!(repair.body["bytes"], serde_json::json!(torn.len()));
    let side = state_dir.join(repair.body["saved_to"].as_str().expect("saved_to"));
    assert_eq!(std::fs::read(&side).expect("side file"), torn);
    let (ok, text) = verify(&c, 0);
    assert!(ok, "{text}");
    assert!(text.contains("torn tail repaired at a start"), "{text}");
    assert!(!text.contains("WARNING: torn last line"), "{text}");

    // A clean shutdown seals the log with a signed checkpoint.
    c.stop_all(true).await;
    let (ok, text) = verify(&c, 0);
    assert!(
        ok && text.contains("sealed: the last record is a signed shutdown checkpoint"),
        "{text}\n{}",
        c.logs()
    );
}
