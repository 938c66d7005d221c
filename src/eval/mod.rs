//! Evaluating a distilled student against its teacher: how closely its next-token
//! distributions follow the teacher's on a text (fidelity), and what it costs to run
//! (size, memory, speed), side by side.
//!
//! - [`check_vocab`] ([`check_tokenizers`] where pupil cannot load the model): the two
//!   models must share a vocabulary; [`VocabMismatch`] says how they
//!   differ otherwise.
//! - [`fidelity`]: both models teacher-forced over the same tokens in windows, compared batch
//!   by batch ([`compare_row`] per position), summarised as llama-perplexity's KL-divergence
//!   mode does ([`Fidelity`]).
//! - [`measure`]: one model's [`Cost`], each model measured the same way.
//! - [`Backend`]: the teacher may run on llama.cpp instead of pupil (feature `llama`), so
//!   any architecture llama.cpp runs can be the teacher; its vocabulary is still checked
//!   against the student's, and its cost measured the same way (`measure_llama`).
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
#[cfg(feature = "llama")]
mod llama;
pub mod plot;
mod report;
mod run;
mod runner;
mod text;
mod vocab;

use std::path::Path;

pub use cost::{Cost, CostOptions, measure};
pub use error::{EvalError, VocabMismatch};
pub use fidelity::{Fidelity, FidelityAcc, PERCENTILES, Position, compare_row};
#[cfg(feature = "llama")]
pub use llama::measure_llama;
pub use report::{Ratios, Report};
pub use run::{FidelityOptions, fidelity, windows};
pub use runner::Backend;
pub use text::HELD_OUT;
pub use vocab::{check_tokenizers, check_vocab};

/// Settings of [`compare`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompareOptions {
    /// How the text is scored.
    pub fidelity: FidelityOptions,
    /// How speed is measured.
    pub cost: CostOptions,
    /// The engine that runs the teacher (the student always runs on pupil).
    pub teacher_backend: Backend,
    /// Threads llama.cpp runs on (default: as many as pupil's thread pool has, which is
    /// rayon's global pool).
    pub threads: Option<usize>,
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
/// (teacher first), so neither's memory counts in the other's. The teacher runs on
/// `opts.teacher_backend`; [`EvalError::LlamaUnavailable`] if that is llama.cpp and this
/// build has no feature `llama`.
pub fn compare(
    teacher: &Path,
    student: &Path,
    text: &str,
    opts: &CompareOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Report, EvalError> {
    // From here on, `_` is pupil: llama.cpp in a build without it is refused here.
    opts.teacher_backend.check_available()?;
    let scored = match opts.teacher_backend {
        #[cfg(feature = "llama")]
        Backend::Llama => llama::score_text(teacher, student, text, opts, &mut progress)?,
        _ => run::score_text(teacher, student, text, &opts.fidelity, &mut progress)?,
    };
    let prompt = scored.text.prompt();
    progress(Progress::Measuring("teacher"));
    let cost_t = match opts.teacher_backend {
        #[cfg(feature = "llama")]
        Backend::Llama => measure_llama(teacher, &prompt, &opts.cost, opts.threads)?,
        _ => measure(teacher, &prompt, &opts.cost)?,
    };
    progress(Progress::Measuring("student"));
    let cost_s = measure(student, &prompt, &opts.cost)?;
    let run::Scored { text, plan, fidelity } = scored;
    Ok(Report::new(text.tokens.len(), plan.n_ctx, plan.windows.len(), fidelity, cost_t, cost_s))
}
