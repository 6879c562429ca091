//! A network namespace that exists exactly as long as its [`Netns`] value.
//!
//! Made with `ip netns add` (so it is a named file under `/run/netns`, which `ip netns exec`
//! and `setns(2)` can both open), removed on drop after every process still inside it has been
//! SIGKILLed: a test that panics must not leave agents running in a namespace nobody can see.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};

/// Where `ip netns add` puts the namespace files.
const NETNS_DIR: &str = "/run/netns";

/// Fails with the install command when `ip` (iproute2) is missing; tests must not skip.
pub fn require_ip() -> anyhow::Result<()> {
    match std::process::Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => Ok(()),
        _ => bail!(
            "`ip` (iproute2) is required for network namespaces: run `bash scripts/test-deps.sh` \
             (or `apt-get install -y iproute2`), as root"
        ),
    }
}

/// Runs `ip <args>` and fails with its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A named network namespace with its loopback up; deleted (after killing what runs in it) on
/// drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `name`, replacing a stale namespace of the same name (a crashed earlier run).
    pub fn create(name: &str) -> anyhow::Result<Self> {
        require_ip()?;
        if name.is_empty() || name.len() > 32 || name.contains('/') {
            bail!("bad namespace name {name:?}");
        }
        let ns = Self {
            name: name.to_owned(),
        };
        if ns.path().exists() {
            ns.remove();
        }
        ip(&["netns", "add", name]).context("is this running as root?")?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, for `setns(2)`.
    #[must_use]
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(&self.name)
    }

    /// Runs `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// `ip netns exec <ns> <program>`: `ip` enters the namespace and execs the program, so the
    /// child's pid is the program's own (signals and `kill_on_drop` reach it).
    #[must_use]
    pub fn command(&self, program: impl AsRef<OsStr>) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ip");
        c.arg("netns").arg("exec").arg(&self.name).arg(program);
        c
    }

    /// Pids of the processes inside the namespace.
    #[must_use]
    pub fn pids(&self) -> Vec<i32> {
        pids_of(&self.name)
    }

    /// Moves the calling OS thread into this namespace (only this thread: `setns(2)` with
    /// `CLONE_NEWNET` is per thread). Sockets it creates afterwards live in the namespace.
    pub fn enter_current_thread(&self) -> anyhow::Result<()> {
        enter_path(&self.path())
    }

    fn remove(&self) {
        remove_named(&self.name);
    }
}

/// `setns(2)` the calling thread into the network namespace file at `path`.
pub(crate) fn enter_path(path: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into {}", path.display()))
}

fn pids_of(name: &str) -> Vec<i32> {
    std::process::Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills what runs in namespace `name` and deletes it.
fn remove_named(name: &str) {
    for pid in pids_of(name) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    // A killed process leaves the namespace when it is reaped; `ip netns del` only unmounts
    // the name, the kernel frees the namespace when its last user is gone.
    let _ = ip(&["netns", "del", name]);
}

/// Removes namespaces named `<prefix>-<pid in hex>-...` whose creating process is gone: what a
/// test run that was SIGKILLed (so its drops never ran) left behind.
pub fn sweep_orphans(prefix: &str) {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|p| u32::from_str_radix(p, 16).ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            remove_named(&name);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.remove();
    }
}
