//! The context's slot table and the sliding-window rings, on random-weight models: slots are
//! handed out and taken back as a server needs, a copied prefix continues as if computed
//! again, and a ring that has moved its rows gives the same bits as a full-size cache.

use std::sync::Arc;

use pupil_kernels::DType;

use super::synth::{Synth, SynthModel};
use super::*;

const WINDOW: usize = 16;

/// A 6-layer Gemma 3 (five sliding-window layers, one global) with a window of 16.
fn gemma(dtype: DType) -> Arc<Model> {
    let spec = Synth {
        n_vocab: 300,
        n_layer: 6,
        sliding_window: Some(WINDOW),
        n_ctx: 1024,
        ..Synth::new(Arch::Gemma3, dtype)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    SynthModel::build(&spec, None).unwrap().write(&path).unwrap();
    Arc::new(Model::open(&path).unwrap())
}

fn tokens(n: usize, seed: u32) -> Vec<u32> {
    (0..n as u32).map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed * 97) >> 7) % 300).collect()
}

fn context(model: &Arc<Model>, n_slots: usize, max_batch: usize, max_logits: usize) -> Context {
    let params = ContextParams { n_ctx: Some(256), n_slots, max_batch, max_logits, kv_type: KvType::F16 };
    Context::new(Arc::clone(model), &params, Threads::new(2).unwrap()).unwrap()
}

/// Every logit of `tokens` run into `slot` in chunks of `chunk`.
fn run_chunks(ctx: &mut Context, slot: Slot, tokens: &[u32], chunk: usize) -> Vec<f32> {
    let mut out = Vec::new();
    for c in tokens.chunks(chunk) {
        ctx.push(slot, c, Logits::All).unwrap();
        out.extend_from_slice(ctx.forward().unwrap());
    }
    out
}

#[test]
fn slots_are_acquired_until_full_released_and_reused() {
    let model = gemma(DType::F16);
    let mut ctx = context(&model, 3, 8, 8);
    let s: Vec<Slot> = (0..3).map(|_| ctx.acquire().unwrap()).collect();
    assert_eq!(s.iter().map(|s| s.index()).collect::<Vec<_>>(), [0, 1, 2]);
    assert!(matches!(ctx.acquire(), Err(ModelError::NoFreeSlot { n_slots: 3 })));
    assert_eq!(ctx.n_acquired(), 3);

    ctx.push(s[1], &[1, 2, 3], Logits::Last).unwrap();
    ctx.forward().unwrap();
    assert_eq!(ctx.len(s[1]).unwrap(), 3);
    ctx.release(s[1]).unwrap();
    // The old id is stale for every use; the slot comes back empty under a new id.
    assert!(matches!(ctx.len(s[1]), Err(ModelError::StaleSlot { index: 1 })));
    assert!(matches!(ctx.release(s[1]), Err(ModelError::StaleSlot { .. })));
    assert!(matches!(ctx.push(s[1], &[4], Logits::Last), Err(ModelError::StaleSlot { .. })));
    let again = ctx.acquire().unwrap();
    assert_eq!(again.index(), 1);
    assert_ne!(again, s[1]);
    assert_eq!(ctx.len(again).unwrap(), 0);
    assert!(matches!(ctx.truncate(s[1], 0), Err(ModelError::StaleSlot { .. })));

    // A slot with tokens queued keeps them: it cannot be released, truncated or written over.
    ctx.push(s[2], &[5, 6], Logits::Last).unwrap();
    assert!(matches!(ctx.release(s[2]), Err(ModelError::SlotBusy { index: 2 })));
    assert!(matches!(ctx.truncate(s[2], 0), Err(ModelError::SlotBusy { index: 2 })));
    assert!(matches!(ctx.copy_prefix(s[0], s[2], 0), Err(ModelError::SlotBusy { index: 2 })));
    ctx.clear_batch();
    ctx.release(s[2]).unwrap();
    assert!(ctx.batch().is_empty());
}

#[test]
fn batches_and_logits_are_bounded_by_the_context() {
    let model = gemma(DType::F16);
    let mut ctx = context(&model, 2, 8, 2);
    let (a, b) = (ctx.acquire().unwrap(), ctx.acquire().unwrap());
    assert!(matches!(ctx.push(a, &tokens(9, 1), Logits::Last), Err(ModelError::BatchTooLarge { n: 9, max: 8 })));
    assert!(ctx.batch().is_empty(), "a refused push queues nothing");
    // Rows come back in queue order.
    assert_eq!(ctx.push(a, &[1, 2, 3], Logits::Last).unwrap(), 0..1);
    assert_eq!(ctx.push(b, &[4, 5], Logits::All).unwrap(), 1..3);
    assert!(matches!(ctx.forward(), Err(ModelError::TooManyLogits { n: 3, max: 2 })));
    assert_eq!((ctx.len(a).unwrap(), ctx.len(b).unwrap()), (0, 0), "a refused pass changes nothing");
    // The same batch into a buffer of the caller's.
    ctx.push(a, &[1, 2, 3], Logits::Last).unwrap();
    ctx.push(b, &[4, 5], Logits::All).unwrap();
    let mut out = vec![0.0; 3 * 300];
    ctx.forward_into(&mut out).unwrap();
    assert_eq!((ctx.len(a).unwrap(), ctx.len(b).unwrap()), (3, 2));
    // Positions run to the end of the context and no further.
    let mut full = context(&model, 1, 256, 1);
    let s = full.acquire().unwrap();
    full.push(s, &tokens(250, 2), Logits::None).unwrap();
    full.forward().unwrap();
    assert!(matches!(
        full.push(s, &tokens(7, 3), Logits::Last),
        Err(ModelError::ContextFull { n_ctx: 256, pos: 256, .. })
    ));
    full.push(s, &tokens(6, 3), Logits::Last).unwrap();
    full.forward().unwrap();
}

#[test]
fn truncated_slots_continue_as_if_never_extended() {
    let model = gemma(DType::Q8_0);
    let mut ctx = context(&model, 1, 8, 8);
    let s = ctx.acquire().unwrap();
    let t = tokens(12, 4);
    let all = run_chunks(&mut ctx, s, &t, 4);
    ctx.truncate(s, 6).unwrap();
    assert_eq!(ctx.len(s).unwrap(), 6);
    ctx.push(s, &t[6..], Logits::All).unwrap();
    assert_eq!(ctx.forward().unwrap(), &all[6 * 300..]);
    ctx.truncate(s, 100).unwrap(); // longer: nothing changes
    assert_eq!(ctx.len(s).unwrap(), 12);
}

#[test]
fn a_copied_prefix_continues_as_if_computed_twice() {
    let model = gemma(DType::Q8_0);
    // The prefix reaches past the window, so the rings have moved before the copy.
    let (prefix, x, y) = (tokens(100, 5), tokens(5, 6), tokens(7, 7));
    let continue_both = |ctx: &mut Context, a: Slot, b: Slot| {
        ctx.push(a, &x, Logits::All).unwrap();
        ctx.push(b, &y, Logits::All).unwrap();
        ctx.forward().unwrap().to_vec()
    };
    let mut twice = context(&model, 2, 16, 16);
    let (a, b) = (twice.acquire().unwrap(), twice.acquire().unwrap());
    run_chunks(&mut twice, a, &prefix, 8);
    run_chunks(&mut twice, b, &prefix, 8);
    let want = continue_both(&mut twice, a, b);

    let mut copied = context(&model, 3, 16, 16);
    let (a, _, b) = (copied.acquire().unwrap(), copied.acquire().unwrap(), copied.acquire().unwrap());
    run_chunks(&mut copied, a, &prefix, 8);
    assert!(copied.cache().oldest(a.index()) > 0, "the ring has dropped rows");
    copied.copy_prefix(a, b, prefix.len()).unwrap();
    assert_eq!(copied.len(b).unwrap(), prefix.len());
    assert_eq!(copied.kv_bytes_used(b).unwrap(), copied.kv_bytes_used(a).unwrap());
    assert_eq!(continue_both(&mut copied, a, b), want);

    // A shorter prefix copied from a longer sequence, continued, matches too.
    let mut short = context(&model, 2, 16, 16);
    let (a, b) = (short.acquire().unwrap(), short.acquire().unwrap());
    run_chunks(&mut short, a, &prefix, 8);
    run_chunks(&mut short, a, &x, 8);
    short.copy_prefix(a, b, prefix.len()).unwrap();
    short.push(b, &y, Logits::All).unwrap();
    assert_eq!(short.forward().unwrap(), &want[x.len() * 300..]);
    assert!(matches!(short.copy_prefix(a, b, 200), Err(ModelError::PrefixTooLong { n: 200, len: 105, .. })));
}

#[test]
fn rings_keep_the_window_and_give_the_bits_of_a_full_cache() {
    let model = gemma(DType::Q8_0);
    let t = tokens(192, 8);
    // One batch through a cache that keeps everything (the ring would be 16 + 192 rows, more
    // than the context).
    let mut one = context(&model, 1, 192, 192);
    assert_eq!(one.cache().ring_rows(), 256);
    let s = one.acquire().unwrap();
    let want = run_chunks(&mut one, s, &t, 192);

    // Chunks of 32 (the same GEMM path as one batch) through rings of 16 + 32 rows (rounded to
    // 64): the rows move every few chunks.
    let mut ring = context(&model, 1, 32, 32);
    assert_eq!(ring.cache().ring_rows(), 64);
    let s = ring.acquire().unwrap();
    assert_eq!(run_chunks(&mut ring, s, &t, 32), want, "chunked through a ring vs one batch");
    // Moved on by just the 32 rows each chunk needs, once the ring was full: the last
    // 64 positions held, 64 - 32 - 16 + 1 = 17 of them as history before the windows.
    assert_eq!(ring.cache().oldest(0), 192 - 64);
    // One global layer of 256 rows and five rings of 64, per K and V, in f16 of 2 * 64.
    assert_eq!(ring.kv_bytes_per_slot(), 2 * (256 + 5 * 64) * 128 * 2);
    assert!(one.kv_bytes_per_slot() == 2 * 6 * 256 * 128 * 2);

    // Decode steps (the one-token path) through a ring of 16 + 1 rows (rounded to 64)
    // against a full cache, token by token.
    let mut step_ring = context(&model, 1, 1, 1);
    let mut full = model.new_cache(Some(256), 1, KvType::F16);
    let mut scratch = model.new_scratch(1, &full);
    let s = step_ring.acquire().unwrap();
    let mut logits = vec![0.0; 300];
    for (p, &tok) in t.iter().take(150).enumerate() {
        let mut b = Batch::new();
        b.push(tok, p as u32, 0, true);
        model.forward(&b, &mut full, &mut scratch, &mut logits).unwrap();
        step_ring.push(s, &[tok], Logits::Last).unwrap();
        assert_eq!(step_ring.forward().unwrap(), &logits[..], "decode step at position {p}");
    }
}

#[test]
fn truncating_before_what_a_ring_holds_is_an_error() {
    let model = gemma(DType::F16);
    let mut ctx = context(&model, 2, 8, 8);
    let (a, b) = (ctx.acquire().unwrap(), ctx.acquire().unwrap());
    run_chunks(&mut ctx, a, &tokens(100, 9), 8);
    let oldest = ctx.cache().oldest(a.index());
    let min = ctx.min_prefix(a).unwrap();
    assert!(oldest > 0 && min == oldest + WINDOW - 1, "oldest {oldest}, min {min}");
    // Half the ring's spare rows stay as history: rejected drafts can be truncated away.
    assert!(100 - min >= 8, "only {} positions can be truncated away", 100 - min);
    let err = ctx.truncate(a, min - 1).unwrap_err();
    assert!(matches!(err, ModelError::PrefixEvicted { len, min_len, .. } if len == min - 1 && min_len == min), "{err}");
    assert!(matches!(ctx.copy_prefix(a, b, min - 1), Err(ModelError::PrefixEvicted { .. })));
    assert_eq!(ctx.len(a).unwrap(), 100, "a refused truncation changes nothing");
    ctx.truncate(a, min).unwrap();
    ctx.push(a, &[1], Logits::Last).unwrap();
    ctx.forward().unwrap();
    ctx.truncate(a, 0).unwrap();
    assert_eq!((ctx.len(a).unwrap(), ctx.cache().oldest(a.index())), (0, 0));

    // A raw batch rewriting a position whose window the ring no longer holds is refused.
    let mut cache = KvCache::windowed(model.config(), 256, 1, 8, KvType::F16);
    let mut scratch = model.new_scratch(8, &cache);
    let mut logits = vec![0.0; 300];
    for chunk in (0..100u32).collect::<Vec<_>>().chunks(8) {
        let mut batch = Batch::new();
        chunk.iter().for_each(|&p| batch.push(p % 300, p, 0, p == *chunk.last().unwrap()));
        model.forward(&batch, &mut cache, &mut scratch, &mut logits).unwrap();
    }
    let mut batch = Batch::new();
    batch.push(1, 10, 0, true);
    let err = model.forward(&batch, &mut cache, &mut scratch, &mut logits).unwrap_err();
    assert!(matches!(err, ModelError::WindowEvicted { seq: 0, pos: 10, .. }), "{err}");
    // A raw batch larger than the ring was sized for.
    let mut big = Batch::new();
    big.push_sequence(&tokens(8, 1), 100, 0, false);
    let mut scratch = model.new_scratch(64, &cache);
    big.push_sequence(&tokens(8, 1), 108, 0, false);
    big.push_sequence(&tokens(40, 1), 116, 0, false);
    let mut logits = vec![0.0; 3 * 300];
    let err = model.forward(&big, &mut cache, &mut scratch, &mut logits).unwrap_err();
    assert!(matches!(err, ModelError::RingOverflow { seq: 0, span: 71, rows: 64 }), "{err}");
    assert_eq!(cache.len(0), 100);
}
