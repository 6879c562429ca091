//! The simulated world: agents (a shell around each gate machine), Route 53, the database,
//! the operator, the network and the disks — and the invariants.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::LazyLock;

use quorum::gate::machine::{
    Accepted, Action, AuditRecord, CommandFailure, Committed, Event, Failure, GateMachine,
    MachineConfig, Note, Plane, Planned, Promoted, Replayed, Token, View,
};
use quorum::gate::{Authority, CheckInput, DesiredState, GatePolicy, Inputs, Mode, Target};
use quorum::operator::{Action as OpAction, OperatorCommand, SignedCommand, VerifiedCommand};
use quorum::tally::Certificate;
use quorum::{
    verify_certificate, CheckId, GateId, GateKind, GateSpec, OperatorId, Outcome, SigningKey,
    State, Status, TargetId, UnixMillis,
};

use super::route53::{Batch, Route53};
use super::Rng;
use crate::common::{Cluster, Draft, DIGEST, SKEW_MS, T0};

const TIMEOUT_MS: u64 = 3_000;
const ROUND_MS: u64 = 1_000;

static CLUSTER: LazyLock<Cluster> = LazyLock::new(|| Cluster::new(3));

/// A real certificate (two of three members) for each check and outcome.
static CERTS: LazyLock<BTreeMap<(&'static str, bool), Certificate>> = LazyLock::new(|| {
    let c = &*CLUSTER;
    let mut out = BTreeMap::new();
    for check in ["p", "s"] {
        for healthy in [true, false] {
            let status = if healthy {
                Status::Healthy
            } else {
                Status::Unhealthy
            };
            let ballots = (0..2)
                .map(|i| Draft::new(&c.ids[i], &[(check, status)]).verified(&c.keys[i]))
                .collect();
            let outcome = if healthy {
                Outcome::Healthy
            } else {
                Outcome::Unhealthy
            };
            let cert = Certificate {
                check: CheckId::new(check).unwrap(),
                outcome,
                ballots,
            };
            out.insert((check, healthy), cert);
        }
    }
    out
});

fn target(id: &str) -> TargetId {
    TargetId::new(id).unwrap()
}

fn at(target_id: &str) -> DesiredState {
    DesiredState::Failover {
        active: target(target_id),
    }
}

/// The knobs one seed chooses.
#[derive(Clone, Debug)]
pub struct Params {
    pub agents: usize,
    pub policy: GatePolicy,
    pub promote: bool,
    pub stagger_ms: u64,
    /// Fault rates multiply by this (0: a calm run).
    pub weather: u64,
    pub operators: bool,
    pub crashes: bool,
    pub active_ms: u64,
    pub calm_ms: u64,
}

impl Params {
    pub fn from_seed(rng: &mut Rng) -> Self {
        let policy = GatePolicy {
            min_serving: 1,
            max_changes: [2, 3, 5, 20][rng.pick(4)],
            window_ms: [20_000, 60_000, 600_000][rng.pick(3)],
            wait_period_ms: [0, 1_000, 5_000][rng.pick(3)],
            auto_failback: rng.chance(500),
            max_rpo_ms: None,
        };
        Self {
            agents: if rng.chance(700) { 3 } else { 5 },
            policy,
            promote: rng.chance(700),
            stagger_ms: [0, 200, 500][rng.pick(3)],
            weather: rng.range(0, 3),
            operators: rng.chance(600),
            crashes: rng.chance(600),
            active_ms: rng.range(20_000, 90_000),
            calm_ms: 40_000,
        }
    }
}

/// What a run did (so the suite can show it is not vacuous).
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub steps: u64,
    pub batches: usize,
    pub won_after_lost_response: usize,
    pub promotions: usize,
    pub commands_applied: usize,
    pub restarts: usize,
}

#[derive(Clone, Debug)]
enum Delivery {
    Read(Token, Result<View, Failure>),
    Planned(Token, Result<Planned, Failure>),
    Committed(Token, Result<Committed, Failure>),
    Promoted(Token, Result<Promoted, Failure>),
    Command(VerifiedCommand),
}

#[derive(Clone, Debug)]
enum Req {
    Read(Token),
    Plan {
        token: Token,
        to: DesiredState,
        expected: u64,
        history: Vec<(u64, UnixMillis)>,
    },
    Commit {
        token: Token,
        batch: Batch,
        fate: Fate,
    },
    /// The SDK's retry of a batch that landed: refused, the shell re-reads.
    Retry {
        token: Token,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fate {
    Normal,
    Lost,
    Throttled,
    PriorRequest,
    LostResponse,
    Late,
    RetryAfterLanding,
}

#[derive(Clone, Debug)]
enum Ev {
    Round(usize),
    Deliver {
        agent: usize,
        inc: u64,
        what: Delivery,
    },
    AppendDone {
        agent: usize,
        inc: u64,
        token: Option<Token>,
        record: AuditRecord,
        at: UnixMillis,
        ok: bool,
    },
    Arrive {
        agent: usize,
        inc: u64,
        req: Req,
    },
    Crash(usize),
    Restart(usize),
    Health,
    Operator,
    Calm,
}

struct Agent {
    id: String,
    machine: Option<GateMachine>,
    inc: u64,
    skew: i64,
    lag_ms: u64,
    /// Durable audit records (appended and acknowledged, or lost in a crash's favour).
    log: Vec<(UnixMillis, AuditRecord)>,
    /// Batches planned, by (incarnation, plan token); removed when sent.
    plans: BTreeMap<(u64, Token), Batch>,
    rounds: u32,
    next_cmd: Token,
    cmds: BTreeMap<Token, VerifiedCommand>,
}

struct Rds {
    promoted: bool,
    attempts: Vec<(usize, u64)>,
}

struct World {
    p: Params,
    rng: Rng,
    t: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    agents: Vec<Agent>,
    r53: Route53,
    rds: Rds,
    spec: GateSpec,
    health: (bool, bool),
    history: Vec<(u64, bool, bool)>,
    calm: bool,
    ended: bool,
    /// `QG_SIM_TRACE=1`: print every event but rounds.
    trace: bool,
    op_seq: u64,
    op_key: SigningKey,
    report: Report,
    /// Epochs whose winner's promotion ended in an error it audited (an operator's alert).
    promote_failed: BTreeSet<u64>,
}

/// Runs one seeded schedule; `Err` names the first invariant broken.
pub fn run(seed: u64) -> Result<Report, String> {
    let mut rng = Rng::new(seed);
    let p = Params::from_seed(&mut rng);
    let spec = GateSpec::new(
        GateId::new("app").unwrap(),
        GateKind::Failover {
            primary: Target::new(target("primary"), CheckId::new("p").unwrap()),
            secondary: Target::new(target("secondary"), CheckId::new("s").unwrap()),
        },
        p.policy,
        Mode::Live,
    )
    .map_err(|e| format!("spec: {e:?}"))?;
    let agents = (0..p.agents)
        .map(|i| Agent {
            id: format!("a{i}"),
            machine: None,
            inc: 0,
            skew: i64::try_from(rng.range(0, 600)).unwrap_or(0) - 300,
            lag_ms: rng.range(0, 1_500),
            log: Vec::new(),
            plans: BTreeMap::new(),
            rounds: 0,
            next_cmd: 1,
            cmds: BTreeMap::new(),
        })
        .collect();
    let mut w = World {
        rng,
        t: 0,
        seq: 0,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        agents,
        r53: Route53::new(at("primary")),
        rds: Rds {
            promoted: false,
            attempts: Vec::new(),
        },
        spec,
        health: (true, true),
        history: vec![(0, true, true)],
        calm: false,
        ended: false,
        trace: std::env::var_os("QG_SIM_TRACE").is_some(),
        op_seq: 0,
        op_key: SigningKey::from_bytes(&[0x77; 32]),
        report: Report::default(),
        promote_failed: BTreeSet::new(),
        p,
    };
    for i in 0..w.p.agents {
        w.start(i);
        let first = w.rng.range(0, ROUND_MS);
        w.at(first, Ev::Round(i));
    }
    let first = w.rng.range(2_000, 10_000);
    w.at(first, Ev::Health);
    if w.p.operators {
        let first = w.rng.range(3_000, 15_000);
        w.at(first, Ev::Operator);
    }
    w.at(w.p.active_ms, Ev::Calm);
    let end = w.p.active_ms + w.p.calm_ms;
    // The calm phase lasts until Route 53 has been still for longer than a resync (operator
    // commands some agents missed expire in it); then no new rounds: what is in flight
    // lands, and the views are compared.
    let limit = end + 240_000;
    while let Some(Reverse((t, seq))) = w.queue.pop() {
        if t > limit + 60_000 {
            return Err("still busy a minute after the end".into());
        }
        w.t = t;
        let still = w
            .r53
            .history
            .last()
            .is_none_or(|h| t >= h.at.0 - T0.0 + 25_000)
            && w.agents.iter().all(|a| {
                a.machine
                    .as_ref()
                    .is_some_and(|m| !m.busy() && !m.write_pending())
            });
        if !w.ended && t > end && (still || t > limit) {
            if !still {
                return Err(format!(
                    "Route 53 still changing {} s into the calm",
                    (t - w.p.active_ms) / 1000
                ));
            }
            w.ended = true;
        }
        let ev = w.events.remove(&seq).ok_or("event lost")?;
        w.step(ev)?;
        w.report.steps += 1;
    }
    w.quiescent()?;
    Ok(w.report)
}

impl World {
    fn at(&mut self, after_ms: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((self.t + after_ms, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn now(&self, agent: usize) -> UnixMillis {
        let t = i64::try_from(T0.0 + self.t).unwrap_or(i64::MAX) + self.agents[agent].skew;
        UnixMillis(u64::try_from(t).unwrap_or(0))
    }

    fn faults(&self) -> u64 {
        if self.calm {
            0
        } else {
            self.p.weather
        }
    }

    fn config(&self, agent: usize) -> MachineConfig {
        MachineConfig {
            spec: self.spec.clone(),
            plane: Plane::Control,
            me: self.agents[agent].id.clone(),
            promote: self.p.promote,
            drill_guards: Vec::new(),
            writer_stagger_ms: self.p.stagger_ms,
            resync_every_ms: 10_000,
            resync_on_alert_ms: 3_000,
            retry_base_ms: 500,
            retry_max_ms: 8_000,
            request_lifetime_ms: 2 * TIMEOUT_MS + 3_000,
            max_clock_skew_ms: 600,
        }
    }

    /// (Re)starts an agent from its durable log.
    fn start(&mut self, i: usize) {
        let mut m = GateMachine::new(self.config(i));
        for (at, record) in &self.agents[i].log {
            if let Some(r) = Replayed::from_record(record, *at) {
                m.restore(r);
            }
        }
        m.restored();
        let a = &mut self.agents[i];
        a.machine = Some(m);
        a.inc += 1;
        a.rounds = 0;
        a.cmds.clear();
    }

    fn step(&mut self, ev: Ev) -> Result<(), String> {
        if self.trace {
            match &ev {
                Ev::Round(_) | Ev::Operator | Ev::Health => {}
                ev => eprintln!("t={:>6} {ev:?}", self.t),
            }
        }
        match ev {
            Ev::Round(i) => {
                if self.ended {
                    return Ok(());
                }
                self.at(ROUND_MS, Ev::Round(i));
                if self.agents[i].machine.is_none() {
                    return Ok(());
                }
                let now = self.now(i);
                let inputs = self.inputs(i);
                let rank = if self.rng.chance(100) {
                    0 // this agent saw the preferred writer's ballots expire
                } else {
                    (0..i).filter(|j| self.agents[*j].machine.is_some()).count()
                };
                self.agents[i].rounds += 1;
                self.feed(
                    i,
                    Event::Round {
                        now,
                        inputs,
                        rank,
                        serving: None,
                    },
                )?;
            }
            Ev::Deliver { agent, inc, what } => {
                if self.agents[agent].inc != inc || self.agents[agent].machine.is_none() {
                    return Ok(());
                }
                let now = self.now(agent);
                let event = match what {
                    Delivery::Read(token, result) => Event::Read { token, now, result },
                    Delivery::Planned(token, result) => Event::Planned { token, now, result },
                    Delivery::Committed(token, result) => Event::Committed { token, now, result },
                    Delivery::Promoted(token, result) => Event::Promoted { token, now, result },
                    Delivery::Command(command) => {
                        let a = &mut self.agents[agent];
                        let token = a.next_cmd;
                        a.next_cmd += 1;
                        a.cmds.insert(token, command.clone());
                        Event::Command {
                            token,
                            now,
                            command,
                        }
                    }
                };
                self.feed(agent, event)?;
            }
            Ev::AppendDone {
                agent,
                inc,
                token,
                record,
                at,
                ok,
            } => {
                let alive = self.agents[agent].inc == inc && self.agents[agent].machine.is_some();
                // A crash while the append was in flight: the fsync may or may not have made it.
                let durable = ok && (alive || self.rng.chance(500));
                if durable {
                    self.agents[agent].log.push((at, record));
                }
                if alive {
                    if let Some(token) = token {
                        let result = if ok {
                            Ok(())
                        } else {
                            Err(Failure::new("audit", "audit log unavailable (injected)"))
                        };
                        self.feed(agent, Event::Appended { token, result })?;
                    }
                }
            }
            Ev::Arrive { agent, inc, req } => self.arrive(agent, inc, req)?,
            Ev::Crash(i) => {
                if self.agents[i].machine.take().is_some() {
                    self.agents[i].plans.clear();
                    let back = self.rng.range(500, 8_000);
                    self.at(back, Ev::Restart(i));
                }
            }
            Ev::Restart(i) => {
                if self.agents[i].machine.is_none() {
                    self.start(i);
                    self.report.restarts += 1;
                    self.drain(i)?;
                }
            }
            Ev::Health => {
                if !self.calm {
                    if self.rng.chance(700) {
                        self.health.0 = !self.health.0;
                    } else {
                        self.health.1 = !self.health.1;
                    }
                    self.history.push((self.t, self.health.0, self.health.1));
                    let next = self.rng.range(3_000, 25_000);
                    self.at(next, Ev::Health);
                }
            }
            Ev::Operator => self.operator(),
            Ev::Calm => {
                self.calm = true;
                for i in 0..self.agents.len() {
                    if self.agents[i].machine.is_none() {
                        self.start(i);
                        self.drain(i)?;
                    }
                }
            }
        }
        if !self.calm && self.p.crashes && self.rng.chance(4) {
            let i = self.rng.pick(self.agents.len());
            self.at(0, Ev::Crash(i));
        }
        Ok(())
    }

    /// What agent `i` sees of the quorum's decisions now (it learns them `lag_ms` late).
    fn inputs(&self, i: usize) -> Inputs {
        let a = &self.agents[i];
        let mut inputs = Inputs::new();
        let (p, s) = if a.rounds < 2 {
            // Just started: nothing decided yet.
            inputs.insert_undecided(CheckId::new("p").unwrap());
            inputs.insert_undecided(CheckId::new("s").unwrap());
            return inputs;
        } else {
            let seen = self.t.saturating_sub(a.lag_ms);
            let (_, p, s) = self
                .history
                .iter()
                .rev()
                .find(|(t, ..)| *t <= seen)
                .copied()
                .unwrap_or((0, true, true));
            (p, s)
        };
        for (check, healthy) in [("p", p), ("s", s)] {
            let state = if healthy {
                State::Healthy
            } else {
                State::Unhealthy
            };
            let cert = CERTS.get(&(check, healthy)).cloned();
            inputs.insert(CheckId::new(check).unwrap(), CheckInput::new(state, cert));
        }
        inputs
    }

    fn feed(&mut self, i: usize, event: Event) -> Result<(), String> {
        match self.agents[i].machine.as_mut() {
            Some(m) => m.handle(event),
            None => return Ok(()),
        }
        self.drain(i)
    }

    /// Executes agent `i`'s queued actions, checking each against the invariants.
    fn drain(&mut self, i: usize) -> Result<(), String> {
        loop {
            let Some(action) = self.agents[i]
                .machine
                .as_mut()
                .and_then(GateMachine::poll_action)
            else {
                return Ok(());
            };
            self.execute(i, action)?;
        }
    }

    fn execute(&mut self, i: usize, action: Action) -> Result<(), String> {
        let inc = self.agents[i].inc;
        match action {
            Action::Append { token, record } => {
                let ok = !self.rng.chance(30 * self.faults());
                let delay = self.rng.range(1, 60);
                let at = self.now(i);
                self.at(
                    delay,
                    Ev::AppendDone {
                        agent: i,
                        inc,
                        token,
                        record,
                        at,
                        ok,
                    },
                );
            }
            Action::Read { token } => self.send(i, Req::Read(token), Fate::Normal),
            Action::Plan {
                token,
                to,
                expected_epoch,
                delay_ms,
                history,
            } => {
                let fate = self.read_fate();
                let req = Req::Plan {
                    token,
                    to,
                    expected: expected_epoch,
                    history,
                };
                self.send_after(i, delay_ms, req, fate);
            }
            Action::Commit { token, plan } => {
                let batch = self.agents[i].plans.remove(&(inc, plan)).ok_or_else(|| {
                    format!("{}: commit of plan {plan}, which is not planned or already sent (two batches from one read view)", self.agents[i].id)
                })?;
                self.check_authority(i, &batch)?;
                if self.trace {
                    let m = self.agents[i].machine.as_ref().unwrap();
                    let known: Vec<(u64, u64)> = m
                        .changes_by_epoch()
                        .iter()
                        .map(|(e, t)| (*e, t.0 - T0.0))
                        .collect();
                    eprintln!(
                        "t={:>6} a{i} sends epoch {} knowing changes at {known:?}",
                        self.t, batch.next_epoch
                    );
                }
                let fate = self.commit_fate();
                self.send(i, Req::Commit { token, batch, fate }, fate);
            }
            Action::Promote { token, epoch } => {
                self.check_promotion(i, epoch)?;
                self.rds.attempts.push((i, epoch));
                let result = if self.rng.chance(20 * self.faults()) {
                    Err(Failure::new("rds", "PromoteReadReplica failed (injected)"))
                } else if self.rds.promoted {
                    Ok(Promoted::AlreadyDone("not a read replica".into()))
                } else {
                    self.rds.promoted = true;
                    self.report.promotions += 1;
                    Ok(Promoted::Started)
                };
                let delay = self.rng.range(20, 500);
                self.at(
                    delay,
                    Ev::Deliver {
                        agent: i,
                        inc,
                        what: Delivery::Promoted(token, result),
                    },
                );
            }
            Action::CommandDone { token, result } => {
                let cmd = self.agents[i]
                    .cmds
                    .remove(&token)
                    .ok_or("unknown command token")?;
                let audited = self.agents[i]
                    .log
                    .iter()
                    .any(|(_, r)| matches!(r, AuditRecord::OperatorCommand(c) if *c == cmd));
                match result {
                    Ok(()) if !audited => {
                        return Err(format!(
                            "{}: operator command {} applied without its audit record",
                            self.agents[i].id, cmd.command.seq
                        ))
                    }
                    Ok(()) => self.report.commands_applied += 1,
                    Err(CommandFailure::Audit(_))
                        if audited && cmd_count(&self.agents[i], &cmd) == 1 =>
                    {
                        return Err(format!(
                            "{}: operator command {} audited but reported not applied",
                            self.agents[i].id, cmd.command.seq
                        ))
                    }
                    Err(_) => {}
                }
            }
            Action::Note(Note::Inconsistent(why)) => {
                return Err(format!("{}: inconsistent: {why}", self.agents[i].id))
            }
            Action::Note(Note::PromoteEnded {
                epoch,
                result: Err(_),
            }) => {
                self.promote_failed.insert(epoch);
            }
            Action::Note(Note::WriteEnded { outcome, .. }) => {
                if matches!(outcome, quorum::gate::machine::Outcome::Won { .. }) {
                    self.report.won_after_lost_response += 1;
                }
            }
            Action::Note(_)
            | Action::SetAlert(_)
            | Action::DrillStarted(_)
            | Action::DrillEnded { .. }
            | Action::DrillFinished(_) => {}
        }
        Ok(())
    }

    fn read_fate(&mut self) -> Fate {
        let f = self.faults();
        if self.rng.chance(20 * f) {
            Fate::Lost
        } else if self.rng.chance(30 * f) {
            Fate::Throttled
        } else {
            Fate::Normal
        }
    }

    fn commit_fate(&mut self) -> Fate {
        let f = self.faults();
        let roll = self.rng.range(0, 999);
        let table = [
            (Fate::Lost, 20),
            (Fate::Throttled, 30),
            (Fate::PriorRequest, 20),
            (Fate::LostResponse, 30),
            (Fate::Late, 20),
            (Fate::RetryAfterLanding, 40),
        ];
        let mut acc = 0;
        for (fate, per_mille) in table {
            acc += per_mille * f;
            if roll < acc {
                return fate;
            }
        }
        Fate::Normal
    }

    fn send(&mut self, i: usize, req: Req, fate: Fate) {
        let fate = if matches!(req, Req::Read(_)) {
            self.read_fate()
        } else {
            fate
        };
        self.send_after(i, 0, req, fate);
    }

    fn send_after(&mut self, i: usize, delay: u64, req: Req, fate: Fate) {
        let inc = self.agents[i].inc;
        let latency = self.rng.range(5, 300);
        let error = match fate {
            Fate::Lost | Fate::LostResponse | Fate::Late => {
                Some((TIMEOUT_MS, Failure::new("timeout", "no response in time")))
            }
            Fate::Throttled => Some((
                latency * 2,
                Failure::new("throttled", "Throttling: Rate exceeded"),
            )),
            Fate::PriorRequest => Some((
                latency * 2,
                Failure::new("prior_request_not_complete", "PriorRequestNotComplete"),
            )),
            Fate::Normal | Fate::RetryAfterLanding => None,
        };
        if let Some((after, failure)) = error {
            let what = match &req {
                Req::Read(t) => Delivery::Read(*t, Err(failure)),
                Req::Plan { token, .. } => Delivery::Planned(*token, Err(failure)),
                Req::Commit { token, .. } | Req::Retry { token } => {
                    Delivery::Committed(*token, Err(failure))
                }
            };
            self.at(
                delay + after,
                Ev::Deliver {
                    agent: i,
                    inc,
                    what,
                },
            );
        }
        let arrives = match fate {
            Fate::Lost | Fate::Throttled | Fate::PriorRequest => None,
            Fate::Late => Some(TIMEOUT_MS + self.rng.range(100, 3_000)),
            Fate::Normal | Fate::LostResponse | Fate::RetryAfterLanding => Some(latency),
        };
        if let Some(after) = arrives {
            self.at(delay + after, Ev::Arrive { agent: i, inc, req });
        }
    }

    fn arrive(&mut self, i: usize, inc: u64, req: Req) -> Result<(), String> {
        let latency = self.rng.range(5, 300);
        let deliver = |what| Ev::Deliver {
            agent: i,
            inc,
            what,
        };
        match req {
            Req::Read(token) => {
                let ev = deliver(Delivery::Read(token, Ok(self.r53.view())));
                self.at(latency, ev);
            }
            Req::Plan {
                token,
                to,
                expected,
                mut history,
            } => {
                let view = self.r53.view();
                let result = if view.records == quorum::gate::machine::Records::State(to.clone())
                    || view.epoch != expected
                {
                    Planned::Nothing(view)
                } else {
                    let batch = Batch {
                        agent: i,
                        by: self.agents[i].id.clone(),
                        plan: token,
                        expected_epoch: expected,
                        next_epoch: expected + 1,
                        to,
                        history: {
                            history.push((expected + 1, self.now(i)));
                            history
                        },
                    };
                    self.agents[i].plans.insert((inc, token), batch);
                    Planned::Write {
                        expected_epoch: expected,
                        next_epoch: expected + 1,
                    }
                };
                // A plan for a crashed incarnation is never sent: forget it.
                if self.agents[i].inc != inc {
                    self.agents[i].plans.remove(&(inc, token));
                }
                self.at(latency, deliver(Delivery::Planned(token, Ok(result))));
            }
            Req::Commit { token, batch, fate } => {
                let at = UnixMillis(T0.0 + self.t);
                let applied = self.r53.change(&batch, at).is_ok();
                if applied {
                    self.report.batches += 1;
                    self.check_pacing()?;
                }
                match fate {
                    Fate::LostResponse | Fate::Late => {} // the client already gave up
                    Fate::RetryAfterLanding if applied => {
                        let retry = Ev::Arrive {
                            agent: i,
                            inc,
                            req: Req::Retry { token },
                        };
                        self.at(latency, retry);
                    }
                    _ => {
                        let result = if applied {
                            Committed::Accepted(Accepted {
                                epoch: batch.next_epoch,
                                change_id: format!("C{}", self.r53.history.len()),
                                in_sync: true,
                                accepted_at_ms: Some(at.0),
                                in_sync_at_ms: Some(at.0),
                            })
                        } else {
                            Committed::Rejected {
                                view: self.r53.view(),
                                messages: vec!["InvalidChangeBatch: fence changed".into()],
                            }
                        };
                        self.at(latency, deliver(Delivery::Committed(token, Ok(result))));
                    }
                }
            }
            Req::Retry { token } => {
                let result = Committed::Rejected {
                    view: self.r53.view(),
                    messages: vec!["InvalidChangeBatch: fence changed".into()],
                };
                self.at(latency, deliver(Delivery::Committed(token, Ok(result))));
            }
        }
        Ok(())
    }
}

fn cmd_count(agent: &Agent, cmd: &VerifiedCommand) -> usize {
    agent
        .log
        .iter()
        .filter(|(_, r)| matches!(r, AuditRecord::OperatorCommand(c) if c == cmd))
        .count()
}

impl World {
    /// No record change without a quorum certificate or an operator's authority, audited
    /// (durable) before the batch is sent: the decision, then the batch itself.
    fn check_authority(&self, i: usize, batch: &Batch) -> Result<(), String> {
        let a = &self.agents[i];
        let fail = |why: String| {
            Err(format!(
                "{}: batch to {} from epoch {}: {why}",
                a.id, batch.to, batch.expected_epoch
            ))
        };
        let write = a.log.iter().rposition(|(_, r)| {
            matches!(r, AuditRecord::Write { plan, expected_epoch, to, .. }
                if *plan == batch.plan && *expected_epoch == batch.expected_epoch && *to == batch.to)
        });
        let Some(write) = write else {
            return fail("sent before its batch was audited".into());
        };
        let decision = a.log[..write].iter().rev().find_map(|(_, r)| match r {
            AuditRecord::Decision {
                change,
                based_on_epoch,
            } if change.to == batch.to && *based_on_epoch == batch.expected_epoch => Some(change),
            _ => None,
        });
        let Some(change) = decision else {
            return fail("no audited decision before it".into());
        };
        let operator_audited = |seq: u64| {
            a.log[..write]
                .iter()
                .any(|(_, r)| matches!(r, AuditRecord::OperatorCommand(c) if c.command.seq == seq))
        };
        match &change.authority {
            Authority::Override {
                seq, force: true, ..
            } => {
                if !operator_audited(*seq) {
                    return fail(format!("forced override {seq} not audited"));
                }
                return Ok(());
            }
            Authority::Override { seq, .. } | Authority::Drill { seq, .. } => {
                if !operator_audited(*seq) {
                    return fail(format!("operator command {seq} not audited"));
                }
            }
            Authority::Approved(ap) => {
                if !operator_audited(ap.seq) {
                    return fail(format!("approval {} not audited", ap.seq));
                }
            }
            Authority::Automatic => {}
        }
        if change.certificates.is_empty() {
            return fail("no certificate".into());
        }
        for cert in &change.certificates {
            verify_certificate(
                &cert.to_bytes(),
                &CLUSTER.membership,
                Some(&DIGEST),
                SKEW_MS,
            )
            .map_err(|e| format!("{}: certificate does not verify: {e:?}", a.id))?;
        }
        Ok(())
    }

    /// Only the winner of `epoch`'s batch promotes, only for a move to the secondary, and
    /// not again once an outcome of an earlier promotion of that epoch is durable.
    fn check_promotion(&self, i: usize, epoch: u64) -> Result<(), String> {
        let a = &self.agents[i];
        let won = self
            .r53
            .history
            .iter()
            .find(|h| h.batch.next_epoch == epoch);
        let Some(won) = won else {
            return Err(format!(
                "{}: promotes for epoch {epoch}, which no batch installed",
                a.id
            ));
        };
        if won.batch.agent != i {
            return Err(format!(
                "{}: promotes for epoch {epoch}, won by {}",
                a.id, won.batch.by
            ));
        }
        if !(self.p.promote && won.batch.to == at("secondary") && won.from == at("primary")) {
            return Err(format!(
                "{}: promotes for epoch {epoch}, which was no failover",
                a.id
            ));
        }
        if a.log
            .iter()
            .any(|(_, r)| matches!(r, AuditRecord::PromoteOutcome { epoch: e, .. } if *e == epoch))
        {
            return Err(format!("{}: promotes epoch {epoch} a second time", a.id));
        }
        Ok(())
    }

    /// Pacing rules against Route 53's history: every change that is not an override is at
    /// least `wait_period` after the previous one, with fewer than `max_changes` in the
    /// window before it.
    fn check_pacing(&self) -> Result<(), String> {
        let policy = self.p.policy;
        let h = &self.r53.history;
        for (k, change) in h.iter().enumerate() {
            let a = &self.agents[change.batch.agent];
            let overridden = a.log.iter().any(|(_, r)| {
                matches!(r, AuditRecord::Decision { change: c, based_on_epoch }
                    if *based_on_epoch == change.batch.expected_epoch && c.to == change.batch.to
                    && matches!(c.authority, Authority::Override { .. }))
            });
            if overridden || k == 0 {
                continue;
            }
            let t = change.at.0;
            let prev = &h[k - 1];
            if t - prev.at.0 < policy.wait_period_ms {
                return Err(format!(
                    "epoch {} by {} {} ms after epoch {}: wait_period is {} ms",
                    change.batch.next_epoch,
                    change.batch.by,
                    t - prev.at.0,
                    prev.batch.next_epoch,
                    policy.wait_period_ms
                ));
            }
            let recent = h[..k]
                .iter()
                .filter(|p| t - p.at.0 < policy.window_ms)
                .count();
            if recent >= policy.max_changes as usize {
                return Err(format!(
                    "epoch {} by {}: {recent} changes in the {} ms before it; max_changes is {}",
                    change.batch.next_epoch, change.batch.by, policy.window_ms, policy.max_changes
                ));
            }
        }
        Ok(())
    }

    /// After the calm phase: every agent sees what Route 53 holds, nothing is pending, and
    /// every failover still in place was promoted (or its failure audited for an operator).
    fn quiescent(&self) -> Result<(), String> {
        self.check_pacing()?;
        for a in &self.agents {
            let m = a
                .machine
                .as_ref()
                .ok_or_else(|| format!("{} not running at the end", a.id))?;
            if *m.state().current() != self.r53.records || m.epoch() != self.r53.epoch {
                return Err(format!(
                    "{} ends at {} epoch {}; Route 53 holds {} epoch {}",
                    a.id,
                    m.state().current(),
                    m.epoch(),
                    self.r53.records,
                    self.r53.epoch
                ));
            }
            if m.busy() || m.write_pending() {
                return Err(format!(
                    "{} still busy ({}) or with a write pending ({}) at the end; last: {:?}; Route 53 epoch {} by {:?}",
                    a.id,
                    m.busy(),
                    m.write_pending(),
                    m.last_outcome(),
                    self.r53.epoch,
                    self.r53.by
                ));
            }
        }
        if let Some(last) = self.r53.history.last() {
            let failover = last.batch.to == at("secondary") && last.from == at("primary");
            let epoch = last.batch.next_epoch;
            let tried = self
                .rds
                .attempts
                .iter()
                .any(|(i, e)| *e == epoch && *i == last.batch.agent);
            let winner_audited_failure = self.promote_failed.contains(&epoch)
                || self.agents[last.batch.agent].log.iter().any(|(_, r)| {
                    matches!(r, AuditRecord::PromoteOutcome { epoch: e, result: Err(_) } if *e == epoch)
                });
            if self.p.promote && failover && !tried && !winner_audited_failure {
                return Err(format!(
                    "epoch {epoch}: {}'s failover batch won and is in place, but it never promoted",
                    last.batch.by
                ));
            }
        }
        Ok(())
    }

    /// The operator signs a command and sends it to every agent (some do not get it).
    fn operator(&mut self) {
        if self.calm {
            return;
        }
        let next = self.rng.range(4_000, 20_000);
        self.at(next, Ev::Operator);
        let action = match self.rng.pick(6) {
            0 => OpAction::Freeze,
            1 => OpAction::Unfreeze,
            2 | 3 => OpAction::Approve {
                to: target(if self.rng.chance(700) {
                    "primary"
                } else {
                    "secondary"
                }),
            },
            _ => OpAction::Override {
                desired: at(if self.rng.chance(500) {
                    "primary"
                } else {
                    "secondary"
                }),
                force: self.rng.chance(300),
            },
        };
        self.op_seq += 1;
        let command = OperatorCommand::new(
            quorum::ClusterId::new("sim", &CLUSTER.membership),
            OperatorId::new("oncall").unwrap(),
            GateId::new("app").unwrap(),
            action,
            self.op_seq,
            UnixMillis(T0.0 + self.t),
            60_000,
        );
        let signed = SignedCommand::sign(&command, &self.op_key).unwrap();
        let verified = VerifiedCommand { command, signed };
        for i in 0..self.agents.len() {
            if self.rng.chance(900) {
                let inc = self.agents[i].inc;
                let latency = self.rng.range(5, 500);
                let what = Delivery::Command(verified.clone());
                self.at(
                    latency,
                    Ev::Deliver {
                        agent: i,
                        inc,
                        what,
                    },
                );
            }
        }
    }
}
