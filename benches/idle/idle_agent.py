#!/usr/bin/env python3
"""Idle footprint of a quorumgate agent: 3 agents on loopback, 100 HTTP checks at 1 s each.

Measures one agent's CPU (utime+stime from /proc/PID/stat over a window, as a share of one
core) and memory (VmRSS at the end, VmHWM peak) after a warm-up. Every process is started
here, on 127.0.0.1 only, and stopped at the end.

    cargo build --release -p quorumgate
    python3 benches/idle/idle_agent.py [--checks 100] [--seconds 60] [--binary target/release/quorumgate]
"""
import argparse
import http.server
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


class Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def proc_mem_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/quorumgate")
    ap.add_argument("--checks", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    args = ap.parse_args()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    target = f"http://127.0.0.1:{server.server_address[1]}"

    tmp = tempfile.mkdtemp(prefix="quorumgate-idle-")
    agents = ["use1", "usw2", "euw1"]
    ports = {a: free_port() for a in agents}
    members = []
    for a in agents:
        out = subprocess.run([args.binary, "keygen", "--out", f"{tmp}/{a}.key"], check=True,
                             capture_output=True, text=True).stdout
        pub = next(l for l in out.splitlines() if l.startswith("public_key")).split('"')[1]
        members.append(f'[[members]]\nid = "{a}"\nregion = "{a}"\nurl = "http://127.0.0.1:{ports[a]}/"\n'
                       f'public_key = "{pub}"\n')
    checks = "".join(
        f'[[checks]]\nid = "c{i:04}"\ninterval = "1s"\ntimeout = "500ms"\n'
        f'[checks.http]\nurl = "{target}/check/{i}"\n' for i in range(args.checks))
    shared = ('[cluster]\nname = "idle"\nround_interval = "1s"\nballot_valid_for = "4s"\n'
              'peer_timeout = "500ms"\n' + "".join(members) + checks)
    procs = []
    try:
        for a in agents:
            cfg = f"{tmp}/{a}.toml"
            with open(cfg, "w") as f:
                f.write(shared + f'[local]\nagent_id = "{a}"\nlisten = "127.0.0.1:{ports[a]}"\n'
                                 f'key_file = "{tmp}/{a}.key"\nstate_dir = "{tmp}"\nlog_level = "warn"\n')
            log = open(f"{tmp}/{a}.log", "w")
            procs.append(subprocess.Popen([args.binary, "agent", "--config", cfg], stdout=log, stderr=log))
        time.sleep(args.warmup)
        pid = procs[0].pid
        for p in procs:
            if p.poll() is not None:
                sys.exit(f"an agent exited early; logs in {tmp}")
        cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
        time.sleep(args.seconds)
        cpu1, t1 = proc_cpu_seconds(pid), time.monotonic()
        rss, hwm = proc_mem_kib(pid, "VmRSS"), proc_mem_kib(pid, "VmHWM")
        status = urllib.request.urlopen(f"http://127.0.0.1:{ports['use1']}/v1/status", timeout=5).read()
        healthy = status.count(b'"decision": "healthy"')
        share = 100.0 * (cpu1 - cpu0) / (t1 - t0)
        print(f"agent use1: {args.checks} HTTP checks at 1s, 3 agents, {t1 - t0:.0f}s window after {args.warmup:.0f}s warm-up")
        print(f"  CPU  {share:.2f} % of one core   ({cpu1 - cpu0:.2f} CPU-s over {t1 - t0:.1f} s)")
        print(f"  RSS  {rss / 1024:.1f} MiB now, {hwm / 1024:.1f} MiB peak")
        print(f"  checks decided healthy: {healthy}/{args.checks}")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        server.shutdown()


if __name__ == "__main__":
    main()
