//! Test-only kit for the chaos suite and the end-to-end benches: regions as network
//! namespaces, a user-space relay between them that adds latency and cuts links, and runners
//! that execute futures inside a namespace.
//!
//! Everything here needs root and iproute2 (`bash scripts/test-deps.sh`); only addresses
//! inside namespaces the kit creates (and their loopbacks) are ever used.
//!
//! - [`emulator`]: where the strict Route 53 emulator is, and its clients' environment.
//! - [`netns`]: one RAII network namespace.
//! - [`topology`]: a hub namespace plus one namespace per region, linked by veth pairs.
//! - [`relay`]: the hub's relay, the only path between regions: latency, cuts, counters.
//! - [`hub`]: threads inside a namespace running futures (`Topology::in_hub`, `in_region`).
//! - [`dataplane`]: an emulated Route 53 data plane (health checkers, health rules, an
//!   authoritative DNS server) on loopback; needs neither root nor namespaces.
#![forbid(unsafe_code)]

pub mod dataplane;
pub mod emulator;
pub mod hub;
pub mod netns;
pub mod relay;
pub mod stall;
pub mod topology;

pub use relay::{Home, LinkStats, Relay};
pub use topology::{region_addr, Topology};
