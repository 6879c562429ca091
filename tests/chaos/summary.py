#!/usr/bin/env python3
"""Prints the chaos suite's one-screen summary from target/chaos-report/*.json.

Each scenario of tests/chaos writes one row (tests/chaos/report.rs): flips expected vs seen,
decision transitions per agent, ballots rejected by reason, duration and verdict. A scenario
that panicked still wrote its row, with verdict "fail". Exits 1 when any row failed, 0 otherwise
(also when there are no rows: the suite did not run). Usage: python3 tests/chaos/summary.py [DIR]
"""
import json
import os
import sys


def main() -> int:
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    default = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target")), "chaos-report")
    directory = sys.argv[1] if len(sys.argv) > 1 else default
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except FileNotFoundError:
        names = []
    if not names:
        print(f"chaos summary: no scenario rows in {directory}")
        return 0
    rows = []
    for name in names:
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            try:
                rows.append(json.load(f))
            except json.JSONDecodeError as e:
                rows.append({"scenario": name[:-5], "verdict": "fail", "notes": [f"unreadable row: {e}"]})
    print()
    print("chaos summary")
    header = f"{'scenario':<28} {'verdict':<7} {'flips exp/seen':>14} {'transitions':<26} {'secs':>5}  rejected by reason"
    print(header)
    print("-" * len(header))
    failed = 0
    for r in rows:
        verdict = r.get("verdict", "fail")
        failed += verdict != "pass"
        trans = ",".join(f"{a}={n}" for a, n in sorted(r.get("transitions", {}).items())) or "-"
        rej = ", ".join(f"{k}={v}" for k, v in sorted(r.get("rejected", {}).items())) or "-"
        flips = f"{r.get('flips_expected', 0)}/{r.get('flips_seen', 0)}"
        secs = r.get("duration_ms", 0) / 1000
        print(f"{r.get('scenario', '?'):<28} {verdict.upper():<7} {flips:>14} {trans:<26} {secs:>5.1f}  {rej}")
        for note in r.get("notes", [])[:3]:
            print(f"{'':<30}- {note}")
    print(f"{len(rows)} scenarios, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
