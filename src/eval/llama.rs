//! The teacher on llama.cpp (feature `llama`): any architecture llama.cpp runs can be the
//! teacher, while the student runs on pupil. The teacher's vocabulary is still read from its
//! GGUF with pupil's reader, which needs no support for its architecture, and checked against
//! the student's; its logits come from llama.cpp, every position of every window, and its
//! cost is measured as pupil's is, through the same [`ModelRunner`] loop.
//!
//! Scoring asks llama.cpp for its most exact CPU path (no flash attention: an f32 softmax,
//! as pupil's); cost measurement runs with llama.cpp's defaults, as `llama-bench` does.
//! The backend is shared with `pupil bench` ([`crate::bench::llama::backend`]): llama.cpp may
//! be initialised once per process.

use std::ops::Range;
use std::path::Path;
use std::time::Instant;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::KvCacheType;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::cost::{Mark, Measured, time_runs};
use super::run::{Plan, Scored, TextTokens};
use super::runner::{Backend, ModelRunner, PupilRunner};
use super::{CompareOptions, Cost, CostOptions, EvalError, Progress, check_tokenizers};
use crate::bench::{self, BenchError};
use crate::gguf::GgufFile;
use crate::model::{KvType, Model};
use crate::tokenizer::Tokenizer;

fn llama_err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> EvalError {
    move |e| EvalError::Llama { what, message: e.to_string() }
}

/// llama.cpp's backend, shared with `pupil bench`.
fn backend() -> Result<&'static LlamaBackend, EvalError> {
    bench::llama::backend().map_err(|e| match e {
        BenchError::Llama { what, message } => EvalError::Llama { what, message },
        e => llama_err("initialising the backend")(e),
    })
}

/// Loads `path` with llama.cpp (memory-mapped); `arch` (the file's architecture, if known)
/// goes into the error.
fn load(path: &Path, arch: Option<&str>) -> Result<LlamaModel, EvalError> {
    bench::llama::load(path).map_err(|e| {
        let message = match e {
            BenchError::Llama { message, .. } => message,
            e => e.to_string(),
        };
        EvalError::LlamaLoad { path: path.to_path_buf(), arch: arch.map(str::to_owned), message }
    })
}

/// The threads llama.cpp runs on: `threads`, else as many as pupil's thread pool has.
fn n_threads(threads: Option<usize>) -> i32 {
    i32::try_from(threads.unwrap_or_else(rayon::current_num_threads).max(1)).unwrap_or(i32::MAX)
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A llama.cpp context (one sequence) and a batch, sized once.
struct LlamaRunner<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_vocab: usize,
}

/// How llama.cpp computes attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attention {
    /// Without flash attention: its most exact CPU path, for scoring.
    Exact,
    /// llama.cpp's default (automatic flash attention), for speed.
    Default,
}

impl<'m> LlamaRunner<'m> {
    /// A context for up to `n_ctx` positions, run `n_batch` tokens at most at a time (one
    /// micro-batch: `n_ubatch = n_batch`), on `threads` threads for batches and single tokens.
    fn new(
        model: &'m LlamaModel,
        n_ctx: usize,
        n_batch: usize,
        threads: i32,
        kv_type: KvType,
        attention: Attention,
    ) -> Result<LlamaRunner<'m>, EvalError> {
        let kv = match kv_type {
            KvType::F32 => KvCacheType::F32,
            _ => KvCacheType::F16,
        };
        let mut params = bench::llama::context_params(to_u32(n_ctx.max(1)), to_u32(n_batch.max(1)), threads)
            .with_type_k(kv)
            .with_type_v(kv);
        if attention == Attention::Exact {
            params = params.with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED);
        }
        let ctx = model.new_context(backend()?, params).map_err(llama_err("creating a context"))?;
        let n_vocab = usize::try_from(model.n_vocab()).unwrap_or(0);
        Ok(LlamaRunner { ctx, batch: LlamaBatch::new(n_batch.max(1), 1), n_vocab })
    }
}

impl ModelRunner for LlamaRunner<'_> {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn clear(&mut self) {
        self.ctx.clear_kv_cache();
    }

    fn forward(
        &mut self,
        tokens: &[u32],
        pos: usize,
        wanted: Range<usize>,
        logits: &mut [f32],
    ) -> Result<(), EvalError> {
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            let (t, p) = (i32::try_from(t).unwrap_or(i32::MAX), i32::try_from(pos + i).unwrap_or(i32::MAX));
            self.batch.add(LlamaToken::new(t), p, &[0], wanted.contains(&i)).map_err(llama_err("filling a batch"))?;
        }
        self.ctx.decode(&mut self.batch).map_err(llama_err("decoding"))?;
        // The CPU backend computes in `decode`; a device backend may still be running.
        self.ctx.synchronize();
        for (row, i) in logits.chunks_exact_mut(self.n_vocab).zip(wanted) {
            row.copy_from_slice(self.ctx.get_logits_ith(i as i32));
        }
        Ok(())
    }
}

/// Scores `text` with the teacher on llama.cpp and the student on pupil: the teacher's
/// vocabulary (read with pupil's GGUF reader) must be the student's, and the text is
/// tokenised once, with it, exactly as when both run on pupil.
pub(super) fn score_text(
    teacher: &Path,
    student: &Path,
    text: &str,
    opts: &CompareOptions,
    mut progress: impl FnMut(Progress),
) -> Result<Scored, EvalError> {
    let (tok_t, arch) = {
        let g = GgufFile::open(teacher)?;
        (Tokenizer::from_gguf(&g)?, g.architecture().map(str::to_owned))
    };
    let s = Model::open(student)?;
    let tok_s = Tokenizer::from_gguf(s.file())?;
    let t = load(teacher, arch.as_deref())?;
    let n_logits_t = usize::try_from(t.n_vocab()).unwrap_or(0);
    check_tokenizers((&tok_t, n_logits_t), (&tok_s, s.config().n_vocab), ("teacher", "student"))?;
    let n_ctx_train = (t.n_ctx_train() as usize).min(s.config().n_ctx_train);
    let text = TextTokens::new(&tok_t, text);
    let plan = Plan::new(&opts.fidelity, n_ctx_train, &text.tokens, text.bos)?;
    progress(Progress::Scoring { tokens: plan.n_tokens() });
    let kv = opts.fidelity.kv_type;
    let mut rt = LlamaRunner::new(&t, plan.n_ctx, plan.n_batch, n_threads(opts.threads), kv, Attention::Exact)?;
    let mut rs = PupilRunner::new(&s, plan.n_ctx, plan.n_batch, kv);
    let fidelity = super::run::score(&mut rt, &mut rs, &plan, |n| progress(Progress::Scored(n)))?;
    Ok(Scored { text, plan, fidelity })
}

/// Loads the model at `path` with llama.cpp and measures it as [`super::measure`] measures a
/// model on pupil: `prompt` (repeated as needed to `opts.n_prompt` tokens) as one batch, then
/// `opts.n_gen` greedy decode steps, on `threads` threads (default: as many as pupil's pool).
pub fn measure_llama(
    path: &Path,
    prompt: &[u32],
    opts: &CostOptions,
    threads: Option<usize>,
) -> Result<Cost, EvalError> {
    let mark = Mark::start(prompt, opts)?;
    let start = Instant::now();
    let model = load(path, None)?;
    let load_s = start.elapsed().as_secs_f64();
    let n_ctx = (opts.n_prompt + opts.n_gen).min(model.n_ctx_train() as usize);
    let n_batch = opts.n_prompt.min(n_ctx);
    let mut runner = LlamaRunner::new(&model, n_ctx, n_batch, n_threads(threads), opts.kv_type, Attention::Default)?;
    let speed = time_runs(&mut runner, prompt, n_ctx, opts)?;
    Ok(mark.finish(
        path,
        Measured { backend: Backend::Llama, parameters: model.n_params(), weight_bytes: model.size(), load_s, speed },
    ))
}
