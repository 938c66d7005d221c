//! llama.cpp as the oracle of a model's logits, and the statistics that compare two sets of
//! logits. Shared by the model oracle tests.
#![allow(dead_code)]

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use pupil::model::{Batch, KvType, Model};

/// llama.cpp's backend may be initialised once per process.
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let mut b = LlamaBackend::init().expect("llama.cpp backend");
        b.void_logs();
        b
    })
}

/// `llama_flash_attn_type`: the plain attention graph (f32 softmax), llama.cpp's most exact
/// CPU path; its automatic choice would take the flash-attention kernel, which accumulates
/// values in f16.
const FLASH_ATTN_DISABLED: i32 = 0;

/// llama.cpp's model, loaded once per call site.
pub fn load(path: &Path) -> LlamaModel {
    LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
        .unwrap_or_else(|e| panic!("llama.cpp cannot load {}: {e}", path.display()))
}

/// Tokens of `text` as llama.cpp's tokenizer makes them (with BOS if the vocabulary adds it).
pub fn tokenize(model: &LlamaModel, text: &str) -> Vec<u32> {
    model.vocab().tokenize(text.as_bytes(), true, false).iter().map(|t| t.0 as u32).collect()
}

/// llama.cpp's logits for each sequence of `seqs` run on its own from position 0, all
/// positions wanted, in one batch per sequence: `[sum of lengths, n_vocab]`, sequence after
/// sequence. F16 KV cache (llama.cpp's default), one thread: ggml's thread pool spins at
/// every op, which crawls when other processes share the cores (and the results do not
/// depend on the thread count).
pub fn logits(model: &LlamaModel, seqs: &[&[u32]]) -> Vec<f32> {
    logits_in_steps(model, seqs, usize::MAX)
}

/// [`logits`], with each sequence decoded in batches of at most `step` tokens.
pub fn logits_in_steps(model: &LlamaModel, seqs: &[&[u32]], step: usize) -> Vec<f32> {
    let n_vocab = model.n_vocab() as usize;
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(1) as u32;
    let mut out = Vec::with_capacity(seqs.iter().map(|s| s.len()).sum::<usize>() * n_vocab);
    for tokens in seqs {
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(longest.next_multiple_of(256)))
            .with_n_batch(longest)
            .with_n_ubatch(longest)
            .with_n_threads(1)
            .with_n_threads_batch(1)
            .with_flash_attention_policy(FLASH_ATTN_DISABLED);
        let mut ctx = model.new_context(backend(), params).expect("llama.cpp context");
        for (c, chunk) in tokens.chunks(step.max(1)).enumerate() {
            let mut batch = LlamaBatch::new(chunk.len(), 1);
            for (i, &t) in chunk.iter().enumerate() {
                batch.add(LlamaToken::new(t as i32), (c * step + i) as i32, &[0], true).unwrap();
            }
            ctx.decode(&mut batch).expect("llama.cpp decode");
            for i in 0..chunk.len() {
                out.extend_from_slice(ctx.get_logits_ith(i as i32));
            }
        }
    }
    out
}

/// How far one set of logits is from a reference, position by position.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Positions compared.
    pub n: usize,
    /// Mean KL(reference ‖ ours) in nats.
    pub kl_mean: f64,
    /// Largest per-position KL.
    pub kl_max: f64,
    /// Fraction of positions whose argmax agrees.
    pub top1: f64,
    /// Root mean square logit difference.
    pub rms: f64,
    /// Root mean square of the reference logits about each position's mean.
    pub std: f64,
    /// Largest absolute logit difference.
    pub max_abs: f64,
}

impl Stats {
    /// RMS difference as a percentage of the reference's spread.
    pub fn rms_pct(&self) -> f64 {
        100.0 * self.rms / self.std
    }
}

fn log_softmax(x: &[f32], out: &mut Vec<f64>) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = max + x.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
    out.clear();
    out.extend(x.iter().map(|&v| v as f64 - lse));
}

fn argmax(x: &[f32]) -> usize {
    (0..x.len()).max_by(|&a, &b| x[a].total_cmp(&x[b])).unwrap_or(0)
}

/// Compares `ours` with `reference`, both `[n, n_vocab]`.
pub fn compare(reference: &[f32], ours: &[f32], n_vocab: usize) -> Stats {
    assert_eq!(reference.len(), ours.len(), "logit counts differ");
    let (mut lr, mut lo) = (Vec::new(), Vec::new());
    let mut s = Stats::default();
    let (mut kl_sum, mut sq, mut var, mut agree) = (0.0, 0.0, 0.0, 0usize);
    for (r, o) in reference.chunks_exact(n_vocab).zip(ours.chunks_exact(n_vocab)) {
        log_softmax(r, &mut lr);
        log_softmax(o, &mut lo);
        let kl: f64 = lr.iter().zip(&lo).map(|(a, b)| a.exp() * (a - b)).sum();
        kl_sum += kl;
        s.kl_max = s.kl_max.max(kl);
        agree += usize::from(argmax(r) == argmax(o));
        let mean = r.iter().map(|&v| v as f64).sum::<f64>() / n_vocab as f64;
        for (&a, &b) in r.iter().zip(o) {
            let d = (a - b) as f64;
            sq += d * d;
            var += (a as f64 - mean).powi(2);
            s.max_abs = s.max_abs.max(d.abs());
        }
        s.n += 1;
    }
    let cells = (s.n * n_vocab).max(1) as f64;
    s.kl_mean = kl_sum / s.n.max(1) as f64;
    s.top1 = agree as f64 / s.n.max(1) as f64;
    s.rms = (sq / cells).sqrt();
    s.std = (var / cells).sqrt();
    s
}

/// pupil's logits for `tokens` of sequence 0 from position 0, all wanted, in one batch.
pub fn pupil_logits(model: &Model, tokens: &[u32], kv: KvType) -> Vec<f32> {
    let mut cache = model.new_cache(Some(tokens.len().next_multiple_of(256)), 1, kv);
    let mut scratch = model.new_scratch(tokens.len(), &cache);
    let mut batch = Batch::with_capacity(tokens.len());
    batch.push_sequence(tokens, 0, 0, true);
    let mut logits = vec![0.0; tokens.len() * model.config().n_vocab];
    model.forward(&batch, &mut cache, &mut scratch, &mut logits).unwrap();
    logits
}
