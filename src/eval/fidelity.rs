//! How closely one model's next-token distributions follow another's, position by position,
//! summarised as llama-perplexity's KL-divergence mode does.
//!
//! [`compare_row`] scores one position from the two rows of logits and the token that
//! actually came next; [`FidelityAcc`] gathers positions and [`FidelityAcc::finish`] gives the
//! [`Fidelity`] summary. Probabilities are computed in f64 over the whole vocabulary, without
//! storing them: a row costs two passes over each side's logits.
//!
//! ```
//! use pupil::eval::{FidelityAcc, compare_row};
//! let teacher = [2.0f32, 1.0, 0.0, -1.0, -2.0, -3.0];
//! let mut acc = FidelityAcc::new();
//! acc.push(&compare_row(&teacher, &teacher, 0));
//! let f = acc.finish();
//! assert_eq!((f.positions, f.mean_kl, f.top1_agreement), (1, 0.0, 1.0));
//! ```

use serde::Serialize;

/// One scored position.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Position {
    /// KL(teacher ‖ student) in nats.
    pub kl: f64,
    /// Whether the two argmaxes agree.
    pub same_top1: bool,
    /// How many of the teacher's 5 likeliest tokens are among the student's 5 (0..=5).
    pub top5_shared: u8,
    /// `p_student − p_teacher` at the teacher's argmax.
    pub delta_p: f64,
    /// The teacher's log-probability of the token that came next.
    pub logp_teacher: f64,
    /// The student's log-probability of the token that came next.
    pub logp_student: f64,
    /// `Σ min(p_teacher, p_student)`: the chance that a token the student drafts here (sampled
    /// at temperature 1) is kept by the teacher's speculative rejection step.
    pub accept: f64,
}

/// Max and log-sum-exp of a row, in f64.
fn log_sum_exp(x: &[f32]) -> (f64, f64) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
    (max, max + sum.ln())
}

/// The ids of the 5 largest values, largest first (the first of equal values first, as an
/// argmax picks).
fn top5(x: &[f32]) -> [u32; 5] {
    let mut best = [(u32::MAX, f32::NEG_INFINITY); 5];
    for (i, &v) in x.iter().enumerate() {
        if v > best[4].1 || best[4].0 == u32::MAX {
            let mut j = 4;
            while j > 0 && (v > best[j - 1].1 || best[j - 1].0 == u32::MAX) {
                best[j] = best[j - 1];
                j -= 1;
            }
            best[j] = (i as u32, v);
        }
    }
    best.map(|b| b.0)
}

/// Scores one position: `teacher` and `student` are the two models' logits (`[n_vocab]`
/// each), `next` the token that came next in the text.
pub fn compare_row(teacher: &[f32], student: &[f32], next: u32) -> Position {
    debug_assert_eq!(teacher.len(), student.len());
    let (_, lse_t) = log_sum_exp(teacher);
    let (_, lse_s) = log_sum_exp(student);
    // KL = Σ p_t (log p_t − log p_s), with log p = logit − lse; no row of probabilities kept.
    let shift = lse_s - lse_t;
    let (mut kl, mut accept) = (0.0, 0.0);
    for (&t, &s) in teacher.iter().zip(student) {
        let p = (t as f64 - lse_t).exp();
        // d = log p_t − log p_s, so min(p_t, p_s) = p_t · exp(min(0, −d)): one `exp` less.
        let d = t as f64 - s as f64 + shift;
        kl += p * d;
        accept += if d <= 0.0 { p } else { p * (-d).exp() };
    }
    let (tt, ts) = (top5(teacher), top5(student));
    let top5_shared = tt.iter().filter(|t| ts.contains(t)).count() as u8;
    let arg = tt[0] as usize;
    let at = |x: &[f32], lse: f64, i: usize| x.get(i).map_or(f64::NEG_INFINITY, |&v| v as f64 - lse);
    Position {
        kl,
        same_top1: tt[0] == ts[0],
        top5_shared,
        delta_p: at(student, lse_s, arg).exp() - at(teacher, lse_t, arg).exp(),
        logp_teacher: at(teacher, lse_t, next as usize),
        logp_student: at(student, lse_s, next as usize),
        accept,
    }
}

/// Running sums over scored positions.
#[derive(Clone, Debug, Default)]
pub struct FidelityAcc {
    /// Per-position KL, in text order (for percentiles and plots).
    kls: Vec<f32>,
    sum_kl: f64,
    sum_kl2: f64,
    same_top1: usize,
    top5_shared: usize,
    sum_dp: f64,
    sum_dp2: f64,
    /// Σ logp, Σ logp², Σ logp_t·logp_s of the actual next tokens (teacher, student).
    sum_lt: f64,
    sum_ls: f64,
    sum_lt2: f64,
    sum_ls2: f64,
    sum_lts: f64,
    sum_accept: f64,
}

impl FidelityAcc {
    /// No positions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one position.
    pub fn push(&mut self, p: &Position) {
        self.kls.push(p.kl as f32);
        self.sum_kl += p.kl;
        self.sum_kl2 += p.kl * p.kl;
        self.same_top1 += usize::from(p.same_top1);
        self.top5_shared += usize::from(p.top5_shared);
        self.sum_dp += p.delta_p;
        self.sum_dp2 += p.delta_p * p.delta_p;
        self.sum_lt += p.logp_teacher;
        self.sum_ls += p.logp_student;
        self.sum_lt2 += p.logp_teacher * p.logp_teacher;
        self.sum_ls2 += p.logp_student * p.logp_student;
        self.sum_lts += p.logp_teacher * p.logp_student;
        self.sum_accept += p.accept;
    }

    /// Positions so far.
    pub fn len(&self) -> usize {
        self.kls.len()
    }

    /// Whether no position was added.
    pub fn is_empty(&self) -> bool {
        self.kls.is_empty()
    }

    /// The summary.
    pub fn finish(self) -> Fidelity {
        let n = self.kls.len();
        let nf = n.max(1) as f64;
        let mean = |s: f64| s / nf;
        // Standard error of a mean from Σx and Σx² (0 with fewer than 2 samples).
        let stderr =
            |s: f64, s2: f64| if n > 1 { ((s2 / nf - (s / nf).powi(2)).max(0.0) / (nf - 1.0)).sqrt() } else { 0.0 };
        let agree = mean(self.same_top1 as f64);
        let mut sorted = self.kls.clone();
        sorted.sort_by(f32::total_cmp);
        let percentiles = PERCENTILES.iter().map(|&q| (q, percentile(&sorted, q))).collect();
        let cov = self.sum_lts / nf - mean(self.sum_lt) * mean(self.sum_ls);
        let var_t = self.sum_lt2 / nf - mean(self.sum_lt).powi(2);
        let var_s = self.sum_ls2 / nf - mean(self.sum_ls).powi(2);
        let pearson = if var_t > 0.0 && var_s > 0.0 { (cov / (var_t * var_s).sqrt()).clamp(-1.0, 1.0) } else { 1.0 };
        let (ppl_t, ppl_s) = ((-mean(self.sum_lt)).exp(), (-mean(self.sum_ls)).exp());
        Fidelity {
            positions: n,
            mean_kl: mean(self.sum_kl),
            kl_stderr: stderr(self.sum_kl, self.sum_kl2),
            kl_percentiles: percentiles,
            max_kl: sorted.last().map_or(0.0, |&k| k as f64),
            top1_agreement: agree,
            top1_stderr: if n > 1 { (agree * (1.0 - agree) / (nf - 1.0)).sqrt() } else { 0.0 },
            top5_overlap: self.top5_shared as f64 / (5.0 * nf),
            delta_p_mean: mean(self.sum_dp),
            delta_p_rms: mean(self.sum_dp2).sqrt(),
            teacher_ppl: ppl_t,
            student_ppl: ppl_s,
            ppl_ratio: ppl_s / ppl_t,
            logprob_pearson: pearson,
            sampled_acceptance: mean(self.sum_accept),
            kl_per_position: self.kls,
        }
    }
}

/// The percentiles reported, as llama-perplexity lists them.
pub const PERCENTILES: [f64; 9] = [99.9, 99.0, 95.0, 90.0, 50.0, 10.0, 5.0, 1.0, 0.1];

/// The `q`th percentile of sorted values, interpolating between neighbours.
fn percentile(sorted: &[f32], q: f64) -> f64 {
    let Some(&last) = sorted.last() else { return 0.0 };
    let at = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, frac) = (at.floor() as usize, at.fract());
    let hi = sorted.get(lo + 1).copied().unwrap_or(last);
    sorted[lo] as f64 * (1.0 - frac) + hi as f64 * frac
}

fn percentile_map<S: serde::Serializer>(v: &[(f64, f64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(v.iter().map(|(q, k)| (format!("p{q}"), k)))
}

/// How closely the student follows the teacher over a text.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Fidelity {
    /// Positions scored.
    pub positions: usize,
    /// Mean KL(teacher ‖ student) in nats.
    pub mean_kl: f64,
    /// Its standard error.
    pub kl_stderr: f64,
    /// `(percentile, KL)` for each of [`PERCENTILES`] (in JSON, an object: `{"p99.9": ...}`).
    #[serde(serialize_with = "percentile_map")]
    pub kl_percentiles: Vec<(f64, f64)>,
    /// Largest per-position KL.
    pub max_kl: f64,
    /// Fraction of positions whose argmaxes agree (0..1).
    pub top1_agreement: f64,
    /// Its binomial standard error.
    pub top1_stderr: f64,
    /// Mean `|top5_teacher ∩ top5_student| / 5`.
    pub top5_overlap: f64,
    /// Mean of `p_student − p_teacher` at the teacher's argmax.
    pub delta_p_mean: f64,
    /// Root mean square of the same.
    pub delta_p_rms: f64,
    /// The teacher's perplexity on the text.
    pub teacher_ppl: f64,
    /// The student's perplexity on the text.
    pub student_ppl: f64,
    /// `student_ppl / teacher_ppl`.
    pub ppl_ratio: f64,
    /// Pearson correlation of the two models' log-probabilities of the actual next tokens.
    pub logprob_pearson: f64,
    /// Mean of `Σ min(p_teacher, p_student)`: the expected rate at which the teacher accepts
    /// the student's drafts in speculative decoding with sampling at temperature 1. (With
    /// greedy decoding a draft is accepted when the two argmaxes agree: `top1_agreement`.)
    pub sampled_acceptance: f64,
    /// KL at every scored position, in text order.
    #[serde(skip)]
    pub kl_per_position: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn softmax(x: &[f32]) -> Vec<f64> {
        let (_, lse) = log_sum_exp(x);
        x.iter().map(|&v| (v as f64 - lse).exp()).collect()
    }

    #[test]
    fn kl_matches_the_definition_and_is_zero_for_equal_rows() {
        let t = [1.0f32, 0.5, -0.3, 2.0, 0.0, -1.0, 0.7];
        let s = [0.8f32, 0.9, -0.1, 1.5, 0.2, -2.0, 0.7];
        let (pt, ps) = (softmax(&t), softmax(&s));
        let want: f64 = pt.iter().zip(&ps).map(|(p, q)| p * (p / q).ln()).sum();
        let got = compare_row(&t, &s, 2);
        assert!((got.kl - want).abs() < 1e-12, "{} vs {want}", got.kl);
        assert!((got.logp_teacher - pt[2].ln()).abs() < 1e-12);
        assert!((got.delta_p - (ps[3] - pt[3])).abs() < 1e-12);
        let want_accept: f64 = pt.iter().zip(&ps).map(|(p, q)| p.min(*q)).sum();
        assert!((got.accept - want_accept).abs() < 1e-12 && got.accept < 1.0);
        let same = compare_row(&t, &t, 0);
        assert!((same.accept - 1.0).abs() < 1e-12);
        assert_eq!((same.kl, same.same_top1, same.top5_shared, same.delta_p), (0.0, true, 5, 0.0));
        // A shifted row is the same distribution.
        let shifted: Vec<f32> = t.iter().map(|v| v + 3.0).collect();
        assert!(compare_row(&t, &shifted, 0).kl.abs() < 1e-12);
    }

    #[test]
    fn top5_keeps_the_largest_first_of_ties_first() {
        assert_eq!(top5(&[0.0, 5.0, 1.0, 5.0, 3.0, 2.0, -1.0]), [1, 3, 4, 5, 2]);
        let t = [9.0f32, 8.0, 7.0, 6.0, 5.0, 4.0];
        let s = [9.0f32, 8.0, 7.0, 6.0, 1.0, 4.0];
        assert_eq!(compare_row(&t, &s, 0).top5_shared, 4);
    }

    #[test]
    fn summary_statistics() {
        let mut acc = FidelityAcc::new();
        for i in 0..101 {
            let p = Position {
                kl: i as f64,
                same_top1: i % 4 != 0,
                top5_shared: 5,
                delta_p: 0.1,
                logp_teacher: -(i as f64),
                logp_student: -2.0 * i as f64,
                accept: 0.5,
            };
            acc.push(&p);
        }
        let f = acc.finish();
        assert_eq!(f.positions, 101);
        assert!((f.mean_kl - 50.0).abs() < 1e-9);
        assert_eq!(f.max_kl, 100.0);
        let p50 = f.kl_percentiles.iter().find(|(q, _)| *q == 50.0).unwrap().1;
        let p99 = f.kl_percentiles.iter().find(|(q, _)| *q == 99.0).unwrap().1;
        assert_eq!((p50, p99), (50.0, 99.0));
        assert!((f.top1_agreement - 75.0 / 101.0).abs() < 1e-12);
        assert!((f.logprob_pearson - 1.0).abs() < 1e-9);
        assert!((f.sampled_acceptance - 0.5).abs() < 1e-12);
        assert!((f.delta_p_rms - 0.1).abs() < 1e-12 && (f.top5_overlap - 1.0).abs() < 1e-12);
        assert!((f.teacher_ppl - 50f64.exp()).abs() / 50f64.exp() < 1e-9);
    }
}
