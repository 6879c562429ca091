#!/usr/bin/env bash
# Short, bounded libFuzzer runs (scripts/test.sh runs this in CI): builds the cheap targets
# with cargo-fuzz on *stable* Rust (`--sanitizer none`: no -Z flag is needed) and fuzzes each
# for QG_FUZZ_SECONDS, starting from the committed corpus. New inputs go to a scratch dir, so
# the checkout stays clean; a crash fails the run and leaves its input in fuzz/artifacts/.
#
#   QG_FUZZ_SECONDS  seconds per target (default 20)
#   QG_FUZZ_TARGETS  targets to run (default "ballot operator config"; `http` builds the
#                    whole agent with instrumentation, minutes more: see fuzz/README.md)
set -euo pipefail
cd "$(dirname "$0")"
# Always fuzz/target, even when the caller points CARGO_TARGET_DIR at the main target dir: the
# instrumented build must not overwrite the normal one.
export CARGO_TARGET_DIR="$PWD/target"

seconds="${QG_FUZZ_SECONDS:-20}"
read -r -a targets <<<"${QG_FUZZ_TARGETS:-ballot operator config}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

features=()
for t in "${targets[@]}"; do
  [[ "$t" == http ]] && features=(--features http)
done
start=$SECONDS
# Every target at once; without `--features http` the agent (and `http`) is left out.
cargo fuzz build --sanitizer none "${features[@]}"
echo "fuzz targets built in $((SECONDS - start)) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  status=0
  cargo fuzz run --sanitizer none "${features[@]}" "$t" "$scratch/$t" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
  speed="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
  if [[ "$status" -ne 0 ]]; then
    failed=1
    echo "fuzz $t: FAILED (exit $status) after ${runs:-?} executions; last lines:" >&2
    tail -40 "$log" >&2
    echo "reproduce: cd fuzz && cargo fuzz run --sanitizer none ${features[*]} $t artifacts/$t/<crash file>" >&2
  else
    echo "fuzz $t: ${runs:-?} executions in ${seconds} s (${speed:-?}/s), no crash"
  fi
done
exit "$failed"
