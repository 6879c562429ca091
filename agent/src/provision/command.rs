//! The `plan` and `provision` subcommands: load the config, build the Route 53 client from
//! `[local.route53]` (credentials from the standard AWS chain), plan, print, apply.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use config::{Config, Route53Local};

use super::plan::{plan, Options, WRITER_ID};
use super::{apply, render, terraform};
use crate::route53::{Route53Api, SdkOptions, SdkRoute53, WriterOptions};

/// `plan --detailed-exitcode`: like terraform's, 2 when there are changes.
pub const EXIT_CHANGES: u8 = 2;

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(Some(path)).map_err(|e| {
        anyhow::anyhow!(
            "{}: {} config problem(s):\n{e}",
            path.display(),
            e.errors.len()
        )
    })
}

/// Writer options from `[local.route53]`, writing as [`WRITER_ID`].
#[must_use]
pub fn options(r: &Route53Local) -> Options {
    Options {
        writer_id: WRITER_ID.to_owned(),
        writer: WriterOptions {
            insync_timeout: Duration::from_millis(r.insync_timeout_ms),
            ..WriterOptions::default()
        },
    }
}

async fn client(cfg: &Config) -> Arc<dyn Route53Api> {
    Arc::new(SdkRoute53::load(SdkOptions::from_config(&cfg.local.route53)).await)
}

/// `quorumgate plan`: prints the plan, changes nothing. Exit 0, or with `detailed_exitcode`
/// 0 (no changes) / 2 (changes); errors are 1.
pub async fn plan_command(path: &Path, detailed_exitcode: bool) -> anyhow::Result<ExitCode> {
    let cfg = load(path)?;
    let api = client(&cfg).await;
    let p = plan(api, &cfg.shared, &options(&cfg.local.route53)).await?;
    print!("{}", render::plan(&p));
    Ok(if detailed_exitcode && p.has_changes() {
        ExitCode::from(EXIT_CHANGES)
    } else {
        ExitCode::SUCCESS
    })
}

/// `quorumgate provision`: plans, prints the plan, applies it.
pub async fn provision_command(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let api = client(&cfg).await;
    let opts = options(&cfg.local.route53);
    let p = plan(api.clone(), &cfg.shared, &opts).await?;
    print!("{}", render::plan(&p));
    if !p.has_changes() {
        println!("Nothing to do.");
        return Ok(());
    }
    println!("\nApplying:");
    let done = apply(api, &p, &opts).await?;
    print!("{}", render::applied(&done));
    Ok(())
}

/// `quorumgate provision --terraform`: prints HCL; reads the config only.
pub fn terraform_command(path: &Path) -> anyhow::Result<()> {
    let cfg = load(path)?;
    let desired = super::desired::desired(&cfg.shared).map_err(super::ProvisionError::Model)?;
    print!("{}", terraform::render(&desired)?);
    Ok(())
}
