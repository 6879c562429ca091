//! What Route 53 serves for a data-plane gate, by the quorum's decisions alone (the agents'
//! health answers are what its calculated health checks read).

use config::GateConfig;
use quorum::gate::{DesiredState, GateKind, Inputs, Target};
use quorum::State;

/// What Route 53 answers for a data-plane failover gate by the quorum's decisions, as its
/// failover routing chooses: the primary while its check is healthy; the secondary when the
/// primary's check is unhealthy and the secondary's healthy; the primary again when both are
/// unhealthy (Route 53 fails open). A check without a decision counts as unhealthy (the
/// agents answer it 503). `None` for a weighted gate (no single target is served).
#[must_use]
pub fn data_plane_serving(gate: &GateConfig, inputs: &Inputs) -> Option<DesiredState> {
    let GateKind::Failover { primary, secondary } = gate.spec.kind() else {
        return None;
    };
    let healthy = |t: &Target| {
        inputs
            .get(&t.check)
            .is_some_and(|i| i.state == State::Healthy)
    };
    let active = if !healthy(primary) && healthy(secondary) {
        secondary
    } else {
        primary
    };
    Some(DesiredState::Failover {
        active: active.id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gates::records::tests::failover as failover_gate;
    use quorum::gate::CheckInput;
    use quorum::CheckId;

    fn inputs(primary: Option<State>, secondary: Option<State>) -> Inputs {
        let mut i = Inputs::new();
        for (check, state) in [("app-use1", primary), ("app-usw2", secondary)] {
            if let Some(state) = state {
                i.insert(
                    CheckId::new(check).expect("check"),
                    CheckInput {
                        state,
                        certificate: None,
                        lag_ms: None,
                    },
                );
            }
        }
        i
    }

    #[test]
    fn route53_failover_selection_by_the_quorums_decisions() {
        use State::{Healthy as H, Unhealthy as U};
        let gate = failover_gate();
        // (primary's decision, secondary's decision, served); None: no decision yet (503).
        let table = [
            (Some(H), Some(H), "use1"),
            (Some(H), Some(U), "use1"),
            (Some(U), Some(H), "usw2"),
            // Both unhealthy: Route 53 answers the primary (fails open).
            (Some(U), Some(U), "use1"),
            (None, Some(H), "usw2"),
            (None, None, "use1"),
            (Some(U), None, "use1"),
        ];
        for (p, s, want) in table {
            let got = data_plane_serving(&gate, &inputs(p, s)).expect("failover gate");
            assert_eq!(got.to_string(), format!("active={want}"), "{p:?} {s:?}");
        }
    }
}
