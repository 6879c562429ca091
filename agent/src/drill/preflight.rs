//! A drill's pre-flight: why it must not start, by the config and every agent's status.

use config::{Config, GateConfig};
use quorum::gate::GateKind;

use crate::status::{GateStatus, Status};

/// Why a drill of `gate` must not start, by every agent's status (empty: it may).
#[must_use]
pub fn preflight(
    cfg: &Config,
    gate: &GateConfig,
    statuses: &[(String, Result<Status, String>)],
) -> Vec<String> {
    let mut problems = Vec::new();
    let GateKind::Failover { primary, secondary } = gate.spec.kind() else {
        return vec!["not a failover gate".to_owned()];
    };
    let id = gate.spec.id();
    for other in cfg.shared.gates.iter().filter(|g| g.spec.id() != id) {
        if other.spec.checks().contains(&primary.check) {
            problems.push(format!(
                "gate {} also reads check {}: drilling {id} would move it too",
                other.spec.id(),
                primary.check
            ));
        }
    }
    let digest = cfg.digest.to_hex();
    let normal = format!("active={}", primary.id);
    for (name, status) in statuses {
        let s = match status {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!(
                    "{name}: unreachable ({e}); a drill needs every agent"
                ));
                continue;
            }
        };
        if s.config_digest != digest {
            problems.push(format!(
                "{name}: runs config digest {}, this config is {digest}",
                s.config_digest
            ));
        }
        if !s.ready {
            problems.push(format!("{name}: not ready"));
        }
        let Some(g) = s.gates.iter().find(|g| g.id == id.as_str()) else {
            problems.push(format!("{name}: does not run gate {id}"));
            continue;
        };
        problems.extend(gate_problems(name, g, &normal));
        for (role, target) in [("secondary", secondary), ("primary", primary)] {
            let check = s.checks.iter().find(|c| c.id == target.check.as_str());
            let healthy = check.is_some_and(|c| {
                c.decision == "healthy"
                    && c.tally
                        .as_ref()
                        .is_some_and(|t| t.outcome == "healthy" && t.certificate.is_some())
            });
            if !healthy {
                let seen = check.map_or_else(
                    || "no such check".to_owned(),
                    |c| {
                        format!(
                            "decision {}, tally {}",
                            c.decision,
                            c.tally.as_ref().map_or("pending", |t| t.outcome.as_str())
                        )
                    },
                );
                problems.push(format!(
                    "{name}: the {role} {} (check {}) is not Healthy by quorum ({seen})",
                    target.id, target.check
                ));
            }
        }
    }
    problems
}

fn gate_problems(name: &str, g: &GateStatus, normal: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(by) = &g.frozen_by {
        out.push(format!("{name}: the gate is frozen by {by}"));
    }
    if let Some(d) = g.drill.as_ref().filter(|d| d.state != "finished") {
        out.push(format!("{name}: drill {} is still {}", d.seq, d.state));
    }
    if g.current != normal {
        out.push(format!(
            "{name}: the gate is at {}, not {normal}",
            g.current
        ));
    }
    if !g.synced {
        out.push(format!("{name}: has not read the gate from Route 53 yet"));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::keys;
    use crate::operator_cli;

    fn config(shared_check_gate: bool) -> Config {
        let member = |id: &str, seed: u8| {
            let key = quorum::SigningKey::from_bytes(&[seed; 32]);
            format!(
                "[[members]]\nid = \"{id}\"\nregion = \"r{seed}\"\nurl = \"http://127.0.0.1:{}/\"\npublic_key = \"{}\"\n",
                9000 + u16::from(seed),
                keys::public_key_base64(&key.verifying_key())
            )
        };
        let check = |id: &str| {
            format!("[[checks]]\nid = \"{id}\"\ninterval = \"1s\"\ntimeout = \"500ms\"\n[checks.http]\nurl = \"http://127.0.0.1:1/{id}\"\n")
        };
        let other = if shared_check_gate {
            "[[gates]]\nid = \"web\"\nplane = \"control\"\nzone_id = \"Z1\"\nzone = \"example.com\"\nrecord = \"www.example.com\"\nkind = \"weighted\"\n[[gates.targets]]\nid = \"a\"\ncheck = \"app\"\nweight = 1\nvalues = [\"192.0.2.9\"]\n"
        } else {
            ""
        };
        let toml = format!(
            "[cluster]\nname = \"t\"\nround_interval = \"1s\"\nballot_valid_for = \"4s\"\npeer_timeout = \"500ms\"\n{}{}{}{}{}\
             [[gates]]\nid = \"app\"\nplane = \"control\"\nzone_id = \"Z1\"\nzone = \"example.com\"\nrecord = \"app.example.com\"\nkind = \"failover\"\n\
             [[gates.targets]]\nid = \"p\"\ncheck = \"app\"\nrole = \"primary\"\nvalues = [\"192.0.2.1\"]\n\
             [[gates.targets]]\nid = \"s\"\ncheck = \"standby\"\nrole = \"secondary\"\nvalues = [\"192.0.2.2\"]\n{other}\
             [local]\nagent_id = \"a\"\nkey_file = \"/nonexistent\"\n",
            member("a", 1),
            member("b", 2),
            member("c", 3),
            check("app"),
            check("standby"),
        );
        Config::from_toml_str(&toml).expect("valid test config")
    }

    fn status(cfg: &Config, standby: &str, gate: serde_json::Value) -> Status {
        let check = |id: &str, outcome: &str| {
            json!({ "id": id, "kind": "http", "decision": outcome, "since_ms": 0, "transitions": 0,
                    "pending_rounds": 0, "observations": {},
                    "tally": { "outcome": outcome, "healthy": 3, "unhealthy": 0, "abstain": 0, "at_ms": 0,
                               "certificate": "Q0VSVA==", "certificate_sha256": "x" } })
        };
        serde_json::from_value(json!({
            "agent": "a", "region": "r", "cluster": "t", "version": "0", "config_digest": cfg.digest.to_hex(),
            "now_ms": 0, "members_total": 3, "quorum": 2, "ready": true, "rounds": 9, "abstaining": null,
            "controls": [], "members": [], "rejected": {}, "last_rejection": null,
            "checks": [check("app", "healthy"), check("standby", standby)],
            "gates": [gate],
        }))
        .expect("status JSON")
    }

    fn gate(current: &str, frozen_by: Option<&str>, drill: Option<&str>) -> serde_json::Value {
        json!({ "id": "app", "plane": "control", "mode": "live", "current": current, "epoch": 1,
                "synced": true, "busy": false, "last_evaluation": "no_change", "hold": null,
                "hold_since_ms": null, "alert": false, "frozen_by": frozen_by, "approval": null,
                "changes": 0, "last_change_ms": null, "last_outcome": null, "retry_at_ms": null,
                "now_ms": 0,
                "drill": drill.map(|state| json!({ "seq": 7, "by": "alice", "started_at_ms": 0,
                    "ends_at_ms": 1, "dry_run": false, "state": state, "ended_at_ms": null,
                    "end_cause": null, "back_at_primary": null, "result": null })) })
    }

    #[test]
    fn preflight_names_every_reason_not_to_drill() {
        let cfg = config(false);
        let g = operator_cli::control_gate(&cfg, "app").expect("gate");
        let healthy = status(&cfg, "healthy", gate("active=p", None, Some("finished")));
        let ok = vec![
            ("a".to_owned(), Ok(healthy.clone())),
            ("b".to_owned(), Ok(healthy.clone())),
        ];
        assert_eq!(preflight(&cfg, g, &ok), Vec::<String>::new());

        let mut stale = healthy.clone();
        stale.config_digest = "other".into();
        let cases = vec![
            (Ok(status(&cfg, "unhealthy", gate("active=p", None, None))), "the secondary s (check standby) is not Healthy by quorum (decision unhealthy, tally unhealthy)"),
            (Ok(status(&cfg, "healthy", gate("active=p", Some("bob"), None))), "frozen by bob"),
            (Ok(status(&cfg, "healthy", gate("active=p", None, Some("ended")))), "drill 7 is still ended"),
            (Ok(status(&cfg, "healthy", gate("active=s", None, None))), "the gate is at active=s, not active=p"),
            (Ok(stale), "runs config digest other"),
            (Err("connection refused".to_owned()), "unreachable (connection refused)"),
        ];
        for (s, want) in cases {
            let problems = preflight(&cfg, g, &[("b".to_owned(), s)]);
            assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with("b: ") && p.contains(want)),
                "{want}: {problems:?}"
            );
        }

        let shared = config(true);
        let g = operator_cli::control_gate(&shared, "app").expect("gate");
        let s = status(&shared, "healthy", gate("active=p", None, None));
        let problems = preflight(&shared, g, &[("a".to_owned(), Ok(s))]);
        assert_eq!(
            problems,
            ["gate web also reads check app: drilling app would move it too"]
        );
    }
}
