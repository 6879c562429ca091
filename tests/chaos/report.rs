//! One JSON row per scenario in `target/chaos-report/<scenario>.json`, read by
//! tests/chaos/summary.py for the one-screen summary.
//!
//! A [`Row`] is written when dropped: a scenario that panics still leaves its row, with
//! verdict `fail` and whatever it had measured, so the summary shows it.

#![allow(dead_code)] // Each scenario fills a different part of the row.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    /// Route 53 / decision flips the scenario expects, and how many it saw.
    pub flips_expected: u64,
    pub flips_seen: u64,
    /// Decision transitions per agent id (from the audit logs).
    pub transitions: BTreeMap<String, u64>,
    /// Ballots rejected, by reason, summed over the agents.
    pub rejected: BTreeMap<String, u64>,
    /// A few words on what was checked (the summary prints them).
    pub notes: Vec<String>,
    pub duration_ms: u64,
    /// `pass` or `fail`.
    pub verdict: String,
    #[serde(skip)]
    started: Instant,
    #[serde(skip)]
    passed: bool,
}

impl Row {
    #[must_use]
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            flips_expected: 0,
            flips_seen: 0,
            transitions: BTreeMap::new(),
            rejected: BTreeMap::new(),
            notes: Vec::new(),
            duration_ms: 0,
            verdict: "fail".to_owned(),
            started: Instant::now(),
            passed: false,
        }
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Marks the scenario passed; the row is written on drop.
    pub fn pass(mut self) {
        self.passed = true;
    }

    fn dir() -> PathBuf {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            )
            .join("chaos-report")
    }
}

impl Drop for Row {
    fn drop(&mut self) {
        self.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.verdict = if self.passed { "pass" } else { "fail" }.to_owned();
        let dir = Self::dir();
        let path = dir.join(format!("{}.json", self.scenario));
        let written = std::fs::create_dir_all(&dir).and_then(|()| {
            let json = serde_json::to_vec_pretty(&*self).map_err(std::io::Error::other)?;
            std::fs::write(&path, json)
        });
        if let Err(e) = written {
            eprintln!(
                "could not write the chaos report row {}: {e}",
                path.display()
            );
        }
    }
}
