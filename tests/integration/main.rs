//! Integration tests: real `quorumgate` processes on 127.0.0.1, a real HTTP target.
//!
//! Every wait is bounded ([`support::wait_until`]) and polls a condition; nothing sleeps to
//! synchronise. Time bounds are generous: these tests check behaviour, the benches time it.

mod support;

mod audit;
mod ballots;
mod body_budget;
mod cli;
mod cluster;
mod container;
mod db;
mod deploy;
mod disk_stall;
mod exposition;
mod flood;
mod load;
mod packaging;
mod podman;
mod rds;
mod restart;
mod route53;
mod systemd;
mod votes;
