//! A context runs on the pool it is given, never on rayon's global pool: a program that
//! embeds pupil keeps its global pool (issue 11, item 5).
//!
//! One test per binary, since rayon's global pool can be set up only once per process.

use std::sync::Arc;

use pupil::kernels::DType;
use pupil::model::synth::{Synth, SynthModel};
use pupil::model::{Arch, Context, ContextParams, Logits, Model, Threads};

#[test]
fn a_context_runs_on_its_own_pool_and_leaves_the_global_one_alone() {
    // Everything the test itself runs in parallel (writing the model) stays off the global
    // pool too, so that only pupil could have started it.
    let setup = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    setup.install(|| {
        let spec = Synth { n_vocab: 300, n_layer: 3, sliding_window: Some(8), ..Synth::new(Arch::Gemma3, DType::Q8_0) };
        SynthModel::build(&spec, None).unwrap().write(&path).unwrap();
    });
    let model = Arc::new(Model::open(&path).unwrap());
    let params = ContextParams { n_ctx: Some(128), max_batch: 32, ..ContextParams::default() };
    let mut ctx = Context::new(Arc::clone(&model), &params, Threads::new(2).unwrap()).unwrap();
    let slot = ctx.acquire().unwrap();
    let prompt: Vec<u32> = (0..40).map(|i| (i * 7 + 3) % 300).collect();
    ctx.push(slot, &prompt[..32], Logits::None).unwrap();
    ctx.forward().unwrap();
    ctx.push(slot, &prompt[32..], Logits::Last).unwrap();
    let first = ctx.forward().unwrap().to_vec();
    assert_eq!(ctx.threads().install(rayon::current_num_threads), 2);

    // pupil never started the global pool: the program can still size it as it likes.
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().expect("pupil started rayon's global pool");
    assert_eq!(rayon::current_num_threads(), 1);

    // With a one-thread global pool, the context still runs on its two threads (the
    // scratch was sized for them) and gives the same logits.
    let mut again = Context::new(model, &params, Threads::new(2).unwrap()).unwrap();
    let slot = again.acquire().unwrap();
    again.push(slot, &prompt[..32], Logits::None).unwrap();
    again.forward().unwrap();
    again.push(slot, &prompt[32..], Logits::Last).unwrap();
    assert_eq!(again.forward().unwrap(), &first[..]);
    assert_eq!(again.threads().count(), 2);
}
