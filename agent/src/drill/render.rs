//! A drill report as Markdown and as an SVG timeline (hand-written SVG: one row per agent,
//! one for DNS, the drill's window shaded, a marker per phase, a bar per change in flight).

use std::fmt::Write as _;

use super::report::Report;
use super::timeline::Phase;

fn secs(ms: u64) -> String {
    format!("{:.3} s", ms as f64 / 1000.0)
}

fn opt_secs(ms: Option<u64>) -> String {
    ms.map_or_else(|| "—".to_owned(), secs)
}

/// `2024-05-01T12:00:00.123Z`.
#[must_use]
pub fn utc(ms: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The report for people: verdict, objectives, phases, per-agent table, DNS, notes.
#[must_use]
pub fn markdown(r: &Report, svg_file: Option<&str>) -> String {
    let d = &r.drill;
    let mut o = String::new();
    let verdict = if r.passed() { "PASS" } else { "FAIL" };
    let _ = writeln!(o, "# Drill of gate `{}`: {verdict}\n", d.gate);
    let _ = writeln!(
        o,
        "Drill {} by `{}`, started {} for {}{}; ended: {}. Failover to `{}`{}, failback to `{}`{}.\n",
        d.seq,
        d.operator,
        utc(d.started_at_ms),
        secs(d.duration_ms),
        if d.dry_run { " (dry run: nothing written)" } else { "" },
        r.end_cause.as_deref().unwrap_or("not recorded"),
        d.secondary,
        r.writer.as_ref().map_or_else(String::new, |w| format!(" written by `{w}`")),
        d.primary,
        r.failback_writer.as_ref().map_or_else(String::new, |w| format!(" written by `{w}`")),
    );
    let _ = writeln!(o, "| criterion | result | detail |\n|---|---|---|");
    for c in &r.criteria {
        let _ = writeln!(
            o,
            "| {} | {} | {} |",
            c.name,
            if c.passed { "pass" } else { "**FAIL**" },
            c.detail
        );
    }
    let m = &r.measured;
    let _ = writeln!(o, "\n## Measured\n");
    let _ = writeln!(o, "| measure | value | objective |\n|---|---|---|");
    let _ = writeln!(
        o,
        "| RTO (start → failover {}) | {} | {} |",
        m.rto_to.as_deref().unwrap_or("change"),
        opt_secs(m.rto_ms),
        opt_secs(d.objectives.rto_ms)
    );
    let _ = writeln!(
        o,
        "| RPO (standby lag at the failover) | {} | {} |",
        opt_secs(m.rpo_lag_ms),
        opt_secs(d.objectives.rpo_ms)
    );
    let _ = writeln!(
        o,
        "| failback (drill end → change accepted) | {} | — |",
        opt_secs(m.failback_ms)
    );
    if r.dns.is_some() {
        let _ = writeln!(
            o,
            "| DNS: start → secondary answered | {} | — |",
            opt_secs(m.dns_failover_ms)
        );
        let _ = writeln!(
            o,
            "| DNS: drill end → primary answered | {} | — |",
            opt_secs(m.dns_failback_ms)
        );
    }
    let _ = writeln!(o, "\n## Phases\n");
    let _ = writeln!(
        o,
        "| phase | time (UTC) | after start | source |\n|---|---|---|---|"
    );
    let mut phases: Vec<_> = r.phases.iter().collect();
    phases.sort_by_key(|p| p.at_ms);
    for p in phases {
        let _ = writeln!(
            o,
            "| {} | {} | +{} | {} |",
            p.label,
            utc(p.at_ms),
            secs(p.after_start_ms),
            p.source
        );
    }
    let _ = writeln!(
        o,
        "\n## Per agent (seconds after start; audit record seq in brackets)\n"
    );
    let shown: Vec<Phase> = Phase::ALL
        .into_iter()
        .filter(|p| r.agents.iter().any(|t| t.mark(*p).is_some()))
        .collect();
    let _ = write!(o, "| agent |");
    for p in &shown {
        let _ = write!(o, " {} |", p.code());
    }
    let _ = write!(o, " result |\n|---|");
    for _ in &shown {
        let _ = write!(o, "---|");
    }
    let _ = writeln!(o, "---|");
    for t in &r.agents {
        let _ = write!(o, "| {} |", t.agent);
        for p in &shown {
            match t.mark(*p) {
                Some(m) => {
                    let _ = write!(
                        o,
                        " {:.3} [{}] |",
                        m.at_ms.saturating_sub(d.started_at_ms) as f64 / 1000.0,
                        m.audit_seq
                    );
                }
                None => o.push_str(" — |"),
            }
        }
        let _ = writeln!(o, " {} |", t.result.as_deref().unwrap_or("—"));
    }
    if let Some(dns) = &r.dns {
        let _ = writeln!(o, "\n## DNS ({})\n", dns.source);
        if let Some(n) = &dns.note {
            let _ = writeln!(o, "{n}\n");
        }
        let _ = writeln!(
            o,
            "{} queries, {} failed. Every change of the answer:\n",
            dns.queries, dns.errors
        );
        let _ = writeln!(o, "| after start | answer | target |\n|---|---|---|");
        for s in &dns.samples {
            let after = s.at_ms as i128 - i128::from(d.started_at_ms);
            let _ = writeln!(
                o,
                "| {:+.3} s | {} | {} |",
                after as f64 / 1000.0,
                s.answer,
                s.target.as_deref().unwrap_or("—")
            );
        }
    }
    if !r.notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    if let Some(svg) = svg_file {
        let _ = writeln!(o, "\n![timeline]({svg})");
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn color(p: Phase) -> &'static str {
    match p {
        Phase::Start | Phase::Ended => "#555555",
        Phase::Detected | Phase::Recovered => "#d62728",
        Phase::Decided | Phase::FailbackDecided => "#ff7f0e",
        Phase::Sent | Phase::FailbackSent => "#9467bd",
        Phase::Changed | Phase::FailbackChanged => "#2ca02c",
        Phase::InSync | Phase::FailbackInSync => "#1f77b4",
    }
}

/// The timeline: x is time after the drill's start, one row per agent and one for DNS.
#[must_use]
pub fn svg(r: &Report) -> String {
    const LEFT: f64 = 110.0;
    const WIDTH: f64 = 760.0;
    const ROW: f64 = 34.0;
    const TOP: f64 = 46.0;
    let d = &r.drill;
    let start = d.started_at_ms;
    let mut end = start + d.duration_ms;
    for t in &r.agents {
        for m in &t.marks {
            end = end.max(m.at_ms);
        }
    }
    for p in &r.phases {
        end = end.max(p.at_ms);
    }
    let span = (end.saturating_sub(start)).max(1) as f64 * 1.05;
    let x = |ms: u64| LEFT + (ms.saturating_sub(start) as f64 / span) * WIDTH;
    let rows = r.agents.len() + usize::from(r.dns.is_some());
    let height = TOP + ROW * rows as f64 + 90.0;
    let total_w = LEFT + WIDTH + 30.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w:.0}" height="{height:.0}" viewBox="0 0 {total_w:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#ffffff"/>"##);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">{} — drill {} of gate {}{}</text>"#,
        if r.passed() { "PASS" } else { "FAIL" },
        d.seq,
        esc(&d.gate),
        if d.dry_run { " (dry run)" } else { "" }
    );
    // The drill's window, from its start to its recorded end (or scheduled end).
    let drill_end = r
        .phase(Phase::Ended)
        .map_or(start + d.duration_ms, |p| p.at_ms);
    let bottom = TOP + ROW * rows as f64;
    let _ = writeln!(
        o,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fff3d6"><title>drill in force</title></rect>"##,
        x(start),
        TOP - 6.0,
        (x(drill_end) - x(start)).max(1.0),
        bottom - TOP + 6.0
    );
    // Time axis, a tick per step.
    let step = [
        100u64, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    ]
    .into_iter()
    .find(|s| span / (*s as f64) <= 12.0)
    .unwrap_or(1_800_000);
    let mut tick = 0u64;
    while (tick as f64) <= span {
        let tx = x(start + tick);
        let _ = writeln!(
            o,
            r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{bottom:.1}" stroke="#e0e0e0"/>"##,
            TOP - 6.0
        );
        let _ = writeln!(
            o,
            r#"<text x="{tx:.1}" y="{:.1}" text-anchor="middle">+{}s</text>"#,
            bottom + 14.0,
            tick as f64 / 1000.0
        );
        tick += step;
    }
    let mut row = 0usize;
    for t in &r.agents {
        let y = TOP + ROW * row as f64 + ROW / 2.0;
        row += 1;
        let _ = writeln!(
            o,
            r#"<text x="8" y="{:.1}">{}</text>"#,
            y + 4.0,
            esc(&t.agent)
        );
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#bbbbbb"/>"##,
            LEFT + WIDTH
        );
        // A bar while each change is in flight: decided → accepted (or in sync).
        for (from, to) in [
            (Phase::Decided, Phase::Changed),
            (Phase::FailbackDecided, Phase::FailbackChanged),
        ] {
            if let (Some(a), Some(b)) = (t.at(from), t.at(to)) {
                let _ = writeln!(
                    o,
                    r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="8" fill="#c7e9c0"><title>{} → {}</title></rect>"##,
                    x(a),
                    y - 4.0,
                    (x(b) - x(a)).max(1.0),
                    from.label(),
                    to.label()
                );
            }
        }
        for m in &t.marks {
            let Some(p) = Phase::from_code(&m.phase) else {
                continue;
            };
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{}"><title>{}: +{:.3} s ({} #{} {})</title></circle>"#,
                x(m.at_ms),
                color(p),
                esc(p.label()),
                m.at_ms.saturating_sub(start) as f64 / 1000.0,
                esc(&m.event),
                m.audit_seq,
                esc(&m.detail)
            );
        }
    }
    if let Some(dns) = &r.dns {
        let y = TOP + ROW * row as f64 + ROW / 2.0;
        let _ = writeln!(o, r#"<text x="8" y="{:.1}">DNS</text>"#, y + 4.0);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#bbbbbb"/>"##,
            LEFT + WIDTH
        );
        for (i, s) in dns.samples.iter().enumerate() {
            let a = s.at_ms.max(start);
            let b = dns.samples.get(i + 1).map_or(end, |n| n.at_ms).max(a);
            let fill = match s.target.as_deref() {
                Some(t) if t == d.secondary => "#fdae6b",
                Some(t) if t == d.primary => "#9ecae1",
                _ => "#d9d9d9",
            };
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="12" fill="{fill}"><title>{} from +{:.3} s</title></rect>"#,
                x(a),
                y - 6.0,
                (x(b) - x(a)).max(1.0),
                esc(&s.answer),
                (s.at_ms as i128 - i128::from(start)) as f64 / 1000.0
            );
        }
    }
    // Legend.
    let ly = bottom + 34.0;
    let legend = [
        (Phase::Start, "start / end"),
        (Phase::Detected, "quorum decision"),
        (Phase::Decided, "gate decision"),
        (Phase::Sent, "batch sent"),
        (Phase::Changed, "change accepted"),
        (Phase::InSync, "INSYNC"),
    ];
    for (i, (p, text)) in legend.iter().enumerate() {
        let lx = LEFT + i as f64 * 120.0;
        let _ = writeln!(
            o,
            r#"<circle cx="{lx:.1}" cy="{ly:.1}" r="4.5" fill="{}"/>"#,
            color(*p)
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}">{text}</text>"#,
            lx + 8.0,
            ly + 4.0
        );
    }
    if r.dns.is_some() {
        let _ = writeln!(
            o,
            r##"<text x="{LEFT}" y="{:.1}">DNS row: <tspan fill="#3182bd">■</tspan> primary answered, <tspan fill="#e6550d">■</tspan> secondary answered; shaded: the drill in force; green bars: a change in flight</text>"##,
            ly + 24.0
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::super::report::tests::sample;
    use super::*;

    #[test]
    fn markdown_has_the_verdict_phases_and_every_agent() {
        let md = markdown(&sample(), Some("drill-app.svg"));
        assert!(md.starts_with("# Drill of gate `app`: PASS"), "{md}");
        for needle in [
            "| rto | pass | 1.290 s to in_sync (objective 2.000 s) |",
            "| fenced change accepted | ",
            "| +1.200 s | audit use1 #7 |",
            "| use1 | 0.000 [1] | 1.000 [3] |",
            "## DNS (resolver 127.0.0.1:5353)",
            "![timeline](drill-app.svg)",
        ] {
            assert!(md.contains(needle), "missing {needle:?}:\n{md}");
        }
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        let mut r = sample();
        r.agents[0].agent = "a<b&c".into();
        let svg = svg(&r);
        assert!(svg.starts_with("<svg ") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a&lt;b&amp;c") && !svg.contains("a<b&c"));
        // Every element opened is closed (a cheap well-formedness check without a parser).
        for tag in ["text", "title", "rect", "circle"] {
            let opened =
                svg.matches(&format!("<{tag} ")).count() + svg.matches(&format!("<{tag}>")).count();
            let closed = svg.matches(&format!("</{tag}>")).count()
                + if tag == "title" || tag == "text" {
                    0
                } else {
                    svg.matches("/>").count()
                };
            assert!(closed >= opened, "{tag}: {opened} opened, {closed} closed");
        }
        assert_eq!(
            svg.matches("<circle ").count(),
            11 + 6,
            "11 marks and the legend"
        );
    }
}
