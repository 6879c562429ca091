//! Issue 5, operating it: the Prometheus rules (promtool), the Grafana dashboard, the Kubernetes
//! example and the runbook stay true to the code and to each other.
//!
//! Needs `promtool` (Debian's `prometheus` package) and Python's PyYAML (`python3-yaml`), both
//! installed by `bash scripts/test-deps.sh`; a test fails naming that script when one is missing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::container::{dockerfile, Image};
use crate::support::exe;

const DEPS: &str = "bash scripts/test-deps.sh";

/// Metrics the rules and the dashboard may use before the code exports them, and why. Once the
/// code has them, they are checked like the others.
const PENDING: &[(&str, &str)] = &[
    (
        "quorumgate_drill_result",
        "`quorumgate drill` (in progress) exports the last drill's result per gate",
    ),
    (
        "quorumgate_drill_active",
        "`quorumgate drill` (in progress) exports whether a drill is in force",
    ),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// Runs `cmd`; panics with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

fn promtool() -> Command {
    if Command::new("promtool").arg("--version").output().is_err() {
        panic!(
            "promtool is missing: it comes from Debian's `prometheus` package; run `{DEPS}` \
             (it installs it)"
        );
    }
    let mut cmd = Command::new("promtool");
    cmd.current_dir(repo("."));
    cmd
}

/// A Python with PyYAML: Debian's (python3-yaml) first, then whatever `python3` is.
fn python() -> &'static str {
    ["/usr/bin/python3", "python3"]
        .into_iter()
        .find(|p| {
            Command::new(p)
                .args(["-c", "import yaml"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .unwrap_or_else(|| {
            panic!("python3 with PyYAML is missing: run `{DEPS}` (it installs python3-yaml)")
        })
}

/// Every document of a YAML file, as JSON.
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = run_ok(
        Command::new(python())
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
         docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
         json.dump(docs, sys.stdout)",
            )
            .arg(repo(rel)),
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn alert_rules() -> Vec<Value> {
    let docs = yaml_docs("deploy/prometheus/alerts.yml");
    docs[0]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/grafana/quorumgate.json")).expect("dashboard is JSON")
}

/// Every PromQL expression of the dashboard: panel targets and annotation queries.
fn dashboard_exprs(d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            out.push(t["expr"].as_str().expect("target expr").to_owned());
        }
    }
    for a in d["annotations"]["list"].as_array().expect("annotations") {
        if let Some(e) = a["expr"].as_str() {
            out.push(e.to_owned());
        }
    }
    out
}

/// One label matcher: name, operator, value.
type Matcher = (String, String, String);

/// The metric selectors of a PromQL expression: every `quorumgate_*` name with its matchers.
fn selectors(expr: &str) -> Vec<(String, Vec<Matcher>)> {
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            // Skip string literals (label values, label_replace arguments).
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            continue;
        }
        if !ident(b[i]) || (i > 0 && ident(b[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && ident(b[i]) {
            i += 1;
        }
        let name = &expr[start..i];
        if !name.starts_with("quorumgate_") || name.contains(':') {
            continue;
        }
        let mut matchers = Vec::new();
        if b.get(i) == Some(&b'{') {
            let close = expr[i..].find('}').expect("closing brace") + i;
            matchers = parse_matchers(&expr[i + 1..close]);
            i = close + 1;
        }
        out.push((name.to_owned(), matchers));
    }
    out
}

fn parse_matchers(body: &str) -> Vec<Matcher> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .expect("matcher operator");
        let name = rest[..name_end].to_owned();
        rest = rest[name_end..].trim_start();
        let op_len = if rest.starts_with("=~") || rest.starts_with("!~") || rest.starts_with("!=") {
            2
        } else {
            1
        };
        let op = rest[..op_len].to_owned();
        rest = rest[op_len..].trim_start();
        assert!(rest.starts_with('"'), "quoted value expected in {{{body}}}");
        let end = rest[1..].find('"').expect("closing quote") + 1;
        let value = rest[1..end].to_owned();
        rest = rest[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
        out.push((name, op, value));
    }
    out
}

/// The source text the metrics come from (agent and quorum crates, tests left out).
fn code_corpus() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if p.is_dir() {
                if name != "tests" {
                    walk(&p, out);
                }
            } else if name.ends_with(".rs") && name != "tests.rs" {
                out.push_str(&std::fs::read_to_string(&p).expect("read source"));
            }
        }
    }
    let mut out = String::new();
    walk(&repo("agent/src"), &mut out);
    walk(&repo("quorum/src"), &mut out);
    out
}

#[test]
fn prometheus_rules_pass_promtool_check_and_unit_tests() {
    let check = run_ok(promtool().args(["check", "rules", "deploy/prometheus/alerts.yml"]));
    assert!(check.contains("SUCCESS"), "{check}");
    let tests = run_ok(promtool().args(["test", "rules", "deploy/prometheus/alerts_test.yml"]));
    assert!(tests.contains("SUCCESS"), "{tests}");
    run_ok(promtool().args([
        "check",
        "config",
        "--syntax-only",
        "deploy/prometheus/prometheus.example.yml",
    ]));
    // Every alert is unit-tested.
    let tested = read("deploy/prometheus/alerts_test.yml");
    for r in alert_rules() {
        if let Some(name) = r["alert"].as_str() {
            assert!(
                tested.contains(&format!("alertname: {name}\n")),
                "{name} has no test in alerts_test.yml"
            );
        }
    }
}

#[test]
fn dashboard_queries_are_valid_promql() {
    // promtool parses rule expressions: give it every dashboard query as a recording rule.
    let rules: Vec<Value> = dashboard_exprs(&dashboard())
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e
                .replace("$__rate_interval", "5m")
                .replace("$job", "quorumgate")
                .replace("$instance", ".*");
            json!({ "record": format!("dashboard:query_{i}"), "expr": e })
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dashboard-queries.yml");
    let doc = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(&file, doc.to_string()).expect("write rules");
    run_ok(promtool().arg("check").arg("rules").arg(&file));
}

#[test]
fn alerts_and_dashboard_use_only_exported_metrics_and_labels() {
    let code = code_corpus();
    let mut exprs: Vec<(String, String)> = alert_rules()
        .iter()
        .map(|r| {
            let what = r["alert"]
                .as_str()
                .or(r["record"].as_str())
                .unwrap_or("?")
                .to_owned();
            (what, r["expr"].as_str().expect("expr").to_owned())
        })
        .collect();
    exprs.extend(
        dashboard_exprs(&dashboard())
            .into_iter()
            .map(|e| ("dashboard".to_owned(), e)),
    );
    let target_labels = ["job", "instance", "le"];
    let mut problems = Vec::new();
    for (what, expr) in &exprs {
        for (metric, matchers) in selectors(expr) {
            let exported = code.contains(&format!("\"{metric}\""));
            if !exported && PENDING.iter().any(|(m, _)| *m == metric) {
                continue;
            }
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| metric.strip_suffix(s))
                .filter(|b| code.contains(&format!("\"{b}\"")))
                .unwrap_or(&metric);
            if !code.contains(&format!("\"{base}\"")) {
                problems.push(format!(
                    "{what}: metric {metric} is not exported by the code"
                ));
            }
            for (label, _, value) in matchers {
                if target_labels.contains(&label.as_str()) {
                    continue;
                }
                // `"label" =>` in a `metrics` macro, `("label", value)` in a per-check series of
                // `telemetry::checks`.
                let labelled = code.contains(&format!("\"{label}\" =>"))
                    || code.contains(&format!("(\"{label}\", "));
                if !labelled {
                    problems.push(format!("{what}: {metric} has no label {label}"));
                }
                for v in value.split('|').filter(|v| !v.is_empty()) {
                    let literal = v
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
                    if literal && !code.contains(&format!("\"{v}\"")) {
                        problems.push(format!("{what}: {metric}{{{label}}} is never \"{v}\""));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for (metric, why) in PENDING {
        if !code.contains(&format!("\"{metric}\"")) {
            println!("note: {metric} is not exported yet: {why}");
        }
    }
}

#[test]
fn grafana_dashboard_is_a_valid_model() {
    let d = dashboard();
    assert_eq!(d["uid"], "quorumgate");
    assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 30));
    let vars = d["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a Prometheus data source variable, so the dashboard imports anywhere"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [u64; 4])> = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("title").to_owned();
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "duplicate id: {title}"
        );
        let g = &p["gridPos"];
        let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64().expect("gridPos"));
        assert!(w >= 1 && x + w <= 24 && h >= 1, "{title}: gridPos {g}");
        for (other, [ox, oy, ow, oh]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            assert!(apart, "{title} overlaps {other}");
        }
        boxes.push((title.clone(), [x, y, w, h]));
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} has no query");
        let refs: BTreeSet<_> = targets.iter().map(|t| t["refId"].to_string()).collect();
        assert_eq!(refs.len(), targets.len(), "{title}: refIds must differ");
    }
    // What the issue asks the dashboard to show.
    let all = dashboard_exprs(&d).join("\n");
    for metric in [
        "quorumgate_decision",
        "quorumgate_verdict",
        "quorumgate_ballots_accepted_total",
        "quorumgate_ballots_rejected_total",
        "quorumgate_probe_total",
        "quorumgate_replication_lag_seconds",
        "quorumgate_gate_hold",
        "quorumgate_gate_alert",
        "quorumgate_gate_changes_total",
        "quorumgate_gate_fence_epoch",
        "quorumgate_route53_requests_total",
        "quorumgate_operator_commands_total",
    ] {
        assert!(all.contains(metric), "the dashboard does not show {metric}");
    }
}

#[test]
fn runbook_explains_every_alert() {
    let runbook = read("docs/runbook.md");
    let headings: BTreeSet<&str> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(str::trim)
        .collect();
    for r in alert_rules() {
        let Some(name) = r["alert"].as_str() else {
            continue;
        };
        assert!(
            headings.contains(name),
            "docs/runbook.md has no \"### {name}\" section"
        );
        let url = r["annotations"]["runbook_url"]
            .as_str()
            .expect("runbook_url");
        assert!(
            url.ends_with(&format!("docs/runbook.md#{}", name.to_ascii_lowercase())),
            "{name}: runbook_url {url}"
        );
    }
}

/// The ConfigMap's TOML as the pod sees it: the image's and the Deployment's environment
/// (agent-local settings only) written into `[local]`.
fn effective_config(toml: &str, env: &[(String, String)]) -> config::Config {
    let mut lines = String::from("[local]\n");
    for (k, v) in env {
        let key = k
            .strip_prefix("QUORUMGATE_LOCAL__")
            .unwrap_or_else(|| {
                panic!("{k}: only agent-local settings may come from the environment")
            })
            .to_ascii_lowercase();
        lines.push_str(&format!("{key} = {}\n", json!(v)));
    }
    assert!(
        toml.contains("\n[local]\n"),
        "the ConfigMap has a [local] table"
    );
    let text = toml.replacen("\n[local]\n", &format!("\n{lines}"), 1);
    config::Config::from_toml_str(&text).unwrap_or_else(|e| panic!("ConfigMap config: {e}"))
}

/// Keys of the `[local]` table itself (not of its sub-tables).
fn local_keys(toml: &str) -> Vec<String> {
    let mut table = "";
    let mut keys = Vec::new();
    for line in toml.lines().map(str::trim) {
        if line.starts_with('[') {
            table = line;
        } else if table == "[local]" {
            if let Some((k, _)) = line.split_once('=') {
                keys.push(k.trim().to_owned());
            }
        }
    }
    keys
}

struct K8s {
    objects: Vec<Value>,
}

impl K8s {
    fn load() -> Self {
        let kust = &yaml_docs("deploy/kubernetes/kustomization.yaml")[0];
        let mut objects = Vec::new();
        let mut listed = BTreeSet::new();
        for r in kust["resources"].as_array().expect("resources") {
            let file = r.as_str().expect("resource file");
            listed.insert(file.to_owned());
            objects.extend(yaml_docs(&format!("deploy/kubernetes/{file}")));
        }
        for e in std::fs::read_dir(repo("deploy/kubernetes"))
            .expect("read_dir")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                assert!(
                    listed.contains(&name),
                    "{name} is not in kustomization.yaml"
                );
            }
        }
        Self { objects }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| o["kind"] == kind).collect()
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind)
            .into_iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} named {name}"))
    }
}

fn secret_has(secret: &Value, key: &str) -> bool {
    secret["stringData"].get(key).is_some() || secret["data"].get(key).is_some()
}

/// Deployment, Services, ConfigMap and Secrets: hardened, and consistent with the image (user,
/// ports, paths), the config they carry and each other.
#[test]
fn kubernetes_manifests_are_hardened_and_match_the_image() {
    let image: Image = dockerfile();
    let uid: u64 = image
        .user
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("numeric USER");
    let k8s = K8s::load();
    for kind in ["Deployment", "Service", "ConfigMap", "Secret"] {
        assert!(!k8s.all(kind).is_empty(), "no {kind}");
    }
    let deployments = k8s.all("Deployment");
    assert_eq!(deployments.len(), 1);
    let deploy = deployments[0];
    let spec = &deploy["spec"];
    assert_eq!(spec["replicas"], 1, "one agent per member id");
    assert_eq!(
        spec["strategy"]["type"], "Recreate",
        "never two agents with one key"
    );
    let labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in spec["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(&labels[k], v, "selector label {k}");
    }
    let pod = &spec["template"]["spec"];
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], uid, "the pod runs as the image's USER");
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["automountServiceAccountToken"], false);

    let containers = pod["containers"].as_array().expect("containers");
    let inits = pod["initContainers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for c in containers.iter().chain(&inits) {
        let name = c["name"].as_str().expect("container name");
        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert!(
            sc["capabilities"]["drop"]
                .as_array()
                .is_some_and(|d| d.contains(&json!("ALL"))),
            "{name} drops ALL capabilities"
        );
        assert!(
            sc["runAsNonRoot"] == true || psc["runAsNonRoot"] == true,
            "{name}"
        );
        assert!(
            sc["seccompProfile"]["type"] == "RuntimeDefault"
                || psc["seccompProfile"]["type"] == "RuntimeDefault",
            "{name}"
        );
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"]["requests"][r].is_string(),
                "{name} requests {r}"
            );
        }
    }

    let qg = containers
        .iter()
        .find(|c| c["name"] == "quorumgate")
        .expect("a quorumgate container");
    assert!(
        qg.get("command").is_none() && qg.get("args").is_none(),
        "run the image's ENTRYPOINT and CMD unchanged"
    );
    assert!(
        qg["resources"]["limits"].get("cpu").is_none(),
        "no CPU limit: throttled rounds make the agent abstain"
    );
    let env: Vec<(String, String)> = qg["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            (
                e["name"].as_str().expect("env name").to_owned(),
                e["value"].as_str().expect("env value").to_owned(),
            )
        })
        .collect();
    assert!(env.iter().any(|(k, _)| k == "QUORUMGATE_LOCAL__AGENT_ID"));

    // The config it runs with.
    let volumes: BTreeMap<&str, &Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().expect("volume name"), v))
        .collect();
    let mounts: Vec<(String, &str, bool)> = qg["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            (
                m["mountPath"].as_str().expect("mountPath").to_owned(),
                m["name"].as_str().expect("mount name"),
                m["readOnly"] == true,
            )
        })
        .collect();
    let mount_of = |path: &str| {
        mounts
            .iter()
            .find(|(p, _, _)| Path::new(path).starts_with(p))
            .unwrap_or_else(|| panic!("{path} is on no volume of the quorumgate container"))
    };
    let config_path = image.config_path();
    let (_, vol, ro) = mount_of(config_path);
    assert!(*ro, "the config is mounted read-only");
    let cm_name = volumes[vol]["configMap"]["name"]
        .as_str()
        .expect("config comes from a ConfigMap");
    let file = Path::new(config_path)
        .file_name()
        .expect("config file name")
        .to_string_lossy()
        .into_owned();
    let toml = k8s.named("ConfigMap", cm_name)["data"][&file]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {cm_name} has no {file}"))
        .to_owned();
    for k in local_keys(&toml) {
        assert!(
            !["agent_id", "state_dir", "key_file"].contains(&k.as_str()),
            "[local] {k} comes from the environment (Deployment / image), not the ConfigMap"
        );
    }
    let mut full_env = image.env.clone();
    full_env.extend(env.iter().cloned());
    let cfg = effective_config(&toml, &full_env);

    // Ports: the image, the config and the container agree.
    let ports: BTreeMap<&str, u64> = qg["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name"),
                p["containerPort"].as_u64().expect("containerPort"),
            )
        })
        .collect();
    let health = cfg.local.health_listener.as_ref().expect("health_listen");
    assert_eq!(ports["peer"], u64::from(cfg.local.listen.port()));
    assert_eq!(ports["health"], u64::from(health.listen.port()));
    let exposed: BTreeSet<u64> = image.expose.iter().map(|p| u64::from(*p)).collect();
    assert_eq!(ports.values().copied().collect::<BTreeSet<_>>(), exposed);

    // Probes: the agent's own endpoints, on the listener without client certificates.
    let scheme = if health.tls.is_some() {
        "HTTPS"
    } else {
        "HTTP"
    };
    for (probe, path) in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/readyz"),
    ] {
        let get = &qg[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(get["port"], "health", "{probe}");
        assert_eq!(get["scheme"], scheme, "{probe}");
    }

    // Files: every path the agent reads is on a read-only volume, and the volume holds it.
    let mut secret_files = vec![cfg.local.key_file.clone()];
    let server_tls = cfg.local.tls.as_ref().expect("[local.tls]");
    secret_files.extend([server_tls.cert_file.clone(), server_tls.key_file.clone()]);
    secret_files.extend(server_tls.client_ca_file.clone());
    if let Some(t) = &health.tls {
        secret_files.extend([t.cert_file.clone(), t.key_file.clone()]);
    }
    let peer = &cfg.local.peer_tls;
    secret_files.extend(
        [&peer.ca_file, &peer.client_cert_file, &peer.client_key_file]
            .into_iter()
            .flatten()
            .cloned(),
    );
    assert_eq!(
        cfg.local.key_file,
        PathBuf::from(image.env("QUORUMGATE_LOCAL__KEY_FILE"))
    );
    for f in &secret_files {
        let f = f.to_str().expect("utf-8 path");
        let (_, vol, ro) = mount_of(f);
        assert!(*ro, "{f} must be on a read-only mount");
        let name = Path::new(f).file_name().expect("file").to_string_lossy();
        let volume = volumes[vol];
        let secret_name = if let Some(s) = volume["secret"]["secretName"].as_str() {
            s.to_owned()
        } else {
            // The agent key: an emptyDir that an init container fills from a Secret.
            assert!(volume.get("emptyDir").is_some(), "{f}: volume {vol}");
            let init = inits
                .iter()
                .find(|c| {
                    c["volumeMounts"].as_array().is_some_and(|m| {
                        m.iter().any(|m| m["name"] == *vol && m["readOnly"] != true)
                    })
                })
                .unwrap_or_else(|| panic!("{f}: nothing fills volume {vol}"));
            assert!(
                init.to_string().contains(name.as_ref()),
                "{f}: the init container copies it"
            );
            init["volumeMounts"]
                .as_array()
                .expect("mounts")
                .iter()
                .find_map(|m| {
                    volumes[m["name"].as_str().expect("name")]["secret"]["secretName"].as_str()
                })
                .expect("the init container reads a Secret")
                .to_owned()
        };
        assert!(
            secret_has(k8s.named("Secret", &secret_name), &name),
            "Secret {secret_name} has no {name}"
        );
    }
    let state = image.env("QUORUMGATE_LOCAL__STATE_DIR");
    assert_eq!(cfg.local.state_dir, PathBuf::from(state));
    let (path, vol, ro) = mount_of(state);
    assert!(
        path == state && !*ro,
        "the state dir is its own writable volume"
    );
    assert!(
        volumes[vol].get("emptyDir").is_some()
            || volumes[vol].get("persistentVolumeClaim").is_some()
    );
    for (p, _, ro) in &mounts {
        assert!(*ro || p == state, "{p}: only the state dir is writable");
    }

    // Services reach the pod's named ports even when the app makes the pod unready.
    for svc in k8s.all("Service") {
        let name = svc["metadata"]["name"].as_str().expect("service name");
        for (k, v) in svc["spec"]["selector"].as_object().expect("selector") {
            assert_eq!(&labels[k], v, "{name}: selector {k}");
        }
        assert_eq!(svc["spec"]["publishNotReadyAddresses"], true, "{name}");
        for p in svc["spec"]["ports"].as_array().expect("ports") {
            let target = p["targetPort"].as_str().expect("named targetPort");
            assert!(
                ports.contains_key(target),
                "{name}: no container port {target}"
            );
        }
    }
}

/// The ConfigMap passes `quorumgate check` with the environment the pod has.
#[test]
fn kubernetes_configmap_passes_quorumgate_check() {
    let image = dockerfile();
    let k8s = K8s::load();
    let toml = k8s.named("ConfigMap", "quorumgate-config")["data"]["quorumgate.toml"]
        .as_str()
        .expect("quorumgate.toml")
        .to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("quorumgate.toml");
    std::fs::write(&path, toml).expect("write config");
    let deploy = k8s.all("Deployment")[0];
    let qg = deploy["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == "quorumgate")
        .expect("quorumgate container");
    let mut cmd = Command::new(exe());
    // The config, not the files: the pod's Secrets are not on this machine.
    cmd.arg("check")
        .arg("--skip-files")
        .arg("--config")
        .arg(&path)
        .env_clear();
    cmd.envs(image.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for e in qg["env"].as_array().expect("env") {
        cmd.env(
            e["name"].as_str().expect("name"),
            e["value"].as_str().expect("value"),
        );
    }
    let out = run_ok(&mut cmd);
    assert!(out.contains(": ok"), "{out}");
    assert!(
        !out.contains("warning"),
        "the example should draw no warning:\n{out}"
    );
}
