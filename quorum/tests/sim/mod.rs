//! A deterministic simulation of a whole cluster of gate machines against a simulated
//! Route 53 (see `simulation.rs` for what it checks and how to run it).
//!
//! Everything happens on one simulated clock, in the order of a seeded event queue: each
//! agent's rounds (its clock skewed), the quorum's decisions as each agent sees them (with a
//! lag), Route 53 requests with latency, throttling, PriorRequestNotComplete, lost requests,
//! lost responses, late arrivals and SDK retries of a batch that had landed, audit appends
//! that fail or are lost in a crash, crashes and restarts from the persisted log, database
//! promotions, and operator commands. The invariants are checked after every step.

pub mod route53;
mod world;

pub use world::{run, Report};

/// SplitMix64: small, fast, and the same on every machine.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `per_mille` / 1000.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.next_u64() % 1000 < per_mille
    }

    pub fn pick(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % n as u64).unwrap_or(0)
    }
}
