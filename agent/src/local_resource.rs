//! Errors that say this agent ran out of something of its own — descriptors, socket buffers,
//! memory, ephemeral ports — rather than anything about the target.
//!
//! A probe or peer call that fails this way has measured the agent, not the application: it
//! becomes an abstention with reason [`REASON`], never an Unhealthy vote (`Node::votes`), and it
//! makes the agent abstain on every check for a while, because its other failures may have the
//! same cause.

use std::error::Error;
use std::io;

/// The reason code of such a failure (a metric label, a vote's reason).
pub const REASON: &str = "local_resource";

/// `EMFILE`, `ENFILE` (descriptors), `ENOBUFS`, `ENOMEM` (kernel or process memory),
/// `EADDRNOTAVAIL` (no free ephemeral port for a connect), or an out-of-memory error.
#[must_use]
pub fn is_local_io(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM | libc::EADDRNOTAVAIL)
    ) || e.kind() == io::ErrorKind::OutOfMemory
}

/// Whether `e` or anything in its source chain (including errors wrapped inside an
/// `io::Error`) is a local resource error.
#[must_use]
pub fn in_chain(e: &(dyn Error + 'static)) -> bool {
    let mut cur = Some(e);
    // Chains are short; the bound only guards against a cyclic `source()`.
    for _ in 0..32 {
        let Some(err) = cur else { return false };
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if is_local_io(io) {
                return true;
            }
            // `io::Error::source` skips a wrapped error itself; look at it directly.
            if io.get_ref().is_some_and(|inner| in_chain(inner)) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] io::Error);

    #[test]
    fn descriptor_memory_and_port_exhaustion_are_local() {
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EADDRNOTAVAIL,
        ] {
            let e = io::Error::from_raw_os_error(code);
            assert!(is_local_io(&e), "{e}");
            assert!(in_chain(&Wrapper(io::Error::from_raw_os_error(code))));
            let nested = io::Error::other(Wrapper(io::Error::from_raw_os_error(code)));
            assert!(in_chain(&nested), "wrapped inside an io::Error");
        }
    }

    #[test]
    fn the_targets_failures_are_not_local() {
        for code in [
            libc::ECONNREFUSED,
            libc::ECONNRESET,
            libc::ETIMEDOUT,
            libc::EHOSTUNREACH,
            libc::ENETUNREACH,
        ] {
            assert!(!is_local_io(&io::Error::from_raw_os_error(code)));
            assert!(!in_chain(&Wrapper(io::Error::from_raw_os_error(code))));
        }
        assert!(!in_chain(&io::Error::other("no such host")));
    }
}
