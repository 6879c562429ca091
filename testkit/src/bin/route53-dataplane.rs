//! `route53-dataplane`: the emulated Route 53 data plane as a process (the demo, benchmarks,
//! manual poking with `dig`). Prints `LISTENING dns=ADDR status=ADDR` once serving.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use quorumgate_testkit::dataplane::{DataPlane, Options, Source};
use std::io::Read as _;

/// An emulated Route 53 data plane: health checkers polling the health checks' endpoints and an
/// authoritative DNS server answering from failover/weighted record selection.
#[derive(Debug, Parser)]
#[command(name = "route53-dataplane")]
struct Args {
    /// Read the state through the Route 53 API at this endpoint (e.g. the strict emulator).
    #[arg(
        long,
        conflicts_with = "state_file",
        required_unless_present = "state_file"
    )]
    endpoint: Option<String>,
    /// Read the state from this JSON file (re-read every refresh).
    #[arg(long)]
    state_file: Option<PathBuf>,
    /// 1.0: Route 53's real timing; 0.05: twenty times faster.
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// DNS server address (UDP and TCP).
    #[arg(long, default_value = "127.0.0.1:0")]
    dns: SocketAddr,
    /// JSON status page address (`GET /status`).
    #[arg(long, default_value = "127.0.0.1:0")]
    status: SocketAddr,
    #[arg(long, default_value_t = 1)]
    checkers_per_region: usize,
    /// Seed for the checkers' phases and weighted picks (default: random).
    #[arg(long)]
    seed: Option<u64>,
    /// How often the state is read again, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    refresh_ms: u64,
    /// REGION=IP: that region's checkers connect from IP (repeatable; default 127.0.0.1).
    #[arg(long, value_parser = parse_region_source)]
    source_for_region: Vec<(String, IpAddr)>,
    /// Exit after this many seconds, so a forgotten emulator ends.
    #[arg(long, default_value_t = 3600)]
    max_lifetime_s: u64,
    /// Exit when standard input closes (the parent died).
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn parse_region_source(s: &str) -> Result<(String, IpAddr), String> {
    let (region, ip) = s.split_once('=').ok_or("expected REGION=IP")?;
    Ok((
        region.to_owned(),
        ip.parse().map_err(|e| format!("{ip}: {e}"))?,
    ))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let source = match (args.endpoint, args.state_file) {
        (Some(endpoint), _) => Source::Route53 { endpoint },
        (None, Some(path)) => Source::File(path),
        (None, None) => anyhow::bail!("--endpoint or --state-file is required"),
    };
    let defaults = Options::default();
    let opts = Options {
        source,
        time_scale: args.time_scale,
        checkers_per_region: args.checkers_per_region,
        seed: args.seed.unwrap_or(defaults.seed),
        dns_listen: args.dns,
        status_listen: Some(args.status),
        refresh: Duration::from_millis(args.refresh_ms),
        source_for_region: args
            .source_for_region
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
    };
    let plane = DataPlane::start(opts)
        .await
        .context("starting the data plane")?;
    let status = plane
        .status_addr()
        .map_or_else(|| "-".to_owned(), |a| a.to_string());
    println!("LISTENING dns={} status={status}", plane.dns_addr());
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
    if args.exit_on_stdin_eof {
        // A plain thread: blocking reads until EOF, then the signal.
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
    } else {
        drop(closed_tx);
    }
    let stdin_closed = async {
        // Dropped unsent (no --exit-on-stdin-eof): never.
        if closed_rx.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = stdin_closed => {}
        () = tokio::time::sleep(Duration::from_secs(args.max_lifetime_s)) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    plane.shutdown().await;
    Ok(())
}
