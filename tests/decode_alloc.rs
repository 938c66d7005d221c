//! The decode loop allocates nothing: once a session's buffers exist, a forward pass of one
//! token (and of a small batch no larger than the scratch) makes no heap allocation, on any
//! thread, through [`Model::forward`] and through a [`Context`] whose sliding-window rings
//! move their rows during the measured steps. A counting global allocator proves it.

use std::sync::{Arc, Mutex};

use pupil::model::{Batch, Context, ContextParams, KvType, Logits, Model, Threads};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;

// Counts every allocation of every thread (the forward pass runs on rayon's workers).
#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// The counts are process-wide: one measured test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn gemma() -> Model {
    let path = format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR"));
    Model::open(&path).expect("run models/fetch-gemma3-270m.sh")
}

#[test]
fn decode_steps_allocate_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let model = gemma();
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

#[test]
fn context_decode_steps_allocate_nothing_even_when_the_rings_move() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Two slots, batches of up to 16: rings of 512 + 16 rows, rounded to 576. The prompt
    // leaves slot 0 a few positions short of the end of its rings, so that its rows move
    // during the measured steps.
    let params = ContextParams { n_ctx: Some(1024), n_slots: 2, max_batch: 16, max_logits: 2, kv_type: KvType::F16 };
    let mut ctx = Context::new(Arc::new(gemma()), &params, Threads::new(2).unwrap()).unwrap();
    assert_eq!(ctx.cache().ring_rows(), 576);
    let (a, b) = (ctx.acquire().unwrap(), ctx.acquire().unwrap());
    let prompt: Vec<u32> = (0..560).map(|i| 100 + (i * 37) % 5000).collect();
    for chunk in prompt.chunks(16) {
        ctx.push(a, chunk, Logits::Last).unwrap();
        ctx.forward().unwrap();
    }
    ctx.push(b, &prompt[..8], Logits::Last).unwrap();
    ctx.forward().unwrap();
    let mut next = [0u32; 2];
    let mut step = |ctx: &mut Context| {
        let ra = ctx.push(a, &next[..1], Logits::Last).unwrap();
        let rb = ctx.push(b, &next[1..], Logits::Last).unwrap();
        let nv = ctx.model().config().n_vocab;
        let logits = ctx.forward().unwrap();
        next = [pupil::sample::argmax(&logits[ra.start * nv..][..nv]), pupil::sample::argmax(&logits[rb.start * nv..][..nv])];
    };
    for _ in 0..4 {
        step(&mut ctx);
    }
    assert_eq!(ctx.cache().oldest(a.index()), 0);

    // The steps run inside the context's pool, as a server's engine loop does: a pass sent
    // into a pool from another thread goes through rayon's injector queue, which allocates a
    // block (1.5 KiB) every 63 jobs; from inside the pool the pass runs in place.
    let threads = ctx.threads().clone();
    let region = Region::new(GLOBAL);
    threads.install(|| {
        for _ in 0..32 {
            step(&mut ctx);
        }
    });
    let stats = region.change();
    assert!(ctx.cache().oldest(a.index()) > 0, "the rings of slot 0 moved during the steps");
    let allocations = stats.allocations + stats.reallocations;
    assert_eq!(allocations, 0, "32 decode steps of two slots made {allocations} heap allocations ({stats:?})");
}
