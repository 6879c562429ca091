//! The Terraform output, pinned (golden file `terraform.golden.tf`).

use config::Plane;

use super::{dry_run, failover_gate, shared, weighted_gate};
use crate::provision::desired::desired;
use crate::provision::terraform::render;

const GOLDEN: &str = include_str!("terraform.golden.tf");

/// A live failover data-plane gate with custom checker regions, and a weighted control-plane
/// gate with an alias target.
#[test]
fn terraform_output_is_pinned() {
    let mut cfg = shared(vec![
        failover_gate(Plane::Data),
        weighted_gate(Plane::Control),
    ]);
    cfg.gates[0].health_checks.regions = vec![
        "us-east-1".into(),
        "eu-west-1".into(),
        "ap-southeast-1".into(),
    ];
    let out = render(&desired(&cfg).expect("desired")).expect("render");
    if out != GOLDEN {
        if let Some(path) = std::env::var_os("QG_WRITE_GOLDEN") {
            std::fs::write(path, &out).expect("write golden");
        }
        panic!("terraform output changed (QG_WRITE_GOLDEN=<path> writes it):\n{out}");
    }
    // Deterministic: the same config, the same text.
    assert_eq!(
        render(&desired(&cfg).expect("desired")).expect("render"),
        out
    );
}

#[test]
fn dry_run_control_gates_get_no_records_and_name_collisions_fail() {
    let cfg = shared(vec![dry_run(weighted_gate(Plane::Control))]);
    let out = render(&desired(&cfg).expect("desired")).expect("render");
    assert!(!out.contains("resource"), "{out}");
    assert!(out.contains("# gate web (control plane, dry-run)"), "{out}");

    let mut cfg = shared(vec![failover_gate(Plane::Data)]);
    cfg.members[0].id = "use1.x".parse().expect("id");
    cfg.members[1].id = "use1_x".parse().expect("id");
    let err = render(&desired(&cfg).expect("desired")).expect_err("collision");
    assert!(err.to_string().contains("agent_use1_x_app_use1"), "{err}");
}
