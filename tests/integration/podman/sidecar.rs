//! The sidecar: the image the Dockerfile builds, run beside an app in one pod, and the shipped
//! Kubernetes manifests run by `podman kube play`.
//!
//! What is built: `podman build --target prebuilt --build-arg BASE=<local base>` — the
//! Dockerfile's `base` stage (user 65532, environment, volume, ports, entrypoint) on a root made
//! with mmdebstrap holding what distroless cc-debian12 holds (`images.sh`), plus this test
//! build's binary (debug info stripped). The default target compiles a release binary in the
//! rust image; neither that image nor distroless can be pulled here.
//!
//! The app beside the agent is busybox `httpd` serving `/healthz` ("ok") on port 8080.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quorumgate::{keys, tls};
use tokio::time::Instant;

use super::{
    get, images, label, podman, podman_ok, podman_ready, repo, stripped_binary, wait_for, Guard,
    Net,
};

/// The agent image of this test process, removed on drop.
struct Image {
    tag: String,
    _ctx: tempfile::TempDir,
}

impl Image {
    fn build() -> Self {
        use std::os::unix::fs::PermissionsExt as _;
        let ctx = tempfile::tempdir().expect("tempdir");
        stripped_binary(ctx.path(), "quorumgate");
        let state = ctx.path().join("var-lib/quorumgate");
        std::fs::create_dir_all(&state).expect("mkdir state");
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let tag = format!("localhost/quorumgate-test-image:{}", std::process::id());
        let dockerfile = repo("Dockerfile");
        let base = format!("BASE={}", images().base);
        podman_ok(&[
            "build",
            "--quiet",
            "--pull=never",
            "-f",
            &dockerfile.to_string_lossy(),
            "--target",
            "prebuilt",
            "--build-arg",
            &base,
            "-t",
            &tag,
            &ctx.path().to_string_lossy(),
        ]);
        Self { tag, _ctx: ctx }
    }

    /// Bytes, as `podman image inspect` counts them (uncompressed layers).
    fn size(&self) -> u64 {
        podman_ok(&["image", "inspect", "--format", "{{.Size}}", &self.tag])
            .parse()
            .expect("size")
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = podman(&["rmi", "-f", &self.tag]);
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The image, read-only as uid 65532 with no capabilities, beside the app in one pod (one
/// network namespace): it probes the app on 127.0.0.1:8080, becomes ready, answers HEALTHY;
/// the app fails (its container stops) and /v1/health flips to UNHEALTHY; it comes back and
/// the answer turns HEALTHY; `podman stop` ends the agent cleanly. Prints the image size and
/// the start-to-ready time (README, "Container sidecar").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_runs_read_only_as_65532_beside_an_app_in_one_pod() {
    if !podman_ready() {
        return;
    }
    let image = Image::build();
    let size = image.size();
    let net = Net::create("pod");
    let ip = net.ip(20);
    let files = tempfile::tempdir().expect("tempdir");
    let key = keys::generate().expect("key");
    let key_file = files.path().join("keys/agent.key");
    std::fs::create_dir_all(key_file.parent().expect("dir")).expect("mkdir");
    keys::write_signing_key(&key_file, &key).expect("write key");
    std::os::unix::fs::chown(&key_file, Some(65532), Some(65532)).expect("chown key");
    write(
        &files.path().join("config/quorumgate.toml"),
        &super::single_member_config(
            "pod",
            &keys::public_key_base64(&key.verifying_key()),
            "http://127.0.0.1:8080/healthz",
            "",
        ),
        0o444,
    );

    let pod = format!("qg-pod-{}", std::process::id());
    podman_ok(&[
        "pod",
        "create",
        "--name",
        &pod,
        "--label",
        &label(),
        "--network",
        &net.name,
        "--ip",
        &ip,
    ]);
    let _pod = Guard {
        name: pod.clone(),
        pod: true,
    };
    let app = format!("{pod}-app");
    podman_ok(&[
        "run",
        "-d",
        "--pod",
        &pod,
        "--name",
        &app,
        "--read-only",
        "--user",
        "65532:65532",
        "--cap-drop",
        "ALL",
        &images().busybox,
    ]);
    let agent = format!("{pod}-quorumgate");
    let config = format!(
        "{}:/etc/quorumgate:ro",
        files.path().join("config").display()
    );
    let keys_mount = format!(
        "{}:/run/quorumgate/keys:ro",
        files.path().join("keys").display()
    );
    let started = Instant::now();
    podman_ok(&[
        "run",
        "-d",
        "--pod",
        &pod,
        "--name",
        &agent,
        "--read-only",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "-v",
        &config,
        "-v",
        &keys_mount,
        "-e",
        "QUORUMGATE_LOCAL__AGENT_ID=use1",
        &image.tag,
    ]);
    let health = format!("http://{ip}:8443");
    let logs = || podman(&["logs", &agent]).1;
    let ready = wait_for(
        Duration::from_secs(30),
        "the sidecar ready",
        || {
            let url = format!("{health}/readyz");
            async move { get(&url, None, None).await.is_some_and(|r| r.0 == 200) }
        },
        logs,
    )
    .await;
    let start_to_ready = started.elapsed();
    let _ = ready;

    // What runs: uid 65532, no capabilities, a read-only root.
    let pid = podman_ok(&["inspect", "--format", "{{.State.Pid}}", &agent]);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    for (field, want) in [
        ("Uid:", "65532"),
        ("Gid:", "65532"),
        ("CapEff:", "0000000000000000"),
        ("NoNewPrivs:", "1"),
    ] {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field}"));
        assert!(
            line.split_whitespace().skip(1).all(|v| v == want),
            "{line} (want {want})"
        );
    }
    assert_eq!(
        podman_ok(&[
            "inspect",
            "--format",
            "{{.HostConfig.ReadonlyRootfs}}",
            &agent
        ]),
        "true"
    );
    let first = logs();
    let line = first.lines().next().expect("a log line");
    let parsed: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("JSON log lines ({e}): {line}"));
    assert!(parsed.get("level").is_some(), "{line}");

    let answer = || {
        let url = format!("{health}/v1/health/app");
        async move { get(&url, None, None).await }
    };
    let says = |code: u16, word: &'static str| {
        move || async move {
            answer()
                .await
                .is_some_and(|(c, b)| c == code && b.starts_with(word))
        }
    };
    wait_for(
        Duration::from_secs(20),
        "HEALTHY while the app serves",
        says(200, "HEALTHY"),
        logs,
    )
    .await;

    // The app fails (its container stops): the sidecar's answer flips.
    podman_ok(&["stop", "-t", "2", &app]);
    let flipped = wait_for(
        Duration::from_secs(30),
        "UNHEALTHY once the app is down",
        says(503, "UNHEALTHY"),
        logs,
    )
    .await;
    podman_ok(&["start", &app]);
    wait_for(
        Duration::from_secs(30),
        "HEALTHY again once the app is back",
        says(200, "HEALTHY"),
        logs,
    )
    .await;

    // `podman stop`: SIGTERM, a clean exit.
    let t = Instant::now();
    podman_ok(&["stop", "-t", "10", &agent]);
    let stop_took = t.elapsed();
    assert_eq!(
        podman_ok(&["inspect", "--format", "{{.State.ExitCode}}", &agent]),
        "0",
        "{}",
        logs()
    );
    eprintln!(
        "image {} ({:.1} MB, base {}); start to ready {start_to_ready:?}; app down → UNHEALTHY in {flipped:?}; stop {stop_took:?}",
        image.tag,
        size as f64 / 1e6,
        images().base,
    );
    drop(_pod);
    drop(net);
}

/// Replaces `from` by `to` in `text`, which must contain it exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the manifests changed: expected {from:?} exactly once"
    );
    text.replacen(from, to, 1)
}

/// `podman kube play` of the shipped ConfigMap, Secrets and Deployment (service.yaml: podman
/// runs no Services; the Secrets as files, see below). The test fills in what an operator fills in — the Secrets' values and
/// use1's public key — and points the addresses that name other regions and AWS at 127.0.0.1
/// (nothing here may reach them); probes, securityContext, volumes, the init container and the
/// images' names are the shipped ones (the local images are tagged with those names). The
/// agent becomes ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_play_runs_the_shipped_manifests_and_the_agent_becomes_ready() {
    if !podman_ready() {
        return;
    }
    tls::install_crypto_provider();
    let image = Image::build();
    let net = Net::create("kube");
    let ip = net.ip(30);
    let dir = tempfile::tempdir().expect("tempdir");
    let key = keys::generate().expect("key");
    let key_path = dir.path().join("agent.key");
    keys::write_signing_key(&key_path, &key).expect("write key");
    let key_text = std::fs::read_to_string(&key_path).expect("read key");
    let host = "quorumgate-use1.internal.example.com";
    let pki = tls::generate_dev_pki(&dir.path().join("pki"), &[host]).expect("dev pki");
    let read = |p: &Path| std::fs::read_to_string(p).expect("read pem");

    let deploy = |f: &str| {
        std::fs::read_to_string(repo(&format!("deploy/kubernetes/{f}"))).expect("read manifest")
    };
    let mut configmap = deploy("configmap.yaml");
    configmap = replace_once(
        &configmap,
        "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=",
        &keys::public_key_base64(&key.verifying_key()),
    );
    for (from, to) in [
        (
            "https://quorumgate-usw2.internal.example.com:9443",
            "https://127.0.0.1:1",
        ),
        (
            "https://quorumgate-euc1.internal.example.com:9443",
            "https://127.0.0.1:2",
        ),
        (
            "https://app-use1.internal.example.com/healthz",
            "http://127.0.0.1:8080/healthz",
        ),
        (
            "https://app-usw2.internal.example.com/healthz",
            "http://127.0.0.1:3/healthz",
        ),
        (
            "nameserver = \"169.254.169.253\"",
            "nameserver = \"127.0.0.1\"",
        ),
    ] {
        configmap = replace_once(&configmap, from, to);
    }
    // The Secrets: the shipped placeholders, filled in, as files the way a kubelet presents a
    // Secret volume with the pod's fsGroup (root-owned, group 65532, mode 0440). podman 4.3
    // (Debian 12) cannot present them itself: it runs no `kind: Secret`, crashes on a secret
    // volume without `optional:` (deployment.yaml now spells out `optional: false`), and when
    // given a podman secret writes the volume's files base64-encoded. So the played Deployment
    // mounts these directories (hostPath) where it names the Secrets.
    let secret = deploy("secret.yaml");
    let (_, cert, cert_key) = &pki.certs[0];
    let values = [
        ("quorumgate-agent-key", "agent.key", key_text.clone()),
        ("quorumgate-tls", "tls.crt", read(cert)),
        ("quorumgate-tls", "tls.key", read(cert_key)),
        ("quorumgate-tls", "ca.crt", read(&pki.ca_file)),
    ];
    for (name, k, v) in &values {
        assert!(
            secret.contains(&format!("name: {name}\n"))
                && secret.contains(&format!("  {k}: \"REPLACE-ME")),
            "secret.yaml changed: no {name} with a {k} placeholder"
        );
        let file = dir.path().join("secrets").join(name).join(k);
        write(&file, v, 0o440);
        std::os::unix::fs::chown(&file, Some(0), Some(65532)).expect("chown");
    }
    let mut deployment = deploy("deployment.yaml");
    for (volume, name) in [
        ("agent-key-secret", "quorumgate-agent-key"),
        ("tls", "quorumgate-tls"),
    ] {
        deployment = replace_once(
            &deployment,
            &format!(
                "        - name: {volume}\n          secret:\n            secretName: {name}\n            defaultMode: 0440\n            optional: false\n"
            ),
            &format!(
                "        - name: {volume}\n          hostPath:\n            path: {}\n            type: Directory\n",
                dir.path().join("secrets").join(name).display()
            ),
        );
    }
    // One adaptation for podman 4.3: it applies the pod's restart policy (a Deployment's is
    // Always) to init containers too, restarts the finished key-copying init container and then
    // fails to remove it ("failed to remove once init container … as it is running", podman
    // issue 16343, fixed in later releases). Kubernetes runs init containers once whatever the
    // policy; OnFailure gives podman that behaviour. (Deployments accept only Always on a real
    // cluster, so the shipped file keeps it implicit.)
    let deployment = replace_once(
        &deployment,
        "      automountServiceAccountToken: false\n",
        "      automountServiceAccountToken: false\n      restartPolicy: OnFailure\n",
    );
    let manifest = dir.path().join("play.yaml");
    std::fs::write(&manifest, format!("{configmap}\n---\n{deployment}")).expect("write manifest");

    // The images under the names the Deployment uses.
    let names = [
        (image.tag.as_str(), "registry.example.com/quorumgate:0.1.0"),
        (
            images().busybox.as_str(),
            "docker.io/library/busybox:1.36.1",
        ),
        (images().busybox.as_str(), "registry.example.com/app:1.0.0"),
    ];
    for (from, to) in names {
        podman_ok(&["tag", from, to]);
    }
    struct Untag(Vec<&'static str>);
    impl Drop for Untag {
        fn drop(&mut self) {
            for t in &self.0 {
                let _ = podman(&["untag", t]);
            }
        }
    }
    let _untag = Untag(names.iter().map(|(_, t)| *t).collect());

    // podman 4.3 names a Deployment's pod `<name>-pod-0`.
    let pod = "app-quorumgate-pod-0";
    let _ = podman(&["pod", "rm", "-f", "-t", "0", pod]);
    let started = Instant::now();
    let played = podman_ok(&[
        "kube",
        "play",
        "--network",
        &net.name,
        "--ip",
        &ip,
        &manifest.to_string_lossy(),
    ]);
    let _pod = Guard {
        name: pod.to_owned(),
        pod: true,
    };
    let public = tls::client_config(Some(&pki.ca_file), None).expect("client tls");
    let explain = || {
        let (_, ps) = podman(&["ps", "-a", "--pod", "--filter", &format!("pod={pod}")]);
        let (_, logs) = podman(&["logs", &format!("{pod}-quorumgate")]);
        format!("{played}\n{ps}\n{logs}")
    };
    let took = wait_for(
        Duration::from_secs(60),
        "the kube-played agent ready",
        || {
            let public = Arc::clone(&public);
            let url = format!("https://{ip}:8443/readyz");
            async move {
                get(&url, Some(&public), Some(host))
                    .await
                    .is_some_and(|r| r.0 == 200)
            }
        },
        explain,
    )
    .await;
    eprintln!(
        "kube play → /readyz 200 after {:?} ({took:?} of polling)",
        started.elapsed()
    );
    let _ = podman(&["kube", "down", &manifest.to_string_lossy()]);
    drop(_pod);
    drop(net);
}
