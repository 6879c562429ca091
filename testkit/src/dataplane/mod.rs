//! An emulated Route 53 *data plane*, for tests, the demo and benchmarks (work in progress:
//! the state's types and the documented rules).

pub mod model;
pub mod rules;

pub use model::State;
