//! Where the strict Route 53 / RDS emulator lives and how its clients are set up, shared by the
//! integration tests, the chaos suite and the end-to-end bench (each starts the emulator its
//! own way: on loopback, or inside a hub namespace).

use std::path::PathBuf;

/// The emulator's Python, where `scripts/test-deps.sh` puts its virtualenv:
/// `$QG_MOTO_PYTHON`, else `${QG_DEPS_DIR:-$HOME/.cache/quorumgate}/moto-venv/bin/python`.
#[must_use]
pub fn moto_python() -> PathBuf {
    if let Some(p) = std::env::var_os("QG_MOTO_PYTHON") {
        return PathBuf::from(p);
    }
    let deps = std::env::var_os("QG_DEPS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/quorumgate"),
        PathBuf::from,
    );
    deps.join("moto-venv/bin/python")
}

/// `tests/fixtures/moto_strict.py`, the emulator itself.
#[must_use]
pub fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/moto_strict.py")
}

/// Environment for agent processes that talk to the emulator: its dummy credentials, and
/// nothing from the host's AWS configuration (no profile files, no instance metadata).
#[must_use]
pub fn aws_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/quorumgate-test"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/quorumgate-test",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}
