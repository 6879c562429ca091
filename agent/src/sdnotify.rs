//! systemd's service notification protocol, spoken directly (no libsystemd): `READY=1` once the
//! first round is done, `WATCHDOG=1` from the main loop, `STOPPING=1` at shutdown, and
//! `STATUS=` lines for `systemctl status`.
//!
//! The protocol (sd_notify(3), sd_watchdog_enabled(3)):
//! - `NOTIFY_SOCKET` names a unix datagram socket: an absolute path, or an abstract socket when
//!   it starts with `@`. Each message is one datagram of newline-separated `KEY=VALUE` lines.
//!   Unset means no service manager listens: every call here is then a no-op.
//! - The watchdog is on when `WATCHDOG_USEC` is a positive integer and `WATCHDOG_PID` is unset
//!   or this process's pid (a child that inherited the variables must not ping for its
//!   parent). The manager then expects `WATCHDOG=1` at least every `WATCHDOG_USEC`; we send one
//!   every half of it.
//!
//! Sends never block the main loop: the socket is non-blocking, and a message that does not fit
//! is dropped with a debug log (the next ping follows within half the timeout).
//!
//! [`Notifier`] is the protocol; [`Lifecycle`] is the agent's use of it, driven by `run.rs`.
//! The watchdog ticks inside the main loop's `select!`, so a loop that stops turning stops the
//! pings and the service manager restarts the agent.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;
use std::time::Duration;

use quorum::{AgentId, State};
use tokio::time::{Interval, MissedTickBehavior};

use crate::node::Node;

/// The environment variables of the protocol, read once at start-up.
#[derive(Debug, Clone, Default)]
pub struct NotifyEnv<'a> {
    pub notify_socket: Option<&'a OsStr>,
    pub watchdog_usec: Option<&'a OsStr>,
    pub watchdog_pid: Option<&'a OsStr>,
}

/// A connection to the service manager's notification socket, or nothing.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// No service manager: every send is a no-op.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            socket: None,
            watchdog: None,
        }
    }

    /// From this process's environment. Invalid values are logged and disable the part they
    /// configure (a service manager always sets valid ones).
    #[must_use]
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var_os("WATCHDOG_USEC");
        let pid = std::env::var_os("WATCHDOG_PID");
        Self::from_vars(
            &NotifyEnv {
                notify_socket: socket.as_deref(),
                watchdog_usec: usec.as_deref(),
                watchdog_pid: pid.as_deref(),
            },
            std::process::id(),
        )
    }

    /// From explicit values; `own_pid` is compared with `WATCHDOG_PID`.
    #[must_use]
    pub fn from_vars(env: &NotifyEnv<'_>, own_pid: u32) -> Self {
        let Some(raw) = env.notify_socket else {
            return Self::disabled();
        };
        let socket = match connect(raw) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(notify_socket = ?raw, "systemd notification disabled: {e}");
                return Self::disabled();
            }
        };
        let watchdog = watchdog_timeout(env.watchdog_usec, env.watchdog_pid, own_pid)
            .unwrap_or_else(|e| {
                tracing::warn!("systemd watchdog disabled: {e}");
                None
            });
        Self {
            socket: Some(socket),
            watchdog,
        }
    }

    /// Whether a service manager listens.
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// The watchdog timeout, when the watchdog is on for this process.
    #[must_use]
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends one message (newline-separated `KEY=VALUE` lines); false if nothing was sent.
    pub fn send(&self, message: &str) -> bool {
        let Some((socket, addr)) = &self.socket else {
            return false;
        };
        match socket.send_to_addr(message.as_bytes(), addr) {
            Ok(_) => true,
            Err(e) => {
                tracing::debug!(message, "systemd notification not sent: {e}");
                false
            }
        }
    }
}

/// An unbound, non-blocking datagram socket and the address `NOTIFY_SOCKET` names.
fn connect(raw: &OsStr) -> Result<(UnixDatagram, SocketAddr), String> {
    let addr = socket_addr(raw)?;
    let socket = UnixDatagram::unbound().map_err(|e| format!("cannot create a socket: {e}"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the socket non-blocking: {e}"))?;
    Ok((socket, addr))
}

/// `NOTIFY_SOCKET` as an address: an absolute path, or `@name` for an abstract socket.
pub fn socket_addr(raw: &OsStr) -> Result<SocketAddr, String> {
    use std::os::unix::ffi::OsStrExt as _;
    let bytes = raw.as_bytes();
    match bytes.first() {
        Some(b'/') => SocketAddr::from_pathname(Path::new(raw))
            .map_err(|e| format!("NOTIFY_SOCKET is not a usable path: {e}")),
        Some(b'@') => abstract_addr(&bytes[1..]),
        _ => Err(format!(
            "NOTIFY_SOCKET must be an absolute path or start with '@', not {raw:?}"
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> Result<SocketAddr, String> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt as _;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt as _;
    SocketAddr::from_abstract_name(name)
        .map_err(|e| format!("NOTIFY_SOCKET is not a usable abstract name: {e}"))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> Result<SocketAddr, String> {
    Err("abstract sockets ('@…') exist only on Linux".to_owned())
}

/// sd_watchdog_enabled(3): the timeout when `usec` is a positive integer and `pid` is unset or
/// `own_pid`; `None` when the watchdog is off or meant for another process.
pub fn watchdog_timeout(
    usec: Option<&OsStr>,
    pid: Option<&OsStr>,
    own_pid: u32,
) -> Result<Option<Duration>, String> {
    let Some(usec) = usec else {
        return Ok(None);
    };
    let usec: u64 = usec
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|&u| u > 0)
        .ok_or_else(|| format!("WATCHDOG_USEC must be a positive integer, not {usec:?}"))?;
    if let Some(pid) = pid {
        let pid: u32 = pid
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("WATCHDOG_PID must be a positive integer, not {pid:?}"))?;
        if pid != own_pid {
            // Meant for another process (we inherited it): not ours to feed.
            return Ok(None);
        }
    }
    Ok(Some(Duration::from_micros(usec)))
}

/// The agent's side of the protocol, driven from the main loop.
#[derive(Debug)]
pub struct Lifecycle {
    notifier: Notifier,
    ready_sent: bool,
    last_status: String,
    watchdog: Option<Interval>,
}

impl Lifecycle {
    /// Call from inside the runtime: the watchdog's interval starts now (its first tick is
    /// immediate, so the first `WATCHDOG=1` goes out as soon as the main loop runs).
    #[must_use]
    pub fn new(notifier: Notifier) -> Self {
        let watchdog = notifier.watchdog_timeout().map(|timeout| {
            let period = (timeout / 2).max(Duration::from_millis(1));
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        });
        if let Some(timeout) = notifier.watchdog_timeout() {
            tracing::info!(
                timeout_ms = timeout.as_millis() as u64,
                "systemd watchdog on"
            );
        }
        Self {
            notifier,
            ready_sent: false,
            last_status: String::new(),
            watchdog,
        }
    }

    /// Resolves when the next `WATCHDOG=1` is due; never when the watchdog is off. Poll it only
    /// in the main loop's `select!`, next to the work it vouches for. Cancel-safe.
    pub async fn watchdog_due(&mut self) {
        match &mut self.watchdog {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }

    /// `WATCHDOG=1`: the main loop is turning.
    pub fn ping_watchdog(&self) {
        self.notifier.send("WATCHDOG=1");
    }

    /// A `STATUS=` line (sent only when it changed).
    pub fn status(&mut self, status: &str) {
        if status != self.last_status {
            self.notifier.send(&format!("STATUS={status}"));
            status.clone_into(&mut self.last_status);
        }
    }

    /// After every round: `READY=1` after the first one that left the node ready (exactly
    /// once), and the one-line summary as `STATUS=`.
    pub fn after_round(&mut self, node: &Node, live: &BTreeMap<AgentId, bool>) {
        self.note_round(node.ready(), &round_status(node, live));
    }

    fn note_round(&mut self, ready: bool, status: &str) {
        if ready && !self.ready_sent {
            // One datagram, so the status that comes with readiness is never seen without it.
            self.notifier.send(&format!("READY=1\nSTATUS={status}"));
            self.ready_sent = true;
            status.clone_into(&mut self.last_status);
            tracing::info!("ready (first round complete)");
        } else {
            self.status(status);
        }
    }

    /// `STOPPING=1`: shutdown has begun.
    pub fn stopping(&mut self) {
        self.notifier.send("STOPPING=1\nSTATUS=shutting down");
        "shutting down".clone_into(&mut self.last_status);
    }
}

/// What `systemctl status` shows after a round: live ballots and the checks' decisions.
fn round_status(node: &Node, live: &BTreeMap<AgentId, bool>) -> String {
    let cfg = node.config();
    let (mut healthy, mut unhealthy) = (0, 0);
    for check in &cfg.shared.checks {
        match node.health(&check.id).and_then(|h| h.decision) {
            Some(State::Healthy) => healthy += 1,
            Some(State::Unhealthy) => unhealthy += 1,
            None => {}
        }
    }
    let mut line = format!(
        "{}/{} members' ballots live (quorum {}); checks: {healthy} healthy, {unhealthy} unhealthy",
        live.values().filter(|l| **l).count(),
        cfg.shared.members.len(),
        cfg.shared.membership.quorum(),
    );
    // Without a wall-clock read here: the node answers for the moment of its last round.
    if let Some(at) = node.last_round_at() {
        if let Some(cause) = node.abstain_cause(at) {
            line.push_str(&format!("; abstaining: {}", cause.describe()));
        }
    }
    line
}

#[cfg(test)]
mod tests;
