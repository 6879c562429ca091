//! Fixtures for the criterion benches of the `quorum` crate (`benches/quorum.rs`).
//!
//! A cluster of members with keys from fixed seeds, ballots of any number of observations
//! with a realistic mix of statuses, and books and engines holding one live ballot per
//! member. Everything is deterministic, so runs are comparable.
//!
//! [`stats`]: median and p95 for the end-to-end bench (`benches/failover_e2e`).

#![forbid(unsafe_code)]

pub mod stats;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use serde_json::Value;

use quorum::{
    AgentId, Ballot, BallotBook, BookConfig, CheckId, ConfigDigest, DecisionPolicy, Engine, Member,
    Membership, Observation, Reason, SignedBallot, SigningKey, Status, UnixMillis,
};

/// The digest every fixture ballot is made under.
pub const DIGEST: ConfigDigest = ConfigDigest([0x5a; 32]);
/// The instant ballots are issued and received (and tallied).
pub const NOW: UnixMillis = UnixMillis(1_700_000_000_000);
/// How long a ballot counts.
pub const VALID_MS: u32 = 15_000;
/// Clock skew allowance of the books.
pub const SKEW_MS: u64 = 2_000;

/// N members `m0`… with keys seeded `[i+1; 32]`.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub ids: Vec<AgentId>,
    pub keys: Vec<SigningKey>,
    pub membership: Membership,
}

impl Cluster {
    /// # Panics
    /// If `n` is 0 or above 255.
    #[must_use]
    pub fn new(n: usize) -> Self {
        let ids: Vec<AgentId> = (0..n)
            .map(|i| AgentId::new(format!("m{i}")).expect("valid id"))
            .collect();
        let keys: Vec<SigningKey> = (0..n)
            .map(|i| SigningKey::from_bytes(&[u8::try_from(i + 1).expect("n <= 255"); 32]))
            .collect();
        let members = ids
            .iter()
            .zip(&keys)
            .map(|(id, key)| Member {
                id: id.clone(),
                region: format!("region-{id}"),
                key: key.verifying_key(),
            })
            .collect();
        Self {
            ids,
            keys,
            membership: Membership::new(members).expect("valid membership"),
        }
    }

    /// An empty book with the fixture receipt policy.
    #[must_use]
    pub fn book(&self) -> BallotBook {
        BallotBook::new(self.membership.clone(), book_config())
    }

    /// Member `member`'s ballot with sequence number `seq` over `checks`, issued at [`NOW`].
    ///
    /// Votes mix statuses: every tenth check is down (members 0–3 say Unhealthy, the others
    /// abstain); otherwise member i says Unhealthy for check j when (i + j) % 7 == 0,
    /// abstains when it is 1, else Healthy. With 5 members every check is decided.
    #[must_use]
    pub fn ballot(&self, member: usize, seq: u64, checks: &[CheckId]) -> Ballot {
        let observations = checks
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let (status, reason) = match (member + j) % 7 {
                    _ if j % 10 == 0 && member < 4 => (Status::Unhealthy, "connect_refused"),
                    _ if j % 10 == 0 => (Status::Abstain, "control_failed"),
                    0 => (Status::Unhealthy, "timeout"),
                    1 => (Status::Abstain, "control_failed"),
                    _ => (Status::Healthy, "ok"),
                };
                let o = Observation::new(
                    c.clone(),
                    status,
                    Reason::new(reason).expect("valid reason"),
                    u32::try_from(j % 500).expect("small"),
                    NOW.minus(250),
                );
                if j % 4 == 0 {
                    o.with_lag_ms(1_200).with_detail("status=200")
                } else {
                    o
                }
            })
            .collect();
        Ballot::new(
            self.ids[member].clone(),
            seq,
            NOW,
            VALID_MS,
            DIGEST,
            observations,
        )
        .expect("valid ballot")
    }

    /// The signed wire form of [`ballot`](Self::ballot).
    #[must_use]
    pub fn wire(&self, member: usize, seq: u64, checks: &[CheckId]) -> Vec<u8> {
        SignedBallot::sign(&self.ballot(member, seq, checks), &self.keys[member]).to_wire()
    }

    /// A book holding one live ballot of every member over `checks`.
    ///
    /// # Panics
    /// If the book refuses a fixture ballot (a bug in the fixture or the crate).
    #[must_use]
    pub fn full_book(&self, checks: &[CheckId]) -> BallotBook {
        let mut book = self.book();
        for m in 0..self.ids.len() {
            book.handle_ballot(NOW, &self.wire(m, 1, checks))
                .expect("fixture ballot accepted");
        }
        book
    }

    /// An engine with one default-policy machine per check, holding one live ballot of
    /// every member over `checks`.
    ///
    /// # Panics
    /// If the engine refuses a fixture ballot.
    #[must_use]
    pub fn full_engine(&self, checks: &[CheckId]) -> Engine {
        let machines = checks
            .iter()
            .map(|c| (c.clone(), DecisionPolicy::default()));
        let mut engine = Engine::new(self.membership.clone(), book_config(), machines, NOW);
        for m in 0..self.ids.len() {
            engine
                .handle_ballot(NOW, &self.wire(m, 1, checks))
                .expect("fixture ballot accepted");
        }
        engine
    }
}

/// The fixture receipt policy: 16 MiB ballots, [`SKEW_MS`], [`DIGEST`].
#[must_use]
pub fn book_config() -> BookConfig {
    BookConfig {
        max_ballot_bytes: 16 * 1024 * 1024,
        max_clock_skew_ms: SKEW_MS,
        max_valid_for_ms: u64::from(VALID_MS),
        config_digest: DIGEST,
    }
}

/// `n` check ids, `check-00000`…, already in canonical (sorted) order.
///
/// # Panics
/// Never for `n` below 10^10.
#[must_use]
pub fn checks(n: usize) -> Vec<CheckId> {
    (0..n)
        .map(|i| CheckId::new(format!("check-{i:05}")).expect("valid id"))
        .collect()
}

/// Builds the agent binary (release) through cargo and returns its path; `QUORUMGATE_BIN`
/// names a prebuilt one instead. Blocking: call before the runtime starts.
pub fn agent_binary() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("QUORUMGATE_BIN") {
        let p = PathBuf::from(p);
        anyhow::ensure!(p.is_file(), "QUORUMGATE_BIN={} is not a file", p.display());
        return Ok(p);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    // The bench profile (the release settings) reuses the library `cargo bench` just built,
    // so only the binary is linked; `--release` would compile the whole tree a second time.
    eprintln!("building the agent: cargo build --profile bench -p quorumgate --bin quorumgate");
    let out = std::process::Command::new(&cargo)
        .args([
            "build",
            "--profile",
            "bench",
            "-p",
            "quorumgate",
            "--bin",
            "quorumgate",
        ])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", PathBuf::from(&cargo).display()))?;
    anyhow::ensure!(
        out.status.success(),
        "cargo build --profile bench -p quorumgate failed ({})",
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-artifact" && v["target"]["name"] == "quorumgate")
        .find_map(|v| v["executable"].as_str().map(PathBuf::from))
        .context("cargo build reported no quorumgate executable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quorum::{tally_all, Outcome};

    #[test]
    fn fixtures_decide_most_checks() {
        let cluster = Cluster::new(5);
        let checks = checks(70);
        let book = cluster.full_book(&checks);
        assert_eq!(book.live(NOW).count(), 5);
        let verdicts = tally_all(&book, &checks, NOW);
        let decided = verdicts
            .iter()
            .filter(|v| v.outcome != Outcome::NoQuorum)
            .count();
        // Down checks: four Unhealthy votes; the others: at most one Unhealthy and one
        // Abstain of five, so Healthy (Q = 3).
        assert_eq!(decided, 70);
        let down = verdicts
            .iter()
            .filter(|v| v.outcome == Outcome::Unhealthy)
            .count();
        assert_eq!(down, 7);
        assert!(verdicts.iter().all(|v| v.certificate.is_some()));
    }
}
