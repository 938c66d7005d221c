//! [`Report`]: fidelity and cost of a student against its teacher, with the ratios and a
//! one-line verdict; rendered as text for people or as a Markdown table.

use std::fmt::Write as _;

use serde::Serialize;

use super::{Backend, Cost, Fidelity, Sequences};

/// Student / teacher ratios of each cost (below 1: the student is cheaper or faster).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ratios {
    /// Parameters.
    pub parameters: f64,
    /// Weight bytes.
    pub weight_bytes: f64,
    /// Memory the model added to the process (`None` where it cannot be measured).
    pub memory: Option<f64>,
    /// Seconds per generated token (the inverse of the generation speed ratio).
    pub latency: f64,
    /// Prompt tokens per second.
    pub pp_speed: f64,
    /// Generated tokens per second.
    pub tg_speed: f64,
    /// Time to first token.
    pub ttft: f64,
    /// Load time.
    pub load: f64,
}

impl Ratios {
    /// Student over teacher.
    pub fn new(teacher: &Cost, student: &Cost) -> Ratios {
        let r = |s: f64, t: f64| if t > 0.0 { s / t } else { f64::NAN };
        Ratios {
            parameters: r(student.parameters as f64, teacher.parameters as f64),
            weight_bytes: r(student.weight_bytes as f64, teacher.weight_bytes as f64),
            memory: student.model_rss_bytes().zip(teacher.model_rss_bytes()).map(|(s, t)| r(s as f64, t as f64)),
            latency: r(teacher.tg_tok_s, student.tg_tok_s),
            pp_speed: r(student.pp_tok_s, teacher.pp_tok_s),
            tg_speed: r(student.tg_tok_s, teacher.tg_tok_s),
            ttft: r(student.ttft_s, teacher.ttft_s),
            load: r(student.load_s, teacher.load_s),
        }
    }
}

/// Everything `pupil compare` reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Tokens in the text (without BOS).
    pub text_tokens: usize,
    /// Tokens per window, BOS included.
    pub n_ctx: usize,
    /// Windows the text was cut into.
    pub windows: usize,
    /// How closely the student follows the teacher.
    pub fidelity: Fidelity,
    /// The teacher's cost.
    pub teacher: Cost,
    /// The student's cost.
    pub student: Cost,
    /// Student / teacher.
    pub ratios: Ratios,
    /// The sequence-level comparison (`--generate`), where run.
    pub sequences: Option<Sequences>,
    /// One line for people.
    pub verdict: String,
}

impl Report {
    /// Puts the parts together and writes the verdict.
    pub fn new(
        text_tokens: usize,
        n_ctx: usize,
        windows: usize,
        fidelity: Fidelity,
        teacher: Cost,
        student: Cost,
    ) -> Report {
        let ratios = Ratios::new(&teacher, &student);
        let memory = match ratios.memory {
            Some(m) => format!("{m:.2}× the memory"),
            None => format!("{:.2}× the weight bytes", ratios.weight_bytes),
        };
        let verdict = format!(
            "student keeps {:.1}% top-1 agreement (mean KL {:.3}) at {:.2}× the latency and {memory} of the teacher",
            100.0 * fidelity.top1_agreement,
            fidelity.mean_kl,
            ratios.latency,
        );
        Report { text_tokens, n_ctx, windows, fidelity, teacher, student, ratios, sequences: None, verdict }
    }

    /// Adds the sequence-level comparison; the verdict gains its figure.
    pub fn with_sequences(mut self, seq: Sequences) -> Report {
        self.verdict = format!("{}; {}", self.verdict, seq.verdict());
        self.sequences = Some(seq);
        self
    }

    /// The report for a terminal.
    pub fn to_text(&self) -> String {
        let f = &self.fidelity;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "fidelity over {} positions ({} tokens, {} windows of up to {}{}):",
            f.positions,
            self.text_tokens,
            self.windows,
            self.n_ctx,
            self.engines()
        );
        let _ = writeln!(s, "  mean KL(teacher ‖ student)  {:.6} ± {:.6} nats", f.mean_kl, f.kl_stderr);
        let pct: Vec<String> = f.kl_percentiles.iter().map(|(q, v)| format!("p{q}={v:.5}")).collect();
        let _ = writeln!(s, "  KL percentiles              {}  max={:.5}", pct.join(" "), f.max_kl);
        let _ = writeln!(
            s,
            "  top-1 agreement             {:.2}% ± {:.2}%",
            100.0 * f.top1_agreement,
            100.0 * f.top1_stderr
        );
        let _ = writeln!(s, "  top-5 overlap               {:.2}%", 100.0 * f.top5_overlap);
        let _ = writeln!(s, "  Δp at the teacher's top     mean {:+.4}, rms {:.4}", f.delta_p_mean, f.delta_p_rms);
        let _ = writeln!(
            s,
            "  perplexity                  teacher {:.3}, student {:.3}, ratio {:.4}",
            f.teacher_ppl, f.student_ppl, f.ppl_ratio
        );
        let _ = writeln!(s, "  log-prob correlation        {:.4}", f.logprob_pearson);
        let _ = writeln!(
            s,
            "  draft acceptance            greedy {:.2}% (= top-1), sampled at T=1 {:.2}% (Σ min(p, q))",
            100.0 * f.top1_agreement,
            100.0 * f.sampled_acceptance
        );
        let _ = writeln!(s, "\ncost:");
        let _ = writeln!(s, "  {:<22} {:>12}  {:>12}  {:>8}", "", "teacher", "student", "ratio");
        for (name, a, b, r) in self.cost_rows() {
            let _ = writeln!(s, "  {name:<22} {a:>12}  {b:>12}  {r:>8}");
        }
        let exact = self.teacher.peak_rss_exact && self.student.peak_rss_exact;
        if !exact {
            let _ = writeln!(
                s,
                "  (peak memory is process-wide and could not be reset between models: the student's includes the teacher's run)"
            );
        }
        if let Some(q) = &self.sequences {
            s.push_str(&q.to_text());
        }
        let _ = writeln!(s, "\n{}", self.verdict);
        s
    }

    /// The report as Markdown tables.
    pub fn to_markdown(&self) -> String {
        let f = &self.fidelity;
        let mut s = String::new();
        let _ = writeln!(s, "| fidelity ({} positions{}) | value |\n|---|---|", f.positions, self.engines());
        let _ = writeln!(s, "| mean KL (nats) | {:.6} ± {:.6} |", f.mean_kl, f.kl_stderr);
        for (q, v) in &f.kl_percentiles {
            let _ = writeln!(s, "| KL p{q} | {v:.6} |");
        }
        let _ = writeln!(s, "| KL max | {:.6} |", f.max_kl);
        let _ = writeln!(s, "| top-1 agreement | {:.2}% ± {:.2}% |", 100.0 * f.top1_agreement, 100.0 * f.top1_stderr);
        let _ = writeln!(s, "| top-5 overlap | {:.2}% |", 100.0 * f.top5_overlap);
        let _ = writeln!(s, "| Δp mean / rms | {:+.4} / {:.4} |", f.delta_p_mean, f.delta_p_rms);
        let _ = writeln!(
            s,
            "| PPL teacher / student / ratio | {:.3} / {:.3} / {:.4} |",
            f.teacher_ppl, f.student_ppl, f.ppl_ratio
        );
        let _ = writeln!(s, "| log-prob Pearson r | {:.4} |", f.logprob_pearson);
        let _ = writeln!(
            s,
            "| draft acceptance, greedy / sampled at T=1 | {:.2}% / {:.2}% |",
            100.0 * f.top1_agreement,
            100.0 * f.sampled_acceptance
        );
        let _ = writeln!(s, "\n| cost | teacher | student | student/teacher |\n|---|---|---|---|");
        for (name, a, b, r) in self.cost_rows() {
            let _ = writeln!(s, "| {name} | {a} | {b} | {r} |");
        }
        if let Some(q) = &self.sequences {
            s.push_str(&q.to_markdown());
        }
        let _ = writeln!(s, "\n{}", self.verdict);
        s
    }

    /// `"; teacher on llama.cpp"` where an engine other than pupil ran a model, else nothing.
    fn engines(&self) -> String {
        let mut s = String::new();
        for (who, c) in [("teacher", &self.teacher), ("student", &self.student)] {
            if c.backend != Backend::Pupil {
                let _ = write!(s, "; {who} on {}", c.backend.name());
            }
        }
        s
    }

    /// `(what, teacher, student, ratio)` rows of the cost table.
    fn cost_rows(&self) -> Vec<(&'static str, String, String, String)> {
        let (t, st, r) = (&self.teacher, &self.student, &self.ratios);
        let mem = |c: &Cost| c.peak_rss_bytes.map_or_else(|| "n/a".to_owned(), mib);
        let model_mem = |c: &Cost| c.model_rss_bytes().map_or_else(|| "n/a".to_owned(), mib);
        let x = |v: f64| format!("{v:.3}×");
        vec![
            ("engine", t.backend.name().to_owned(), st.backend.name().to_owned(), String::new()),
            (
                "parameters",
                format!("{:.2}M", t.parameters as f64 / 1e6),
                format!("{:.2}M", st.parameters as f64 / 1e6),
                x(r.parameters),
            ),
            ("weight bytes", mib(t.weight_bytes), mib(st.weight_bytes), x(r.weight_bytes)),
            ("load time", ms(t.load_s), ms(st.load_s), x(r.load)),
            ("peak resident memory", mem(t), mem(st), String::new()),
            ("memory added by model", model_mem(t), model_mem(st), r.memory.map_or_else(|| "n/a".to_owned(), x)),
            ("prompt tok/s", format!("{:.1}", t.pp_tok_s), format!("{:.1}", st.pp_tok_s), x(r.pp_speed)),
            ("generation tok/s", format!("{:.1}", t.tg_tok_s), format!("{:.1}", st.tg_tok_s), x(r.tg_speed)),
            ("time to first token", ms(t.ttft_s), ms(st.ttft_s), x(r.ttft)),
        ]
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1e3)
}
