//! An SVG picture of a [`Report`]: per-position KL along the text (with a running mean), the
//! student/teacher cost ratios as bars and, with the sequence-level comparison, a histogram of
//! where the two models' continuations part. Plain SVG text: no fonts or libraries needed.

use std::fmt::Write as _;

use super::{Report, Sequences};

const W: f64 = 900.0;
const PLOT_H: f64 = 260.0;
const BARS_H: f64 = 240.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

/// Escapes text for an SVG text node.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The SVG document.
pub fn svg(r: &Report) -> String {
    let mut s = String::new();
    let hist = if r.sequences.is_some() { BARS_H + 60.0 } else { 0.0 };
    let h = 40.0 + PLOT_H + 60.0 + BARS_H + 40.0 + hist;
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{LEFT}" y="22" font-size="14">{}</text>"#, esc(&r.verdict));
    kl_plot(&mut s, r, 40.0);
    bars(&mut s, r, 40.0 + PLOT_H + 60.0);
    if let Some(q) = &r.sequences {
        parting(&mut s, q, 40.0 + PLOT_H + 60.0 + BARS_H + 60.0);
    }
    s.push_str("</svg>\n");
    s
}

/// Per-position KL (grey) and its running mean over 32 positions (blue), top at `y0`.
fn kl_plot(s: &mut String, r: &Report, y0: f64) {
    let kl = &r.fidelity.kl_per_position;
    let (x0, pw) = (LEFT, W - LEFT - RIGHT);
    let top = kl.iter().copied().fold(0f32, f32::max).max(1e-6) as f64;
    let px = |i: usize| x0 + pw * i as f64 / (kl.len().max(2) - 1) as f64;
    let py = |v: f64| y0 + PLOT_H - PLOT_H * (v / top).clamp(0.0, 1.0);
    let _ = writeln!(s, r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{PLOT_H}" fill="none" stroke="#888"/>"##);
    for k in 0..=4 {
        let v = top * k as f64 / 4.0;
        let _ = writeln!(s, r##"<text x="{}" y="{}" text-anchor="end">{v:.3}</text>"##, x0 - 6.0, py(v) + 4.0);
    }
    let _ = writeln!(s, r#"<text x="{x0}" y="{}">position in text ({} scored)</text>"#, y0 + PLOT_H + 18.0, kl.len());
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">KL(teacher ‖ student), nats; blue: running mean of 32</text>"#,
        W - RIGHT,
        y0 - 6.0
    );
    let line = |pts: &mut dyn Iterator<Item = (usize, f64)>| {
        pts.map(|(i, v)| format!("{:.1},{:.1}", px(i), py(v))).collect::<Vec<_>>().join(" ")
    };
    let raw = line(&mut kl.iter().enumerate().map(|(i, &v)| (i, v as f64)));
    let _ = writeln!(s, r##"<polyline fill="none" stroke="#bbb" stroke-width="1" points="{raw}"/>"##);
    let mut sum = 0.0;
    let mean = line(&mut kl.iter().enumerate().map(|(i, &v)| {
        sum += v as f64;
        if i >= 32 {
            sum -= kl[i - 32] as f64;
        }
        (i, sum / (i + 1).min(32) as f64)
    }));
    let _ = writeln!(s, r##"<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="{mean}"/>"##);
}

/// Student/teacher ratios as bars, with the line at 1 (equal cost), top at `y0`.
fn bars(s: &mut String, r: &Report, y0: f64) {
    let q = &r.ratios;
    let mut items = vec![("parameters", q.parameters), ("weight bytes", q.weight_bytes)];
    if let Some(m) = q.memory {
        items.push(("memory", m));
    }
    items.extend([("latency", q.latency), ("prompt tok/s", q.pp_speed), ("gen tok/s", q.tg_speed), ("TTFT", q.ttft)]);
    let top = items.iter().map(|i| i.1).filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.1;
    let (x0, pw) = (LEFT, W - LEFT - RIGHT);
    let py = |v: f64| y0 + BARS_H - BARS_H * (v / top).clamp(0.0, 1.0);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">cost, student / teacher (below 1: the student is cheaper or faster)</text>"#,
        W - RIGHT,
        y0 - 6.0
    );
    let _ = writeln!(s, r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{BARS_H}" fill="none" stroke="#888"/>"##);
    let slot = pw / items.len() as f64;
    for (k, (name, v)) in items.iter().enumerate() {
        let v = if v.is_finite() { *v } else { 0.0 };
        let x = x0 + slot * k as f64 + slot * 0.2;
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4c8c4a"/>"##,
            py(v),
            slot * 0.6,
            y0 + BARS_H - py(v)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{v:.2}×</text>"#,
            x + slot * 0.3,
            py(v) - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x + slot * 0.3,
            y0 + BARS_H + 16.0,
            esc(name)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#c33" stroke-dasharray="4 3"/>"##,
        x0 + pw,
        y = py(1.0)
    );
}

/// Prompts by the index of the first token where the two continuations differ, the last bar
/// for those that never part, top at `y0`.
fn parting(s: &mut String, q: &Sequences, y0: f64) {
    let h = &q.parting.histogram;
    let top = h.iter().map(|b| b.2).max().unwrap_or(0).max(1) as f64 * 1.1;
    let (x0, pw) = (LEFT, W - LEFT - RIGHT);
    let py = |v: f64| y0 + BARS_H - BARS_H * (v / top).clamp(0.0, 1.0);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="end">prompts by the first token where student and teacher part ({}, {} prompts)</text>"#,
        W - RIGHT,
        y0 - 6.0,
        if q.temperature > 0.0 { "sampled" } else { "greedy" },
        q.prompts
    );
    let _ = writeln!(s, r##"<rect x="{x0}" y="{y0}" width="{pw}" height="{BARS_H}" fill="none" stroke="#888"/>"##);
    let slot = pw / h.len().max(1) as f64;
    for (k, &(from, to, n)) in h.iter().enumerate() {
        let x = x0 + slot * k as f64 + slot * 0.1;
        let label = if from == to { "never".to_owned() } else { format!("{from}–{}", to.saturating_sub(1)) };
        let fill = if from == to { "#1f5fbf" } else { "#4c8c4a" };
        let _ = writeln!(
            s,
            r##"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{fill}"/>"##,
            py(n as f64),
            slot * 0.8,
            y0 + BARS_H - py(n as f64)
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{n}</text>"#,
            x + slot * 0.4,
            py(n as f64) - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{label}</text>"#,
            x + slot * 0.4,
            y0 + BARS_H + 16.0
        );
    }
}
