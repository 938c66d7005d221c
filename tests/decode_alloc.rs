//! The decode loop allocates nothing: once a session's buffers exist, a forward pass of one
//! token (and of a small batch no larger than the scratch) makes no heap allocation, on any
//! thread. A counting global allocator proves it.

use pupil::model::{Batch, KvType, Model};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

// Counts every allocation of every thread (the forward pass runs on rayon's workers).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn decode_steps_allocate_nothing() {
    let path = format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR"));
    let model = Model::open(&path).expect("run models/fetch-gemma3-270m.sh");
    let mut cache = model.new_cache(Some(256), 1, KvType::F16);
    let mut scratch = model.new_scratch(16, &cache);
    let n_vocab = model.config().n_vocab;
    let mut logits = vec![0.0; n_vocab];
    let mut batch = Batch::with_capacity(16);

    // A prompt and a few steps to warm up the thread pool and every buffer.
    batch.push_sequence(&[2, 651, 6037, 529, 7001, 563], 0, 0, false);
    model.forward(&batch, &mut cache, &mut scratch, &mut logits).unwrap();
    let mut pos = 6;
    let mut step = |model: &Model, batch: &mut Batch, cache: &mut _, scratch: &mut _, logits: &mut Vec<f32>| {
        let next = pupil::sample::argmax(logits);
        batch.clear();
        batch.push(next, pos, 0, true);
        model.forward(batch, cache, scratch, logits).unwrap();
        pos += 1;
    };
    for _ in 0..4 {
        step(&model, &mut batch, &mut cache, &mut scratch, &mut logits);
    }

    let region = Region::new(GLOBAL);
    for _ in 0..32 {
        step(&model, &mut batch, &mut cache, &mut scratch, &mut logits);
    }
    let stats = region.change();
    let allocations = stats.allocations + stats.reallocations;
    assert_eq!(allocations, 0, "32 decode steps made {allocations} heap allocations ({stats:?})");
}
