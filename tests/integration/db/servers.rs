//! Throwaway database servers for the tests: PostgreSQL 15 (and a streaming replica of it) and
//! MariaDB, each in its own temp dir on a free loopback port, started from the installed
//! binaries and stopped on drop. Missing binaries fail the test (never skip it) and name the
//! script that installs them.
//!
//! Postgres refuses to run as root, so when the tests run as root its commands run as the
//! `postgres` OS user (`runuser`), in a temp dir that user owns. MariaDB runs as root with
//! `--user=root`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// The probe user's password, on every server. Tests that check for leaks search for it.
pub const PROBE_PASSWORD: &str = "qg-Probe-pw-7c1e94";
const SUPER_PASSWORD: &str = "qg-Super-pw-51d0aa";
pub const PROBE_USER: &str = "qg";
pub const DB: &str = "qgtest";
const INSTALL_HINT: &str = "install the test dependencies with `bash scripts/test-deps.sh`";

fn require(path: &Path) {
    assert!(
        path.exists(),
        "{} is missing: {INSTALL_HINT}",
        path.display()
    );
}

/// A free loopback port (bound, then released for the server).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("reserve a port")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the `postgres` OS user when we are root.
fn pg_command(program: &str) -> Command {
    let path = Path::new(PG_BIN).join(program);
    require(&path);
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e} ({INSTALL_HINT})"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chown_to_postgres(path: &Path) {
    if is_root() {
        let mut c = Command::new("chown");
        c.arg("-R").arg("postgres:postgres").arg(path);
        run(c, "chown to postgres");
    }
}

/// A PostgreSQL 15 server (a primary, or a streaming standby of one).
#[derive(Debug)]
pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    log: PathBuf,
    running: bool,
    _dir: tempfile::TempDir,
}

impl Postgres {
    /// `initdb` + `pg_ctl start`: superuser `postgres` and probe user [`PROBE_USER`], both with
    /// scram passwords over TCP; database [`DB`] owned by the probe user.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// As [`Postgres::start`], serving TLS with this certificate and key (PEM), and listening
    /// on 127.0.0.2 as well (an address the certificate does not name).
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_inner(Some((cert, key)))
    }

    fn start_inner(tls: Option<(&Path, &Path)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, SUPER_PASSWORD).expect("write pwfile");
        chown_to_postgres(dir.path());
        let mut c = pg_command("initdb");
        c.arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["--no-sync", "-E", "UTF8", "--locale=C"]);
        run(c, "initdb");
        // Streaming replication from loopback without a password (the replica test).
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("read pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host replication postgres 127.0.0.1/32 trust\n{rules}"),
        )
        .expect("write pg_hba.conf");
        let port = free_port();
        append_conf(
            &data,
            &format!(
                "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
                 fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n\
                 wal_level = replica\nmax_wal_senders = 4\nhot_standby = on\nmax_connections = 30\n",
                dir.path().display()
            ),
        );
        if let Some((cert, key)) = tls {
            let (c, k) = (dir.path().join("server.crt"), dir.path().join("server.key"));
            std::fs::copy(cert, &c).expect("copy cert");
            std::fs::copy(key, &k).expect("copy key");
            chown_to_postgres(dir.path());
            let mut chmod = Command::new("chmod");
            chmod.arg("600").arg(&k);
            run(chmod, "chmod key");
            append_conf(
                &data,
                &format!(
                    "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\nlisten_addresses = '127.0.0.1,127.0.0.2'\n",
                    c.display(),
                    k.display()
                ),
            );
        }
        let mut pg = Self {
            port,
            log: dir.path().join("server.log"),
            data,
            running: false,
            _dir: dir,
        };
        pg.start_server();
        pg.psql_in(
            "postgres",
            &format!("CREATE ROLE {PROBE_USER} LOGIN PASSWORD '{PROBE_PASSWORD}'"),
        );
        pg.psql_in(
            "postgres",
            &format!("CREATE DATABASE {DB} OWNER {PROBE_USER}"),
        );
        pg
    }

    /// A streaming standby of `primary` (`pg_basebackup -R`) on its own port.
    pub fn replica_of(primary: &Postgres) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        chown_to_postgres(dir.path());
        let mut c = pg_command("pg_basebackup");
        c.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-X",
            "stream",
            "-R",
            "--no-sync",
            "--checkpoint=fast",
        ])
        .arg("-p")
        .arg(primary.port.to_string())
        .arg("-D")
        .arg(&data);
        run(c, "pg_basebackup");
        let port = free_port();
        append_conf(
            &data,
            &format!(
                "port = {port}\nunix_socket_directories = '{}'\n",
                dir.path().display()
            ),
        );
        let mut pg = Self {
            port,
            log: dir.path().join("server.log"),
            data,
            running: false,
            _dir: dir,
        };
        pg.start_server();
        pg
    }

    fn start_server(&mut self) {
        let mut c = pg_command("pg_ctl");
        c.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"]);
        run(c, "pg_ctl start");
        self.running = true;
    }

    /// `pg_ctl stop -m fast`: the server is gone when this returns.
    pub fn stop(&mut self) {
        if self.running {
            let mut c = pg_command("pg_ctl");
            c.arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "-t", "60", "stop"]);
            run(c, "pg_ctl stop");
            self.running = false;
        }
    }

    /// Runs SQL in [`DB`] as the superuser over the unix socket (trust); returns the
    /// unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in(DB, sql)
    }

    fn psql_in(&self, db: &str, sql: &str) -> String {
        let socket_dir = self.data.parent().expect("data dir has a parent");
        let mut c = pg_command("psql");
        c.arg("-h")
            .arg(socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .args([
                "-U",
                "postgres",
                "-d",
                db,
                "-v",
                "ON_ERROR_STOP=1",
                "-Atc",
                sql,
            ]);
        let out = c.stdin(Stdio::null()).output().expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed:\n{}\n--- server log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A tokio-postgres session as the superuser (to hold locks across probes).
    pub async fn admin(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .password(SUPER_PASSWORD)
            .dbname(DB)
            .connect(tokio_postgres::NoTls)
            .await
            .expect("admin connection");
        tokio::spawn(conn);
        client
    }

    pub fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            let mut c = pg_command("pg_ctl");
            c.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
            let _ = c.stdin(Stdio::null()).output();
        }
    }
}

fn append_conf(data: &Path, lines: &str) {
    let conf = data.join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
    text.push_str("\n# quorumgate tests\n");
    text.push_str(lines);
    std::fs::write(&conf, text).expect("write postgresql.conf");
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A MariaDB server (`mariadb-install-db` + `mariadbd`), killed on drop.
#[derive(Debug)]
pub struct MariaDb {
    pub port: u16,
    socket: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl MariaDb {
    /// Root (via the unix socket) is the admin; [`PROBE_USER`] is an ordinary user with all
    /// rights on database [`DB`] only, so `read_only` applies to it.
    pub fn start() -> Self {
        Self::start_inner(None)
    }

    /// As [`MariaDb::start`], serving TLS with this certificate and key (PEM).
    pub fn start_tls(cert: &Path, key: &Path) -> Self {
        Self::start_inner(Some((cert, key)))
    }

    fn start_inner(tls: Option<(&Path, &Path)>) -> Self {
        let install = which("mariadb-install-db");
        let server = which("mariadbd");
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        // Not the shared /tmp: concurrent bootstraps collide on their temporary tables there.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).expect("server tmpdir");
        let mut c = Command::new(install);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--user=root", "--skip-test-db"])
            .arg("--auth-root-authentication-method=socket");
        run(c, "mariadb-install-db");
        let port = free_port();
        let socket = dir.path().join("mysqld.sock");
        let log = dir.path().join("server.log");
        let mut cmd = Command::new(server);
        cmd.arg("--no-defaults"); // must come first
        if let Some((cert, key)) = tls {
            cmd.arg(format!("--ssl-cert={}", cert.display()))
                .arg(format!("--ssl-key={}", key.display()));
        }
        let child = cmd
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!(
                "--pid-file={}",
                dir.path().join("mysqld.pid").display()
            ))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={port}"))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--innodb-flush-log-at-trx-commit=0",
                "--skip-innodb-doublewrite",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting mariadbd: {e} ({INSTALL_HINT})"));
        let mut db = Self {
            port,
            socket,
            log,
            child: Some(child),
            _dir: dir,
        };
        db.wait_ready();
        db.sql(&format!(
            "CREATE DATABASE {DB}; CREATE USER '{PROBE_USER}'@'%' IDENTIFIED BY '{PROBE_PASSWORD}'; \
             GRANT ALL PRIVILEGES ON {DB}.* TO '{PROBE_USER}'@'%'; \
             CREATE USER 'admin'@'%' IDENTIFIED BY '{SUPER_PASSWORD}'; \
             GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION;"
        ));
        db
    }

    fn wait_ready(&mut self) {
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if self.try_sql("SELECT 1").is_ok() {
                return;
            }
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("mariadbd exited ({status}):\n{}", tail(&self.log));
                }
            }
            assert!(
                Instant::now() < end,
                "mariadbd not ready after 60s:\n{}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_sql(&self, sql: &str) -> Result<String, String> {
        let out = Command::new(which("mariadb"))
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-u", "root", "-N", "-B", "-e", sql])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs SQL as root over the unix socket; returns the tab-separated output.
    pub fn sql(&self, sql: &str) -> String {
        self.try_sql(sql)
            .unwrap_or_else(|e| panic!("mariadb {sql:?} failed: {e}\n{}", tail(&self.log)))
    }

    /// A mysql_async session as an admin user over TCP (to hold locks across probes).
    pub async fn admin(&self) -> mysql_async::Conn {
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some("admin"))
            .pass(Some(SUPER_PASSWORD))
            .db_name(Some(DB));
        mysql_async::Conn::new(opts)
            .await
            .expect("admin connection")
    }

    /// Kills the server and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.stop();
    }
}

fn which(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let p = Path::new(dir).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} not found in /usr/sbin or /usr/bin: {INSTALL_HINT}");
}
