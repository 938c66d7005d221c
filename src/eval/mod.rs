//! Evaluating a distilled student against its teacher: how closely its next-token
//! distributions follow the teacher's on a text (fidelity), and what it costs to run
//! (size, memory, speed), side by side.
//!
//! - [`check_vocab`]: the two models must share a vocabulary; [`VocabMismatch`] says how they
//!   differ otherwise.
//! - [`fidelity`]: both models teacher-forced over the same tokens in windows, compared batch
//!   by batch ([`compare_row`] per position), summarised as llama-perplexity's KL-divergence
//!   mode does ([`Fidelity`]).
//! - [`measure`]: one model's [`Cost`], each model measured the same way.
//! - [`compare`] runs all of it and gives a [`Report`], with ratios and a verdict;
//!   [`plot::svg`] draws it.
//! - [`HELD_OUT`]: a built-in text no model was trained on.
//!
//! ```no_run
//! use pupil::eval::{self, CompareOptions};
//! # fn main() -> Result<(), pupil::eval::EvalError> {
//! let report = eval::compare(
//!     "teacher-q8_0.gguf".as_ref(),
//!     "student-q4_k_m.gguf".as_ref(),
//!     eval::HELD_OUT,
//!     &CompareOptions::default(),
//!     |_| {},
//! )?;
//! println!("{}", report.verdict);
//! assert!(report.fidelity.top1_agreement > 0.5);
//! # Ok(()) }
//! ```

mod cost;
mod error;
mod fidelity;
pub mod plot;
mod report;
mod run;
mod text;
mod vocab;

use std::path::Path;

pub use cost::{Cost, CostOptions, measure};
pub use error::{EvalError, VocabMismatch};
pub use fidelity::{Fidelity, FidelityAcc, PERCENTILES, Position, compare_row};
pub use report::{Ratios, Report};
pub use run::{FidelityOptions, fidelity, windows};
pub use text::HELD_OUT;
pub use vocab::check_vocab;

use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// Settings of [`compare`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareOptions {
    /// How the text is scored.
    pub fidelity: FidelityOptions,
    /// How speed is measured.
    pub cost: CostOptions,
}

/// What [`compare`] is doing, for a progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// Scoring starts: this many tokens (BOS included) go through both models.
    Scoring {
        /// Tokens to run.
        tokens: usize,
    },
    /// This many more tokens went through both models.
    Scored(usize),
    /// Measuring one model's cost (`"teacher"` or `"student"`).
    Measuring(&'static str),
}

/// Compares `student` with `teacher` on `text`: checks the vocabularies, scores the text
/// with both models loaded, then unloads them and measures each model's cost on its own
/// (teacher first), so neither's memory counts in the other's.
pub fn compare(
    teacher: &Path,
    student: &Path,
    text: &str,
    opts: &CompareOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Report, EvalError> {
    let (tokens, bos, fid, n_ctx, n_windows) = {
        let t = Model::open(teacher)?;
        let s = Model::open(student)?;
        let tok_t = Tokenizer::from_gguf(t.file())?;
        let tok_s = Tokenizer::from_gguf(s.file())?;
        check_vocab((&t, &tok_t), (&s, &tok_s), ("teacher", "student"))?;
        let tokens = tok_t.encode(text, false, false);
        let bos = tok_t.bos().filter(|_| tok_t.add_bos());
        let n_ctx = opts.fidelity.n_ctx.min(t.config().n_ctx_train).min(s.config().n_ctx_train);
        let n_windows = windows(&tokens, bos, n_ctx.max(2)).len();
        progress(Progress::Scoring { tokens: tokens.len() + n_windows * usize::from(bos.is_some()) });
        let fid = fidelity(&t, &s, &tokens, bos, &opts.fidelity, |n| progress(Progress::Scored(n)))?;
        (tokens, bos, fid, n_ctx, n_windows)
    };
    let prompt: Vec<u32> = bos.into_iter().chain(tokens.iter().copied()).collect();
    progress(Progress::Measuring("teacher"));
    let cost_t = measure(teacher, &prompt, &opts.cost)?;
    progress(Progress::Measuring("student"));
    let cost_s = measure(student, &prompt, &opts.cost)?;
    Ok(Report::new(tokens.len(), n_ctx, n_windows, fid, cost_t, cost_s))
}
