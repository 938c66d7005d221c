//! llama.cpp as the oracle of a model's logits, and the statistics that compare two sets of
//! logits. Shared by the model oracle tests.
#![allow(dead_code)]

use std::path::Path;

use pupil::llama::LlamaModel;
use pupil::model::{KvType, Model};
use pupil::runner::{Attention, PupilRunner, Runner, RunnerOptions};

/// Gemma 3 270M Q4_K_M, the model the greedy oracles run (fetched by the test command).
pub fn gemma() -> String {
    let p = format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR"));
    assert!(Path::new(&p).exists(), "{p} is missing: run models/fetch-gemma3-270m.sh");
    p
}

/// The prompts greedy continuations are compared on: prose, code, a list, a letter.
pub const GREEDY_PROMPTS: [&str; 10] = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "The three primary colors are",
    "Water boils at a temperature of",
    "In 1969, the first humans to walk on the Moon were",
    "A recipe for pancakes:\n1.",
    "The quick brown fox",
    "Photosynthesis is the process by which",
    "Dear Sir or Madam,\n\nI am writing to",
];

/// llama.cpp's model, loaded once per call site.
pub fn load(path: &Path) -> LlamaModel {
    LlamaModel::load(path).unwrap_or_else(|e| panic!("{e}"))
}

/// Tokens of `text` as llama.cpp's tokenizer makes them (with BOS if the vocabulary adds it).
pub fn tokenize(model: &LlamaModel, text: &str) -> Vec<u32> {
    model.tokenize(text, true).expect("llama.cpp tokenizes")
}

/// llama.cpp's logits for each sequence of `seqs` run on its own from position 0, all
/// positions wanted, in one batch per sequence: `[sum of lengths, n_vocab]`, sequence after
/// sequence. F16 KV cache (llama.cpp's default), no flash attention (its plain attention
/// graph, an f32 softmax, is its most exact CPU path), one thread: ggml's thread pool spins at
/// every op, which crawls when other processes share the cores (and the results do not
/// depend on the thread count).
pub fn logits(model: &LlamaModel, seqs: &[&[u32]]) -> Vec<f32> {
    logits_in_steps(model, seqs, usize::MAX)
}

/// [`logits`], with each sequence decoded in batches of at most `step` tokens.
pub fn logits_in_steps(model: &LlamaModel, seqs: &[&[u32]], step: usize) -> Vec<f32> {
    let n_vocab = model.n_vocab();
    let longest = seqs.iter().map(|s| s.len()).max().unwrap_or(1);
    let opts = RunnerOptions {
        attention: Attention::Exact,
        threads: Some(1),
        ..RunnerOptions::new(longest.next_multiple_of(256), longest)
    };
    let mut out = vec![0.0; seqs.iter().map(|s| s.len()).sum::<usize>() * n_vocab];
    let mut rows = &mut out[..];
    for tokens in seqs {
        // A fresh context per sequence, as each is run on its own.
        let mut r = model.runner(&opts).expect("llama.cpp context");
        for (c, chunk) in tokens.chunks(step.max(1)).enumerate() {
            let (dst, rest) = std::mem::take(&mut rows).split_at_mut(chunk.len() * n_vocab);
            r.forward(chunk, c * step.max(1), 0..chunk.len(), dst).expect("llama.cpp decode");
            rows = rest;
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
    let n_ctx = tokens.len().next_multiple_of(256).min(model.config().n_ctx_train).max(tokens.len());
    let opts = RunnerOptions { kv_type: kv, ..RunnerOptions::new(n_ctx, tokens.len()) };
    let mut r = PupilRunner::new(model, &opts).expect("pupil runner");
    let mut logits = vec![0.0; tokens.len() * model.config().n_vocab];
    r.forward(tokens, 0, 0..tokens.len(), &mut logits).unwrap();
    logits
}
