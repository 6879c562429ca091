//! The chaos suite (issue 6): real `quorumgate` agents in separate network namespaces, one per
//! region, linked through a user-space relay in a hub namespace (quorumgate-testkit) that adds
//! inter-region latency and cuts links. Each scenario is bounded in time and asserts what the
//! gate did and did not do; each writes a row to `target/chaos-report/`, and
//! tests/chaos/summary.py prints them as one table (scripts/test.sh runs it).
//!
//! Needs root, iproute2 and libfaketime (`bash scripts/test-deps.sh`). Runs one test at a time
//! (nextest group `chaos`): each starts three agents, and on a small machine two clusters at
//! once only add noise to their timing.

mod dns;
mod report;
mod rig;
// Scenarios 4, 6, 7: a byzantine member (test code only) and a Route 53 gate on the rig.
mod byzantine_member;
mod gate;

mod asymmetric;
mod byzantine;
mod crash;
mod failure_noise;
mod minority;
mod skew;
mod smoke;
mod target_partition;
