#!/usr/bin/env python3
"""Public endpoints under load: one agent of a 3-agent cluster, 200 connections from wrk.

Starts a local HTTP target and three agents (release build) on 127.0.0.1 with production-like
timings (round and check interval 1 s, one HTTP check `app`), waits until every agent answers
HEALTHY, and then, against agent use1's listener:

1. idle: no client for --seconds; counts the peers' ballots use1 accepts
   (quorumgate_ballots_accepted_total{from=peer}) and the peers' pushes to use1
   (quorumgate_peer_push_total{peer="use1"} at usw2 and euw1, ok vs anything else);
2. light: one wrk connection on /v1/health/app for 10 s: the latency without contention;
3. load: two wrk processes for --seconds, together 200 connections: 150 on /v1/health/app,
   50 alternating /v1/status and /metrics (benches/load/public_mix.lua classifies every
   answer); the same ballot and push counts as in 1, and use1's CPU.

Reports /v1/health p50/p90/p99/p99.9/max, throughput, socket errors and wrong answers, and
the ballots accepted under load against the idle window. The target is p99 <= 50 ms.
wrk is closed-loop: each connection sends its next request when the previous answer arrives,
so the load is as much as the machine gives, and the latency is the service time at that
saturation (wrk, the three agents and the target share the cores).

    cargo build --release -p quorumgate
    python3 benches/load/public_load.py [--seconds 30] [--binary target/release/quorumgate]

Needs `wrk` (bash scripts/test-deps.sh, or apt-get install wrk). Every process is started
here, on 127.0.0.1 only, and stopped at the end (also on Ctrl-C).
"""
import argparse
import http.server
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
AGENTS = ["use1", "usw2", "euw1"]


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def die(msg):
    sys.exit(f"public_load: {msg}")


def pick_port():
    """A free loopback port below the ephemeral range and outside 20000-20999."""
    for _ in range(200):
        port = random.randrange(22000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    die("no free port in 22000-31999")


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return None, b""


def counters(port, name):
    """Every sample of counter `name` at the agent on `port`, by its label text."""
    _, body = get(f"http://127.0.0.1:{port}/metrics")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def exchange(ports):
    """Peers' ballots accepted at use1, by peer; and the peers' pushes to use1 (ok, other)."""
    acc = counters(ports["use1"], "quorumgate_ballots_accepted_total")
    accepted = {a: acc.get(f'from="{a}"', 0.0) for a in AGENTS[1:]}
    ok = other = 0.0
    for a in AGENTS[1:]:
        for labels, v in counters(ports[a], "quorumgate_peer_push_total").items():
            if labels.startswith('peer="use1",'):
                if labels.endswith('result="ok"'):
                    ok += v
                else:
                    other += v
    return accepted, ok, other


def delta(before, after):
    acc = {a: after[0][a] - before[0][a] for a in after[0]}
    return acc, after[1] - before[1], after[2] - before[2]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port, connections, seconds, args):
    return subprocess.Popen(
        ["wrk", f"-c{connections}", "-t1", f"-d{seconds}s", "--timeout", "5s",
         "-s", os.path.join(HERE, "public_mix.lua"), f"http://127.0.0.1:{port}", "--", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def summary(proc, what):
    out, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        die(f"wrk ({what}) failed: {err}\n{out}")
    line = next((l for l in reversed(out.splitlines()) if l.startswith("{")), None)
    if line is None:
        die(f"wrk ({what}) printed no summary:\n{out}")
    return json.loads(line)


def errors(s):
    return sum(s["errors"].values()) - s["errors"]["status"]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/quorumgate")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--health-connections", type=int, default=150)
    ap.add_argument("--mix-connections", type=int, default=50,
                    help="connections on /v1/status and /metrics (0: health only)")
    ap.add_argument("--mix", choices=["mix", "status", "metrics"], default="mix",
                    help="what the mix connections ask: both in turn (default), or one")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} CPUs")
    if shutil.which("wrk") is None:
        die("wrk not found: bash scripts/test-deps.sh (or apt-get install wrk)")
    if not os.access(args.binary, os.X_OK):
        die(f"{args.binary} missing: cargo build --release -p quorumgate")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", pick_port()), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_address[1]}/"

    tmp = tempfile.mkdtemp(prefix="quorumgate-load-")
    ports = {a: pick_port() for a in AGENTS}
    members = []
    for a in AGENTS:
        out = subprocess.run([args.binary, "keygen", "--out", f"{tmp}/{a}.key"], check=True,
                             capture_output=True, text=True).stdout
        pub = next(l for l in out.splitlines() if l.startswith("public_key")).split('"')[1]
        members.append(f'[[members]]\nid = "{a}"\nregion = "{a}"\n'
                       f'url = "http://127.0.0.1:{ports[a]}/"\npublic_key = "{pub}"\n')
    shared = ('[cluster]\nname = "load"\nround_interval = "1s"\nballot_valid_for = "4s"\n'
              'peer_timeout = "500ms"\n' + "".join(members) +
              f'[[checks]]\nid = "app"\ninterval = "1s"\ntimeout = "500ms"\n'
              f'[checks.http]\nurl = "{target}"\n')
    procs = []

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    try:
        for a in AGENTS:
            cfg = f"{tmp}/{a}.toml"
            with open(cfg, "w") as f:
                f.write(shared + f'[local]\nagent_id = "{a}"\nlisten = "127.0.0.1:{ports[a]}"\n'
                                 f'key_file = "{tmp}/{a}.key"\nstate_dir = "{tmp}/{a}"\n'
                                 'log_level = "warn"\n')
            log = open(f"{tmp}/{a}.log", "w")
            procs.append(subprocess.Popen([args.binary, "agent", "--config", cfg],
                                          stdout=log, stderr=log))
        deadline = time.monotonic() + 30
        while not all(get(f"http://127.0.0.1:{ports[a]}/v1/health/app")[0] == 200
                      for a in AGENTS):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                die(f"the agents did not all answer HEALTHY within 30 s; logs in {tmp}")
            time.sleep(0.2)
        time.sleep(3)
        port = ports["use1"]

        before = exchange(ports)
        time.sleep(args.seconds)
        idle = delta(before, exchange(ports))

        light = summary(wrk(port, 1, 10, ["health", "app"]), "light")

        pid = procs[0].pid
        before, cpu0, t0 = exchange(ports), cpu_seconds(pid), time.monotonic()
        health = wrk(port, args.health_connections, args.seconds, ["health", "app"])
        mix = (wrk(port, args.mix_connections, args.seconds, [args.mix])
               if args.mix_connections else None)
        health = summary(health, "health")
        mix = summary(mix, "mix") if mix else None
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        loaded = delta(before, exchange(ports))
        for p in procs:
            if p.poll() is not None:
                die(f"an agent exited during the run; logs in {tmp}")
        after_codes = [get(f"http://127.0.0.1:{ports[a]}/v1/health/app")[0] for a in AGENTS]

        lat = health["latency_us"]
        secs = health["duration_us"] / 1e6
        print(f"agent use1 of 3 (round 1 s); {args.health_connections} connections on "
              f"/v1/health/app + {args.mix_connections} on /v1/status and /metrics, "
              f"{args.seconds} s, wrk -t1 each")
        print(f"  /v1/health  p50 {lat['p50']/1000:.2f} ms  p90 {lat['p90']/1000:.2f} ms  "
              f"p99 {lat['p99']/1000:.2f} ms  p99.9 {lat['p999']/1000:.2f} ms  "
              f"max {lat['max']/1000:.1f} ms")
        print(f"              {health['requests']/secs:,.0f} req/s ({health['requests']} "
              f"answers: {health['healthy']} HEALTHY, {health['unhealthy']} UNHEALTHY, "
              f"{health['bad']} wrong), socket errors/timeouts {errors(health)}")
        if mix:
            ml = mix["latency_us"]
            print(f"  status+metrics  {mix['requests']/secs:,.0f} req/s, p50 {ml['p50']/1000:.2f} "
                  f"ms p99 {ml['p99']/1000:.2f} ms, wrong {mix['bad']}, errors {errors(mix)}")
        ll = light["latency_us"]
        print(f"  one connection, no load: /v1/health p50 {ll['p50']/1000:.3f} ms  "
              f"p99 {ll['p99']/1000:.3f} ms  ({light['requests']/10:,.0f} req/s)")
        print(f"  use1 CPU under load: {100*cpu:.0f} % of one core")
        for name, (acc, ok, other) in (("idle", idle), ("load", loaded)):
            per_peer = ", ".join(f"{a} {int(v)}" for a, v in acc.items())
            print(f"  {name:4}: peer ballots accepted by use1 in {args.seconds} s: {per_peer}; "
                  f"peers' pushes to use1: {int(ok)} ok, {int(other)} failed")
        print(f"  after the load, /v1/health on each agent: {after_codes}")
        verdict = "met" if lat["p99"] <= 50_000 else "MISSED"
        print(f"  target /v1/health p99 <= 50 ms: {verdict}")
        print(json.dumps({"health": health, "mix": mix, "light": light, "cpu_share": cpu,
                          "idle": idle, "load": loaded}))
    finally:
        stop()


if __name__ == "__main__":
    main()
