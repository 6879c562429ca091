//! `quorumgate verify`: a decision certificate, or a whole audit log.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use config::Config;

use crate::audit::verify::{Sealed, Summary};

/// `quorumgate verify --audit`.
pub fn verify_audit(config: &Path, audit: &Path) -> anyhow::Result<ExitCode> {
    let cfg = load_for_verify(config)?;
    let operators: Vec<_> = cfg
        .shared
        .operators
        .iter()
        .map(|o| (o.id.clone(), o.public_key))
        .collect();
    let trust = crate::audit::Trust {
        membership: &cfg.shared.membership,
        digest: &cfg.digest,
        skew_ms: cfg.shared.cluster.max_clock_skew_ms,
        operators: &operators,
    };
    match crate::audit::verify_file(audit, &trust) {
        Ok(s) => {
            print!("{}", audit_report(&s));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// What `verify --audit` prints for a log that verifies: the counts, how its end is sealed
/// (warnings, not errors: a crash leaves an unsealed tail) and any torn tail.
#[must_use]
pub fn audit_report(s: &Summary) -> String {
    let mut out = format!(
        "VALID: {} records in {} file(s), hash chain intact, {} certificates and {} operator commands verified, {} signed checkpoints verified\n",
        s.records, s.files, s.certificates, s.commands, s.checkpoints
    );
    if s.first_seq > 0 {
        out.push_str(&format!(
            "note: the oldest kept record is seq {} (older files were rotated away)\n",
            s.first_seq
        ));
    }
    match (s.sealed, s.unsealed) {
        (Sealed::Shutdown, _) => out.push_str(&format!(
            "sealed: the last record is a signed shutdown checkpoint (seq {})\n",
            s.last_checkpoint.unwrap_or_default()
        )),
        (Sealed::Periodic, 0) => out.push_str(&format!(
            "sealed: the last record is a signed checkpoint (seq {}), not a shutdown one: the agent is running or stopped without a clean shutdown\n",
            s.last_checkpoint.unwrap_or_default()
        )),
        (Sealed::Periodic, k) => out.push_str(&format!(
            "WARNING: unsealed tail: {k} records after the last checkpoint (seq {}); records cut off after it would not be noticed (a crash also leaves such a tail)\n",
            s.last_checkpoint.unwrap_or_default()
        )),
        (Sealed::Never, k) => out.push_str(&format!(
            "WARNING: unsealed tail: {k} records and no checkpoint: records cut off the end would not be noticed\n"
        )),
    }
    for r in &s.torn_repairs {
        out.push_str(&format!("torn tail repaired at a start: {r}\n"));
    }
    if let Some(t) = &s.torn_now {
        out.push_str(&format!(
            "WARNING: torn last line, not a record ({t}): being written now, or left by a crash; the agent cuts it off (keeping its bytes) at its next start\n"
        ));
    }
    out
}

fn load_for_verify(config: &Path) -> anyhow::Result<Config> {
    Config::load(Some(config))
        .map_err(|e| anyhow::anyhow!("{}: config problems:\n{e}", config.display()))
}

/// `quorumgate verify --cert`.
pub fn verify(config: &Path, cert: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_for_verify(config)?;
    let text = match cert.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?,
        None => cert.to_owned(),
    };
    let bytes = STANDARD
        .decode(text.trim())
        .context("the certificate is not base64")?;
    let skew = cfg.shared.cluster.max_clock_skew_ms;
    match quorum::verify_certificate(&bytes, &cfg.shared.membership, Some(&cfg.digest), skew) {
        Ok(v) => {
            let agents: Vec<&str> = v.agents.iter().map(quorum::AgentId::as_str).collect();
            println!(
                "VALID: check {} was {} by quorum ({} of {} members: {}), config digest {}, ballots live together {}..{} (unix ms)",
                v.check,
                v.outcome.as_str(),
                agents.len(),
                cfg.shared.membership.len(),
                agents.join(", "),
                v.config_digest,
                v.valid_from.0,
                v.valid_until.0
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_report_names_the_unsealed_tail_and_a_clean_seal() {
        let tail = Summary {
            records: 9,
            files: 1,
            checkpoints: 1,
            unsealed: 3,
            last_checkpoint: Some(5),
            sealed: Sealed::Periodic,
            ..Summary::default()
        };
        let text = audit_report(&tail);
        assert!(
            text.contains("WARNING: unsealed tail: 3 records after the last checkpoint (seq 5)"),
            "{text}"
        );
        let clean = Summary {
            unsealed: 0,
            last_checkpoint: Some(9),
            sealed: Sealed::Shutdown,
            ..tail
        };
        let text = audit_report(&clean);
        assert!(
            text.contains("sealed: the last record is a signed shutdown checkpoint (seq 9)"),
            "{text}"
        );
        assert!(!text.contains("WARNING"), "{text}");
    }
}
