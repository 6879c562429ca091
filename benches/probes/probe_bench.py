#!/usr/bin/env python3
"""HTTP probe efficiency and detection latency: quorumgate against Prometheus blackbox_exporter.

Issue 6, benchmarks 1 and 2, in one run on loopback:

1. Efficiency. N local HTTP targets (nginx, one `listen` per target on 127.1.x.y, one port),
   probed every 1 s with a ~1 s timeout, by each tool in turn:
   - quorumgate: 3 agents (release build) with the same N `http` checks (interval 1s,
     timeout 999ms: the config requires timeout < interval); the measured agent is `use1`, its
     two peers probe too, as in a deployment (`--members 1` runs `use1` alone instead);
   - blackbox_exporter (Debian `prometheus-blackbox-exporter`, module `http_2xx`, timeout 1s,
     `--timeout-offset=0.05`), driven the way users drive it: a Prometheus server (Debian
     `prometheus`) scraping `/probe?module=http_2xx&target=…` for the N targets every 1 s
     (scrape_timeout 1s). Only the exporter's process is the measured figure; Prometheus's
     cost is reported on its own line.
   After a warm-up, one window per tool per N: CPU (utime+stime from /proc/PID/stat, as a share
   of one core), RSS (VmRSS every second; VmHWM), and probes/s counted twice: from the tool's
   own counters (quorumgate: `quorumgate_probe_total` in /metrics; blackbox: Prometheus's
   `prometheus_target_interval_length_seconds_count`, one probe per scrape) and from nginx's
   access log (lines in the window, by the `X-Quorumgate-Agent` header: `use1`, or none for
   the exporter).
2. Detection latency (`--detect-reps`, 0 skips it): 3 agents with `fall_after = 1`,
   `rise_after = 1`, the N = `--detect-background` nginx checks as background load plus checks
   on controllable targets in this script. Failures come mixed, as the world makes them: at
   every moment two `noise-*` targets hang (accept, never answer; a new pair each repetition),
   and in each repetition, at a random phase, `victim-503` switches to `503` *and* `victim-hang`
   to hanging at the same instant t0 (wall clock). Measured from t0, per victim: the first
   request from each agent that gets the failure (the target's own log; for a hang the agent
   observes at that request + its timeout), the agent's observation time as its `/v1/status`
   shows it (`observed_at_ms`), and each agent's `transition` record to `unhealthy` in its audit
   log (`at_ms`): the quorum decision; and the abstentions `use1` cast during the repetition
   (`quorumgate_abstentions_total`, by reason).

Everything is started here on 127.0.0.0/8 and stopped at the end (also on Ctrl-C/SIGTERM).
Results: a human summary on stdout and JSON (`--json`).

    cargo build --release -p quorumgate
    bash scripts/bench-deps.sh          # nginx-light, prometheus-blackbox-exporter, prometheus
    python3 benches/probes/probe_bench.py [--targets 1000,10000] [--reps 3] [--seconds 30]
        [--warmup 15] [--detect-reps 20] [--detect-background 1000] [--json FILE]
"""
import argparse
import http.server
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HINT = "install the bench dependencies with `bash scripts/bench-deps.sh`"
NGINX = "/usr/sbin/nginx"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROMETHEUS = "/usr/bin/prometheus"
AGENTS = ["use1", "usw2", "euw1"]
TIMEOUT_MS = 999  # quorumgate requires timeout < interval (1 s)
# The hard limit cannot be raised here (no CAP_SYS_RESOURCE); 20,000 on the bench VM is enough
# for nginx's 10,000 listening sockets plus the connections in flight.
LAST_BUSY = 0.0
LAST_SYS = {}
NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def die(msg):
    sys.exit(f"probe_bench: {msg}")


def need(path):
    if not os.access(path, os.X_OK):
        die(f"{path} is missing: {HINT}")
    return path


def port_free(port, host="0.0.0.0"):
    with socket.socket() as s:
        try:
            s.bind((host, port))
            return True
        except OSError:
            return False


def pick_port():
    """A free port below the ephemeral range and outside 20000-20999."""
    for _ in range(200):
        port = random.randrange(22000, 32000)
        if port_free(port):
            return port
    die("no free port in 22000-31999")


def target_addr(i):
    """Target i listens on 127.1.(i // 250).(i % 250 + 1): one port for all, no clash with
    anything else on 127.0.0.1."""
    return f"127.1.{i // 250}.{i % 250 + 1}"


def raise_nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def cpu_split(pid):
    """(user, system) CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def cpu_seconds(pid):
    return sum(cpu_split(pid))


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def children(pid):
    """Direct children (nginx workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def get(url, timeout=30):
    return urllib.request.urlopen(url, timeout=timeout).read().decode()


def stop(proc, sig=signal.SIGTERM, wait=15):
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(cmd, log_path, env=None):
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                            preexec_fn=raise_nofile)


class Nginx:
    """One nginx (2 workers) with a `listen` per target, answering `200 ok`; the access log
    holds one line per request: time, the X-Quorumgate-Agent header."""

    def __init__(self, root, targets, port):
        self.dir = os.path.join(root, "nginx")
        os.makedirs(self.dir)
        self.port = port
        self.log = os.path.join(self.dir, "access.log")
        listens = "".join(f"    listen {target_addr(i)}:{port};\n" for i in range(targets))
        conf = os.path.join(self.dir, "nginx.conf")
        d = self.dir
        with open(conf, "w") as f:
            f.write(f"""daemon off;
master_process on;
user root;
worker_processes 2;
worker_rlimit_nofile {NOFILE};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  log_format bench '$msec $http_x_quorumgate_agent';
  server {{
{listens}    access_log {self.log} bench buffer=256k flush=1s;
    keepalive_timeout 0;
    location / {{ default_type text/plain; return 200 "ok\\n"; }}
  }}
}}
""")
        self.proc = spawn([need(NGINX), "-c", conf, "-p", d], os.path.join(d, "stderr.log"))
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(f"http://{target_addr(targets - 1)}:{port}/", timeout=2).strip() == "ok":
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                die(f"nginx did not start:\n{open(os.path.join(d, 'error.log')).read()[-3000:]}")
            time.sleep(0.2)

    def rotate(self, name):
        """Moves the access log aside (to `name`) and has nginx reopen a fresh one."""
        dest = os.path.join(self.dir, name)
        if os.path.exists(self.log):
            os.rename(self.log, dest)
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(0.5)
        return dest

    def count(self, path, t0, t1):
        """{agent header: requests logged within [t0, t1]}."""
        out = {}
        with open(path) as f:
            for line in f:
                ts, _, who = line.partition(" ")
                try:
                    t = float(ts)
                except ValueError:
                    continue
                if t0 <= t <= t1:
                    who = who.strip()
                    out[who] = out.get(who, 0) + 1
        return out

    def cpu(self):
        return sum(cpu_seconds(p) for p in [self.proc.pid] + children(self.proc.pid))

    def stop(self):
        stop(self.proc, signal.SIGQUIT)


def machine_busy():
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def drop(path):
    """Removes a rotated access log that no window counts (warm-up, other tools)."""
    if os.path.exists(path):
        os.remove(path)


def window(pids, seconds, alive):
    """CPU seconds of each pid over the window, VmRSS samples every second; the machine's busy
    share (all processes, both cores) goes to LAST_BUSY, to show contention from others."""
    global LAST_BUSY
    busy0 = machine_busy()
    cpu0 = {p: cpu_seconds(p) for p in pids}
    sys0 = {p: cpu_split(p)[1] for p in pids}
    t0w, t0 = time.time(), time.monotonic()
    rss = {p: [] for p in pids}
    while time.monotonic() - t0 < seconds:
        time.sleep(1.0)
        alive()
        for p in pids:
            rss[p].append(proc_status(p, "VmRSS"))
    t1w, t1 = time.time(), time.monotonic()
    cpu = {p: cpu_seconds(p) - cpu0[p] for p in pids}
    global LAST_SYS
    LAST_SYS = {p: cpu_split(p)[1] - sys0[p] for p in pids}
    busy1 = machine_busy()
    LAST_BUSY = 100 * os.cpu_count() * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    return t0w, t1w, t1 - t0, cpu, rss


def summary(pid, cpu_s, secs, probes, rss, hwm):
    rate = probes / secs
    return {"machine_busy_pct_of_one_core": LAST_BUSY,
            "kernel_share_pct": 100 * LAST_SYS.get(pid, 0.0) / cpu_s if cpu_s else None, "probes": probes, "probes_per_s": rate, "cpu_s": cpu_s, "cpu_pct": 100 * cpu_s / secs,
            "cpu_us_per_probe": 1e6 * cpu_s / probes if probes else None,
            "rss_mib_mean": statistics.mean(rss) / 1024, "rss_mib_max": max(rss) / 1024,
            "hwm_mib": hwm / 1024}


# --- quorumgate -----------------------------------------------------------------------------

def keygen(binary, path):
    out = subprocess.run([binary, "keygen", "--out", path], check=True, capture_output=True, text=True).stdout
    return next(l for l in out.splitlines() if l.startswith("public_key")).split('"')[1]


class Cluster:
    """quorumgate agents on loopback sharing one config (checks listed by the caller)."""

    def __init__(self, root, binary, name, members, checks_toml, concurrency):
        self.dir = os.path.join(root, name)
        os.makedirs(self.dir)
        self.binary = binary
        self.members = members
        self.ports = {a: pick_port() for a in members}
        n_checks = checks_toml.count("[[checks]]")
        member_toml = "".join(
            f'[[members]]\nid = "{a}"\nregion = "{a}"\nurl = "http://127.0.0.1:{self.ports[a]}/"\n'
            f'public_key = "{keygen(binary, f"{self.dir}/{a}.key")}"\n' for a in members)
        # 16 MiB, the most allowed: enough for 10,000 checks' worst-case ballot (the validator
        # names the least that fits when it is not).
        shared = (f'[cluster]\nname = "{name}"\nround_interval = "1s"\nballot_valid_for = "4s"\n'
                  f'peer_timeout = "500ms"\nmax_ballot_bytes = {16 << 20 if n_checks > 1000 else 4 << 20}\n'
                  + ("allow_single_member = true\n" if len(members) == 1 else "") + member_toml + checks_toml)
        self.procs = {}
        for a in members:
            cfg = f"{self.dir}/{a}.toml"
            with open(cfg, "w") as f:
                f.write(shared + f'[local]\nagent_id = "{a}"\nlisten = "127.0.0.1:{self.ports[a]}"\n'
                                 f'key_file = "{self.dir}/{a}.key"\nstate_dir = "{self.dir}/{a}"\n'
                                 f'log_level = "warn"\nprobe_concurrency = {concurrency}\n')
            self.procs[a] = spawn([binary, "agent", "--config", cfg], f"{self.dir}/{a}.log")

    def url(self, agent, path):
        return f"http://127.0.0.1:{self.ports[agent]}/{path}"

    def audit_path(self, agent):
        return f"{self.dir}/{agent}/audit.jsonl"

    def alive(self):
        for a, p in self.procs.items():
            if p.poll() is not None:
                die(f"agent {a} exited ({p.returncode}):\n{open(f'{self.dir}/{a}.log').read()[-3000:]}")

    def wait_ready(self, deadline_s=120):
        end = time.monotonic() + deadline_s
        for a in self.members:
            while True:
                self.alive()
                try:
                    get(self.url(a, "livez"), timeout=2)
                    break
                except OSError:
                    if time.monotonic() > end:
                        die(f"agent {a} did not come up")
                    time.sleep(0.2)

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            stop(p)


def http_checks(targets, port, extra=""):
    return "".join(f'[[checks]]\nid = "t{i:05}"\ninterval = "1s"\ntimeout = "{TIMEOUT_MS}ms"\n{extra}'
                   f'[checks.http]\nurl = "http://{target_addr(i)}:{port}/"\n' for i in range(targets))


def probe_totals(text):
    """(healthy, unhealthy) summed over quorumgate_probe_total."""
    ok = bad = 0.0
    for m in re.finditer(r'^quorumgate_probe_total\{[^}]*result="(\w+)"[^}]*\} (\S+)$', text, re.M):
        if m.group(1) == "healthy":
            ok += float(m.group(2))
        else:
            bad += float(m.group(2))
    return ok, bad


def metric_sum(text, name):
    return sum(float(m.group(1)) for m in re.finditer(rf'^{name}(?:\{{[^}}]*\}})? (\S+)$', text, re.M))


def run_quorumgate(args, tmp, nginx, n, rep):
    members = AGENTS[:args.members]
    drop(nginx.rotate(f"before-qg-{n}-{rep}.log"))
    cl = Cluster(tmp, args.binary, f"qg-{n}-{rep}", members, http_checks(n, nginx.port),
                 args.concurrency or max(64, n))
    try:
        cl.wait_ready()
        time.sleep(args.warmup)
        cl.alive()
        m0 = get(cl.url("use1", "metrics"))
        pids = [p.pid for p in cl.procs.values()]
        ng0 = nginx.cpu()
        # Scraped the way Prometheus does (every 15 s), so the figure includes /metrics.
        scraping = threading.Event()

        def scrape():
            while not scraping.wait(15.0):
                get(cl.url("use1", "metrics"))
        scraper = threading.Thread(target=scrape, daemon=True)
        scraper.start()
        try:
            t0w, t1w, secs, cpu, rss = window(pids, args.seconds, cl.alive)
        finally:
            scraping.set()
            scraper.join()
        ng_cpu = nginx.cpu() - ng0
        m1 = get(cl.url("use1", "metrics"))
        pid = cl.procs["use1"].pid
        hwm, threads = proc_status(pid, "VmHWM"), proc_status(pid, "Threads")
        ok0, bad0 = probe_totals(m0)
        ok1, bad1 = probe_totals(m1)
        overruns = metric_sum(m1, "quorumgate_probe_overruns_total") - metric_sum(m0, "quorumgate_probe_overruns_total")
        rounds = metric_sum(m1, "quorumgate_rounds_total") - metric_sum(m0, "quorumgate_rounds_total")
        accepted = (metric_sum(m1, "quorumgate_ballots_accepted_total")
                    - metric_sum(m0, "quorumgate_ballots_accepted_total"))
        path = nginx.rotate(f"qg-{n}-{rep}.log")
        seen = nginx.count(path, t0w, t1w)
        os.remove(path)
        probes = (ok1 - ok0) + (bad1 - bad0)
        res = summary(pid, cpu[pid], secs, probes, rss[pid], hwm)
        res.update({"unhealthy": bad1 - bad0, "overruns": overruns, "threads": threads,
                    "rounds": rounds, "ballots_accepted": accepted,
                    "nginx_requests_per_s": seen.get("use1", 0) / secs,
                    "peers_cpu_pct": {a: 100 * cpu[cl.procs[a].pid] / secs for a in members if a != "use1"},
                    "nginx_cpu_pct": 100 * ng_cpu / secs,
                    "nginx_requests_per_s_all": sum(seen.values()) / secs})
        return res
    finally:
        cl.stop()


# --- blackbox_exporter + Prometheus --------------------------------------------------------

def run_blackbox(args, tmp, nginx, n, rep):
    d = os.path.join(tmp, f"bb-{n}-{rep}")
    os.makedirs(d)
    drop(nginx.rotate(f"before-bb-{n}-{rep}.log"))
    bb_port, prom_port = pick_port(), pick_port()
    with open(f"{d}/blackbox.yml", "w") as f:
        f.write("modules:\n  http_2xx:\n    prober: http\n    timeout: 1s\n    http:\n"
                "      preferred_ip_protocol: ip4\n      method: GET\n")
    with open(f"{d}/targets.json", "w") as f:
        json.dump([{"targets": [f"http://{target_addr(i)}:{nginx.port}/" for i in range(n)]}], f)
    with open(f"{d}/prometheus.yml", "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1m
scrape_configs:
  - job_name: blackbox
    metrics_path: /probe
    params:
      module: [http_2xx]
    file_sd_configs:
      - files: ["{d}/targets.json"]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: 127.0.0.1:{bb_port}
""")
    bb = spawn([need(BLACKBOX), f"--config.file={d}/blackbox.yml", f"--web.listen-address=127.0.0.1:{bb_port}",
                "--timeout-offset=0.05", "--log.level=warn"], f"{d}/blackbox.log")
    prom = None
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                get(f"http://127.0.0.1:{bb_port}/metrics", timeout=2)
                break
            except OSError:
                if bb.poll() is not None or time.monotonic() > deadline:
                    die(f"blackbox_exporter did not start:\n{open(f'{d}/blackbox.log').read()[-3000:]}")
                time.sleep(0.2)
        prom = spawn([need(PROMETHEUS), f"--config.file={d}/prometheus.yml",
                      f"--web.listen-address=127.0.0.1:{prom_port}", f"--storage.tsdb.path={d}/data",
                      "--storage.tsdb.retention.time=1h", "--log.level=warn"], f"{d}/prometheus.log")

        def alive():
            for name, p in [("blackbox_exporter", bb), ("prometheus", prom)]:
                if p.poll() is not None:
                    die(f"{name} exited ({p.returncode}); logs in {d}")
        deadline = time.monotonic() + 60
        while True:
            alive()
            try:
                get(f"http://127.0.0.1:{prom_port}/-/ready", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    die("prometheus did not become ready")
                time.sleep(0.2)
        time.sleep(args.warmup)
        alive()
        scrapes = lambda: metric_sum(get(f"http://127.0.0.1:{prom_port}/metrics"),
                                     "prometheus_target_interval_length_seconds_count")
        s0 = scrapes()
        ng0 = nginx.cpu()
        t0w, t1w, secs, cpu, rss = window([bb.pid, prom.pid], args.seconds, alive)
        ng_cpu = nginx.cpu() - ng0
        s1 = scrapes()
        hwm, threads = proc_status(bb.pid, "VmHWM"), proc_status(bb.pid, "Threads")
        q = json.loads(get(f"http://127.0.0.1:{prom_port}/api/v1/query?query=" +
                           urllib.request.quote("count(probe_success == 1)")))
        succeeded = float(q["data"]["result"][0]["value"][1]) if q["data"]["result"] else 0.0
        path = nginx.rotate(f"bb-{n}-{rep}.log")
        seen = nginx.count(path, t0w, t1w)
        os.remove(path)
        probes = seen.get("-", 0)
        bb_metrics = get(f"http://127.0.0.1:{bb_port}/metrics")
        res = summary(bb.pid, cpu[bb.pid], secs, probes, rss[bb.pid], hwm)
        res["blackbox_goroutines"] = metric_sum(bb_metrics, "go_goroutines")
        res["blackbox_open_fds"] = metric_sum(bb_metrics, "process_open_fds")
        if probes < 0.9 * n * secs:
            # Keep the evidence of why it fell short.
            res["log_tail"] = {name: open(f"{d}/{name}.log").read()[-2000:]
                               for name in ["blackbox", "prometheus"]}
        res.update({"threads": threads, "nginx_requests_per_s": probes / secs,
                    "prometheus_scrapes_per_s": (s1 - s0) / secs,
                    "targets_last_probe_ok": succeeded,
                    "prometheus_cpu_pct": 100 * cpu[prom.pid] / secs,
                    "prometheus_rss_mib": statistics.mean(rss[prom.pid]) / 1024,
                    "nginx_cpu_pct": 100 * ng_cpu / secs})
        return res
    finally:
        stop(prom)
        stop(bb)
        shutil.rmtree(os.path.join(d, "data"), ignore_errors=True)


# --- detection latency ---------------------------------------------------------------------

class Victim:
    """Controllable targets `/<name>`: `ok` (200), `503`, or `hang` (accepts, reads the request,
    never answers until the mode changes or 5 s pass). Logs (wall time, name, agent, mode)."""

    def __init__(self):
        self.modes = {}
        self.changed = threading.Condition()
        self.log = []
        victim = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                t = time.time()
                name = self.path.lstrip("/")
                mode = victim.modes.get(name, "ok")
                victim.log.append((t, name, self.headers.get("x-quorumgate-agent", "-"), mode))
                if mode == "hang":
                    with victim.changed:
                        victim.changed.wait_for(lambda: victim.modes.get(name) != "hang", timeout=5)
                    self.close_connection = True
                    return
                status, body = (200, b"ok\n") if mode == "ok" else (503, b"down\n")
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", pick_port()), Handler)
        self.server.daemon_threads = True
        self.server.request_queue_size = 128
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, name):
        return f"http://127.0.0.1:{self.server.server_address[1]}/{name}"

    def set(self, **modes):
        with self.changed:
            self.modes.update(modes)
            self.changed.notify_all()

    def stop(self):
        with self.changed:
            self.modes.clear()
            self.changed.notify_all()
        self.server.shutdown()


class AuditTail:
    """`transition` records in an agent's audit log, by check, as they are appended."""

    def __init__(self, path):
        self.path, self.pos = path, 0
        self.seen = {}

    def poll(self, check):
        if os.path.exists(self.path):
            with open(self.path) as f:
                f.seek(self.pos)
                while True:
                    line = f.readline()
                    if not line.endswith("\n"):
                        break
                    self.pos = f.tell()
                    rec = json.loads(line)
                    if rec.get("event") == "transition":
                        self.seen.setdefault(rec["body"].get("check"), []).append(
                            (rec["at_ms"], rec["body"]["to"]))
        return list(self.seen.get(check, []))


VICTIMS = {"503": "victim-503", "hang": "victim-hang"}
NOISE = [f"noise-{i}" for i in range(8)]


def run_detection(args, tmp, nginx, results):
    victim = Victim()
    bg = http_checks(args.detect_background, nginx.port, 'fall_after = 1\n') if args.detect_background else ""
    checks = "".join(
        f'[[checks]]\nid = "{name}"\ninterval = "1s"\ntimeout = "{TIMEOUT_MS}ms"\nfall_after = 1\n'
        f'rise_after = 1\nhold_down = "1ms"\n[checks.http]\nurl = "{victim.url(name)}"\n'
        for name in list(VICTIMS.values()) + NOISE) + bg
    cl = Cluster(tmp, args.binary, "detect", AGENTS, checks, max(64, args.detect_background))
    tails = {a: AuditTail(cl.audit_path(a)) for a in AGENTS}
    try:
        cl.wait_ready()
        time.sleep(args.warmup)

        def wait_for(check, state, since_ms, deadline_s=20):
            got = {}
            end = time.monotonic() + deadline_s
            while len(got) < len(AGENTS):
                cl.alive()
                for a, tail in tails.items():
                    for at, to in tail.poll(check):
                        if to == state and at >= since_ms and a not in got:
                            got[a] = at
                if time.monotonic() > end:
                    die(f"{check}: no transition to {state} on {sorted(set(AGENTS) - set(got))} within {deadline_s} s")
                time.sleep(0.01)
            return got

        def abstentions():
            text = get(cl.url("use1", "metrics"))
            out = {}
            for line in text.splitlines():
                m = re.match(r'quorumgate_abstentions_total\{reason="([a-z_]+)"\} ([0-9.e+]+)', line)
                if m:
                    out[m.group(1)] = float(m.group(2))
            return out

        reps = {mode: [] for mode in VICTIMS}
        for rep in range(args.detect_reps):
            # Two hung targets at every moment: a new pair each repetition.
            pair = NOISE[(2 * rep) % len(NOISE)], NOISE[(2 * rep + 1) % len(NOISE)]
            victim.set(**{n: ("hang" if n in pair else "ok") for n in NOISE})
            # A random phase against the agents' probe and round timers.
            time.sleep(1.0 + random.random())
            victim.log.clear()
            ab0 = abstentions()
            t0 = time.time()
            victim.set(**{VICTIMS["503"]: "503", VICTIMS["hang"]: "hang"})
            dec = {mode: wait_for(name, "unhealthy", int(t0 * 1000) - 5) for mode, name in VICTIMS.items()}
            status = json.loads(get(cl.url("use1", "v1/status")))
            log = list(victim.log)
            victim.set(**{name: "ok" for name in VICTIMS.values()})
            ab = {k: v - ab0.get(k, 0.0) for k, v in abstentions().items() if v - ab0.get(k, 0.0)}
            for mode, name in VICTIMS.items():
                check = next(c for c in status["checks"] if c["id"] == name)
                first_req = {}
                for t, target, who, served in log:
                    if target == name and served == mode and who not in first_req:
                        first_req[who] = t
                obs_target = {a: 1000 * (first_req[a] - t0) + (TIMEOUT_MS if mode == "hang" else 0)
                              for a in AGENTS if a in first_req}
                obs_status = {a: o["observed_at_ms"] - 1000 * t0 for a, o in check["observations"].items()
                              if o["status"] != "healthy"}
                reps[mode].append({"decision_ms": {a: at - 1000 * t0 for a, at in dec[mode].items()},
                                   "first_request_ms": {a: 1000 * (first_req[a] - t0) for a in first_req},
                                   "observed_ms_target": obs_target, "observed_ms_status": obs_status,
                                   "use1_abstentions": ab, "noise_hung": list(pair)})
            for name in VICTIMS.values():
                wait_for(name, "healthy", int(t0 * 1000))
            print(f"  rep {rep + 1:2}: 503 decided (first/last agent) {min(reps['503'][-1]['decision_ms'].values()):6.0f}"
                  f"/{max(reps['503'][-1]['decision_ms'].values()):6.0f} ms, hang "
                  f"{min(reps['hang'][-1]['decision_ms'].values()):6.0f}/{max(reps['hang'][-1]['decision_ms'].values()):6.0f} ms;"
                  f" use1 abstentions {ab or 'none'} (hung: {', '.join(pair)})", flush=True)
        results["detection"] = reps
    finally:
        cl.stop()
        victim.stop()


# --- report --------------------------------------------------------------------------------

def spread(xs):
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    return {"median": statistics.median(xs), "min": xs[0], "max": xs[-1], "n": len(xs),
            "p95": xs[max(0, -(-95 * len(xs) // 100) - 1)]}


def fmt(s, unit="", digits=1):
    if s is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(s['median'])}{unit} [{f.format(s['min'])}–{f.format(s['max'])}]"


def report(results, args):
    if not results["efficiency"]:
        results = dict(results, targets=[])
    else:
        print("\n=== efficiency: median [min–max] over", args.reps, "rep(s),", f"{args.seconds:.0f} s windows ===")
    for n in results["targets"]:
        runs = results["efficiency"][str(n)]
        print(f"\nN = {n} targets, 1 s interval")
        for tool in ["quorumgate", "blackbox"]:
            rs = runs[tool]
            print(f"  {tool:10} probes/s {fmt(spread([r['probes_per_s'] for r in rs]), '', 0)}"
                  f" (nginx saw {fmt(spread([r['nginx_requests_per_s'] for r in rs]), '', 0)})"
                  f"  CPU {fmt(spread([r['cpu_pct'] for r in rs]), ' %')}"
                  f"  {fmt(spread([r['cpu_us_per_probe'] for r in rs]), ' µs/probe')}"
                  f"  RSS {fmt(spread([r['rss_mib_mean'] for r in rs]), ' MiB')}"
                  f" (HWM {fmt(spread([r['hwm_mib'] for r in rs]), ' MiB')})"
                  f"  kernel share {fmt(spread([r.get('kernel_share_pct') for r in rs]), ' %', 0)}"
                  f"  machine busy {fmt(spread([r.get('machine_busy_pct_of_one_core') for r in rs]), ' %', 0)}")
        q, b = runs["quorumgate"], runs["blackbox"]
        ratios = [bb["cpu_us_per_probe"] / qq["cpu_us_per_probe"] for qq, bb in zip(q, b)
                  if qq["cpu_us_per_probe"] and bb["cpu_us_per_probe"]]
        print(f"  CPU per probe, blackbox / quorumgate (same rep): {fmt(spread(ratios), '×')}")
        print(f"  quorumgate: unhealthy {sum(r['unhealthy'] for r in q):.0f}, overruns "
              f"{sum(r['overruns'] for r in q):.0f}, peers' CPU "
              f"{[{k: round(v, 1) for k, v in r['peers_cpu_pct'].items()} for r in q]} %, nginx CPU "
              f"{fmt(spread([r['nginx_cpu_pct'] for r in q]), ' %')}")
        print(f"  blackbox: Prometheus (the driver) CPU {fmt(spread([r['prometheus_cpu_pct'] for r in b]), ' %')},"
              f" RSS {fmt(spread([r['prometheus_rss_mib'] for r in b]), ' MiB')}; scrapes/s "
              f"{fmt(spread([r['prometheus_scrapes_per_s'] for r in b]), '', 0)}; targets whose last probe "
              f"succeeded {[r['targets_last_probe_ok'] for r in b]}; nginx CPU "
              f"{fmt(spread([r['nginx_cpu_pct'] for r in b]), ' %')}")
    det = results.get("detection") or {}
    if det:
        print(f"\n=== detection (3 agents, fall_after = 1, + {args.detect_background} background checks, "
              "two other targets hung at every moment, the 503 and the hang at the same instant): "
              "ms after the switch, median / p95 [min–max] ===")
        for mode, reps in det.items():
            print(f"  {mode}:")
            rows = [("use1 observes (target log)", [r["observed_ms_target"].get("use1") for r in reps]),
                    ("use1 observes (/v1/status)", [r["observed_ms_status"].get("use1") for r in reps]),
                    ("first agent observes", [min(r["observed_ms_target"].values(), default=None) for r in reps]),
                    ("second agent observes (quorum of votes exists)",
                     [sorted(r["observed_ms_target"].values())[1] if len(r["observed_ms_target"]) > 1 else None
                      for r in reps]),
                    ("use1 quorum decision", [r["decision_ms"]["use1"] for r in reps]),
                    ("first quorum decision", [min(r["decision_ms"].values()) for r in reps]),
                    ("last quorum decision", [max(r["decision_ms"].values()) for r in reps])]
            for name, xs in rows:
                s = spread(xs)
                print(f"    {name:48} " + ("n/a" if s is None else
                      f"{s['median']:6.0f} / {s['p95']:6.0f} [{s['min']:.0f}–{s['max']:.0f}] (n={s['n']})"))
            ab = [r.get("use1_abstentions") for r in reps if r.get("use1_abstentions") is not None]
            if ab:
                total = {}
                for a in ab:
                    for k, v in a.items():
                        total[k] = total.get(k, 0) + v
                print(f"    use1 abstentions over all reps, by reason: {total or 'none'}"
                      f" (reps with any: {sum(1 for a in ab if a)} of {len(ab)})")


def interrupted(*_):
    raise KeyboardInterrupt


def machine():
    model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    return {"cpus": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30, 1),
            "loadavg": open("/proc/loadavg").read().split()[:3]}


def versions(binary):
    out = {}
    for name, cmd in [("quorumgate", [binary, "--version"]), ("blackbox", [BLACKBOX, "--version"]),
                      ("prometheus", [PROMETHEUS, "--version"]), ("nginx", [NGINX, "-v"])]:
        if not os.access(cmd[0], os.X_OK):  # not needed for this run's tools
            out[name] = "-"
            continue
        r = subprocess.run(cmd, capture_output=True, text=True)
        out[name] = (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else "?"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/quorumgate")
    ap.add_argument("--targets", default="1000,10000", help="comma-separated N values")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the whole efficiency run")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=15.0)
    ap.add_argument("--members", type=int, default=3, choices=[1, 3],
                    help="quorumgate agents in the efficiency run (use1 is measured)")
    ap.add_argument("--concurrency", type=int, default=0,
                    help="local.probe_concurrency (default: max(64, N), so a batch of hung targets "
                         "cannot hold the others back)")
    ap.add_argument("--tools", default="quorumgate,blackbox")
    ap.add_argument("--detect-reps", type=int, default=20)
    ap.add_argument("--detect-background", type=int, default=1000)
    ap.add_argument("--json", default="target/probe-bench.json")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        die(f"{args.binary} is missing: cargo build --release -p quorumgate")
    ns = [int(x) for x in args.targets.split(",") if x]
    tools = args.tools.split(",")
    # `--tools quorumgate` (e.g. an RSS run of the agent alone) needs nginx only.
    for path in [NGINX] + ([BLACKBOX, PROMETHEUS] if "blackbox" in tools else []):
        need(path)
    raise_nofile()
    signal.signal(signal.SIGTERM, interrupted)
    tmp = tempfile.mkdtemp(prefix="quorumgate-probebench-")
    results = {"machine": machine(), "versions": versions(args.binary), "args": vars(args), "targets": ns,
               "efficiency": {}, "detection": {}}
    print(json.dumps({"machine": results["machine"], "versions": results["versions"]}), flush=True)
    nginx = None
    try:
        nginx = Nginx(tmp, max(ns + [args.detect_background]), pick_port())
        print(f"nginx up: {max(ns + [args.detect_background])} targets on 127.1.x.y:{nginx.port}", flush=True)
        for rep in range(args.reps):
            for n in ns:
                runs = results["efficiency"].setdefault(str(n), {"quorumgate": [], "blackbox": []})
                for tool in tools:
                    r = (run_quorumgate if tool == "quorumgate" else run_blackbox)(args, tmp, nginx, n, rep)
                    runs[tool].append(r)
                    print(f"rep {rep + 1} N={n} {tool:10}: {r['probes_per_s']:.0f} probes/s (nginx "
                          f"{r['nginx_requests_per_s']:.0f}/s), CPU {r['cpu_pct']:.1f} %, "
                          f"{r['cpu_us_per_probe'] or 0:.1f} µs/probe, RSS {r['rss_mib_mean']:.1f} MiB "
                          f"(HWM {r['hwm_mib']:.1f})", flush=True)
        if args.detect_reps:
            print(f"detection: {args.detect_reps} reps per mode", flush=True)
            run_detection(args, tmp, nginx, results)
        if tools == ["quorumgate", "blackbox"] or not results["efficiency"]:
            report(results, args)
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
    finally:
        if nginx is not None:
            nginx.stop()
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
        print(f"JSON: {args.json}")
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
