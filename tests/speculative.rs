//! Speculative decoding on Gemma 3 270M: a Q8_0 target (made from the Q4_K_M file with
//! `pupil::quantize`) drafted by the Q4_K_M model or by itself. Greedy output must be the
//! target's own, token for token; the rejection step must keep the target's distribution.

use pupil::generate::{
    Engine, GenerateParams, Session, SessionOptions, SpeculativeError, SpeculativeSession, StopReason, Verdict,
    verify_draft,
};
use pupil::sample::SamplerConfig;
use std::process::Command;
use std::sync::{Arc, OnceLock};

#[path = "support/gemma_pair.rs"]
mod gemma_pair;
use gemma_pair::{student as student_path, teacher as teacher_path};

fn engine(which: &str) -> Arc<Engine> {
    static T: OnceLock<Arc<Engine>> = OnceLock::new();
    static S: OnceLock<Arc<Engine>> = OnceLock::new();
    let (cell, path) = if which == "teacher" { (&T, teacher_path()) } else { (&S, student_path()) };
    cell.get_or_init(|| Arc::new(Engine::load(path).unwrap())).clone()
}

fn session(e: &Arc<Engine>) -> Session {
    e.session(SessionOptions { n_ctx: Some(256), ..SessionOptions::default() })
}

const PROMPTS: [&str; 3] = ["The history of the Roman Empire", "def fibonacci(n):\n", "Water boils at"];

#[test]
fn greedy_speculative_text_is_the_targets_own_for_any_draft_and_length() {
    let t = engine("teacher");
    let params = GenerateParams::greedy(24);
    for prompt in PROMPTS {
        let tokens = t.tokenizer().encode(prompt, true, false);
        let plain = session(&t).generate(&tokens, &params, |_| true).unwrap();
        for (name, d) in [("Q4_K_M draft", engine("student")), ("the target as its own draft", engine("teacher"))] {
            for k in [1, 4, 8, 32] {
                let mut spec = SpeculativeSession::new(session(&t), session(&d), k).unwrap();
                // Verification batches stay small enough to be exact, whatever K is asked.
                assert_eq!(spec.draft_max(), k.min(pupil::kernels::ops::EXACT_BATCH_TOKENS - 1));
                let mut streamed = String::new();
                let done = spec
                    .generate(&tokens, &params, |p| {
                        streamed.push_str(p);
                        true
                    })
                    .unwrap();
                let c = &done.completion;
                assert_eq!(
                    c.tokens, plain.tokens,
                    "{name}, K = {k}, prompt {prompt:?}: {:?} vs {:?}",
                    c.text, plain.text
                );
                assert_eq!((&c.text, &c.stop), (&plain.text, &plain.stop));
                assert_eq!(streamed, c.text);
                let s = done.stats;
                assert!(s.accepted <= s.drafted && s.target_passes <= c.tokens.len(), "{s:?}");
                if name.starts_with("the target") {
                    assert_eq!(s.accepted, s.drafted, "a model agrees with itself: {s:?} (K = {k}, {prompt:?})");
                    assert_eq!(s.acceptance_rate(), 1.0);
                }
            }
        }
    }
}

/// What exact greedy speculation rests on: the target's logits for a token are the same
/// whether it runs alone (plain decoding) or inside a verification batch. A matmul kernel
/// whose multi-token path rounds differently from its one-token path breaks this.
#[test]
fn a_batch_gives_bit_identical_logits_to_one_token_at_a_time() {
    use pupil::model::{Batch, KvType};
    let t = engine("teacher");
    let m = t.model();
    let tokens =
        t.tokenizer().encode("The history of the Roman Empire is a fascinating one. It was a time", true, false);
    let v = m.config().n_vocab;
    let (n0, k) = (4, 9);
    let run = |batched: bool| {
        let mut cache = m.new_cache(Some(64), 1, KvType::F16);
        let mut scratch = m.new_scratch(16, &cache);
        let mut b = Batch::new();
        let mut one = vec![0f32; v];
        b.push_sequence(&tokens[..n0], 0, 0, false);
        m.forward(&b, &mut cache, &mut scratch, &mut one).unwrap();
        let mut rows = vec![0f32; k * v];
        if batched {
            b.clear();
            b.push_sequence(&tokens[n0..n0 + k], n0 as u32, 0, true);
            m.forward(&b, &mut cache, &mut scratch, &mut rows).unwrap();
        } else {
            for i in 0..k {
                b.clear();
                b.push(tokens[n0 + i], (n0 + i) as u32, 0, true);
                m.forward(&b, &mut cache, &mut scratch, &mut rows[i * v..][..v]).unwrap();
            }
        }
        rows
    };
    let (batched, single) = (run(true), run(false));
    let worst = batched.iter().zip(&single).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(
        worst == 0.0,
        "a batch of {k} differs from single steps by up to {worst} in a logit (threads: {})",
        rayon::current_num_threads()
    );
}

#[test]
fn stop_strings_and_limits_end_speculative_generation_as_they_end_plain_generation() {
    let t = engine("teacher");
    let tokens = t.tokenizer().encode("Count: one, two, three, four,", true, false);
    let mut params = GenerateParams::greedy(20);
    params.stop = vec![" six".into()];
    let plain = session(&t).generate(&tokens, &params, |_| true).unwrap();
    let mut spec = SpeculativeSession::new(session(&t), session(&engine("student")), 8).unwrap();
    let done = spec.generate(&tokens, &params, |_| true).unwrap().completion;
    assert_eq!((&done.text, &done.stop, &done.tokens), (&plain.text, &plain.stop, &plain.tokens));
    // A context that fills mid-draft.
    let small =
        |e: &Arc<Engine>| e.session(SessionOptions { n_ctx: Some(tokens.len() + 5), ..SessionOptions::default() });
    let plain = small(&t).generate(&tokens, &GenerateParams::greedy(50), |_| true).unwrap();
    let mut spec = SpeculativeSession::new(small(&t), small(&engine("student")), 8).unwrap();
    let done = spec.generate(&tokens, &GenerateParams::greedy(50), |_| true).unwrap().completion;
    assert_eq!(plain.stop, StopReason::ContextFull);
    assert_eq!((&done.stop, &done.tokens), (&plain.stop, &plain.tokens));
    let none = spec.generate(&tokens, &GenerateParams::greedy(0), |_| true).unwrap();
    assert!(none.completion.tokens.is_empty() && none.completion.stop == StopReason::MaxTokens);
}

/// The rejection step on hand-made distributions: drafts drawn from `q`, kept or replaced by
/// `verify_draft`, come out distributed as `p`.
#[test]
fn rejection_sampling_gives_the_targets_distribution() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let cases: [([f32; 5], [f32; 5]); 3] = [
        ([0.1, 0.2, 0.3, 0.4, 0.0], [0.4, 0.3, 0.2, 0.1, 0.0]),
        ([0.5, 0.0, 0.0, 0.5, 0.0], [0.2, 0.2, 0.2, 0.2, 0.2]),
        ([0.05, 0.05, 0.1, 0.2, 0.6], [0.0, 0.0, 0.0, 0.1, 0.9]),
    ];
    const N: usize = 20_000;
    for (p, q) in cases {
        let mut counts = [0usize; 5];
        let mut accepted = 0;
        for _ in 0..N {
            let u = uniform();
            let mut cum = 0.0;
            let draft = q.iter().position(|&x| {
                cum += x;
                u < cum
            });
            let draft = draft.unwrap_or(4) as u32;
            let out = match verify_draft(&p, &q, draft, uniform(), uniform()) {
                Verdict::Accept => {
                    accepted += 1;
                    draft
                }
                Verdict::Resample(t) => t,
            };
            counts[out as usize] += 1;
        }
        for (i, &c) in counts.iter().enumerate() {
            let f = c as f64 / N as f64;
            let sigma = (p[i] as f64 * (1.0 - p[i] as f64) / N as f64).sqrt();
            assert!(
                (f - p[i] as f64).abs() <= 4.0 * sigma + 1e-9,
                "p = {p:?}, q = {q:?}: token {i} came {f}, want {}",
                p[i]
            );
        }
        // The acceptance rate is Σ min(p, q).
        let want: f64 = p.iter().zip(&q).map(|(a, b)| a.min(*b) as f64).sum();
        assert!((accepted as f64 / N as f64 - want).abs() < 0.02, "acceptance {accepted} of {N}, want {want}");
    }
}

#[test]
fn sampled_speculative_generation_is_reproducible_and_plausible() {
    let t = engine("teacher");
    let tokens = t.tokenizer().encode("Once upon a time", true, false);
    let params = GenerateParams {
        max_tokens: Some(16),
        sampler: SamplerConfig { seed: 7, ..SamplerConfig::default() },
        stop: vec![],
    };
    let run = || {
        let mut spec = SpeculativeSession::new(session(&t), session(&engine("student")), 4).unwrap();
        spec.generate(&tokens, &params, |_| true).unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.completion.tokens, b.completion.tokens, "same seed, same text");
    assert_eq!(a.completion.tokens.len(), 16);
    assert!(a.stats.accepted > 0, "a close draft gets some tokens accepted: {:?}", a.stats);

    let penalised =
        GenerateParams { sampler: SamplerConfig { repeat_penalty: 1.1, ..params.sampler.clone() }, ..params.clone() };
    let mut spec = SpeculativeSession::new(session(&t), session(&engine("student")), 4).unwrap();
    assert!(matches!(spec.generate(&tokens, &penalised, |_| true), Err(SpeculativeError::PenaltiesWithSampling)));
}

#[test]
fn a_draft_with_another_vocabulary_is_refused_naming_the_difference() {
    use pupil::kernels::DType;
    use pupil::model::{
        Arch,
        synth::{Synth, SynthModel},
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synth.gguf");
    SynthModel::build(&Synth { n_layer: 1, ..Synth::new(Arch::Llama, DType::Q8_0) }, None)
        .unwrap()
        .write(&path)
        .unwrap();
    let other = Arc::new(Engine::load(&path).unwrap());
    let err = SpeculativeSession::new(session(&engine("student")), session(&other), 4).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, SpeculativeError::Vocab(_)), "{err:?}");
    assert!(msg.contains("262144") && msg.contains("1024"), "{msg}");
    assert!(matches!(SpeculativeSession::new(session(&other), session(&other), 0), Err(SpeculativeError::NoDrafts)));
}

#[test]
fn pupil_run_with_a_draft_prints_the_same_text_and_the_draft_counts() {
    let (t, s) = (teacher_path(), student_path());
    let run = |extra: &[&str]| {
        let mut args =
            vec!["run", "-m", t.to_str().unwrap(), "-p", "The capital of France is", "-n", "16", "--temp", "0"];
        args.extend_from_slice(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_pupil")).args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        (String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
    };
    let (plain, _) = run(&[]);
    let (spec, err) = run(&["--draft", s.to_str().unwrap(), "--draft-max", "4"]);
    assert_eq!(spec, plain);
    assert!(err.contains("drafted") && err.contains("accepted") && err.contains("target passes"), "{err}");
}
