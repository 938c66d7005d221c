//! Greedy text from pupil equals llama.cpp's on the same file: 64 tokens after each of ten
//! prompts. Where the two part, it must be at a near-tie in llama.cpp's own logits (top-2 gap
//! below 0.01), which float rounding may break either way; such cases are counted.
#![cfg(feature = "llama")]

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use pupil::generate::{Engine, GenerateParams, SessionOptions};
use std::num::NonZeroU32;
use std::sync::Arc;

const N: usize = 64;
const NEAR_TIE: f32 = 0.01;

const PROMPTS: [&str; 10] = [
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

fn gemma() -> String {
    let p = format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&p).exists(), "{p} is missing: run models/fetch-gemma3-270m.sh");
    p
}

/// llama.cpp's greedy continuation, with the top-2 gap of its logits at every step.
fn llama_greedy(model: &LlamaModel, backend: &LlamaBackend, prompt: &[u32]) -> Vec<(u32, f32)> {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(512))
        .with_n_batch(512)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(backend, params).expect("llama.cpp context");
    let mut batch = LlamaBatch::new(512, 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    let mut out = Vec::new();
    let mut pos = prompt.len() as i32;
    for _ in 0..N {
        ctx.decode(&mut batch).expect("llama.cpp decode");
        let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
        let mut idx: Vec<usize> = (0..logits.len()).collect();
        idx.select_nth_unstable_by(1, |&a, &b| logits[b].total_cmp(&logits[a]));
        let (a, b) = if logits[idx[0]] >= logits[idx[1]] { (idx[0], idx[1]) } else { (idx[1], idx[0]) };
        out.push((a as u32, logits[a] - logits[b]));
        batch.clear();
        batch.add(LlamaToken(a as i32), pos, &[0], true).unwrap();
        pos += 1;
    }
    out
}

#[test]
fn greedy_continuations_match_llama_cpp_on_gemma3_270m() {
    let path = gemma();
    let mut backend = LlamaBackend::init().unwrap();
    backend.void_logs();
    let llama = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default()).unwrap();
    let engine = Arc::new(Engine::load(&path).unwrap());

    let (mut identical, mut near_ties) = (0, 0);
    for prompt in PROMPTS {
        let tokens = engine.tokenizer().encode(prompt, true, false);
        let theirs: Vec<u32> = llama.vocab().tokenize(prompt.as_bytes(), true, false).iter().map(|t| t.0 as u32).collect();
        assert_eq!(tokens, theirs, "tokenization of {prompt:?}");

        let mut session = engine.session(SessionOptions { n_ctx: Some(512), ..SessionOptions::default() });
        let ours = session.generate(&tokens, &GenerateParams::greedy(N), |_| true).unwrap().tokens;
        let reference = llama_greedy(&llama, &backend, &tokens);

        match ours.iter().zip(&reference).position(|(a, (b, _))| a != b) {
            None if ours.len() == N => identical += 1,
            None => {
                // pupil stopped early: only at llama.cpp's own end-of-generation token.
                let (t, _) = reference[ours.len()];
                assert!(engine.tokenizer().is_eog(t), "{prompt:?}: pupil stopped after {} tokens, llama.cpp went on with {t}", ours.len());
                identical += 1;
            }
            Some(i) => {
                let (t, gap) = reference[i];
                assert!(
                    gap < NEAR_TIE,
                    "{prompt:?}: token {i} differs (pupil {}, llama.cpp {t}) where llama.cpp's top-2 gap is {gap}, not a near-tie\n pupil: {:?}\n llama: {:?}",
                    ours[i],
                    engine.tokenizer().decode(&ours),
                    engine.tokenizer().decode(&reference.iter().map(|r| r.0).collect::<Vec<_>>()),
                );
                near_ties += 1;
                eprintln!("{prompt:?}: parted at token {i} on a near-tie (gap {gap:.4})");
            }
        }
    }
    eprintln!("greedy 64-token continuations: {identical} identical, {near_ties} parted at near-ties, of {}", PROMPTS.len());
    assert_eq!(identical + near_ties, PROMPTS.len());
}
