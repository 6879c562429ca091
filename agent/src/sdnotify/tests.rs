use std::ffi::OsStr;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use super::*;

fn os(s: &str) -> Option<&OsStr> {
    Some(OsStr::new(s))
}

/// `WATCHDOG_USEC`, `WATCHDOG_PID`, and the timeout (`Err` for a value that is rejected).
type WatchdogRow = (
    Option<&'static str>,
    Option<&'static str>,
    Result<Option<Duration>, ()>,
);

#[test]
fn watchdog_follows_sd_watchdog_enabled() {
    let two_s = Some(Duration::from_secs(2));
    let table: &[WatchdogRow] = &[
        (None, None, Ok(None)),
        // WATCHDOG_PID alone does not turn it on.
        (None, Some("42"), Ok(None)),
        (Some("2000000"), None, Ok(two_s)),
        (Some("2000000"), Some("42"), Ok(two_s)),
        // Inherited from a parent: not ours to feed.
        (Some("2000000"), Some("41"), Ok(None)),
        (Some("0"), None, Err(())),
        (Some("-1"), None, Err(())),
        (Some("2s"), None, Err(())),
        (Some(""), None, Err(())),
        (Some("2000000"), Some("0"), Err(())),
        (Some("2000000"), Some("pid"), Err(())),
    ];
    for (usec, pid, want) in table {
        let got = watchdog_timeout(usec.and_then(os), pid.and_then(os), 42);
        assert_eq!(got.map_err(|_| ()), *want, "usec={usec:?} pid={pid:?}");
    }
}

#[test]
fn notify_socket_is_a_path_or_an_abstract_name() {
    let path = socket_addr(OsStr::new("/run/systemd/notify")).expect("path");
    assert_eq!(
        path.as_pathname(),
        Some(std::path::Path::new("/run/systemd/notify"))
    );
    #[cfg(target_os = "linux")]
    {
        use std::os::linux::net::SocketAddrExt as _;
        let abs = socket_addr(OsStr::new("@qg/notify")).expect("abstract");
        assert_eq!(abs.as_abstract_name(), Some(&b"qg/notify"[..]));
    }
    for bad in ["", "relative/notify", "vsock:2:1234"] {
        assert!(socket_addr(OsStr::new(bad)).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn without_notify_socket_everything_is_a_no_op() {
    let env = NotifyEnv {
        notify_socket: None,
        watchdog_usec: os("2000000"),
        watchdog_pid: None,
    };
    let n = Notifier::from_vars(&env, 42);
    assert!(!n.enabled());
    assert_eq!(n.watchdog_timeout(), None, "no socket, no watchdog");
    assert!(!n.send("READY=1"));
    // An unusable value disables notification instead of failing the agent.
    let env = NotifyEnv {
        notify_socket: os("relative"),
        ..NotifyEnv::default()
    };
    assert!(!Notifier::from_vars(&env, 42).enabled());
}

fn recv(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).expect("a datagram");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sends_datagrams_to_a_path_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let server = UnixDatagram::bind(&path).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let env = NotifyEnv {
        notify_socket: Some(path.as_os_str()),
        watchdog_usec: os("2000000"),
        watchdog_pid: os("42"),
    };
    let n = Notifier::from_vars(&env, 42);
    assert!(n.enabled());
    assert_eq!(n.watchdog_timeout(), Some(Duration::from_secs(2)));
    assert!(n.send("READY=1\nSTATUS=hello"));
    assert_eq!(recv(&server), "READY=1\nSTATUS=hello");
}

#[cfg(target_os = "linux")]
#[test]
fn sends_datagrams_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt as _;
    let name = format!("quorumgate-test-{}-abstract", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let server = UnixDatagram::bind_addr(&addr).expect("bind");
    server
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let raw = format!("@{name}");
    let env = NotifyEnv {
        notify_socket: os(&raw),
        ..NotifyEnv::default()
    };
    let n = Notifier::from_vars(&env, 42);
    assert!(n.send("WATCHDOG=1"));
    assert_eq!(recv(&server), "WATCHDOG=1");
}

#[test]
fn a_send_never_blocks_when_the_manager_does_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let _server = UnixDatagram::bind(&path).expect("bind");
    let env = NotifyEnv {
        notify_socket: Some(path.as_os_str()),
        ..NotifyEnv::default()
    };
    let n = Notifier::from_vars(&env, 42);
    // The receive queue fills up (a few hundred datagrams); later sends fail instead of blocking.
    let sent = (0..10_000).filter(|_| n.send("WATCHDOG=1")).count();
    assert!(sent < 10_000, "the queue never filled");
}

fn lifecycle(path: &std::path::Path, usec: Option<&str>) -> Lifecycle {
    let env = NotifyEnv {
        notify_socket: Some(path.as_os_str()),
        watchdog_usec: usec.and_then(os),
        watchdog_pid: None,
    };
    Lifecycle::new(Notifier::from_vars(&env, 42))
}

#[tokio::test]
async fn ready_is_sent_once_after_the_first_ready_round_and_status_only_on_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let server = UnixDatagram::bind(&path).expect("bind");
    server.set_nonblocking(true).expect("nonblocking");
    let mut sd = lifecycle(&path, None);
    let drain = || {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = server.recv(&mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        out
    };

    sd.note_round(false, "waiting");
    assert_eq!(drain(), ["STATUS=waiting"]);
    sd.note_round(true, "1/3 live");
    assert_eq!(drain(), ["READY=1\nSTATUS=1/3 live"]);
    sd.note_round(true, "1/3 live");
    sd.note_round(true, "1/3 live");
    assert!(
        drain().is_empty(),
        "neither READY=1 again nor an unchanged STATUS"
    );
    sd.note_round(true, "3/3 live");
    assert_eq!(drain(), ["STATUS=3/3 live"]);
    sd.stopping();
    assert_eq!(drain(), ["STOPPING=1\nSTATUS=shutting down"]);
}

#[tokio::test(start_paused = true)]
async fn the_watchdog_is_due_every_half_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let _server = UnixDatagram::bind(&path).expect("bind");
    let mut sd = lifecycle(&path, Some("2000000"));
    let start = tokio::time::Instant::now();
    sd.watchdog_due().await;
    assert_eq!(
        start.elapsed(),
        Duration::ZERO,
        "the first ping is immediate"
    );
    sd.watchdog_due().await;
    sd.watchdog_due().await;
    assert_eq!(start.elapsed(), Duration::from_secs(2));
}

#[tokio::test(start_paused = true)]
async fn without_a_watchdog_nothing_is_ever_due() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify");
    let _server = UnixDatagram::bind(&path).expect("bind");
    let mut sd = lifecycle(&path, None);
    let due = tokio::time::timeout(Duration::from_secs(24 * 3600), sd.watchdog_due()).await;
    assert!(due.is_err());
}
