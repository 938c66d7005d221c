//! Sessions: prefix reuse gives the same logits as evaluating from scratch, the context
//! limit is enforced, and stop strings end generation.

use pupil::generate::{Engine, GenerateError, GenerateParams, SessionOptions, StopReason};
use std::sync::{Arc, OnceLock};

fn engine() -> Arc<Engine> {
    static E: OnceLock<Arc<Engine>> = OnceLock::new();
    E.get_or_init(|| {
        let p = format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR"));
        Arc::new(Engine::load(&p).expect("run models/fetch-gemma3-270m.sh"))
    })
    .clone()
}

fn opts(n_ctx: usize) -> SessionOptions {
    SessionOptions { n_ctx: Some(n_ctx), n_batch: 8, ..SessionOptions::default() }
}

#[test]
fn a_shared_prefix_is_reused_and_gives_the_same_next_token() {
    let e = engine();
    let a = e.tokenizer().encode("The quick brown fox jumps over the lazy dog.", true, false);
    let b = e.tokenizer().encode("The quick brown fox jumps over the lazy dog. Then it", true, false);
    assert!(b.starts_with(&a));

    let mut s = e.session(opts(256));
    assert_eq!(s.set_tokens(&a).unwrap(), a.len());
    assert_eq!(s.set_tokens(&b).unwrap(), b.len() - a.len(), "only the new tokens are evaluated");
    let reused = s.generate(&b, &GenerateParams::greedy(6), |_| true).unwrap();
    assert_eq!(reused.timings.prompt_tokens, 1, "the cache already holds the prompt: only its last token runs again");

    let mut fresh = e.session(opts(256));
    let scratch = fresh.generate(&b, &GenerateParams::greedy(6), |_| true).unwrap();
    assert_eq!(reused.tokens, scratch.tokens);
    assert_eq!(scratch.timings.prompt_tokens, b.len());
}

#[test]
fn the_context_limit_is_an_error_or_a_stop_never_a_panic() {
    let e = engine();
    let long = e.tokenizer().encode(&"one two three ".repeat(20), true, false);
    let mut s = e.session(opts(32));
    match s.set_tokens(&long) {
        Err(GenerateError::PromptTooLong { n_prompt, n_ctx: 32 }) => assert_eq!(n_prompt, long.len()),
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    let short = &long[..28];
    let done = s.generate(short, &GenerateParams::greedy(100), |_| true).unwrap();
    assert_eq!(done.stop, StopReason::ContextFull);
    assert_eq!(s.tokens().len(), 32);
}

#[test]
fn stop_strings_end_generation_without_printing_them() {
    let e = engine();
    let prompt = e.tokenizer().encode("Count: one, two, three, four,", true, false);
    let mut s = e.session(opts(128));
    let free = s.generate(&prompt, &GenerateParams::greedy(12), |_| true).unwrap();
    // Stop at the first comma the model writes.
    let Some(at) = free.text.find(',') else { panic!("no comma in {:?}", free.text) };
    let mut params = GenerateParams::greedy(12);
    params.stop = vec![",".into()];
    let mut streamed = String::new();
    let done = s.generate(&prompt, &params, |t| {
        streamed.push_str(t);
        true
    })
    .unwrap();
    assert_eq!(done.stop, StopReason::StopString(",".into()));
    assert_eq!(done.text, free.text[..at]);
    assert_eq!(streamed, done.text);
}

#[test]
fn the_library_types_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
    shareable::<pupil::model::Model>();
    shareable::<pupil::tokenizer::Tokenizer>();
    // A session moves to the thread that serves its conversation.
    fn movable<T: Send>() {}
    movable::<pupil::generate::Session>();
    // And several sessions over one engine generate concurrently.
    let e = engine();
    let prompt = e.tokenizer().encode("Hello", true, false);
    let texts: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let e = e.clone();
                let prompt = prompt.clone();
                s.spawn(move || e.session(opts(64)).generate(&prompt, &GenerateParams::greedy(4), |_| true).unwrap().text)
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(texts[0], texts[1]);
}
