#!/usr/bin/env python3
"""Write-probe overhead: one agent probing 50 Postgres and 50 MariaDB targets at 1 s.

Starts a PostgreSQL 15 and a MariaDB server on 127.0.0.1 (temp dirs, free ports in
22000-31999, fsync / flush-at-commit off so the figures are the client path, not the disk) and
creates one database per target on each (db00..db49, each with the heartbeat table, for the
probe user `qg`: password auth over TCP). Then:

1. Baseline, before the agent runs, against the same databases as the same user:
   - cold: one `psql -c` / `mariadb -e` process per call (`select 1`, and the probe's own
     statements): process start + connect + login + round trips;
   - library: the C client libraries under those tools (libpq, libmariadb, through ctypes) on
     one open connection per database, sending the probe's statements (Postgres: BEGIN, the
     prepared upsert, COMMIT; MariaDB: SELECT @@global.read_only, START TRANSACTION, the
     upsert, COMMIT) — back to back on one connection, and paced like the agent (every
     connection one transaction a second, their turns spread over the second).
2. One agent (release build, single member) with 100 checks at 1 s: 50 `postgres` and 50
   `mysql` write probes, one per database. After a warm-up it measures the agent's CPU
   (utime+stime from /proc/PID/stat, as a share of one core), RSS (VmRSS every second;
   VmHWM), and the per-probe latency from its /metrics (`quorumgate_probe_duration_seconds`
   sum/count over the window, by engine).

Every process is started here and stopped at the end (also on Ctrl-C or SIGTERM); the temp
dir is removed. Postgres refuses to run as root, so its server commands then run as the
`postgres` OS user.

    cargo build --release -p quorumgate
    python3 benches/db/db_probes.py [--targets 50] [--seconds 60] [--warmup 10]
"""
import argparse
import ctypes
import ctypes.util
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PG_BIN = "/usr/lib/postgresql/15/bin"
HINT = "install the test dependencies with `bash scripts/test-deps.sh`"
USER = "qg"
PASSWORD = "qg-Bench-pw-41c7e2"
SUPER_PASSWORD = "qg-Bench-super-9d03"
TABLE = "quorumgate_heartbeat"
AGENT = "bench"
PG_TABLE_SQL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (agent text PRIMARY KEY, region text NOT NULL, "
                "ts bigint NOT NULL, seq bigint NOT NULL)")
MY_TABLE_SQL = (f"CREATE TABLE IF NOT EXISTS {TABLE} (agent VARCHAR(64) NOT NULL PRIMARY KEY, "
                "region VARCHAR(255) NOT NULL, ts BIGINT NOT NULL, seq BIGINT NOT NULL) ENGINE=InnoDB")
# The probes' transactions, statement by statement (postgres.rs / mysql.rs).
PG_UPSERT = (f"INSERT INTO {TABLE} (agent, region, ts, seq) VALUES ($1, $2, $3, $4) "
             "ON CONFLICT (agent) DO UPDATE SET region = EXCLUDED.region, ts = EXCLUDED.ts, seq = EXCLUDED.seq")
PG_TXN = ["BEGIN",
          f"INSERT INTO {TABLE} (agent, region, ts, seq) VALUES ('cli', 'bench', 1, 1) "
          "ON CONFLICT (agent) DO UPDATE SET region = EXCLUDED.region, ts = EXCLUDED.ts, seq = EXCLUDED.seq",
          "COMMIT"]
MY_TXN = ["SELECT @@global.read_only",
          "START TRANSACTION",
          f"INSERT INTO {TABLE} (agent, region, ts, seq) VALUES ('cli', 'bench', 1, 1) "
          "ON DUPLICATE KEY UPDATE region = VALUES(region), ts = VALUES(ts), seq = VALUES(seq)",
          "COMMIT"]


def die(msg):
    sys.exit(f"db_probes: {msg}")


def need(path):
    if not os.path.exists(path):
        die(f"{path} is missing: {HINT}")
    return path


def which(name):
    path = shutil.which(name, path="/usr/sbin:/usr/bin:/usr/local/sbin:/usr/local/bin")
    if not path:
        die(f"{name} not found: {HINT}")
    return path


def pick_port():
    """A free loopback port below the ephemeral range (so no outgoing connection holds it) and
    outside 20000-20999."""
    for _ in range(200):
        port = random.randrange(22000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    die("no free port in 22000-31999")


def is_root():
    return os.geteuid() == 0


def run(cmd, what, **kw):
    out = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kw)
    if out.returncode != 0:
        die(f"{what} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def as_postgres(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if is_root() else cmd


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mem_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Postgres:
    def __init__(self, root):
        self.dir = os.path.join(root, "pg")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = pick_port()
        self.running = False

    def start(self, targets):
        os.makedirs(self.dir)
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(SUPER_PASSWORD)
        if is_root():
            run(["chown", "-R", "postgres:postgres", self.dir], "chown")
        run(as_postgres([need(f"{PG_BIN}/initdb"), "-D", self.data, "-U", "postgres", "--auth-local=trust",
                         "--auth-host=scram-sha-256", f"--pwfile={pw}", "--no-sync", "-E", "UTF8",
                         "--locale=C"]), "initdb")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            # fsync and synchronous_commit off: the figures are the client path, not the disk.
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                    f"unix_socket_directories = '{self.dir}'\nfsync = off\nsynchronous_commit = off\n"
                    f"full_page_writes = off\nmax_connections = {targets + 40}\n")
        run(as_postgres([need(f"{PG_BIN}/pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60",
                         "start"]), "pg_ctl start")
        self.running = True
        self.admin(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        for i in range(targets):
            self.admin(f"CREATE DATABASE db{i:02} OWNER {USER}")
            self.client(i, [PG_TABLE_SQL])

    def admin(self, sql):
        run([need(f"{PG_BIN}/psql"), "-X", "-h", self.dir, "-p", str(self.port), "-U", "postgres", "-d",
             "postgres", "-v", "ON_ERROR_STOP=1", "-qAtc", sql], f"psql {sql!r}")

    def client_cmd(self, i, statements):
        cmd = [f"{PG_BIN}/psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER,
               "-d", f"db{i:02}", "-v", "ON_ERROR_STOP=1"]
        for s in statements:
            cmd += ["-c", s]
        return cmd

    def client(self, i, statements):
        run(self.client_cmd(i, statements), "psql as the probe user", env=self.env())

    @staticmethod
    def env():
        return dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="5")

    def connections(self):
        out = subprocess.run([f"{PG_BIN}/psql", "-X", "-h", self.dir, "-p", str(self.port), "-U", "postgres",
                              "-d", "postgres", "-Atc",
                              "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'quorumgate'"],
                             capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        if self.running:
            subprocess.run(as_postgres([f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "30",
                                        "stop"]), capture_output=True)
            self.running = False


class MariaDb:
    def __init__(self, root):
        self.dir = os.path.join(root, "my")
        self.socket = os.path.join(self.dir, "mysqld.sock")
        self.log = os.path.join(self.dir, "server.log")
        self.port = pick_port()
        self.client_bin = which("mariadb")
        self.proc = None

    def start(self, targets):
        os.makedirs(self.dir)
        data = os.path.join(self.dir, "data")
        user = ["--user=root"] if is_root() else []
        tmpdir = os.path.join(self.dir, "tmp")  # not /tmp: concurrent servers' temp tables collide there
        os.makedirs(tmpdir)
        run([which("mariadb-install-db"), "--no-defaults", f"--datadir={data}", f"--tmpdir={tmpdir}",
             "--skip-test-db",
             "--auth-root-authentication-method=socket"] + user, "mariadb-install-db")
        self.proc = subprocess.Popen(
            [which("mariadbd"), "--no-defaults", f"--datadir={data}", f"--tmpdir={tmpdir}", f"--socket={self.socket}",
             f"--pid-file={self.dir}/mysqld.pid", f"--log-error={self.log}", f"--port={self.port}",
             "--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin",
             "--innodb-buffer-pool-size=64M", "--innodb-flush-log-at-trx-commit=0",
             f"--max-connections={targets + 40}"] + user,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        end = time.monotonic() + 60
        while subprocess.run(self.root_cmd("SELECT 1"), capture_output=True).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > end:
                log = open(self.log).read() if os.path.exists(self.log) else ""
                die(f"mariadbd did not start:\n{log[-3000:]}")
            time.sleep(0.1)
        sql = [f"CREATE USER '{USER}'@'%' IDENTIFIED BY '{PASSWORD}'"]
        for i in range(targets):
            sql += [f"CREATE DATABASE db{i:02}", f"GRANT ALL PRIVILEGES ON db{i:02}.* TO '{USER}'@'%'",
                    f"USE db{i:02}", MY_TABLE_SQL]
        run(self.root_cmd("; ".join(sql)), "mariadb setup")

    def root_cmd(self, sql):
        return [self.client_bin, "--no-defaults", f"--socket={self.socket}", "-u", "root", "-N", "-B", "-e", sql]

    def client_cmd(self, i, statements):
        cmd = [self.client_bin, "--no-defaults", "-h", "127.0.0.1", "-P", str(self.port), "-u", USER,
               f"--password={PASSWORD}", "-N", "-B", f"db{i:02}"]
        return cmd + (["-e", "; ".join(statements)] if statements else [])

    def connections(self):
        out = subprocess.run(self.root_cmd(
            f"SELECT count(*) FROM information_schema.processlist WHERE user = '{USER}'"),
            capture_output=True, text=True)
        return out.stdout.strip()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def timed(cmd, env):
    """Wall time of one CLI call."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        die(f"{cmd[0]} failed: {out.stderr.decode(errors='replace')}")
    return dt


def ms_stats(xs):
    xs = sorted(x * 1000 for x in xs)
    return {"median": statistics.median(xs), "mean": statistics.mean(xs), "p90": xs[int(0.9 * (len(xs) - 1))],
            "p99": xs[int(0.99 * (len(xs) - 1))], "n": len(xs)}


class PgConn:
    """One libpq connection (the C library under psql), through ctypes: no process start, no
    login per call. The probe's transaction, as the agent sends it: BEGIN, the prepared
    upsert, COMMIT."""
    lib = None

    def __init__(self, port, db):
        if PgConn.lib is None:
            lib = ctypes.CDLL(ctypes.util.find_library("pq") or die(f"libpq not found: {HINT}"))
            lib.PQconnectdb.restype = ctypes.c_void_p
            lib.PQconnectdb.argtypes = [ctypes.c_char_p]
            lib.PQstatus.argtypes = [ctypes.c_void_p]
            lib.PQerrorMessage.restype = ctypes.c_char_p
            lib.PQerrorMessage.argtypes = [ctypes.c_void_p]
            lib.PQexec.restype = ctypes.c_void_p
            lib.PQexec.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.PQprepare.restype = ctypes.c_void_p
            lib.PQprepare.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int,
                                      ctypes.c_void_p]
            lib.PQexecPrepared.restype = ctypes.c_void_p
            lib.PQexecPrepared.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                                           ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p,
                                           ctypes.c_int]
            lib.PQresultStatus.argtypes = [ctypes.c_void_p]
            lib.PQclear.argtypes = [ctypes.c_void_p]
            lib.PQfinish.argtypes = [ctypes.c_void_p]
            PgConn.lib = lib
        self.conn = self.lib.PQconnectdb(
            f"host=127.0.0.1 port={port} dbname={db} user={USER} password={PASSWORD} sslmode=disable "
            f"application_name=qg-bench connect_timeout=5".encode())
        if self.lib.PQstatus(self.conn) != 0:
            die(f"libpq connect: {self.lib.PQerrorMessage(self.conn).decode(errors='replace')}")
        self.check(self.lib.PQprepare(self.conn, b"hb", PG_UPSERT.encode(), 4, None))
        self.params = (ctypes.c_char_p * 4)(b"cli", b"bench", b"1", b"1")

    def check(self, res):
        status = self.lib.PQresultStatus(res)
        self.lib.PQclear(res)
        if status not in (1, 2):  # PGRES_COMMAND_OK, PGRES_TUPLES_OK
            die(f"libpq: {self.lib.PQerrorMessage(self.conn).decode(errors='replace')}")

    def txn(self):
        t0 = time.perf_counter()
        self.check(self.lib.PQexec(self.conn, b"BEGIN"))
        self.check(self.lib.PQexecPrepared(self.conn, b"hb", 4, self.params, None, None, 0))
        self.check(self.lib.PQexec(self.conn, b"COMMIT"))
        return time.perf_counter() - t0

    def close(self):
        self.lib.PQfinish(self.conn)


class MyConn:
    """One libmariadb connection (the C library under the mariadb client), through ctypes. The
    probe's statements: the read_only check, START TRANSACTION, the upsert, COMMIT (the agent
    sends the upsert as a prepared statement; here it is a text query)."""
    lib = None

    def __init__(self, port, db):
        if MyConn.lib is None:
            lib = ctypes.CDLL(ctypes.util.find_library("mariadb") or die(f"libmariadb not found: {HINT}"))
            lib.mysql_init.restype = ctypes.c_void_p
            lib.mysql_init.argtypes = [ctypes.c_void_p]
            lib.mysql_real_connect.restype = ctypes.c_void_p
            lib.mysql_real_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                               ctypes.c_char_p, ctypes.c_uint, ctypes.c_char_p, ctypes.c_ulong]
            lib.mysql_error.restype = ctypes.c_char_p
            lib.mysql_error.argtypes = [ctypes.c_void_p]
            lib.mysql_query.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.mysql_store_result.restype = ctypes.c_void_p
            lib.mysql_store_result.argtypes = [ctypes.c_void_p]
            lib.mysql_free_result.argtypes = [ctypes.c_void_p]
            lib.mysql_close.argtypes = [ctypes.c_void_p]
            MyConn.lib = lib
        self.conn = self.lib.mysql_init(None)
        if not self.lib.mysql_real_connect(self.conn, b"127.0.0.1", USER.encode(), PASSWORD.encode(),
                                           db.encode(), port, None, 0):
            die(f"libmariadb connect: {self.lib.mysql_error(self.conn).decode(errors='replace')}")
        self.statements = [s.encode() for s in MY_TXN]

    def txn(self):
        t0 = time.perf_counter()
        for sql in self.statements:
            if self.lib.mysql_query(self.conn, sql) != 0:
                die(f"libmariadb: {self.lib.mysql_error(self.conn).decode(errors='replace')}")
            res = self.lib.mysql_store_result(self.conn)
            if res:
                self.lib.mysql_free_result(res)
        return time.perf_counter() - t0

    def close(self):
        self.lib.mysql_close(self.conn)


LIB = {"pg": "libpq", "my": "libmariadb"}


def baseline(pg, my, args):
    """Cold: a CLI process per call. Library: the same C client libraries on one open
    connection per database — back to back, and paced like the agent (every connection one
    transaction a second, the connections' turns spread evenly over the second)."""
    res = {}
    penv = pg.env()
    n = args.targets
    for name, mk in [("pg: psql -c 'select 1'", lambda i: pg.client_cmd(i, ["select 1"])),
                     ("pg: psql -c (probe txn)", lambda i: pg.client_cmd(i, PG_TXN)),
                     ("my: mariadb -e 'select 1'", lambda i: my.client_cmd(i, ["select 1"])),
                     ("my: mariadb -e (probe txn)", lambda i: my.client_cmd(i, MY_TXN))]:
        res[name] = ms_stats([timed(mk(k % n), env=penv) for k in range(args.runs)])
    conns = {"pg": [], "my": []}
    try:
        for i in range(n):
            conns["pg"].append(PgConn(pg.port, f"db{i:02}"))
            conns["my"].append(MyConn(my.port, f"db{i:02}"))
        for eng, cs in conns.items():
            cs[0].txn()
            res[f"{eng}: {LIB[eng]}, back to back"] = ms_stats([cs[0].txn() for _ in range(args.txns)])
        turns = [(eng, c) for i in range(n) for eng, c in (("pg", conns["pg"][i]), ("my", conns["my"][i]))]
        samples = {"pg": [], "my": []}
        start = time.monotonic()
        for r in range(args.paced_rounds):
            for k, (eng, c) in enumerate(turns):
                pause = start + r + k / len(turns) - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                samples[eng].append(c.txn())
        for eng, xs in samples.items():
            res[f"{eng}: {LIB[eng]}, paced 1 s"] = ms_stats(xs)
    finally:
        for cs in conns.values():
            for c in cs:
                c.close()
    return res


def parse_durations(text):
    """{(check, kind): (sum, count)} of quorumgate_probe_duration_seconds."""
    out = {}
    pat = re.compile(r'^quorumgate_probe_duration_seconds_(sum|count)\{check="([^"]+)",kind="([^"]+)"\} (\S+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            key = (m.group(2), m.group(3))
            s, c = out.get(key, (0.0, 0.0))
            if m.group(1) == "sum":
                s = float(m.group(4))
            else:
                c = float(m.group(4))
            out[key] = (s, c)
    return out


def parse_buckets(text, kind):
    """{le: count} summed over the checks of one kind."""
    out = {}
    pat = re.compile(r'^quorumgate_probe_duration_seconds_bucket\{check="[^"]+",kind="' + kind +
                     r'",le="([^"]+)"\} (\S+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out[le] = out.get(le, 0.0) + float(m.group(2))
    return out


def results(text):
    """{(kind, result, reason): count} of quorumgate_probe_total."""
    out = {}
    pat = re.compile(r'^quorumgate_probe_total\{check="[^"]+",kind="([^"]+)",result="([^"]+)",reason="([^"]+)"\} (\S+)$')
    for line in text.splitlines():
        m = pat.match(line)
        if m:
            k = m.groups()[:3]
            out[k] = out.get(k, 0.0) + float(m.group(4))
    return out


def quantile(buckets0, buckets1, q):
    """The upper bound of the bucket holding quantile q of the window's observations."""
    les = sorted(buckets1)
    total = buckets1[les[-1]] - buckets0.get(les[-1], 0.0)
    for le in les:
        if buckets1[le] - buckets0.get(le, 0.0) >= q * total:
            return le
    return float("inf")


def agent_config(tmp, binary, pg, my, targets, port):
    out = run([binary, "keygen", "--out", f"{tmp}/agent.key"], "keygen")
    pub = next(l for l in out.splitlines() if l.startswith("public_key")).split('"')[1]
    checks = []
    for engine, srv in [("postgres", pg), ("mysql", my)]:
        for i in range(targets):
            checks.append(
                f'[[checks]]\nid = "{"pg" if engine == "postgres" else "my"}{i:02}"\ninterval = "1s"\ntimeout = "800ms"\n'
                f'[checks.{engine}]\nhost = "127.0.0.1"\nport = {srv.port}\ndbname = "db{i:02}"\n'
                f'user = "{USER}"\npassword_env = "QG_BENCH_DB_PASSWORD"\nsslmode = "disable"\n')
    return (f'[cluster]\nname = "db-bench"\nround_interval = "1s"\nballot_valid_for = "4s"\n'
            f'peer_timeout = "500ms"\nallow_single_member = true\n'
            f'[[members]]\nid = "{AGENT}"\nregion = "bench"\nurl = "http://127.0.0.1:{port}/"\n'
            f'public_key = "{pub}"\n' + "".join(checks) +
            f'[local]\nagent_id = "{AGENT}"\nlisten = "127.0.0.1:{port}"\nkey_file = "{tmp}/agent.key"\n'
            f'state_dir = "{tmp}/state"\nlog_level = "warn"\n')


def interrupted(*_):
    raise KeyboardInterrupt


def get(port, path):
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/{path}", timeout=5).read().decode()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/quorumgate")
    ap.add_argument("--targets", type=int, default=50, help="databases per engine (at most 100)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--runs", type=int, default=100, help="cold CLI calls per baseline figure")
    ap.add_argument("--txns", type=int, default=1000, help="back-to-back transactions on one connection")
    ap.add_argument("--paced-rounds", type=int, default=30,
                    help="seconds of the paced library baseline (every connection, one call a second)")
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        die(f"{args.binary} is missing: cargo build --release -p quorumgate")
    if not 1 <= args.targets <= 100:
        die("--targets must be 1-100")
    for tool in ["initdb", "pg_ctl", "psql"]:
        need(f"{PG_BIN}/{tool}")

    # Ctrl-C or SIGTERM: unwind through the finally below.
    signal.signal(signal.SIGTERM, interrupted)
    tmp = tempfile.mkdtemp(prefix="quorumgate-dbbench-")
    os.chmod(tmp, 0o755)  # the postgres user must reach its dir inside
    pg = my = agent = None
    try:
        t_setup = time.monotonic()
        pg = Postgres(tmp)
        pg.start(args.targets)
        my = MariaDb(tmp)
        my.start(args.targets)
        print(f"servers up: postgres :{pg.port}, mariadb :{my.port}, {args.targets} databases each "
              f"({time.monotonic() - t_setup:.1f} s)", flush=True)
        print(f"baseline ({args.runs} CLI calls per figure, {args.paced_rounds} s paced) ...", flush=True)
        base = baseline(pg, my, args)

        port = pick_port()
        cfg = os.path.join(tmp, "agent.toml")
        with open(cfg, "w") as f:
            f.write(agent_config(tmp, args.binary, pg, my, args.targets, port))
        log = open(os.path.join(tmp, "agent.log"), "w")
        agent = subprocess.Popen([args.binary, "agent", "--config", cfg], stdout=log, stderr=log,
                                 stdin=subprocess.DEVNULL,
                                 env=dict(os.environ, QG_BENCH_DB_PASSWORD=PASSWORD))
        time.sleep(args.warmup)
        if agent.poll() is not None:
            die(f"the agent exited early:\n{open(os.path.join(tmp, 'agent.log')).read()}")
        m0 = get(port, "metrics")
        cpu0, t0 = cpu_seconds(agent.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < args.seconds:
            time.sleep(1.0)
            rss.append(mem_kib(agent.pid, "VmRSS"))
            if agent.poll() is not None:
                die("the agent exited during the window")
        cpu1, t1 = cpu_seconds(agent.pid), time.monotonic()
        m1 = get(port, "metrics")
        hwm = mem_kib(agent.pid, "VmHWM")
        threads = mem_kib(agent.pid, "Threads")
        conns = (pg.connections(), my.connections())
        status = get(port, "v1/status")
        healthy = status.count('"decision": "healthy"') + status.count('"decision":"healthy"')

        d0, d1 = parse_durations(m0), parse_durations(m1)
        r0, r1 = results(m0), results(m1)
        window = t1 - t0
        print(f"\nagent: {args.targets} postgres + {args.targets} mysql write checks at 1 s, one member; "
              f"{window:.0f} s window after {args.warmup:.0f} s warm-up")
        print(f"  CPU  {100 * (cpu1 - cpu0) / window:.2f} % of one core ({cpu1 - cpu0:.2f} CPU-s)")
        print(f"  RSS  {statistics.mean(rss) / 1024:.1f} MiB mean, {max(rss) / 1024:.1f} MiB max in the window; "
              f"VmHWM {hwm / 1024:.1f} MiB; {threads} threads")
        print(f"  connections held: postgres {conns[0]}, mariadb {conns[1]}; checks decided healthy: "
              f"{healthy}/{2 * args.targets}")
        for kind in ["postgres", "mysql"]:
            keys = [k for k in d1 if k[1] == kind]
            s = sum(d1[k][0] - d0.get(k, (0, 0))[0] for k in keys)
            c = sum(d1[k][1] - d0.get(k, (0, 0))[1] for k in keys)
            per_check = sorted((d1[k][0] - d0.get(k, (0, 0))[0]) / max(1, d1[k][1] - d0.get(k, (0, 0))[1])
                               for k in keys)
            b0, b1 = parse_buckets(m0, kind), parse_buckets(m1, kind)
            bad = sum(v - r0.get(k, 0) for k, v in r1.items() if k[0] == kind and k[1] != "healthy")
            print(f"  {kind:8} probes {c:.0f} ({c / window:.1f}/s, {bad:.0f} unhealthy): mean "
                  f"{1000 * s / max(c, 1):.3f} ms; per-check means {1000 * per_check[0]:.3f}-"
                  f"{1000 * per_check[-1]:.3f} ms; p50 <= {1000 * quantile(b0, b1, 0.5):g} ms, "
                  f"p99 <= {1000 * quantile(b0, b1, 0.99):g} ms (histogram buckets)")
        print("\nbaseline (TCP, the probe user, the same databases; measured before the agent ran):")
        for name, v in base.items():
            print(f"  {name:40} mean {v['mean']:.3f} ms, median {v['median']:.3f} ms, p90 {v['p90']:.3f} ms, "
                  f"p99 {v['p99']:.3f} ms (n = {v['n']})")
    except KeyboardInterrupt:
        print("interrupted; cleaning up", file=sys.stderr)
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(timeout=10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if my is not None:
            my.stop()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
