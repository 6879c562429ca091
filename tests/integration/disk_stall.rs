//! `/v1/health` keeps answering while the state disk stalls.
//!
//! Agent 0's state dir (audit log, decisions file) is on a FUSE filesystem (fuse-overlayfs
//! over a directory of the test's): stopping its daemon with SIGSTOP blocks every write and
//! fsync there until SIGCONT — a real stall of the disk, not a mock. During a 2 s stall the
//! app fails, so the quorum decides Unhealthy and agent 0's transition record waits for the
//! disk. The test polls agent 0's health all along and asserts the structure: every request
//! was answered, none waited anywhere near the stall (each well under 1 s), the old answer
//! (200) stood while the record was not on disk, and the new one (503) came after it was.
//! How fast the answers are under the stall is the bench's business
//! (`benches/benches/disk_stall.rs`).
//!
//! Needs root, `/dev/fuse`, `fuse-overlayfs` and `fusermount3` (`scripts/test-deps.sh`
//! installs them); without them it fails, naming the fix.

use std::path::Path;
use std::time::Duration;

use quorumgate_testkit::stall::StallableDisk;
use tokio::time::Instant;

use crate::support::TestCluster;

/// How long the disk stays stalled.
const STALL: Duration = Duration::from_secs(2);
/// No health answer may take this long: far below the stall.
const MAX_ANSWER: Duration = Duration::from_secs(1);
/// Health requests during the test at most (bounded loop).
const MAX_POLLS: usize = 100_000;

/// Audit records of `event` in the log at `path`, read without going through the mount.
fn records(path: &Path, event: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .count()
}

/// A gauge without labels.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

#[derive(Debug, Default)]
struct Polls {
    /// When each request started, how long it took, and the answer.
    answered: Vec<(Instant, Duration, u16)>,
    unanswered: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_the_state_disk_stalls() {
    let disk_dir = tempfile::tempdir().expect("tempdir");
    let mut disk = StallableDisk::mount(disk_dir.path());
    let mut c = TestCluster::written(|_| {}).await;
    let state = c.written.agents[0].state_dir.clone();
    let _ = std::fs::remove_dir_all(&state);
    std::os::unix::fs::symlink(&disk.mount, &state).expect("state dir on the FUSE mount");
    c.spawn_stopped();
    c.wait_until(Duration::from_secs(30), "agent 0 healthy", || async {
        c.health(0).await == Some(200)
    })
    .await;
    let audit = disk.upper.join("audit.jsonl");
    assert_eq!(records(&audit, "transition"), 0, "no transition yet");

    let done = std::sync::atomic::AtomicBool::new(false);
    let poll = async {
        let mut polls = Polls::default();
        for _ in 0..MAX_POLLS {
            if done.load(std::sync::atomic::Ordering::Relaxed) {
                break;
            }
            let t = Instant::now();
            match c.health(0).await {
                Some(code) => polls.answered.push((t, t.elapsed(), code)),
                None => polls.unanswered += 1,
            }
        }
        polls
    };
    let drive = async {
        disk.stall();
        let stalled_at = Instant::now();
        c.app.set_down(true);
        // The quorum decides Unhealthy; agent 0's transition record is stuck on the disk.
        c.wait_until(
            Duration::from_secs(20),
            "agent 0's transition waits for the disk",
            || async {
                gauge(&c.metrics(0).await, "quorumgate_persist_pending").is_some_and(|n| n >= 1.0)
            },
        )
        .await;
        let stuck = records(&audit, "transition");
        assert_eq!(
            c.health(0).await,
            Some(200),
            "the new decision was answered before its record reached the disk"
        );
        tokio::time::sleep(STALL.saturating_sub(stalled_at.elapsed())).await;
        let resumed_at = Instant::now();
        disk.resume();
        c.wait_until(
            Duration::from_secs(20),
            "agent 0 answers the transition",
            || async { c.health(0).await == Some(503) },
        )
        .await;
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        (stuck, stalled_at, resumed_at)
    };
    let (polls, (stuck, stalled_at, resumed_at)) = tokio::join!(poll, drive);
    let stall = resumed_at - stalled_at;
    assert_eq!(
        stuck, 0,
        "the transition record reached the disk during the stall"
    );
    assert!(stall >= STALL, "the stall lasted {stall:?}");
    assert_eq!(
        records(&audit, "transition"),
        1,
        "the transition record is on disk after the stall"
    );
    assert_eq!(
        polls.unanswered, 0,
        "health requests not answered: {polls:?}"
    );
    let slowest = polls
        .answered
        .iter()
        .map(|(_, d, _)| *d)
        .max()
        .unwrap_or_default();
    assert!(
        slowest < MAX_ANSWER,
        "a health answer waited {slowest:?} (the stall is {STALL:?})"
    );
    // The old answer until the record was written, then the new one: never back.
    let codes: Vec<u16> = polls.answered.iter().map(|(_, _, c)| *c).collect();
    let first_503 = codes.iter().position(|c| *c == 503).unwrap_or(codes.len());
    assert!(
        codes[..first_503].iter().all(|c| *c == 200)
            && codes[first_503..].iter().all(|c| *c == 503),
        "{codes:?}"
    );
    let during: Vec<u16> = polls
        .answered
        .iter()
        .filter(|(t, d, _)| *t >= stalled_at && *t + *d < resumed_at)
        .map(|(_, _, c)| *c)
        .collect();
    assert!(
        during.len() >= 10,
        "only {} answers during the stall",
        during.len()
    );
    assert!(
        during.iter().all(|c| *c == 200),
        "answered the transition before its record was on disk: {during:?}"
    );
    c.stop_all(true).await;
    drop(disk);
}
