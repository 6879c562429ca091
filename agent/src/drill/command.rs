//! `quorumgate drill GATE --duration 10m [--dry-run] [--resolver IP:PORT] [--out DIR]` and
//! `quorumgate drill GATE --abort`.
//!
//! 1. Pre-flight ([`super::preflight`]): every agent's `/v1/status` must show the gate at its
//!    primary, not frozen, no drill in force, both targets' checks Healthy by quorum, the same
//!    config digest; and no other gate may read the primary's check. Each agent checks again
//!    on receipt, against its own view.
//! 2. Sign a `Drill` command and deliver it to every agent; if any refuses, abort it
//!    everywhere at once and stop.
//! 3. Watch every agent's status and DNS until every agent has finished and judged the drill
//!    (bounded: the drill's end + `--wait`). Ctrl-C sends `--abort` once.
//! 4. Collect every agent's audit records (`GET /v1/audit`), build the timelines and the
//!    report, and write `drill-<gate>-<time>.json`, `.md` and `.svg` to `--out`. Exit 0 on
//!    pass, 1 on fail or refusal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use config::{Config, GateConfig, Plane};
use quorum::gate::GateKind;
use quorum::operator::Action;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::observe::{self, Observer};
use super::preflight::preflight;
use super::report::{self, DnsReport, Report};
use super::timeline::{self, AgentTimeline};
use super::{agent, render, LOOKBACK_MS};
use crate::audit::Record;
use crate::client::fetch_status;
use crate::clock::{SharedClock, SystemClock};
use crate::operator_cli::{self, OperatorArgs};
use crate::route53::{SdkOptions, SdkRoute53};
use crate::status::Status;
use crate::{net, tls};

/// `quorumgate drill`'s own arguments (besides the operator's).
#[derive(Debug, Clone, clap::Args)]
pub struct DrillArgs {
    #[command(flatten)]
    pub op: OperatorArgs,
    /// How long every agent treats the primary as failed, e.g. 10m.
    #[arg(
        long,
        value_parser = humantime::parse_duration,
        required_unless_present_any = ["abort", "report"]
    )]
    pub duration: Option<Duration>,
    /// Decide and audit everything, write no DNS record, for the drill's duration.
    #[arg(long, conflicts_with = "abort")]
    pub dry_run: bool,
    /// End the running drill now (the gate fails back).
    #[arg(long, conflicts_with = "report")]
    pub abort: bool,
    /// Write the report of a past drill (its seq, as the drill command printed it) from the
    /// agents' audit logs, e.g. when the command that ran it was interrupted. DNS was not
    /// watched then, so the report has no DNS phases.
    #[arg(long, value_name = "SEQ", conflicts_with_all = ["duration", "dry_run"])]
    pub report: Option<u64>,
    /// Watch the record on this DNS server (IP or IP:PORT; best one of the zone's name
    /// servers). Without it the Route 53 API is read instead (and the report says so).
    #[arg(long)]
    pub resolver: Option<String>,
    /// Where to write the report (JSON, Markdown and an SVG timeline).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
    /// After the drill's end, wait at most this long for the failback and every agent's
    /// verdict (the drill authorises its failback for 5 minutes after its end).
    #[arg(long, default_value = "6m", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// Runs the subcommand. See the module docs.
pub async fn run(args: &DrillArgs) -> anyhow::Result<ExitCode> {
    tls::install_crypto_provider();
    let cfg = Config::load(Some(&args.op.config))
        .map_err(|e| anyhow::anyhow!("{}: config problems:\n{e}", args.op.config.display()))?;
    let gate = operator_cli::any_gate(&cfg, &args.op.gate)?;
    anyhow::ensure!(
        matches!(gate.spec.kind(), GateKind::Failover { .. }),
        "gate {} is a weighted set: a drill practises a failover and its failback",
        gate.spec.id()
    );
    if gate.plane == Plane::Data && !args.abort && args.report.is_none() {
        anyhow::ensure!(
            !args.dry_run,
            "gate {} is a data-plane gate: the agents' votes move its DNS (Route 53 follows \
             their health answers), so there is no dry run; drop --dry-run",
            gate.spec.id()
        );
        anyhow::ensure!(
            args.resolver.is_some(),
            "gate {} is a data-plane gate: Route 53 moves its DNS by its health checks and \
             its records never change, so the drill must watch real answers: pass \
             --resolver IP[:PORT] (one of the zone's name servers)",
            gate.spec.id()
        );
    }
    let tls = operator_cli::client_tls(&cfg)?;
    let targets = operator_cli::agent_targets(&cfg, &args.op.agent_urls);
    if args.abort {
        let (cmd, wire) = operator_cli::sign(&args.op, &cfg, gate, Action::DrillAbort, 0)?;
        println!(
            "drill --abort {} by {} (seq {})",
            cmd.gate, cmd.operator, cmd.seq
        );
        let results = operator_cli::send_all(&targets, &tls, wire).await?;
        let ok = operator_cli::print_results(&results);
        return Ok(if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if let Some(seq) = args.report {
        let report = collect(&targets, &tls, gate, seq, None, None).await?;
        return finish_report(&args.out, &report);
    }
    let duration = args.duration.context("--duration is required")?;
    let duration_ms = u32::try_from(duration.as_millis())
        .ok()
        .filter(|ms| *ms > 0)
        .context("--duration must be between 1ms and 49 days")?;

    let statuses = fetch_all(&targets, &tls).await;
    let problems = preflight(&cfg, gate, &statuses);
    if !problems.is_empty() {
        println!("drill of {} refused, nothing was sent:", gate.spec.id());
        for p in &problems {
            println!("  - {p}");
        }
        return Ok(ExitCode::FAILURE);
    }

    let clock: SharedClock = Arc::new(SystemClock::default());
    let observer = match &args.resolver {
        Some(r) => Observer::resolver(resolver_addr(r)?, gate.clone())?,
        None => {
            let api = SdkRoute53::load(SdkOptions::from_config(&cfg.local.route53)).await;
            Observer::route53(Arc::new(api), gate.clone())
        }
    };
    let action = Action::Drill {
        duration_ms,
        dry_run: args.dry_run,
    };
    let (cmd, wire) = operator_cli::sign(&args.op, &cfg, gate, action, 0)?;
    let started_at = cmd.issued_at.0;
    let ends_at = started_at + u64::from(duration_ms);
    println!(
        "drill {} of gate {} by {}: the primary is treated as failed for {}{}; DNS watched via {}",
        cmd.seq,
        cmd.gate,
        cmd.operator,
        humantime::format_duration(duration),
        if args.dry_run {
            " (dry run: nothing is written)"
        } else {
            ""
        },
        observer.label()
    );
    let dns = Arc::new(Mutex::new(DnsReport::default()));
    let stop = CancellationToken::new();
    let watcher = tokio::spawn(observe::observe(
        observer,
        Arc::clone(&clock),
        stop.clone(),
        Arc::clone(&dns),
    ));
    let results = operator_cli::send_all(&targets, &tls, wire).await?;
    if !operator_cli::print_results(&results) {
        println!("not every agent started the drill: aborting it everywhere");
        let (_, abort) = operator_cli::sign(&args.op, &cfg, gate, Action::DrillAbort, cmd.seq)?;
        operator_cli::print_results(&operator_cli::send_all(&targets, &tls, abort).await?);
        stop.cancel();
        let _ = watcher.await;
        return Ok(ExitCode::FAILURE);
    }

    let watch = Watch {
        targets: &targets,
        tls: &tls,
        gate: gate.spec.id().as_str(),
        seq: cmd.seq,
        started_at,
        deadline_ms: ends_at + u64::try_from(args.wait.as_millis()).unwrap_or(u64::MAX),
        clock: &clock,
    };
    let finished = watch
        .run(|| async {
            println!("interrupted: aborting the drill (Ctrl-C again to leave it running)");
            let abort = operator_cli::sign(&args.op, &cfg, gate, Action::DrillAbort, cmd.seq);
            match abort {
                Ok((_, wire)) => match operator_cli::send_all(&targets, &tls, wire).await {
                    Ok(r) => {
                        operator_cli::print_results(&r);
                    }
                    Err(e) => println!("abort not delivered: {e:#}"),
                },
                Err(e) => println!("abort not signed: {e:#}"),
            }
        })
        .await;
    if !finished {
        println!("not every agent finished the drill in time; reporting what was recorded");
    }
    // Give DNS a moment to show the failback (resolvers lag Route 53 a little).
    let primary = match gate.spec.kind() {
        GateKind::Failover { primary, .. } => primary.id.to_string(),
        GateKind::Weighted { .. } => String::new(),
    };
    let dns_deadline = clock.now().0 + 10_000;
    while !args.dry_run && clock.now().0 < dns_deadline && !dns_back(&dns, &primary, started_at) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    let _ = watcher.await;
    let dns = dns
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();

    let info = agent::info(
        gate,
        cmd.seq,
        cmd.operator.as_str(),
        started_at,
        ends_at,
        args.dry_run,
    )
    .context("not a failover gate")?;
    let report = collect(&targets, &tls, gate, cmd.seq, Some(info), Some(dns)).await?;
    finish_report(&args.out, &report)
}

/// Writes the report's files, prints its summary; exit 0 on pass.
fn finish_report(out: &std::path::Path, report: &Report) -> anyhow::Result<ExitCode> {
    let paths = write_report(out, report)?;
    print!("{}", summary(report));
    for p in &paths {
        println!("wrote {}", p.display());
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads every agent's audit records of drill `seq` and builds the report. `info`: what the
/// drill command knows; `None` (`--report`): taken from the signed drill command in the logs.
async fn collect(
    targets: &[(String, Url)],
    tls: &Arc<ClientConfig>,
    gate: &GateConfig,
    seq: u64,
    info: Option<report::DrillInfo>,
    dns: Option<DnsReport>,
) -> anyhow::Result<Report> {
    let key = agent::key(gate, seq).context("not a failover gate")?;
    // The drill command's seq is the wall clock when it was signed: its start.
    let since = info
        .as_ref()
        .map_or(seq, |i| i.started_at_ms)
        .saturating_sub(LOOKBACK_MS);
    let mut info = info;
    let mut timelines = Vec::new();
    for (name, base) in targets {
        match fetch_audit(base, tls, since).await {
            Ok(page) => {
                if page.truncated {
                    println!("  {name}: audit records truncated; the report may miss phases");
                }
                if info.is_none() {
                    info = info_from_records(gate, seq, &page.records);
                }
                timelines.push(timeline::timeline(&page.agent, &key, &page.records));
            }
            Err(e) => {
                println!("  {name}: audit records not read: {e:#}");
                timelines.push(AgentTimeline {
                    agent: name.clone(),
                    ..AgentTimeline::default()
                });
            }
        }
    }
    let info = info.with_context(|| {
        format!(
            "no agent's audit log holds drill {seq} of gate {}",
            gate.spec.id()
        )
    })?;
    Ok(report::build(info, timelines, dns))
}

/// The drill's facts from its signed command, as an agent's audit log holds it.
fn info_from_records(gate: &GateConfig, seq: u64, records: &[Record]) -> Option<report::DrillInfo> {
    use base64::Engine as _;
    records
        .iter()
        .filter(|r| r.event == "operator_command")
        .filter(|r| {
            r.body.get("gate").and_then(serde_json::Value::as_str) == Some(gate.spec.id().as_str())
        })
        .find_map(|r| {
            let signed = r.body.get("signed")?.as_str()?;
            let wire = base64::engine::general_purpose::STANDARD
                .decode(signed)
                .ok()?;
            let cmd = quorum::SignedCommand::from_wire(&wire)
                .ok()?
                .decode_unverified()
                .ok()?;
            let Action::Drill {
                duration_ms,
                dry_run,
            } = cmd.action
            else {
                return None;
            };
            (cmd.seq == seq).then(|| {
                let start = cmd.issued_at.0;
                agent::info(
                    gate,
                    seq,
                    cmd.operator.as_str(),
                    start,
                    start + u64::from(duration_ms),
                    dry_run,
                )
            })?
        })
}

fn dns_back(dns: &Mutex<DnsReport>, primary: &str, start: u64) -> bool {
    let d = dns
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    d.samples
        .iter()
        .position(|s| s.at_ms >= start && s.target.as_deref() != Some(primary))
        .is_none_or(|moved| {
            d.samples[moved..]
                .iter()
                .any(|s| s.target.as_deref() == Some(primary))
        })
}

fn resolver_addr(raw: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = raw.parse::<SocketAddr>() {
        return Ok(a);
    }
    let ip: std::net::IpAddr = raw
        .parse()
        .with_context(|| format!("--resolver {raw}: expected IP or IP:PORT"))?;
    Ok(SocketAddr::new(ip, 53))
}

async fn fetch_all(
    targets: &[(String, Url)],
    tls: &Arc<ClientConfig>,
) -> Vec<(String, Result<Status, String>)> {
    let mut out = Vec::new();
    for (name, base) in targets {
        let s = fetch_status(base, Arc::clone(tls), Duration::from_secs(5))
            .await
            .map_err(|e| format!("{e:#}"));
        out.push((name.clone(), s));
    }
    out
}

/// Polls every agent until each shows the drill finished and judged.
struct Watch<'a> {
    targets: &'a [(String, Url)],
    tls: &'a Arc<ClientConfig>,
    gate: &'a str,
    seq: u64,
    started_at: u64,
    deadline_ms: u64,
    clock: &'a SharedClock,
}

impl Watch<'_> {
    /// True when every agent finished and judged the drill before the deadline. `on_interrupt`
    /// runs on the first Ctrl-C; a second one stops watching.
    async fn run<F, Fut>(&self, on_interrupt: F) -> bool
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut seen: Vec<Option<String>> = vec![None; self.targets.len()];
        let mut interrupted = false;
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = tokio::signal::ctrl_c() => {
                    if interrupted {
                        return false;
                    }
                    interrupted = true;
                    on_interrupt().await;
                    continue;
                }
            }
            let mut done = 0;
            for (i, (name, base)) in self.targets.iter().enumerate() {
                let Ok(s) = fetch_status(base, Arc::clone(self.tls), Duration::from_secs(2)).await
                else {
                    continue;
                };
                let Some(g) = s.gates.iter().find(|g| g.id == self.gate) else {
                    continue;
                };
                let drill = g.drill.as_ref().filter(|d| d.seq == self.seq);
                let line = format!(
                    "{} (drill {})",
                    g.current,
                    drill.map_or("not started", |d| d.state.as_str())
                );
                if seen[i].as_deref() != Some(line.as_str()) {
                    let after = s.now_ms.saturating_sub(self.started_at);
                    println!("  +{:>7.3}s {name:<12} {line}", after as f64 / 1000.0);
                    seen[i] = Some(line);
                }
                if drill.is_some_and(|d| d.state == "finished" && d.result.is_some()) {
                    done += 1;
                }
            }
            if done == self.targets.len() {
                return true;
            }
            if self.clock.now().0 > self.deadline_ms {
                return false;
            }
        }
    }
}

/// One agent's `GET /v1/audit` answer.
#[derive(Debug, Deserialize)]
pub struct AuditPage {
    pub agent: String,
    pub records: Vec<Record>,
    pub truncated: bool,
}

async fn fetch_audit(
    base: &Url,
    tls: &Arc<ClientConfig>,
    since_ms: u64,
) -> anyhow::Result<AuditPage> {
    let url = base.join(&format!("v1/audit?since={since_ms}"))?;
    let req = net::Request::get(url, Some(Arc::clone(tls)), 64 * 1024 * 1024);
    let resp = net::send(&req, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("{base}: {e}"))?;
    anyhow::ensure!(resp.status.is_success(), "{base}: HTTP {}", resp.status);
    serde_json::from_slice(&resp.body).with_context(|| format!("{base}: not an audit page"))
}

/// `drill-<gate>-<UTC time>.{json,md,svg}` in `dir`.
fn write_report(dir: &std::path::Path, r: &Report) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let stamp: String = render::utc(r.drill.started_at_ms)
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let base = format!("drill-{}-{stamp}", r.drill.gate);
    let svg_name = format!("{base}.svg");
    let files = [
        (
            format!("{base}.json"),
            serde_json::to_string_pretty(r)? + "\n",
        ),
        (format!("{base}.md"), render::markdown(r, Some(&svg_name))),
        (svg_name.clone(), render::svg(r)),
    ];
    let mut out = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        out.push(path);
    }
    Ok(out)
}

/// The terminal's summary of a report.
fn summary(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\ndrill {} of {}: {}",
        r.drill.seq,
        r.drill.gate,
        if r.passed() { "PASS" } else { "FAIL" }
    );
    let mut phases: Vec<_> = r.phases.iter().collect();
    phases.sort_by_key(|p| p.at_ms);
    for p in phases {
        let _ = writeln!(
            o,
            "  +{:>8.3}s  {:<36} {}",
            p.after_start_ms as f64 / 1000.0,
            p.label,
            p.source
        );
    }
    for c in &r.criteria {
        let _ = writeln!(
            o,
            "  {:<4} {:<9} {}",
            if c.passed { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolver_addresses_default_to_port_53() {
        assert_eq!(
            resolver_addr("192.0.2.53").expect("ip").to_string(),
            "192.0.2.53:53"
        );
        assert_eq!(
            resolver_addr("127.0.0.1:5353").expect("ip:port").port(),
            5353
        );
        assert!(resolver_addr("ns1.example.com").is_err());
    }
}
