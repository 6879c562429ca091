//! `quorumgate agent`: wires the probes, the node, the peer exchange and the HTTP surface
//! together, and runs the main loop until SIGTERM/SIGINT.
//!
//! The loop is one `select!` over probe reports, the round timer, an early-publish timer and
//! shutdown. Each round: issue and count our ballot, evaluate every check, push the ballot to
//! peers, and pull from any peer whose ballot we lack. Between rounds, a probe result that
//! changes our vote is published at once (after [`PUBLISH_COALESCE`], at most one early
//! ballot per [`EARLY_BALLOTS_PER_ROUND`]-th of a round), so a failure reaches the quorum as
//! soon as it is seen, not up to a round later; the peers tally it on arrival.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use config::Config;
use quorum::SigningKey;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::audit::{self, AuditLog};
use crate::clock::SharedClock;
use crate::decisions;
use crate::exchange::Exchange;
use crate::gates::promote::{Promoter, SdkPromoter};
use crate::gates::{DriverOptions, GateDriver};
use crate::keys;
use crate::node::Node;
use crate::probe::Prober;
use crate::route53::{Route53Api, SdkOptions, SdkRoute53};
use crate::scheduler::{self, ProbeKey, ProbeReport, ScheduledProbe};
use crate::sdnotify::{Lifecycle, Notifier};
use crate::server::{self, ServerCtx, Surface};
use crate::tls;

/// How long an early ballot waits for other results that change votes at the same moment.
pub const PUBLISH_COALESCE: Duration = Duration::from_millis(5);
/// At most this many early ballots per round interval (they are spaced evenly): bounds the
/// signing, pushing and verifying a storm of changing results can cause.
pub const EARLY_BALLOTS_PER_ROUND: u32 = 10;

/// Everything `run` needs from outside: config, clock, an already-bound listener (tests bind
/// port 0) and a shutdown signal.
#[derive(Debug)]
pub struct AgentParts {
    pub config: Config,
    pub clock: SharedClock,
    pub listener: TcpListener,
    pub shutdown: CancellationToken,
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// systemd notification (`READY=1`, `WATCHDOG=1`, `STOPPING=1`); `Notifier::disabled()`
    /// outside systemd.
    pub notify: Notifier,
}

/// Loads the signing key and checks it belongs to the configured member.
pub fn load_own_key(cfg: &Config) -> anyhow::Result<SigningKey> {
    let key = keys::load_signing_key(&cfg.local.key_file)?;
    let me = cfg
        .member(&cfg.local.agent_id)
        .context("local.agent_id is not a member")?;
    anyhow::ensure!(
        key.verifying_key() == me.public_key,
        "key file {} does not match members[id={}].public_key (its public key is {}); fix the key_file or the member's public_key",
        cfg.local.key_file.display(),
        me.id,
        keys::public_key_base64(&key.verifying_key())
    );
    Ok(key)
}

/// Runs an agent until `parts.shutdown` fires.
pub async fn run(parts: AgentParts) -> anyhow::Result<()> {
    tls::install_crypto_provider();
    let AgentParts {
        config,
        clock,
        listener,
        shutdown,
        metrics,
        notify,
    } = parts;
    let key = load_own_key(&config)?;
    let cfg = Arc::new(config);
    let local = &cfg.local;
    let server_tls = match &local.tls {
        Some(t) => Some(tls::server_config(
            &t.cert_file,
            &t.key_file,
            t.client_ca_file.as_deref(),
        )?),
        None => None,
    };
    let identity = match (
        &local.peer_tls.client_cert_file,
        &local.peer_tls.client_key_file,
    ) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        _ => None,
    };
    let peer_tls = tls::client_config(local.peer_tls.ca_file.as_deref(), identity)?;

    let audit_path = local.state_dir.join("audit.jsonl");
    let options = audit::Options {
        rotate_bytes: local.audit_rotate_bytes,
        keep_files: local.audit_keep_files,
        signer: Some(key.clone()),
        now: clock.now(),
        ..audit::Options::default()
    };
    let (mut audit, history) = AuditLog::open_with(&audit_path, local.agent_id.clone(), options)?;
    // What the log held when this run began: a log cut back to an earlier checkpoint shows
    // here (and in quorumgate_audit_checkpoint_seq) as a checkpoint older than expected.
    let last_checkpoint = audit.last_checkpoint();
    if let Some(seq) = last_checkpoint {
        metrics::gauge!(crate::telemetry::AUDIT_CHECKPOINT_SEQ).set(seq as f64);
    }
    audit.append(
        clock.now(),
        "started",
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "config_digest": cfg.digest.to_hex(),
            "after_checkpoint_seq": last_checkpoint,
            "replayed_records": history.len(),
        }),
    )?;
    let audit = Arc::new(Mutex::new(audit));
    // Restart safety: answer what the quorum last decided, or UNDECIDED — never `initial`
    // unless this state dir has never seen a run.
    let restore = decisions::restore(
        &local.state_dir,
        &history,
        &cfg.shared.membership,
        cfg.shared.cluster.max_clock_skew_ms,
    );
    for problem in &restore.problems {
        tracing::error!(%problem, "decision not restored; the check starts undecided");
    }
    tracing::info!(source = ?restore.source, restored = restore.decisions.len(), "decisions restored");
    let mut node = Node::restored(Arc::clone(&cfg), clock.now(), restore);
    node.set_decisions_dir(local.state_dir.clone());
    node.set_audit(Arc::clone(&audit));
    let gates = gate_driver(&cfg, Arc::clone(&audit), Arc::clone(&clock)).await?;
    if let Some(g) = &gates {
        g.replay(&history);
        node.set_drill_board(g.drill_board());
        g.follow_journal(node.journal());
    }
    let intake = node.intake();
    let node = Arc::new(Mutex::new(node));
    let round = Duration::from_millis(cfg.shared.cluster.round_interval_ms);
    let ctx = Arc::new(ServerCtx {
        node: Arc::clone(&node),
        clock: Arc::clone(&clock),
        metrics,
        max_body_bytes: cfg.shared.cluster.max_ballot_bytes,
        liveness_ms: 5 * cfg.shared.cluster.round_interval_ms + 5_000,
        gates: gates.clone(),
        intake,
        bodies: server::body::BodyBudget::new(cfg.local.http_body_budget_bytes),
    });
    let addr = listener.local_addr()?;
    // Before any connection: the listeners' caps leave the descriptors the probes need.
    let budget = crate::fdlimit::budget_for(&cfg);
    let mut servers = vec![tokio::spawn(server::serve(
        listener,
        server_tls,
        Surface::Full,
        budget.full,
        Arc::clone(&ctx),
        shutdown.child_token(),
    ))];
    if let Some(health) = &local.health_listener {
        let tls = match &health.tls {
            Some(t) => Some(tls::server_config(&t.cert_file, &t.key_file, None)?),
            None => None,
        };
        let listener = TcpListener::bind(health.listen).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on local.health_listen = {}: {e}",
                health.listen
            )
        })?;
        tracing::info!(addr = %listener.local_addr()?, "public health listener");
        servers.push(tokio::spawn(server::serve(
            listener,
            tls,
            Surface::HealthOnly,
            budget.health.unwrap_or(budget.full),
            ctx,
            shutdown.child_token(),
        )));
    }
    tracing::info!(%addr, agent = %local.agent_id, digest = %cfg.digest, "agent listening");
    // systemd: READY=1 after the first round, WATCHDOG=1 from the loop below, STOPPING=1.
    let mut sd = Lifecycle::new(notify);
    sd.status(&format!("listening on {addr}; waiting for the first round"));
    for w in &cfg.warnings {
        tracing::warn!(path = %w.path, fix = %w.fix, "config: {}", w.problem);
    }

    let (tx, mut rx) = mpsc::channel::<ProbeReport>(1024);
    let prober = Arc::new(
        Prober::new(local.agent_id.clone())
            .with_region(cfg.me().map(|m| m.region.clone()).unwrap_or_default())
            .with_clock(Arc::clone(&clock)),
    );
    let sched = scheduler::spawn(
        scheduled_probes(&cfg),
        prober,
        Arc::clone(&clock),
        local.probe_concurrency,
        local
            .jitter_seed
            .unwrap_or_else(|| seed_from(local.agent_id.as_str())),
        tx,
        shutdown.child_token(),
    );
    let exchange = Arc::new(Exchange::new(
        Arc::clone(&node),
        Arc::clone(&clock),
        peer_tls,
    )?);
    // Catch up on what peers hold before voting (a restarted agent learns its last seq too).
    tokio::select! {
        () = exchange.pull(None) => {}
        () = shutdown.cancelled() => {}
    }

    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + round, round);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let early_gap = round / EARLY_BALLOTS_PER_ROUND;
    let mut last_ballot = tokio::time::Instant::now();
    // When the next early ballot goes out; `None` while no vote changed since the last one.
    let mut publish_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = sd.watchdog_due() => sd.ping_watchdog(),
            Some(report) = rx.recv() => {
                if record(&node, report) && publish_at.is_none() {
                    let soon = tokio::time::Instant::now() + PUBLISH_COALESCE;
                    publish_at = Some(soon.max(last_ballot + early_gap));
                }
            }
            () = sleep_until_opt(publish_at) => {
                publish_at = None;
                last_ballot = tokio::time::Instant::now();
                let now = clock.now();
                let mut n = node.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if n.publish_due() {
                    let wire = n.publish(now, &key);
                    drop(n);
                    exchange.push_all(&wire);
                }
            }
            tick = ticker.tick() => {
                let now = clock.now();
                let late = tick.elapsed();
                publish_at = None;
                last_ballot = tokio::time::Instant::now();
                let mut n = node.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if late > round / 2 {
                    tracing::warn!(late_ms = late.as_millis() as u64, "round timer fired late; abstaining from accusations");
                    n.record_starved(now);
                }
                if let Some(at) = sched.last_starved_at() {
                    n.record_starved(at);
                }
                let (wire, _transitions) = n.round(now, &key);
                let live = n.live_members(now);
                sd.after_round(&n, &live);
                let stale = exchange.stale_peers(&live);
                let inputs = gates.as_ref().map(|_| n.gate_inputs());
                drop(n);
                if let (Some(g), Some(inputs)) = (&gates, inputs) {
                    g.on_round(now, &inputs, cfg.shared.membership.writer_rank(&cfg.local.agent_id, &live));
                }
                exchange.push_all(&wire);
                if let Err(e) = audit::seal_shared(&audit, now) {
                    metrics::counter!(crate::telemetry::AUDIT_ERRORS).increment(1);
                    tracing::error!(error = %e, "audit checkpoint not written");
                }
                if !stale.is_empty() {
                    let ex = Arc::clone(&exchange);
                    tokio::spawn(async move { ex.pull(Some(&stale)).await });
                }
            }
        }
    }
    sd.stopping();
    tracing::info!("shutting down");
    for s in servers {
        let _ = s.await;
    }
    // Seal the log: its last record is now a signed shutdown checkpoint.
    let sealed = audit
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .seal_shutdown(clock.now());
    if let Err(e) = sealed {
        metrics::counter!(crate::telemetry::AUDIT_ERRORS).increment(1);
        tracing::error!(error = %e, "audit log not sealed at shutdown");
    }
    Ok(())
}

/// The gates, with a Route 53 client when any control-plane gate is live; `None` without
/// gates. Data-plane gates are driven only for their drills (they never write).
async fn gate_driver(
    cfg: &Config,
    audit: audit::SharedAudit,
    clock: SharedClock,
) -> anyhow::Result<Option<Arc<GateDriver>>> {
    let control = cfg
        .shared
        .gates
        .iter()
        .filter(|g| g.plane == config::Plane::Control);
    if cfg.shared.gates.is_empty() {
        return Ok(None);
    }
    let live = control
        .clone()
        .any(|g| g.spec.mode() == quorum::gate::Mode::Live);
    let api: Option<Arc<dyn Route53Api>> = if live {
        let options = SdkOptions::from_config(&cfg.local.route53);
        Some(Arc::new(SdkRoute53::load(options).await))
    } else {
        None
    };
    let options = DriverOptions {
        writer: crate::route53::WriterOptions {
            insync_timeout: Duration::from_millis(cfg.local.route53.insync_timeout_ms),
            ..crate::route53::WriterOptions::default()
        },
        // A request can still land until the API client gives up on it; twice that is the
        // margin after which a batch nobody has seen is taken as never landed.
        request_lifetime: Duration::from_millis(cfg.local.route53.operation_timeout_ms)
            .saturating_mul(2),
        ..DriverOptions::default()
    };
    let mut promoters: std::collections::BTreeMap<quorum::GateId, Arc<dyn Promoter>> =
        std::collections::BTreeMap::new();
    for g in control.clone() {
        if let (Some(p), quorum::gate::Mode::Live) = (&g.promote, g.spec.mode()) {
            let attempt = Duration::from_millis(cfg.local.route53.attempt_timeout_ms);
            let promoter = SdkPromoter::load(p, attempt)
                .await
                .map_err(|f| anyhow::anyhow!("gates[{}].promote: {}", g.spec.id(), f.detail))?;
            promoters.insert(g.spec.id().clone(), Arc::new(promoter));
        }
    }
    let driver = GateDriver::new(cfg, api, promoters, Some(audit), clock, options)?;
    for g in control {
        tracing::info!(gate = %g.spec.id(), mode = g.spec.mode().as_str(), zone = %g.zone_name, record = %g.record_name, "control-plane gate");
    }
    for g in cfg
        .shared
        .gates
        .iter()
        .filter(|g| g.plane == config::Plane::Data)
    {
        tracing::info!(gate = %g.spec.id(), zone = %g.zone_name, record = %g.record_name, "data-plane gate (Route 53 follows the health checks; drills only)");
    }
    Ok(Some(Arc::new(driver)))
}

/// Records one probe report; returns whether it changed this agent's vote (publish early).
fn record(node: &Mutex<Node>, report: ProbeReport) -> bool {
    let mut n = node
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match report.key {
        ProbeKey::Check(id) => n.record_check(id, &report.outcome, report.observed_at, report.late),
        ProbeKey::Control(id) => {
            n.record_control(id, report.outcome, report.observed_at);
            false
        }
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn scheduled_probes(cfg: &Config) -> Vec<ScheduledProbe> {
    let checks = cfg.shared.checks.iter().map(|c| ScheduledProbe {
        key: ProbeKey::Check(c.id.clone()),
        spec: c.probe.clone(),
        interval: Duration::from_millis(c.interval_ms),
        timeout: Duration::from_millis(c.timeout_ms),
    });
    // Control probes run once per round.
    let round = Duration::from_millis(cfg.shared.cluster.round_interval_ms);
    let controls = cfg.local.control.iter().map(|c| ScheduledProbe {
        key: ProbeKey::Control(c.id.clone()),
        spec: c.probe.clone(),
        interval: round,
        timeout: Duration::from_millis(c.timeout_ms).min(round.mul_f32(0.9)),
    });
    checks.chain(controls).collect()
}

/// A stable per-agent jitter seed (FNV-1a of the agent id), so agents spread differently.
fn seed_from(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers we can still stop on Ctrl-C.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
