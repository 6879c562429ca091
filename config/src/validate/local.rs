//! `[local]`: this agent's own settings (outside the digest), its TLS and its control probes
//! (`[local.route53]` is in its own module).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use figment::value::Value;
use quorum::{AgentId, CheckId};

use super::cluster::Members;
use super::{elements, probe, route53};
use crate::defaults;
use crate::errors::{FieldPath, Report};
use crate::model::{ControlProbe, HealthListener, LocalConfig, LogFormat, PeerTls, ServerTls};
use crate::parse::{
    duration_or, file_path, id_error, opt_file_path, or_default, ranged_or_default, required,
    socket_addr,
};
use crate::raw::{RawControl, RawLocal, RawLogFormat, RawPeerTls, RawServerTls};

/// Levels a log filter directive may name.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

pub(super) fn local(
    raw: Option<&RawLocal>,
    members: &Members,
    path: &FieldPath,
    report: &mut Report,
) -> Option<LocalConfig> {
    let empty = RawLocal::default();
    let raw = match raw {
        Some(r) => r,
        None if report.has_error_at(path) => return None,
        None => &empty,
    };

    let id_path = path.key("agent_id");
    let agent_id = required(
        raw.agent_id.as_ref(),
        &id_path,
        report,
        "add agent_id = \"use1\" (this agent's [[members]] id), or set QUORUMGATE_LOCAL__AGENT_ID",
    )
    .and_then(|t| {
        AgentId::new(t.0.as_str())
            .map_err(|e| id_error(&e, &t.0, &id_path, report))
            .ok()
    })
    .and_then(|id| {
        // Only judge against a complete id list: a broken member id is reported there.
        if !members.ids_complete || members.ids.is_empty() || members.ids.contains(&id) {
            return Some(id);
        }
        let mut known: Vec<&str> = Vec::new();
        for m in &members.ids {
            if !known.contains(&m.as_str()) {
                known.push(m.as_str());
            }
        }
        report.error(
            &id_path,
            format!("{:?} is not one of the [[members]] ids", id.as_str()),
            format!("use one of: {}", known.join(", ")),
        );
        None
    });

    let listen_path = path.key("listen");
    let listen = or_default(
        raw.listen.as_ref(),
        defaults::LISTEN.to_owned(),
        &listen_path,
        report,
    )
    .and_then(|l| socket_addr(&l, &listen_path, report, "0.0.0.0:9443"));

    let state_path = path.key("state_dir");
    let state_dir = or_default(
        raw.state_dir.as_ref(),
        defaults::STATE_DIR.to_owned(),
        &state_path,
        report,
    )
    .and_then(|s| file_path(&s, defaults::STATE_DIR, &state_path, report));
    let key_path = path.key("key_file");
    let key_file = match &raw.key_file {
        Some(k) => file_path(k, "/var/lib/quorumgate/agent.key", &key_path, report),
        None if report.has_error_at(&key_path) => None,
        None => state_dir.as_ref().map(|d| d.join(defaults::KEY_FILE_NAME)),
    };

    let log_format = or_default(
        raw.log_format.as_ref(),
        RawLogFormat::Human,
        &path.key("log_format"),
        report,
    )
    .map(|f| match f {
        RawLogFormat::Human => LogFormat::Human,
        RawLogFormat::Json => LogFormat::Json,
    });
    let level_path = path.key("log_level");
    let log_level = or_default(
        raw.log_level.as_ref(),
        defaults::LOG_LEVEL.to_owned(),
        &level_path,
        report,
    )
    .and_then(|l| log_filter(&l, &level_path, report));

    let conc_path = path.key("probe_concurrency");
    let probe_concurrency = ranged_or_default(
        raw.probe_concurrency.as_ref(),
        defaults::PROBE_CONCURRENCY,
        (1, defaults::PROBE_CONCURRENCY_LIMIT),
        &conc_path,
        report,
        "e.g. 64",
    )
    .and_then(|n| usize::try_from(n).ok());

    let rotate_path = path.key("audit_rotate_bytes");
    let audit_rotate_bytes = ranged_or_default(
        raw.audit_rotate_bytes.as_ref(),
        defaults::AUDIT_ROTATE_BYTES,
        (
            defaults::AUDIT_ROTATE_BYTES_MIN,
            defaults::AUDIT_ROTATE_BYTES_MAX,
        ),
        &rotate_path,
        report,
        "e.g. 67108864 (64 MiB)",
    );
    let keep_path = path.key("audit_keep_files");
    let audit_keep_files = ranged_or_default(
        raw.audit_keep_files.as_ref(),
        defaults::AUDIT_KEEP_FILES,
        (1, defaults::AUDIT_KEEP_FILES_LIMIT),
        &keep_path,
        report,
        "e.g. 8 (audit.jsonl.1 to .8 are kept)",
    );

    let budget_path = path.key("http_body_budget_bytes");
    let http_body_budget_bytes = ranged_or_default(
        raw.http_body_budget_bytes.as_ref(),
        defaults::HTTP_BODY_BUDGET_BYTES,
        (
            defaults::HTTP_BODY_BUDGET_MIN,
            defaults::HTTP_BODY_BUDGET_LIMIT,
        ),
        &budget_path,
        report,
        "e.g. 67108864 (64 MiB, the default)",
    )
    .and_then(|n| usize::try_from(n).ok());

    let abstain_path = path.key("control_failures_to_abstain");
    let abstain = ranged_or_default(
        raw.control_failures_to_abstain.as_ref(),
        defaults::CONTROL_FAILURES_TO_ABSTAIN,
        (1, u64::from(u32::MAX)),
        &abstain_path,
        report,
        "e.g. 1 (abstain after one failed control round)",
    )
    .and_then(|n| u32::try_from(n).ok());

    let tls = match &raw.tls {
        None => Some(None),
        Some(t) => server_tls(t, &path.key("tls"), report).map(Some),
    };
    let health_listener = health_listener(raw, listen, path, report);
    let peer_tls = match &raw.peer_tls {
        None => Some(PeerTls::default()),
        Some(t) => peer_tls(t, &path.key("peer_tls"), report),
    };
    let control = control(raw.control.as_deref(), &path.key("control"), report);
    let route53 = route53::route53(raw.route53.as_ref(), &path.key("route53"), report);

    if let (Some(id), Some(tls)) = (&agent_id, &tls) {
        scheme_warning(id, tls.is_some(), members, path, report);
    }

    Some(LocalConfig {
        agent_id: agent_id?,
        listen: listen?,
        key_file: key_file?,
        state_dir: state_dir?,
        log_format: log_format?,
        log_level: log_level?,
        probe_concurrency: probe_concurrency?,
        http_body_budget_bytes: http_body_budget_bytes?,
        jitter_seed: raw.jitter_seed,
        audit_rotate_bytes: audit_rotate_bytes?,
        audit_keep_files: audit_keep_files?,
        control_failures_to_abstain: abstain?,
        tls: tls?,
        health_listener: health_listener?,
        peer_tls: peer_tls?,
        control: control?,
        route53: route53?,
    })
}

/// A tracing filter made of comma-separated `level` or `target=level` directives. (A bare
/// target is valid for tracing but is rejected here: a typo of a level would silently become
/// a target filter that logs nothing.)
fn log_filter(raw: &str, p: &FieldPath, report: &mut Report) -> Option<String> {
    let target_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b':' | b'-'))
    };
    let directive_ok = |d: &str| match d.split_once('=') {
        Some((target, level)) => {
            target_ok(target) && LEVELS.contains(&level.to_ascii_lowercase().as_str())
        }
        None => LEVELS.contains(&d.to_ascii_lowercase().as_str()),
    };
    if !raw.trim().is_empty() && raw.split(',').map(str::trim).all(directive_ok) {
        Some(raw.to_owned())
    } else {
        report.error(
            p,
            format!("{raw:?} is not a log filter"),
            format!(
                "use a level ({}) or directives like \"warn,quorumgate=debug\"",
                LEVELS.join(", ")
            ),
        );
        None
    }
}

/// The optional public listener: its own address, optional TLS without client certificates.
fn health_listener(
    raw: &RawLocal,
    listen: Option<SocketAddr>,
    path: &FieldPath,
    report: &mut Report,
) -> Option<Option<HealthListener>> {
    let lp = path.key("health_listen");
    let tp = path.key("health_tls");
    let Some(addr) = &raw.health_listen else {
        if raw.health_tls.is_some() {
            report.error(
                &tp,
                "[local.health_tls] is set but local.health_listen is not",
                "add health_listen = \"0.0.0.0:8443\", or remove [local.health_tls]",
            );
            return None;
        }
        return Some(None);
    };
    let addr = socket_addr(addr, &lp, report, "0.0.0.0:8443")?;
    if listen == Some(addr) {
        report.error(
            &lp,
            format!("{addr} is also local.listen"),
            "give the public health listener its own port, e.g. 8443",
        );
        return None;
    }
    let tls = match &raw.health_tls {
        None => None,
        Some(t) => {
            if t.client_ca_file.is_some() {
                report.error(
                    &tp.key("client_ca_file"),
                    "Route 53 health checkers present no client certificate",
                    "remove client_ca_file from [local.health_tls]",
                );
                return None;
            }
            Some(server_tls(t, &tp, report)?)
        }
    };
    Some(Some(HealthListener { listen: addr, tls }))
}

fn server_tls(raw: &RawServerTls, p: &FieldPath, report: &mut Report) -> Option<ServerTls> {
    let req =
        |key: &str, example: &str, v: Option<&String>, report: &mut Report| -> Option<PathBuf> {
            let kp = p.key(key);
            let fix =
                format!("add {key} = \"{example}\", or remove [local.tls] to serve plain HTTP");
            required(v, &kp, report, &fix).and_then(|s| file_path(s, example, &kp, report))
        };
    let cert_file = req(
        "cert_file",
        "/etc/quorumgate/tls/server.pem",
        raw.cert_file.as_ref(),
        report,
    );
    let key_file = req(
        "key_file",
        "/etc/quorumgate/tls/server.key",
        raw.key_file.as_ref(),
        report,
    );
    let client_ca_file = opt_file_path(
        raw.client_ca_file.as_ref(),
        "/etc/quorumgate/tls/peers-ca.pem",
        &p.key("client_ca_file"),
        report,
    );
    Some(ServerTls {
        cert_file: cert_file?,
        key_file: key_file?,
        client_ca_file: client_ca_file?,
    })
}

fn peer_tls(raw: &RawPeerTls, p: &FieldPath, report: &mut Report) -> Option<PeerTls> {
    let ca_file = opt_file_path(
        raw.ca_file.as_ref(),
        "/etc/quorumgate/tls/peers-ca.pem",
        &p.key("ca_file"),
        report,
    );
    let cert = opt_file_path(
        raw.client_cert_file.as_ref(),
        "/etc/quorumgate/tls/client.pem",
        &p.key("client_cert_file"),
        report,
    );
    let key = opt_file_path(
        raw.client_key_file.as_ref(),
        "/etc/quorumgate/tls/client.key",
        &p.key("client_key_file"),
        report,
    );
    let mut pair_ok = true;
    for (missing, other, given) in [
        (
            "client_key_file",
            "client_cert_file",
            raw.client_cert_file.is_some() && raw.client_key_file.is_none(),
        ),
        (
            "client_cert_file",
            "client_key_file",
            raw.client_key_file.is_some() && raw.client_cert_file.is_none(),
        ),
    ] {
        if given {
            report.error(
                &p.key(missing),
                format!("is required when {other} is set"),
                format!("set both {other} and {missing} (mutual TLS), or neither"),
            );
            pair_ok = false;
        }
    }
    let out = PeerTls {
        ca_file: ca_file?,
        client_cert_file: cert?,
        client_key_file: key?,
    };
    pair_ok.then_some(out)
}

fn control(raw: Option<&[Value]>, p: &FieldPath, report: &mut Report) -> Option<Vec<ControlProbe>> {
    let Some(items) = raw else {
        if !report.has_error_at(p) {
            report.warn(
                p,
                "no control probes: this agent cannot tell its own network failing from the application failing, so it never abstains",
                "add [[local.control]] probes of targets only this agent's network can break (e.g. its region's VPC resolver)",
            );
        }
        return Some(Vec::new());
    };
    let mut out = Vec::with_capacity(items.len());
    let mut first_id: HashMap<String, usize> = HashMap::new();
    for (i, raw) in elements::<RawControl>(items, p, report)
        .into_iter()
        .enumerate()
    {
        let Some(raw) = raw else { continue };
        let cp = p.index(i);
        let id_path = cp.key("id");
        let id =
            required(raw.id.as_ref(), &id_path, report, "add id = \"vpc-dns\"").and_then(|t| {
                match CheckId::new(t.0.as_str()) {
                    Ok(_) => Some(t.0.clone()),
                    Err(e) => {
                        id_error(&e, &t.0, &id_path, report);
                        None
                    }
                }
            });
        if let Some(id) = &id {
            if let Some(&j) = first_id.get(id) {
                report.error(
                    &id_path,
                    format!("duplicate id {id:?} (also local.control[{j}])"),
                    "give every control probe a unique id",
                );
            } else {
                first_id.insert(id.clone(), i);
            }
        }
        let timeout = duration_or(
            raw.timeout.as_ref(),
            defaults::CONTROL_TIMEOUT,
            &cp.key("timeout"),
            report,
        );
        let spec = probe::probe(raw.probes(), timeout, "local.control", &cp, report);
        if let (Some(id), Some(timeout_ms), Some(probe)) = (id, timeout, spec) {
            out.push(ControlProbe {
                id,
                timeout_ms,
                probe,
            });
        }
    }
    (out.len() == items.len() && !report.has_error_at(p)).then_some(out)
}

/// Serving plain HTTP while peers are told to use https (or the reverse) is almost always a
/// mistake, but a TLS-terminating proxy in front of the agent makes it legitimate: warn.
fn scheme_warning(
    id: &AgentId,
    serves_tls: bool,
    members: &Members,
    path: &FieldPath,
    report: &mut Report,
) {
    let Some(me) = members.valid.iter().find(|m| &m.id == id) else {
        return;
    };
    let https = me.url.scheme() == "https";
    if https && !serves_tls {
        report.warn(
            &path.key("tls"),
            format!(
                "peers reach {id} at {} but [local.tls] is not set, so it serves plain HTTP",
                me.url
            ),
            "add [local.tls] (unless a TLS proxy terminates in front of the agent)",
        );
    } else if !https && serves_tls {
        report.warn(
            &path.key("tls"),
            format!(
                "[local.tls] is set but peers reach {id} at {} (http)",
                me.url
            ),
            "use an https:// URL for this member",
        );
    }
}
