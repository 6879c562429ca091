//! Issue 5, container sidecar: the agent runs in the image's layout. No container engine here,
//! so the test reads the Dockerfile's last stage (ENTRYPOINT, CMD, ENV, USER, WORKDIR, VOLUME)
//! and lays out a root directory like the image's: config and keys read-only, only the state
//! volume writable. It starts the real binary there with exactly the image's arguments and
//! environment (absolute paths re-rooted), as the image's user when the test runs as root, and
//! checks that the agent becomes ready, answers Route 53, logs JSON, stops on SIGTERM, and
//! writes nothing outside the state directory.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use quorumgate::target_app::TargetApp;
use quorumgate::{keys, net, tls};
use tokio::time::Instant;

use crate::support::exe;

pub const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../Dockerfile");
/// Where the Kubernetes example mounts the TLS Secret (deploy/kubernetes), read-only.
pub const TLS_DIR: &str = "/run/quorumgate/tls";
/// The distroless `nonroot` user's home (from the base image's /etc/passwd).
const HOME: &str = "/home/nonroot";
const LIMIT: Duration = Duration::from_secs(30);

/// What the Dockerfile's final stage says about how the container runs.
#[derive(Debug, Default, Clone)]
pub struct Image {
    pub stages: usize,
    pub base: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<(String, String)>,
    pub user: String,
    pub workdir: String,
    pub volumes: Vec<String>,
    pub expose: Vec<u16>,
    /// Every `RUN` of every stage, for the build checks.
    pub runs: Vec<String>,
}

impl Image {
    pub fn env(&self, name: &str) -> &str {
        self.env
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the Dockerfile sets no ENV {name}"))
    }

    /// The path after `--config` in CMD.
    pub fn config_path(&self) -> &str {
        let at = self
            .cmd
            .iter()
            .position(|a| a == "--config")
            .expect("CMD passes --config");
        &self.cmd[at + 1]
    }
}

/// Parses the subset of Dockerfile syntax our Dockerfile uses (exec-form arrays, `ENV k=v`,
/// `ARG NAME=default` substituted as `${NAME}`, `FROM <earlier stage>` inheriting that stage's
/// settings) and returns the last stage, the default build target.
pub fn dockerfile() -> Image {
    dockerfile_target(None)
}

/// As [`dockerfile`], for the stage named `target` (`--target`), or the last one.
pub fn dockerfile_target(target: Option<&str>) -> Image {
    let text = std::fs::read_to_string(DOCKERFILE).expect("read Dockerfile");
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let mut args: Vec<(String, String)> = Vec::new();
    let mut named: Vec<(String, Image)> = Vec::new();
    let mut image = Image::default();
    let mut name = String::new();
    let mut runs = Vec::new();
    for ins in instructions {
        let (word, rest) = ins.split_once(char::is_whitespace).unwrap_or((&ins, ""));
        let rest = rest.trim();
        match word.to_ascii_uppercase().as_str() {
            "ARG" => {
                if let Some((k, v)) = rest.split_once('=') {
                    args.push((k.to_owned(), v.to_owned()));
                }
            }
            "FROM" => {
                if image.stages > 0 {
                    named.push((std::mem::take(&mut name), std::mem::take(&mut image)));
                }
                let mut words = rest.split_whitespace();
                let mut from = words.next().unwrap_or("").to_owned();
                for (k, v) in &args {
                    from = from.replace(&format!("${{{k}}}"), v);
                }
                if let (Some(kw), Some(n)) = (words.next(), words.next()) {
                    assert!(kw.eq_ignore_ascii_case("as"), "FROM {rest}");
                    n.clone_into(&mut name);
                }
                image = match named.iter().find(|(n, _)| *n == from) {
                    Some((_, parent)) => Image {
                        runs: Vec::new(),
                        ..parent.clone()
                    },
                    None => Image {
                        base: from,
                        ..Image::default()
                    },
                };
                image.stages = named.len() + 1;
            }
            "ENTRYPOINT" => image.entrypoint = exec_form(rest),
            "CMD" => image.cmd = exec_form(rest),
            "VOLUME" => image.volumes = exec_form(rest),
            "USER" => rest.clone_into(&mut image.user),
            "WORKDIR" => rest.clone_into(&mut image.workdir),
            "RUN" => runs.push(rest.to_owned()),
            "EXPOSE" => image.expose.extend(rest.split_whitespace().map(|p| {
                p.trim_end_matches("/tcp")
                    .parse::<u16>()
                    .unwrap_or_else(|_| panic!("EXPOSE {p}"))
            })),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("ENV {pair}: use the k=v form"));
                    image
                        .env
                        .push((k.to_owned(), v.trim_matches('"').to_owned()));
                }
            }
            _ => {}
        }
    }
    named.push((name, image));
    let stages = named.len();
    let mut chosen = match target {
        Some(t) => {
            named
                .into_iter()
                .find(|(n, _)| n == t)
                .unwrap_or_else(|| panic!("the Dockerfile has no stage {t}"))
                .1
        }
        None => named.pop().expect("a stage").1,
    };
    chosen.stages = stages;
    chosen.runs = runs;
    chosen
}

fn exec_form(rest: &str) -> Vec<String> {
    serde_json::from_str(rest)
        .unwrap_or_else(|e| panic!("not an exec-form JSON array ({e}): {rest}"))
}

/// `path` (absolute, as in the image) inside `root`; other strings unchanged.
fn reroot(root: &Path, s: &str) -> String {
    match s.strip_prefix('/') {
        Some(rel) => root.join(rel).display().to_string(),
        None => s.to_owned(),
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
}

/// Whether a user other than the owner can reach and execute `path`.
fn executable_by_others(path: &Path) -> bool {
    let file_ok = std::fs::metadata(path).is_ok_and(|m| m.mode() & 0o005 == 0o005);
    file_ok
        && path
            .ancestors()
            .skip(1)
            .all(|d| std::fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 != 0))
}

/// One entry of a directory tree: what a write would change.
type Entry = (u32, u64, i64, i64, u32, u32, Option<PathBuf>);

/// Every entry under `root` except `skip` (the state volume), by relative path.
fn snapshot(root: &Path, skip: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, dir: &Path, skip: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path == skip {
                continue;
            }
            let m = std::fs::symlink_metadata(&path).expect("lstat");
            let link = m
                .file_type()
                .is_symlink()
                .then(|| std::fs::read_link(&path).expect("readlink"));
            let rel = path.strip_prefix(root).expect("under root").to_owned();
            out.insert(
                rel,
                (
                    m.mode(),
                    m.len(),
                    m.mtime(),
                    m.mtime_nsec(),
                    m.uid(),
                    m.gid(),
                    link,
                ),
            );
            if m.is_dir() {
                walk(root, &path, skip, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    let m = std::fs::metadata(root).expect("stat root");
    out.insert(
        PathBuf::from("."),
        (
            m.mode(),
            0,
            m.mtime(),
            m.mtime_nsec(),
            m.uid(),
            m.gid(),
            None,
        ),
    );
    walk(root, root, skip, &mut out);
    out
}

/// The image's root filesystem in a temporary directory. Makes it writable again on drop, so
/// the temporary directory can be removed when the test does not run as root.
struct RootFs {
    dir: tempfile::TempDir,
}

impl RootFs {
    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RootFs {
    fn drop(&mut self) {
        fn open_up(p: &Path) {
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        open_up(&e.path());
                    }
                }
            }
        }
        open_up(self.dir.path());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("reserve a port")
        .port()
}

async fn get(url: &str, tls: &Arc<rustls::ClientConfig>) -> Result<(u16, String), String> {
    let req = net::Request::get(url.parse().expect("url"), Some(Arc::clone(tls)), 1 << 20);
    net::send(&req, Duration::from_secs(3))
        .await
        .map(|r| {
            (
                r.status.as_u16(),
                String::from_utf8_lossy(&r.body).into_owned(),
            )
        })
        .map_err(|e| e.to_string())
}

#[test]
fn dockerfile_builds_a_small_non_root_image() {
    let image = dockerfile();
    assert!(image.stages >= 2, "multi-stage build expected");
    assert!(
        image.base.starts_with("gcr.io/distroless/cc-debian12")
            || image.base.starts_with("debian:bookworm-slim"),
        "small glibc runtime base expected, got {}",
        image.base
    );
    assert!(
        image
            .runs
            .iter()
            .any(|r| r
                .contains("cargo build --release --locked --no-default-features -p quorumgate")),
        "the build stage builds the release binary from Cargo.lock, without the test-fixture \
         `emulator` feature: {:?}",
        image.runs
    );
    let (uid, gid) = image
        .user
        .split_once(':')
        .map_or((image.user.as_str(), ""), |(u, g)| (u, g));
    let uid: u32 = uid.parse().expect("USER must be numeric (runAsNonRoot)");
    assert_ne!(uid, 0, "USER must not be root");
    if !gid.is_empty() {
        assert_ne!(gid.parse::<u32>().expect("numeric group"), 0);
    }
    assert!(image.entrypoint[0].starts_with('/'), "absolute ENTRYPOINT");
    assert_eq!(image.cmd[0], "agent");
    assert!(image.config_path().starts_with('/'));
    let state = image.env("QUORUMGATE_LOCAL__STATE_DIR");
    assert_eq!(
        image.volumes,
        vec![state.to_owned()],
        "the state dir is the one volume"
    );
    assert!(image.env("QUORUMGATE_LOCAL__KEY_FILE").starts_with('/'));
    assert!(image.expose.contains(&9443) && image.expose.contains(&8443));
    for (k, _) in &image.env {
        assert!(
            k.starts_with("QUORUMGATE_LOCAL__"),
            "{k}: the image may only fix agent-local settings (shared ones change the digest)"
        );
    }
    // The podman tests build `--target prebuilt`: the same image but for where the binary
    // comes from.
    let prebuilt = dockerfile_target(Some("prebuilt"));
    assert_eq!(
        (
            &prebuilt.base,
            &prebuilt.entrypoint,
            &prebuilt.cmd,
            &prebuilt.env,
            &prebuilt.user,
            &prebuilt.volumes,
            &prebuilt.expose
        ),
        (
            &image.base,
            &image.entrypoint,
            &image.cmd,
            &image.env,
            &image.user,
            &image.volumes,
            &image.expose
        ),
        "the prebuilt target differs from the default one"
    );
    let ignore = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../.dockerignore"))
        .expect(".dockerignore");
    for needed in ["target/", ".git/", "**/*.key"] {
        assert!(
            ignore.lines().any(|l| l.trim() == needed),
            ".dockerignore lacks {needed}"
        );
    }
}

/// The runtime image has glibc and libgcc only (distroless `cc`): a new shared-library
/// dependency (say, OpenSSL) would build fine and fail at start inside the image.
#[test]
fn binary_needs_only_libraries_the_runtime_image_has() {
    let out = std::process::Command::new("ldd")
        .arg(exe())
        .output()
        .expect("run ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd failed: {text}");
    let allowed = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libstdc++.so.6",
    ];
    for line in text.lines() {
        let lib = line.split_whitespace().next().unwrap_or("");
        let name = lib.rsplit('/').next().unwrap_or(lib);
        assert!(
            allowed.contains(&name) || name.starts_with("ld-linux"),
            "{name} is not in the distroless cc image:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_runs_in_the_image_layout_and_writes_only_its_state_dir() {
    tls::install_crypto_provider();
    let image = dockerfile();
    let as_root = running_as_root();
    let (uid, gid) = image
        .user
        .split_once(':')
        .map(|(u, g)| {
            (
                u.parse::<u32>().expect("uid"),
                g.parse::<u32>().expect("gid"),
            )
        })
        .expect("USER uid:gid");

    let rootfs = RootFs {
        dir: tempfile::tempdir().expect("tempdir"),
    };
    let root = rootfs.path().to_owned();
    let at = |image_path: &str| PathBuf::from(reroot(&root, image_path));
    let scratch = tempfile::tempdir().expect("tempdir");
    let app = TargetApp::start().await.expect("target app");

    // The binary at the image's ENTRYPOINT path.
    let entry = at(&image.entrypoint[0]);
    std::fs::create_dir_all(entry.parent().expect("bin dir")).expect("mkdir bin");
    if !as_root || executable_by_others(&exe()) {
        std::os::unix::fs::symlink(exe(), &entry).expect("symlink binary");
    } else {
        std::fs::copy(exe(), &entry).expect("copy binary");
        chmod(&entry, 0o755);
    }

    // Keys and TLS, as the Kubernetes example mounts them.
    let key_file = at(image.env("QUORUMGATE_LOCAL__KEY_FILE"));
    std::fs::create_dir_all(key_file.parent().expect("key dir")).expect("mkdir keys");
    let key = keys::generate().expect("key");
    keys::write_signing_key(&key_file, &key).expect("write key");
    chmod(&key_file, 0o400);
    let tls_dir = at(TLS_DIR);
    let pki = tls::generate_dev_pki(&scratch.path().join("pki"), &["use1"]).expect("dev pki");
    let (_, cert, cert_key) = &pki.certs[0];
    std::fs::create_dir_all(&tls_dir).expect("mkdir tls");
    for (src, name) in [
        (cert, "tls.crt"),
        (cert_key, "tls.key"),
        (&pki.ca_file, "ca.crt"),
    ] {
        std::fs::copy(src, tls_dir.join(name)).expect("copy tls file");
        chmod(&tls_dir.join(name), 0o440);
    }

    // The config (a ConfigMap in Kubernetes): one member, so its own ballot is the quorum.
    let (peer_port, health_port) = (free_port(), free_port());
    let config_path = at(image.config_path());
    std::fs::create_dir_all(config_path.parent().expect("config dir")).expect("mkdir config");
    let t = |name: &str| tls_dir.join(name).display().to_string();
    std::fs::write(
        &config_path,
        format!(
            r#"[cluster]
name = "container"
round_interval = "300ms"
ballot_valid_for = "1200ms"
max_clock_skew = "500ms"
peer_timeout = "200ms"
allow_single_member = true

[[members]]
id = "use1"
region = "us-east-1"
url = "https://127.0.0.1:{peer_port}/"
public_key = "{pk}"

[[checks]]
id = "app"
interval = "300ms"
timeout = "200ms"
fall_after = 2
rise_after = 3
hold_down = "1s"
[checks.http]
url = "{app}"
body_contains = "ok"

[local]
listen = "127.0.0.1:{peer_port}"
health_listen = "127.0.0.1:{health_port}"
[local.tls]
cert_file = "{crt}"
key_file = "{tkey}"
client_ca_file = "{ca}"
[local.health_tls]
cert_file = "{crt}"
key_file = "{tkey}"
[local.peer_tls]
ca_file = "{ca}"
client_cert_file = "{crt}"
client_key_file = "{tkey}"
"#,
            pk = keys::public_key_base64(&key.verifying_key()),
            app = app.url(),
            crt = t("tls.crt"),
            tkey = t("tls.key"),
            ca = t("ca.crt"),
        ),
    )
    .expect("write config");
    chmod(&config_path, 0o444);

    // The state volume, the home directory and /tmp of the base image, the working directory.
    let state_dir = at(image.env("QUORUMGATE_LOCAL__STATE_DIR"));
    std::fs::create_dir_all(&state_dir).expect("mkdir state");
    chmod(&state_dir, 0o700);
    for dir in [HOME, "/tmp", image.workdir.as_str()] {
        std::fs::create_dir_all(at(dir)).expect("mkdir");
    }
    if as_root {
        // As in the pod: the key copied for uid 65532, TLS files group-readable (fsGroup).
        chown(&key_file, uid, gid);
        for name in ["tls.crt", "tls.key", "ca.crt"] {
            chown(&tls_dir.join(name), 0, gid);
        }
        chown(&state_dir, uid, gid);
    }
    // Everything else read-only: directories 0555, bottom-up.
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p != state_dir && std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                stack.push(p);
            }
        }
        dirs.push(d);
    }
    for d in dirs.iter().rev() {
        chmod(d, 0o555);
    }
    let before = snapshot(&root, &state_dir);

    // Exactly the image's command line and environment, plus what the Deployment adds.
    let log_path = scratch.path().join("agent.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut cmd = tokio::process::Command::new(&entry);
    cmd.args(image.cmd.iter().map(|a| reroot(&root, a)))
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", at(HOME))
        // The image's /tmp is on its read-only root filesystem too.
        .env("TMPDIR", at("/tmp"))
        .envs(image.env.iter().map(|(k, v)| (k.clone(), reroot(&root, v))))
        .env("QUORUMGATE_LOCAL__AGENT_ID", "use1")
        .current_dir(at(&image.workdir))
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .kill_on_drop(true);
    if as_root {
        cmd.uid(uid).gid(gid);
    }
    let mut child = cmd.spawn().expect("start the agent");
    let pid = child.id().expect("pid");
    let logs = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let public = tls::client_config(Some(&tls_dir.join("ca.crt")), None).expect("client tls");
    let peer = tls::client_config(
        Some(&tls_dir.join("ca.crt")),
        Some((&tls_dir.join("tls.crt"), &tls_dir.join("tls.key"))),
    )
    .expect("peer tls");
    let health = format!("https://127.0.0.1:{health_port}");
    let full = format!("https://127.0.0.1:{peer_port}");

    let end = Instant::now() + LIMIT;
    loop {
        if let Ok((200, _)) = get(&format!("{health}/readyz"), &public).await {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the agent exited ({status}) before it was ready:\n{}",
                logs()
            );
        }
        assert!(
            Instant::now() < end,
            "not ready after {LIMIT:?}:\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if as_root {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        let uid_line = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .expect("Uid line");
        let want = uid.to_string();
        assert!(
            uid_line.split_whitespace().skip(1).all(|u| u == want),
            "the agent must run as {uid}: {uid_line}"
        );
    }

    // Route 53's view: the public listener, no client certificate, the quorum's answer.
    let (code, body) = get(&format!("{health}/v1/health/app"), &public)
        .await
        .expect("health answer");
    assert_eq!((code, body.starts_with("HEALTHY")), (200, true), "{body}");
    assert_eq!(
        get(&format!("{health}/livez"), &public).await.map(|r| r.0),
        Ok(200)
    );
    // The public listener serves nothing else; the peer listener wants a client certificate.
    assert_eq!(
        get(&format!("{health}/metrics"), &public)
            .await
            .map(|r| r.0),
        Ok(404)
    );
    assert!(
        !matches!(get(&format!("{full}/metrics"), &public).await, Ok((200, _))),
        "the peer listener must refuse a client without a certificate"
    );
    let (code, metrics) = get(&format!("{full}/metrics"), &peer)
        .await
        .expect("metrics with a client certificate");
    assert_eq!(code, 200);
    assert!(metrics.contains("quorumgate_rounds_total"), "{metrics}");

    // The environment took effect: JSON logs, the audit log in the state volume.
    let first = logs();
    let line = first
        .lines()
        .find(|l| !l.trim().is_empty())
        .expect("a log line");
    let parsed: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("log lines must be JSON ({e}): {line}"));
    assert!(parsed.get("level").is_some(), "{line}");
    let audit = std::fs::read_to_string(state_dir.join("audit.jsonl")).expect("audit log");
    assert!(audit.contains("\"started\""), "{audit}");

    // `docker stop` / pod termination: SIGTERM, then a clean exit.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap_or_else(|_| panic!("no exit within 15 s of SIGTERM:\n{}", logs()))
        .expect("wait");
    assert!(status.success(), "exit status {status}:\n{}", logs());

    let after = snapshot(&root, &state_dir);
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, e)| before.get(*p) != Some(*e))
        .map(|(p, _)| p.display().to_string())
        .chain(
            before
                .keys()
                .filter(|p| !after.contains_key(*p))
                .map(|p| format!("{} (removed)", p.display())),
        )
        .collect();
    assert!(
        changed.is_empty(),
        "the agent wrote outside its state dir: {changed:?}"
    );
    drop(app);
}
