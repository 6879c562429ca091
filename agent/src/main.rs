//! The `quorumgate` binary: parses the command line and hands off to the library.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser as _;
use quorumgate::cli::{self, Cli, Command};
use quorumgate::clock::SystemClock;
use quorumgate::operator_cli::{self, Requested};
use quorumgate::run::{self, AgentParts};
use quorumgate::sdnotify::Notifier;
use quorumgate::{demo, provision, telemetry};
use tokio_util::sync::CancellationToken;

/// jemalloc rather than glibc malloc. glibc gives every thread that allocates an arena of its
/// own and keeps freed memory in each; at 1,000 HTTP checks (probes on the runtime's worker
/// threads, one render per scrape) that held ~5 MiB more than jemalloc, whose arenas hand
/// dirty pages back after a decay. Its options are compiled in from `.cargo/config.toml`.
/// Figures: benches/README.md, "`/metrics` render and memory at 1,000 checks".
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Init {
            out,
            members,
            checks,
            name,
            operator,
            round_interval,
            install_dir,
            state_dir,
        } => report(
            quorumgate::init::init(&quorumgate::init::InitSpec {
                out,
                name,
                members,
                checks,
                operator,
                round_interval,
                install_dir,
                state_dir,
            })
            .map(|b| {
                for (id, config) in &b.configs {
                    println!("wrote {id}'s config {}", config.display());
                }
                println!(
                    "wrote the operator key {} and the development CA {}; next: each directory's README.md",
                    b.operator_key.display(),
                    b.ca_file.display()
                );
            }),
        ),
        Command::Check {
            config,
            all_members,
            skip_files,
        } => cli::check(config.as_deref(), &all_members, skip_files),
        Command::Keygen {
            out,
            public_key,
            tls_dir,
            names,
        } => report(match (out, public_key) {
            (_, Some(key_file)) => cli::public_key(&key_file),
            (Some(out), None) => cli::keygen(&out, tls_dir.as_deref(), &names),
            (None, None) => Err(anyhow::anyhow!("give --out FILE or --public-key FILE")),
        }),
        Command::Verify {
            config,
            cert,
            audit,
        } => match (cert, audit) {
            (Some(cert), _) => cli::verify(&config, &cert),
            (None, Some(audit)) => cli::verify_audit(&config, &audit),
            (None, None) => Err(anyhow::anyhow!("give --cert or --audit")),
        }
        .unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }),
        Command::Status {
            url,
            ca_file,
            cert_file,
            key_file,
            json,
        } => {
            let identity = cert_file.as_deref().zip(key_file.as_deref());
            report(
                runtime().and_then(|rt| {
                    rt.block_on(cli::status(&url, ca_file.as_deref(), identity, json))
                }),
            )
        }
        Command::Agent { config } => report(runtime().and_then(|rt| rt.block_on(agent(&config)))),
        Command::Freeze { args } => operator(&args, Requested::Freeze),
        Command::Unfreeze { args } => operator(&args, Requested::Unfreeze),
        Command::Approve { args, to } => operator(&args, Requested::Approve { to }),
        Command::Override {
            args,
            active,
            weights,
            force,
        } => operator(
            &args,
            Requested::Override {
                active,
                weights,
                force,
            },
        ),
        Command::Drill { args } => {
            exit(runtime().and_then(|rt| rt.block_on(quorumgate::drill::command::run(&args))))
        }
        Command::Resend {
            config,
            file,
            agent_urls,
        } => exit(
            runtime().and_then(|rt| rt.block_on(operator_cli::resend(&config, &file, &agent_urls))),
        ),
        Command::Plan {
            config,
            detailed_exitcode,
        } => exit(runtime().and_then(|rt| {
            rt.block_on(provision::command::plan_command(&config, detailed_exitcode))
        })),
        Command::Provision {
            config,
            terraform: true,
        } => report(provision::command::terraform_command(&config)),
        Command::Provision {
            config,
            terraform: false,
        } => report(
            runtime().and_then(|rt| rt.block_on(provision::command::provision_command(&config))),
        ),
        Command::Demo { fast, dir } => {
            report(runtime().and_then(|rt| rt.block_on(demo::run(fast, dir))))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn operator(args: &operator_cli::OperatorArgs, requested: Requested) -> ExitCode {
    exit(runtime().and_then(|rt| rt.block_on(operator_cli::run(args, requested))))
}

fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|e| {
        eprintln!("error: {e:#}");
        ExitCode::FAILURE
    })
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn agent(path: &std::path::Path) -> anyhow::Result<()> {
    let config = config::Config::load(Some(path)).map_err(|e| {
        anyhow::anyhow!(
            "{}: {} config problem(s):\n{e}",
            path.display(),
            e.errors.len()
        )
    })?;
    telemetry::install_logging(config.local.log_format, &config.local.log_level);
    let metrics = telemetry::install_metrics()?;
    telemetry::init_counters(&config);
    // `install_recorder` starts no upkeep task: without one, every histogram sample (one per
    // probe) stays queued until the next /metrics render, so an agent nobody scrapes grows
    // without bound (about 8 bytes per probe).
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    metrics::gauge!(telemetry::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "config_digest" => config.digest.to_hex())
        .set(1.0);
    let listener = tokio::net::TcpListener::bind(config.local.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on local.listen = {}: {e}",
                config.local.listen
            )
        })?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        run::shutdown_signal().await;
        trigger.cancel();
    });
    run::run(AgentParts {
        config,
        clock: Arc::new(SystemClock::default()),
        listener,
        shutdown,
        metrics: Some(metrics),
        notify: Notifier::from_env(),
    })
    .await
}
