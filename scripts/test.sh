#!/usr/bin/env bash
# Runs every check CI runs, on a fresh Debian machine with the Rust toolchain:
# formatting, clippy (-D warnings), the one-crypto-provider rule, and the whole test suite.
# Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "one rustls crypto provider (aws-lc-rs): ring must not be in the runtime tree"
if cargo tree --workspace -e normal -i ring 2>/dev/null | grep -q '^ring'; then
  cargo tree --workspace -e normal -i ring
  echo "error: ring is in the runtime dependency tree; rustls would panic choosing a provider" >&2
  exit 1
fi

step "test dependencies (PostgreSQL, MariaDB, systemd-analyze, promtool, PyYAML, the moto emulator, podman)"
bash scripts/test-deps.sh
# test-deps.sh installed podman and friends: the podman tests must run, not skip.
export QG_REQUIRE_PODMAN=1
export QG_MOTO_PYTHON="${QG_DEPS_DIR:-$HOME/.cache/quorumgate}/moto-venv/bin/python"

step "fuzzing: 20 s of libFuzzer per cheap target, stable Rust (fuzz/README.md; the corpora replay in nextest)"
bash fuzz/bounded.sh

step "tests (cargo nextest)"
# The chaos scenarios write one row each here; stale rows must not reach the summary.
rm -rf "${CARGO_TARGET_DIR:-target}/chaos-report"
status=0
cargo nextest run --workspace --no-fail-fast || status=$?

step "chaos summary (scenarios, flips expected vs seen, ballots rejected by reason)"
python3 tests/chaos/summary.py || true
exit "$status"
