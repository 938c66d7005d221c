//! Gemma 3 270M through a [`Context`] whose sliding-window layers keep rings of rows: past
//! the 512-token window, the logits are bit for bit those of a cache that keeps everything,
//! whether the prompt runs in one batch or in chunks; and a slot's KV bytes follow the
//! window, as llama.cpp's iSWA cache's do (issue 11, item 2).

use std::sync::Arc;

use pupil::model::{Batch, Context, ContextParams, KvCache, KvType, Logits, Model, Threads};

const GEMMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");
const N: usize = 640;

fn tokens() -> Vec<u32> {
    (0..N as u32).map(|i| 2 + (i * 7919 + 13) % 20_000).collect()
}

/// Positions whose logits the test compares (all would be 640 rows of 262144 floats): the
/// last four of every 32, and the last 24.
fn wanted(p: usize) -> bool {
    p % 32 >= 28 || p + 24 >= N
}

#[test]
fn rings_past_the_window_give_the_bits_of_a_full_cache() {
    let model = Arc::new(Model::open(GEMMA).expect("run models/fetch-gemma3-270m.sh"));
    let nv = model.config().n_vocab;
    let t = tokens();
    let n_wanted = (0..N - 16).filter(|&p| wanted(p)).count();

    // A full-size cache (every layer 1024 rows): the prompt in one batch, then 16 decode steps.
    let one = full_cache(&model, &t, N - 16, n_wanted);
    // The same in chunks of 32.
    let full = full_cache(&model, &t, 32, n_wanted);

    // Rings of 512 + 32 rows (rounded to 576): the prompt in chunks of 32 (the same GEMM path
    // as the one batch), the rows moving every other chunk past position 576, then the same
    // decode steps.
    let params = ContextParams { n_ctx: Some(1024), max_batch: 32, ..ContextParams::default() };
    let mut ctx = Context::new(Arc::clone(&model), &params, Threads::new(2).unwrap()).unwrap();
    assert_eq!(ctx.cache().ring_rows(), 576);
    let slot = ctx.acquire().unwrap();
    let mut ring = vec![0.0; (n_wanted + 16) * nv];
    let mut row = 0;
    let steps = (0..N - 16).step_by(32).map(|s| s..(s + 32).min(N - 16)).chain((N - 16..N).map(|p| p..p + 1));
    for r in steps {
        let want = r.clone().filter(|&p| r.len() == 1 || wanted(p)).map(|p| p - r.start);
        let (lo, hi) = (want.clone().min(), want.max());
        let logits = lo.map_or(Logits::None, |lo| Logits::Range(lo..hi.unwrap() + 1));
        // `Range` wants every index of the run in it: check the test's mask is one range.
        let n = r.clone().filter(|&p| r.len() == 1 || wanted(p)).count();
        assert_eq!(n, hi.map_or(0, |h| h + 1 - lo.unwrap()));
        ctx.push(slot, &t[r.clone()], logits).unwrap();
        ctx.forward_into(&mut ring[row * nv..(row + n) * nv]).unwrap();
        row += n;
    }
    assert_eq!(row, n_wanted + 16);
    assert!(ctx.cache().oldest(slot.index()) > 0, "the rings moved");
    for (i, (a, b)) in ring.chunks(nv).zip(full.chunks(nv)).enumerate() {
        assert!(a == b, "logits row {i} of {} differ between the rings and the full cache", n_wanted + 16);
    }
    // Chunks against one batch: both take the tiled GEMM, which sums every token's dots in
    // one order whatever the batch (the kernels' batch invariance), so a prompt gives the same
    // bits however it is cut.
    let diff = ring.iter().zip(&one).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!("rings in chunks of 32 vs one batch: max |diff| {diff:.2e}");
    assert!(ring == one, "chunks vs one batch: max |diff| {diff}");
}

/// The wanted logits of `t` (then 16 decode steps) through a full-size cache, the prompt in
/// batches of `chunk`.
fn full_cache(model: &Model, t: &[u32], chunk: usize, n_wanted: usize) -> Vec<f32> {
    let nv = model.config().n_vocab;
    let mut cache = model.new_cache(Some(1024), 1, KvType::F16);
    let mut scratch = model.new_scratch(chunk, &cache);
    let mut out = vec![0.0; (n_wanted + 16) * nv];
    let (mut batch, mut row) = (Batch::new(), 0);
    let steps = (0..N - 16).step_by(chunk).map(|s| s..(s + chunk).min(N - 16)).chain((N - 16..N).map(|p| p..p + 1));
    for r in steps {
        batch.clear();
        r.clone().for_each(|p| batch.push(t[p], p as u32, 0, r.len() == 1 || wanted(p)));
        let n = batch.n_wanted();
        model.forward(&batch, &mut cache, &mut scratch, &mut out[row * nv..(row + n) * nv]).unwrap();
        row += n;
    }
    assert_eq!(row, n_wanted + 16);
    out
}

#[test]
fn kv_bytes_per_slot_follow_the_window() {
    let model = Model::open(GEMMA).expect("run models/fetch-gemma3-270m.sh");
    let cfg = model.config();
    let (w, kv_row) = (cfg.sliding_window.unwrap(), 2 * cfg.kv_dim() * 2); // K and V in f16
    let n_swa = cfg.swa_layers.iter().filter(|&&s| s).count();
    assert_eq!((cfg.n_layer, n_swa, w), (18, 15, 512));
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    for n_ctx in [4096, 32768] {
        let before = KvCache::slot_bytes(cfg, n_ctx, None, KvType::F16);
        let after = KvCache::slot_bytes(cfg, n_ctx, Some(512), KvType::F16);
        // llama.cpp (src/llama-kv-cache-iswa.cpp): non-SWA layers keep n_ctx cells; SWA layers
        // GGML_PAD(min(n_ctx, n_swa + n_ubatch), 256) with n_ubatch 512, unless swa_full (the
        // default of llama_context_default_params) makes them full-size.
        let swa_cells = (n_ctx.min(w + 512)).next_multiple_of(256);
        let llama = kv_row * ((cfg.n_layer - n_swa) * n_ctx + n_swa * swa_cells);
        let llama_full = kv_row * cfg.n_layer * n_ctx;
        println!(
            "n_ctx {n_ctx}: pupil before {:.1} MiB, after {:.1} MiB ({:.2}x less); llama.cpp {:.1} MiB (swa_full: {:.1} MiB)",
            mib(before),
            mib(after),
            before as f64 / after as f64,
            mib(llama),
            mib(llama_full)
        );
        assert_eq!(before, llama_full);
        assert_eq!(after, llama);
    }
    assert!(KvCache::slot_bytes(cfg, 32768, None, KvType::F16) >= 5 * KvCache::slot_bytes(cfg, 32768, Some(512), KvType::F16));
    // The estimate is what a context allocates.
    let params = ContextParams { n_ctx: Some(4096), n_slots: 2, ..ContextParams::default() };
    let ctx = Context::new(Arc::new(model), &params, Threads::new(1).unwrap()).unwrap();
    let cfg = ctx.model().config();
    assert_eq!(ctx.kv_bytes_per_slot(), KvCache::slot_bytes(cfg, 4096, Some(512), KvType::F16));
    assert_eq!(ctx.kv_bytes(), 2 * ctx.kv_bytes_per_slot());
}
