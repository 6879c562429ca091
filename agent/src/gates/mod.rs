//! Gates at run time: the agent's side of DESIGN §5 and §6.
//!
//! - [`records`]: a gate's Route 53 records as a pure function of its config and state.
pub mod driver;
pub mod promote;
pub mod records;

pub use driver::{CommandError, CommandOutcome, DriverOptions, GateDriver};
