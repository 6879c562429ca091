//! Route 53's own health checks against quorumgate's calculated check, in the same
//! data-plane emulator (`quorumgate_testkit::dataplane`): time to the DNS change and false
//! failovers, four scenarios, Route 53's real parameters (RequestInterval 10 s,
//! FailureThreshold 1 and 3, 8 checker regions, TTL 60 s) or time-scaled.
//!
//! ```text
//! cargo bench -p quorumgate-benches --bench route53_compare -- [--scale 1.0] [--reps 2]
//!     [--scenarios down,hallucination,private,flapping]
//! ```
//!
//! One run serves four failover record names from one emulator, so each name sees the same
//! failure at the same moment:
//! - `direct-t1` / `direct-t3`: the primary and the secondary each carry an HTTP health
//!   check pointed straight at their app (`/healthz`), FailureThreshold 1 / 3;
//! - `quorum-t1` / `quorum-t3`: each carries the calculated check (2 of 3) over one
//!   string-match check per agent on its public `/v1/health/<check>`, FailureThreshold 1 / 3.
//!
//! Scenarios (the primary app is the one that misbehaves; the standby stays healthy):
//! - `down`: the app fails for everyone → time until each name answers the secondary, then
//!   recovers → time until the primary again;
//! - `hallucination`: the app answers one agent (euw1) with 503 for a window: a regional
//!   problem between one agent and the app → DNS changes in the window (false failovers);
//! - `private`: the app is reachable only from inside its network (Route 53's checkers get no
//!   answer) → false failovers in a window, then the app really fails → time to the change;
//! - `flapping`: the app alternates down and up for six cycles → DNS changes.
//!
//! Times are measured at the emulator's authoritative server (real DNS queries every
//! 100 ms); resolvers then keep the old answer for up to the TTL (60 s) for every name alike.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use quorumgate::devcluster::{self, Spec};
use quorumgate::target_app::TargetApp;
use quorumgate_benches::stats::summarize;
use quorumgate_testkit::dataplane::{self, model, DataPlane, Options, Source};
use tokio::time::{sleep, Instant};

const ZONE: &str = "bench.example.";
const PRIMARY_IP: &str = "192.0.2.10";
const SECONDARY_IP: &str = "198.51.100.20";
const NAMES: [&str; 4] = ["direct-t1", "direct-t3", "quorum-t1", "quorum-t3"];
const BROKEN_VIEW: &str = "euw1";

#[derive(Debug, Clone)]
struct Args {
    scale: f64,
    reps: usize,
    scenarios: Vec<String>,
}

impl Args {
    fn parse(raw: &[String]) -> anyhow::Result<Option<Self>> {
        let mut a = Self {
            scale: 1.0,
            reps: 2,
            scenarios: ["down", "hallucination", "private", "flapping"]
                .map(str::to_owned)
                .to_vec(),
        };
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            let mut value = || it.next().context("a value is missing");
            match arg.as_str() {
                "--bench" => {}
                "--scale" => a.scale = value()?.parse().context("--scale")?,
                "--reps" => a.reps = value()?.parse().context("--reps")?,
                "--scenarios" => {
                    a.scenarios = value()?.split(',').map(str::to_owned).collect();
                }
                _ => return Ok(None),
            }
        }
        anyhow::ensure!(a.scale > 0.0 && a.scale <= 1.0, "--scale is in (0, 1]");
        Ok(Some(a))
    }

    /// A Route 53 duration (10 s interval…) at this run's scale.
    fn r53(&self, secs: f64) -> Duration {
        Duration::from_secs_f64(secs * self.scale)
    }
}

/// The agents' timing: 1 s rounds at real scale, faster (floored) when scaled.
fn agent_round_ms(scale: f64) -> u64 {
    ((1_000.0 * scale) as u64).max(200)
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if !raw.iter().any(|a| a == "--bench") {
        println!("route53_compare: a benchmark, not a test; run `cargo bench -p quorumgate-benches --bench route53_compare`");
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(&raw) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("route53_compare: not run: {raw:?} are not its arguments (--scale F --reps N --scenarios a,b)");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("route53_compare: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let exe = match quorumgate_benches::agent_binary() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("route53_compare: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(&args, &exe)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("route53_compare: harness failure: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// One scenario's result for one record name.
#[derive(Debug, Default, Clone)]
struct Outcome {
    /// Failure → DNS answered the secondary (ms), when the scenario has a real failure.
    to_secondary_ms: Option<u64>,
    /// Recovery → DNS answered the primary again (ms).
    back_ms: Option<u64>,
    /// Changes of the answer while the app was healthy for everyone but the scenario's
    /// fault (false failovers and their returns).
    false_changes: u64,
    /// Changes of the answer during a flapping window.
    flap_changes: u64,
}

async fn run(args: &Args, exe: &std::path::Path) -> anyhow::Result<()> {
    println!(
        "route53_compare: scale {} (Route 53 RequestInterval {:.1} s), agents' rounds {} ms, {} rep(s), load {}",
        args.scale,
        10.0 * args.scale,
        agent_round_ms(args.scale),
        args.reps,
        load()
    );
    let mut results: BTreeMap<(String, &str), Vec<Outcome>> = BTreeMap::new();
    for scenario in &args.scenarios {
        for rep in 0..args.reps {
            let rig = Rig::start(args, exe).await?;
            println!("{scenario} rep {}: started", rep + 1);
            let out = match scenario.as_str() {
                "down" => down(&rig, args).await?,
                "hallucination" => hallucination(&rig, args).await?,
                "private" => private(&rig, args).await?,
                "flapping" => flapping(&rig, args).await?,
                other => anyhow::bail!("unknown scenario {other}"),
            };
            for (name, o) in NAMES.iter().zip(out) {
                println!("  {name:<10} {o:?}");
                results.entry((scenario.clone(), name)).or_default().push(o);
            }
            rig.stop().await;
        }
    }
    report(args, &results);
    println!("load after: {}", load());
    Ok(())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// Medians (and the range) of each name's outcomes, per scenario, as a Markdown table.
fn report(args: &Args, results: &BTreeMap<(String, &str), Vec<Outcome>>) {
    let secs = |v: &[u64]| {
        summarize(v).map_or_else(
            || "—".to_owned(),
            |s| {
                format!(
                    "{:.1} s ({:.1}–{:.1})",
                    s.median / 1000.0,
                    s.min / 1000.0,
                    s.max / 1000.0
                )
            },
        )
    };
    println!(
        "\n| scenario | record | to the secondary | back to the primary | false changes | flap changes |"
    );
    println!("|---|---|---|---|---|---|");
    for ((scenario, name), os) in results {
        let pick =
            |f: fn(&Outcome) -> Option<u64>| -> Vec<u64> { os.iter().filter_map(f).collect() };
        let to = pick(|o| o.to_secondary_ms);
        let missed = os.len() - to.len();
        let to_text = if matches!(scenario.as_str(), "down" | "private") {
            let t = secs(&to);
            if missed > 0 {
                format!("{t}; never in {missed} of {}", os.len())
            } else {
                t
            }
        } else {
            "—".to_owned()
        };
        println!(
            "| {scenario} | {name} | {to_text} | {} | {} | {} |",
            secs(&pick(|o| o.back_ms)),
            os.iter()
                .map(|o| o.false_changes.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            os.iter()
                .map(|o| o.flap_changes.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    println!(
        "\n(scale {}: Route 53 interval {:.1} s; times at the authoritative server, resolvers add up to the 60 s TTL alike)",
        args.scale,
        10.0 * args.scale
    );
}

/// Apps, agents and the emulator for one repetition.
struct Rig {
    app: TargetApp,
    /// The secondary's app: healthy throughout.
    _standby: TargetApp,
    children: Vec<tokio::process::Child>,
    dp: DataPlane,
    round: Duration,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(args: &Args, exe: &std::path::Path) -> anyhow::Result<Self> {
        quorumgate::tls::install_crypto_provider();
        let dir = tempfile::tempdir()?;
        let app = TargetApp::start().await?;
        let standby = TargetApp::start().await?;
        let round_ms = agent_round_ms(args.scale);
        let mut spec = Spec::three(dir.path(), app.url());
        spec.round_ms = round_ms;
        spec.timeout_ms = round_ms * 3 / 4;
        spec.fall_after = 3;
        spec.rise_after = 5;
        spec.hold_down_ms = args.r53(10.0).as_millis().try_into().unwrap_or(u64::MAX);
        spec.health_listener = true;
        spec.log_level = "warn".to_owned();
        spec.extra_shared = format!(
            "[[checks]]\nid = \"standby\"\ninterval = \"{round_ms}ms\"\ntimeout = \"{}ms\"\n[checks.http]\nurl = \"{}\"\nexpect_status = [200]\n",
            round_ms * 3 / 4,
            standby.url()
        );
        let written = devcluster::write(&spec)?;
        let mut children = Vec::new();
        for a in &written.agents {
            children.push(devcluster::spawn(exe, a, &[])?);
        }
        let health: Vec<SocketAddr> = written
            .agents
            .iter()
            .map(|a| {
                let u = a.health_url.as_ref().context("health listener")?;
                Ok(SocketAddr::new(
                    u.host_str().context("host")?.parse()?,
                    u.port().context("port")?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        let state = state(app.addr(), standby.addr(), &health);
        // Agents first, decided and answering HEALTHY for both checks: the checkers start
        // healthy and would count a listener that is not up yet, or an undecided agent's 503,
        // as failures.
        let end = Instant::now() + Duration::from_secs(60);
        for h in &health {
            for check in ["app", "standby"] {
                let req = quorumgate::net::Request::get(
                    format!("http://{h}/v1/health/{check}").parse()?,
                    None,
                    4096,
                );
                loop {
                    let status = quorumgate::net::send(&req, Duration::from_secs(2))
                        .await
                        .map(|r| r.status.as_u16());
                    if status.as_ref().is_ok_and(|s| *s == 200) {
                        break;
                    }
                    anyhow::ensure!(
                        Instant::now() < end,
                        "agent {h} never answered 200 for {check}: {status:?}"
                    );
                    sleep(Duration::from_millis(100)).await;
                }
            }
        }
        let rig_round = Duration::from_millis(round_ms);
        let dp = DataPlane::start(Options {
            source: Source::Static(state),
            time_scale: args.scale,
            ..Options::default()
        })
        .await?;
        let rig = Self {
            app,
            _standby: standby,
            children,
            dp,
            round: rig_round,
            _dir: dir,
        };
        // Every name at the primary, steadily, before the scenario starts.
        rig.wait_all(PRIMARY_IP, args.r53(60.0) + Duration::from_secs(30))
            .await
            .context("not every name answered the primary at the start")?;
        Ok(rig)
    }

    async fn stop(mut self) {
        for c in &mut self.children {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        self.dp.shutdown().await;
    }

    /// The answer of every name, by real DNS queries.
    async fn answers(&self) -> Vec<String> {
        let mut out = Vec::new();
        for n in NAMES {
            let a = dataplane::query(self.dp.dns_addr(), &format!("{n}.{ZONE}"), "A")
                .await
                .map(|v| v.join(","))
                .unwrap_or_else(|e| format!("error: {e}"));
            out.push(a);
        }
        out
    }

    async fn wait_all(&self, ip: &str, limit: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + limit;
        while self.answers().await.iter().any(|a| a != ip) {
            anyhow::ensure!(Instant::now() < end, "timed out after {limit:?}");
            sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Samples every name every 100 ms for `dur` (or until `done` holds for the samples):
    /// per name, the times (ms from the start) at which its answer changed, and to what.
    async fn watch(
        &self,
        dur: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<Vec<(u64, String)>> {
        let start = Instant::now();
        let mut last: Vec<String> = self.answers().await;
        let mut changes: Vec<Vec<(u64, String)>> = vec![Vec::new(); NAMES.len()];
        while start.elapsed() < dur {
            sleep(Duration::from_millis(100)).await;
            let now = self.answers().await;
            let at = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
            for (i, a) in now.iter().enumerate() {
                if *a != last[i] {
                    changes[i].push((at, a.clone()));
                }
            }
            last = now;
            if done(&last) {
                break;
            }
        }
        changes
    }
}

fn first_to(changes: &[(u64, String)], ip: &str) -> Option<u64> {
    changes.iter().find(|(_, a)| a == ip).map(|(t, _)| *t)
}

async fn down(rig: &Rig, args: &Args) -> anyhow::Result<Vec<Outcome>> {
    let limit = args.r53(60.0) + rig.round * 20;
    rig.app.set_down(true);
    let over = rig
        .watch(limit, |a| a.iter().all(|x| x == SECONDARY_IP))
        .await;
    rig.app.set_down(false);
    let back = rig
        .watch(limit + args.r53(10.0), |a| {
            a.iter().all(|x| x == PRIMARY_IP)
        })
        .await;
    Ok((0..NAMES.len())
        .map(|i| Outcome {
            to_secondary_ms: first_to(&over[i], SECONDARY_IP),
            back_ms: first_to(&back[i], PRIMARY_IP),
            ..Outcome::default()
        })
        .collect())
}

async fn hallucination(rig: &Rig, args: &Args) -> anyhow::Result<Vec<Outcome>> {
    rig.app.break_view(BROKEN_VIEW);
    let seen = rig.watch(args.r53(120.0), |_| false).await;
    rig.app.heal_views();
    Ok(seen
        .iter()
        .map(|c| Outcome {
            false_changes: c.len() as u64,
            ..Outcome::default()
        })
        .collect())
}

async fn private(rig: &Rig, args: &Args) -> anyhow::Result<Vec<Outcome>> {
    rig.app.set_private(true);
    let healthy = rig.watch(args.r53(120.0), |_| false).await;
    rig.app.set_down(true);
    let limit = args.r53(60.0) + rig.round * 20;
    let over = rig
        .watch(limit, |a| a.iter().all(|x| x == SECONDARY_IP))
        .await;
    Ok((0..NAMES.len())
        .map(|i| Outcome {
            false_changes: healthy[i].len() as u64,
            // A name already on the secondary "moves" nowhere: no time to report.
            to_secondary_ms: first_to(&over[i], SECONDARY_IP),
            ..Outcome::default()
        })
        .collect())
}

async fn flapping(rig: &Rig, args: &Args) -> anyhow::Result<Vec<Outcome>> {
    // Down 15 s, up 15 s (scaled), six times: shorter than three of Route 53's polls, longer
    // than one, and longer than the agents' fall_after.
    let half = args.r53(15.0);
    let mut changes = vec![0u64; NAMES.len()];
    for _ in 0..6 {
        for down in [true, false] {
            rig.app.set_down(down);
            let seen = rig.watch(half, |_| false).await;
            for (i, c) in seen.iter().enumerate() {
                changes[i] += c.len() as u64;
            }
        }
    }
    Ok(changes
        .into_iter()
        .map(|n| Outcome {
            flap_changes: n,
            ..Outcome::default()
        })
        .collect())
}

/// The emulator's state: the four failover names of the module docs.
fn state(app: SocketAddr, standby: SocketAddr, agents: &[SocketAddr]) -> model::State {
    let mut checks = Vec::new();
    let mut records = Vec::new();
    for t in [1u32, 3] {
        // Route 53 pointed straight at each app.
        let direct = |id: &str, at: SocketAddr| {
            let mut hc = model::HealthCheck::new(id, model::HealthCheckKind::Http);
            hc.ip_address = Some(at.ip());
            hc.port = Some(at.port());
            hc.resource_path = Some("/healthz".to_owned());
            hc.request_interval_s = 10;
            hc.failure_threshold = t;
            hc
        };
        let (dp, ds) = (
            format!("direct-t{t}-primary"),
            format!("direct-t{t}-secondary"),
        );
        checks.push(direct(&dp, app));
        checks.push(direct(&ds, standby));
        // quorumgate: a string-match check per agent, a calculated check over them.
        let mut calc = |check: &str| {
            let mut children = Vec::new();
            for (i, a) in agents.iter().enumerate() {
                let id = format!("quorum-t{t}-{check}-{i}");
                checks.push(model::HealthCheck::agent_health(&id, *a, check, t));
                children.push(id);
            }
            let id = format!("quorum-t{t}-{check}");
            checks.push(model::HealthCheck::calculated(&id, children, 2));
            id
        };
        let (qp, qs) = (calc("app"), calc("standby"));
        for (name, p, s) in [
            (format!("direct-t{t}.{ZONE}"), dp, ds),
            (format!("quorum-t{t}.{ZONE}"), qp, qs),
        ] {
            for (role, hc, ip) in [
                (model::FailoverRole::Primary, p.clone(), PRIMARY_IP),
                (model::FailoverRole::Secondary, s.clone(), SECONDARY_IP),
            ] {
                records.push(model::Record::failover_a(&name, role, ip, Some(&hc)));
            }
        }
    }
    model::State {
        health_checks: checks,
        zones: vec![model::Zone {
            id: "ZBENCH".to_owned(),
            name: ZONE.to_owned(),
            records,
        }],
    }
}
