//! `quorumgate check` (one config, or a whole cluster's) and `quorumgate keygen`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use config::Config;

use crate::{keys, tls};

/// `quorumgate check`: one config, or (`all_members`) every member's config of a cluster.
pub fn check(config: Option<&Path>, all_members: &[PathBuf], skip_files: bool) -> ExitCode {
    if !all_members.is_empty() {
        return check_all_members(all_members, skip_files);
    }
    let Some(path) = config else {
        eprintln!("give --config FILE or --all-members DIR");
        return ExitCode::FAILURE;
    };
    if check_one(path, skip_files).is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Checks one config (and its files): prints `ok` with its warnings, or every problem.
fn check_one(path: &Path, skip_files: bool) -> Option<Config> {
    let cfg = match Config::load(Some(path)) {
        Ok(cfg) => cfg,
        Err(mut errors) => {
            // The files too, as far as an invalid config names them: one run, every problem.
            if !skip_files {
                let files = crate::filecheck::check_named_files(&config::local_files(path));
                errors.errors.extend(files.errors);
            }
            eprintln!(
                "{}: {} problem(s):\n{errors}",
                path.display(),
                errors.errors.len()
            );
            return None;
        }
    };
    let files = if skip_files {
        crate::filecheck::FileReport::default()
    } else {
        {
            use crate::clock::Clock as _;
            crate::filecheck::check_files(&cfg, crate::clock::SystemClock::default().now())
        }
    };
    if !files.errors.is_empty() {
        let errors = config::ConfigErrors {
            errors: files.errors,
        };
        eprintln!(
            "{}: {} problem(s) with the files it names:\n{errors}",
            path.display(),
            errors.errors.len()
        );
        return None;
    }
    println!(
        "{}: ok — cluster {}, {} members (quorum {}), {} checks, this agent {}, config digest {}{}",
        path.display(),
        cfg.shared.cluster.name,
        cfg.shared.members.len(),
        cfg.shared.membership.quorum(),
        cfg.shared.checks.len(),
        cfg.local.agent_id,
        cfg.digest,
        if skip_files {
            " (files not checked)"
        } else {
            ""
        }
    );
    for w in cfg.warnings.iter().chain(&files.warnings) {
        println!("  warning: {}: {} (fix: {})", w.path, w.problem, w.fix);
    }
    Some(cfg)
}

/// The config files `args` name: files as given, directories' `*.toml` (and their
/// subdirectories' `*.toml`), sorted.
fn config_files(args: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    fn tomls(dir: &Path, depth: u8, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for p in entries {
            if p.is_dir() && depth > 0 {
                tomls(&p, depth - 1, out)?;
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for a in args {
        if a.is_dir() {
            tomls(a, 1, &mut out)?;
        } else {
            out.push(a.clone());
        }
    }
    Ok(out)
}

/// `check --all-members`: every file on its own, then the cluster: one digest, one config per
/// member.
fn check_all_members(args: &[PathBuf], skip_files: bool) -> ExitCode {
    let files = match config_files(args) {
        Ok(f) if !f.is_empty() => f,
        Ok(_) => {
            eprintln!("no *.toml config files in the paths given");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("cannot list the config files: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut ok = true;
    let mut valid: Vec<(PathBuf, Config)> = Vec::new();
    for f in &files {
        match check_one(f, skip_files) {
            Some(cfg) => valid.push((f.clone(), cfg)),
            None => ok = false,
        }
    }
    let mut problems: Vec<String> = Vec::new();
    if let Some((first_path, first)) = valid.first() {
        for (p, c) in &valid[1..] {
            if c.digest != first.digest {
                problems.push(format!(
                    "{}: its shared part (digest {}) differs from {}'s (digest {}): the agents would reject each other's ballots (config_drift); make [cluster], [[members]], [[checks]], [[gates]] and [[operators]] identical",
                    p.display(),
                    c.digest,
                    first_path.display(),
                    first.digest
                ));
            }
        }
        for m in &first.shared.members {
            let with: Vec<&Path> = valid
                .iter()
                .filter(|(_, c)| c.local.agent_id == m.id)
                .map(|(p, _)| p.as_path())
                .collect();
            match with.as_slice() {
                [_] => {}
                [] if ok => problems.push(format!(
                    "member {} has no config among these files: add one with [local] agent_id = \"{}\"",
                    m.id, m.id
                )),
                [] => {}
                several => problems.push(format!(
                    "member {} has {} configs ({}): give each host its own agent_id",
                    m.id,
                    several.len(),
                    several
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            }
        }
    }
    for p in &problems {
        eprintln!("cluster: {p}");
    }
    if ok && problems.is_empty() {
        println!(
            "cluster: ok — {} configs, one per member, config digest {}",
            valid.len(),
            valid
                .first()
                .map(|(_, c)| c.digest.to_string())
                .unwrap_or_default()
        );
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `quorumgate keygen --public-key FILE`: the public key of an existing key file, in the form
/// `[[members]].public_key` (or `[[operators]].public_key`) takes.
pub fn public_key(key_file: &Path) -> anyhow::Result<()> {
    let key = keys::load_signing_key(key_file)?;
    println!(
        "public_key = \"{}\"",
        keys::public_key_base64(&key.verifying_key())
    );
    Ok(())
}

/// `quorumgate keygen`.
pub fn keygen(out: &Path, tls_dir: Option<&Path>, names: &[String]) -> anyhow::Result<()> {
    let key = keys::generate().context("the operating system's random source failed")?;
    keys::write_signing_key(out, &key)?;
    println!("wrote {} (keep it secret)", out.display());
    println!(
        "public_key = \"{}\"",
        keys::public_key_base64(&key.verifying_key())
    );
    if let Some(dir) = tls_dir {
        tls::install_crypto_provider();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let pki = tls::generate_dev_pki(dir, &names)?;
        println!(
            "wrote development CA {} and certificates for {}",
            pki.ca_file.display(),
            names.join(", ")
        );
    }
    Ok(())
}
