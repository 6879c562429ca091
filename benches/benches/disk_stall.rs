//! `/v1/health` latency while the state disk stalls (the issue's target: p99 ≤ 5 ms).
//!
//! Three agents on loopback; agent 0's state dir is on a stallable FUSE mount
//! (`quorumgate_testkit::stall`). The bench polls agent 0's `/v1/health/app` back to back on
//! one keep-alive-less client for `--seconds` with the disk healthy (baseline), then stalls
//! the disk for `--seconds`, fails the app (a transition whose audit record now waits for the
//! disk) and polls the same way, then resumes it. It prints the latency distribution of
//! both phases and whether the transition really waited (`quorumgate_persist_pending`).
//! Needs root, `/dev/fuse` and fuse-overlayfs (`scripts/test-deps.sh`).
//!
//! ```sh
//! cargo bench -p quorumgate-benches --bench disk_stall -- --seconds 2
//! QUORUMGATE_BIN=target/debug/quorumgate cargo bench -p quorumgate-benches --bench disk_stall
//! ```

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use quorumgate::devcluster::{self, Spec};
use quorumgate::net;
use quorumgate::target_app::TargetApp;
use quorumgate_testkit::stall::StallableDisk;
use tokio::time::Instant;

/// At most this many requests per phase (bounded loop).
const MAX_REQUESTS: usize = 1_000_000;

fn main() -> anyhow::Result<()> {
    let mut seconds = 2.0_f64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--seconds" {
            seconds = args
                .next()
                .context("--seconds needs a value")?
                .parse()
                .context("--seconds: a number of seconds, e.g. 2")?;
        }
    }
    let exe = quorumgate_benches::agent_binary()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(bench(&exe, Duration::from_secs_f64(seconds)))
}

async fn get(url: &url::Url) -> Option<(u16, String)> {
    let req = net::Request::get(url.clone(), None, 4 << 20);
    net::send(&req, Duration::from_secs(10))
        .await
        .ok()
        .map(|r| {
            (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
}

/// Polls `url` back to back for `span`: every request's latency (µs, a failed one's time
/// included), the codes answered, and how many got no answer.
async fn poll(url: &url::Url, span: Duration) -> (Vec<u64>, Vec<u16>, usize) {
    let (mut lat, mut codes, mut failed) = (Vec::new(), Vec::new(), 0);
    let end = Instant::now() + span;
    for _ in 0..MAX_REQUESTS {
        if Instant::now() >= end {
            break;
        }
        let t = Instant::now();
        let answer = get(url).await;
        // A request that got no answer counts with the time it waited.
        lat.push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
        match answer {
            Some((code, _)) => codes.push(code),
            None => failed += 1,
        }
    }
    (lat, codes, failed)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn report(phase: &str, mut lat: Vec<u64>, codes: &[u16], failed: usize) {
    lat.sort_unstable();
    let ok = codes.iter().filter(|c| **c == 200).count();
    println!(
        "{phase:>8}: n={} failed={failed} 200s={ok} p50={:.2} ms p99={:.2} ms p99.9={:.2} ms max={:.2} ms",
        lat.len(),
        pct(&lat, 0.50),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        pct(&lat, 1.0),
    );
}

async fn wait_for(
    limit: Duration,
    what: &str,
    mut cond: impl AsyncFnMut() -> bool,
) -> anyhow::Result<()> {
    let end = Instant::now() + limit;
    while !cond().await {
        anyhow::ensure!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

async fn bench(exe: &Path, span: Duration) -> anyhow::Result<()> {
    quorumgate::tls::install_crypto_provider();
    let dir = tempfile::tempdir()?;
    let mut disk = StallableDisk::mount(&dir.path().join("disk"));
    let app = TargetApp::start().await?;
    let spec = Spec::three(&dir.path().join("cluster"), app.url());
    let written = devcluster::write(&spec)?;
    let state = &written.agents[0].state_dir;
    let _ = std::fs::remove_dir_all(state);
    std::os::unix::fs::symlink(&disk.mount, state)?;
    let mut children = Vec::new();
    for a in &written.agents {
        // The agent reads QUORUMGATE_* from its environment as config: not this bench's own.
        let mut cmd = tokio::process::Command::new(exe);
        cmd.env_remove("QUORUMGATE_BIN");
        children.push(devcluster::spawn_with(cmd, a, &spec.env)?);
    }
    let base = written.agents[0].url.clone();
    let health = base.join("v1/health/app")?;
    let metrics = base.join("metrics")?;
    let up = wait_for(Duration::from_secs(60), "agent 0 healthy", async || {
        get(&health).await.is_some_and(|(c, _)| c == 200)
    })
    .await;
    if let Err(e) = up {
        let log = std::fs::read_to_string(&written.agents[0].log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        anyhow::bail!(
            "{e}; agent 0's log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    println!("exe {} ; each phase {span:?}", exe.display());
    let (lat, codes, failed) = poll(&health, span).await;
    report("baseline", lat, &codes, failed);

    disk.stall();
    app.set_down(true);
    let (stalled, pending) = tokio::join!(poll(&health, span), async {
        // The transition's record waits for the disk: the journal holds it.
        let mut seen = 0.0_f64;
        let end = Instant::now() + span;
        while Instant::now() < end {
            if let Some((_, text)) = get(&metrics).await {
                let n = text
                    .lines()
                    .find_map(|l| l.strip_prefix("quorumgate_persist_pending "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0.0);
                seen = seen.max(n);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        seen
    });
    disk.resume();
    let (lat, codes, failed) = stalled;
    report("stalled", lat, &codes, failed);
    println!(
        "transition waiting for the disk during the stall: {}",
        pending >= 1.0
    );
    wait_for(Duration::from_secs(30), "agent 0 answers 503", async || {
        get(&health).await.is_some_and(|(c, _)| c == 503)
    })
    .await?;
    println!("after the resume agent 0 answers the transition (503)");
    for mut c in children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    drop(disk);
    Ok(())
}
