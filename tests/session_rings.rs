//! A chat session over Gemma 3 270M whose sliding-window layers keep rings: reusing a common
//! prefix the rings still hold whole, or recomputing when they do not, gives the logits a
//! fresh session gives (issue 11, item 2).

use std::sync::Arc;

use pupil::generate::{Engine, SessionOptions};
use pupil::model::KvType;

const GEMMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");

#[test]
fn prefix_reuse_past_the_window_matches_a_fresh_session() {
    let engine = Arc::new(Engine::load(GEMMA).expect("run models/fetch-gemma3-270m.sh"));
    // Batches of 16: rings of 512 + 16 rows (rounded to 576), which a 700-token prompt fills.
    let opts = SessionOptions { n_ctx: Some(1024), kv_type: KvType::F16, n_batch: 16 };
    let t: Vec<u32> = (0..700u32).map(|i| 2 + (i * 7919 + 5) % 20_000).collect();
    let fresh = |tokens: &[u32]| {
        let mut s = engine.session(opts.clone());
        s.set_tokens(tokens).unwrap();
        s.logits().to_vec()
    };
    let mut s = engine.session(opts.clone());
    assert_eq!(s.set_tokens(&t).unwrap(), 700);

    // A draft-like rejection: the last five tokens replaced. The rings still hold the window
    // of position 695, so only the new token runs.
    let mut edited = t[..695].to_vec();
    edited.push(4242);
    assert_eq!(s.set_tokens(&edited).unwrap(), 1, "the common prefix is reused");
    assert_eq!(s.logits(), &fresh(&edited)[..]);

    // An edit far back: the rings dropped the window of position 100, so everything runs
    // again, from position 0.
    let mut early = t[..100].to_vec();
    early.extend((0..50u32).map(|i| 3 + i * 11));
    assert_eq!(s.set_tokens(&early).unwrap(), 150, "recomputed from the start");
    assert_eq!(s.logits(), &fresh(&early)[..]);
}
