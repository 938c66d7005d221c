//! [`Sequences`] as text for a terminal and as a Markdown table.

use std::fmt::Write as _;

use super::{MeanSe, Sequences};

/// `-1.234 ± 0.012`.
fn pm(m: MeanSe, digits: usize) -> String {
    format!("{:.digits$} ± {:.digits$}", m.mean, m.se)
}

/// `+0.065 ± 0.005`.
fn signed(m: MeanSe, digits: usize) -> String {
    format!("{:+.digits$} ± {:.digits$}", m.mean, m.se)
}

/// `34.5% ± 1.2%`.
fn pct(m: MeanSe) -> String {
    format!("{:.1}% ± {:.1}%", 100.0 * m.mean, 100.0 * m.se)
}

impl Sequences {
    /// How the tokens were chosen.
    fn decoding(&self) -> String {
        if self.temperature > 0.0 {
            format!("sampled at T={} (seed {} + prompt index)", self.temperature, self.seed)
        } else {
            "greedy".to_owned()
        }
    }

    /// The first differing token, in words.
    fn parting_text(&self) -> String {
        let p = &self.parting;
        let median = p.median.map_or_else(|| format!("≥ {}", self.n_predict), |m| format!("{m}"));
        format!("median index {median}; never part within {}: {:.1}%", self.n_predict, 100.0 * p.never)
    }

    /// `(what, student's text, teacher's text, note)` rows.
    fn rows(&self) -> Vec<(&'static str, String, String, String)> {
        vec![
            (
                "teacher's log-prob/token",
                pm(self.teacher_on_student, 3),
                pm(self.teacher_on_teacher, 3),
                format!("grade gap {}", signed(self.grade_gap, 3)),
            ),
            ("student's log-prob/token", pm(self.student_on_student, 3), pm(self.student_on_teacher, 3), String::new()),
            (
                "KL(teacher ‖ student)",
                pm(self.kl_on_student, 4),
                pm(self.kl_on_teacher, 4),
                format!("on-policy gap {}", signed(self.kl_gap, 4)),
            ),
            ("top-1 agreement", pct(self.agreement_on_student), pct(self.agreement_on_teacher), String::new()),
        ]
    }

    /// The cost lines: each model's generation, and the speculative speed-up where measured.
    fn cost_lines(&self) -> Vec<String> {
        let (t, s) = (&self.teacher_cost, &self.student_cost);
        let mut lines = vec![format!(
            "generation: teacher {:.1} tok/s ({} tokens, {:.2} s), student {:.1} tok/s ({} tokens, {:.2} s): {:.2}× the teacher's speed",
            t.decode_tok_s, t.tokens, t.wall_s, s.decode_tok_s, s.tokens, s.wall_s, self.speed_ratio
        )];
        if let Some(d) = &self.draft {
            lines.push(format!(
                "speculative: the student drafting {} tokens per step for the teacher, {:.1}% kept, {:.1} → {:.1} tok/s: {:.2}×",
                d.draft_max,
                100.0 * d.acceptance,
                d.teacher_tok_s,
                d.speculative_tok_s,
                d.speedup
            ));
        }
        lines
    }

    /// The section for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nsequence level: {} prompts, each model writes up to {} tokens, {}; means over prompts ± SE:",
            self.prompts,
            self.n_predict,
            self.decoding()
        );
        let _ = writeln!(s, "  {:<26} {:>20}  {:>20}", "along", "student's text", "teacher's text");
        for (what, a, b, note) in self.rows() {
            let _ = writeln!(s, "  {what:<26} {a:>20}  {b:>20}  {note}");
        }
        let _ = writeln!(s, "  first differing token: {}", self.parting_text());
        for line in self.cost_lines() {
            let _ = writeln!(s, "  {line}");
        }
        s
    }

    /// The section as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n| sequence level ({} prompts, up to {} tokens, {}) | student's text | teacher's text | |\n|---|---|---|---|",
            self.prompts,
            self.n_predict,
            self.decoding()
        );
        for (what, a, b, note) in self.rows() {
            let _ = writeln!(s, "| {what} | {a} | {b} | {note} |");
        }
        let _ = writeln!(s, "\nFirst differing token: {}.", self.parting_text());
        for line in self.cost_lines() {
            let _ = writeln!(s, "\n{line}.");
        }
        s
    }
}
