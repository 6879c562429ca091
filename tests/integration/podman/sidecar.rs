//! The sidecar: see the tests below.
