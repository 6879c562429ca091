//! Gates at run time: the agent's side of the safety rules and the fenced writer (README,
//! "Gates"; ARCHITECTURE.md).
//!
//! - [`records`]: a gate's Route 53 records as a pure function of its config and state.
//! - [`dataplane`]: what Route 53 serves for a data-plane gate by the quorum's decisions.
pub mod dataplane;
pub mod driver;
pub mod promote;
pub mod records;

pub use driver::{CommandError, CommandOutcome, DriverOptions, GateDriver};
