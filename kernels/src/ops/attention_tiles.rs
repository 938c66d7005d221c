//! Tiled attention for long batches of query tokens.
//!
//! [`attend_batch`](super::attend_batch) hands batches of at least
//! [`TILED_MIN_TOKENS`](super::attention::TILED_MIN_TOKENS) tokens here. Consecutive query tokens whose
//! spans overlap go together in a query tile, with the query heads of one KV head; the key
//! rows their spans reach are walked in tiles small enough to stay in L1, so each key and value
//! row is read and widened once per query tile instead of once per token:
//!
//! 1. scores of every (token, head) row of the tile against each key tile, kept for the whole
//!    union of the spans (`[rows, union]`, about L2-sized);
//! 2. per row, on the slice of its own span's keys, the soft-cap, softmax and rounding to the
//!    cache type that the one-token path applies (the other keys get probability 0);
//! 3. `Σ p · v` per value tile, each output element's sum going on from tile to tile.
//!
//! Every step forms each (token, head)'s numbers with the same operations in the same order as
//! [`attend`](super::attend) does for that token alone, so the results are the same bits
//! whatever the batch. (An online softmax, which rescales a running sum instead of keeping the
//! scores, was tried first: it is within rounding of this, but the rounding of the
//! unnormalised probabilities to f16 moves the attention output by up to an f16 ulp, and with
//! 8-bit activations that flips roundings through the layers: Llama-type models with K-quant
//! weights then drift from llama.cpp by a mean KL of 2.5e-3 over 64 tokens, against 1.0e-3
//! with the exact softmax.)
//!
//! A value row a token does not see still enters its sums with probability 0, which adds
//! nothing unless the row holds an infinity or NaN.

use super::KvScalar;
use rayon::prelude::*;
use std::cell::RefCell;
use std::ops::Range;

/// Floats of one `[rows, head_dim]` buffer of a query tile (64 KiB).
const TILE_FLOATS: usize = 16 * 1024;
/// Most (token, head) rows in one query tile.
const MAX_ROWS: usize = 128;
/// Most key rows in one key tile.
const MAX_KEYS: usize = 128;
/// Floats of a query tile's scores (1 MiB, about an L2 cache).
const SCORE_FLOATS: usize = 256 * 1024;
/// Bytes of one key (or value) tile widened to f32: small enough to stay in L1 while every
/// row of the query tile passes over it.
const KEY_TILE_BYTES: usize = 16 * 1024;

/// How a batch is cut into work items.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Query heads of one KV head taken together (a divisor of the group).
    heads: usize,
    /// Query tokens per work item (split further where the spans do not overlap or their
    /// scores do not fit).
    tokens: usize,
    /// Key rows per tile.
    keys: usize,
}

impl Plan {
    /// The plan for a batch of `n_tokens` whose longest span is `longest`, or `None` if one
    /// token's head does not fit the buffers.
    fn new(n_tokens: usize, longest: usize, n_head: usize, n_head_kv: usize, head_dim: usize) -> Option<Self> {
        if head_dim == 0 || head_dim * 4 > KEY_TILE_BYTES {
            return None;
        }
        let group = n_head / n_head_kv;
        let heads = (1..=group).rev().find(|&d| {
            group.is_multiple_of(d) && d * head_dim <= TILE_FLOATS && d <= MAX_ROWS && d * longest <= SCORE_FLOATS
        })?;
        let cap = (TILE_FLOATS / (heads * head_dim)).min(MAX_ROWS / heads).max(1);
        // Enough work items for every thread to steal a few (items late in a causal prefill
        // cost more than early ones).
        let want = n_tokens.div_ceil(4 * rayon::current_num_threads()).max(1);
        let keys = (KEY_TILE_BYTES / (head_dim * 4)).min(MAX_KEYS);
        Some(Plan { heads, tokens: cap.min(want), keys })
    }
}

/// Whether [`attend_tiled`] can take these shapes, `longest` being the longest span.
pub(super) fn fits(longest: usize, n_head: usize, n_head_kv: usize, head_dim: usize) -> bool {
    Plan::new(1, longest, n_head, n_head_kv, head_dim).is_some()
}

/// [`attend_batch`](super::attend_batch) by tiles of query tokens and key rows; shapes as
/// there (`q`, `out`: `[n, n_head * head_dim]`; `k`, `v`: `[rows, n_head_kv * head_dim]`).
///
/// # Panics
/// If [`fits`] is false for the shapes, or a span runs past the cache.
#[allow(clippy::too_many_arguments)]
pub(super) fn attend_tiled<T: KvScalar>(
    q: &[f32],
    k: &[T],
    v: &[T],
    spans: &[Range<usize>],
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    scale: f32,
    softcap: Option<f32>,
    out: &mut [f32],
) {
    let longest = spans.iter().map(|s| s.len()).max().unwrap_or(0);
    let plan = Plan::new(spans.len(), longest, n_head, n_head_kv, head_dim).expect("head too big to tile");
    let qd = n_head * head_dim;
    let out = &mut out[..spans.len() * qd];
    let cx = Cx { k, v, n_head, n_head_kv, head_dim, scale, softcap, plan };
    out.par_chunks_mut(plan.tokens * qd).enumerate().for_each(|(i, o)| {
        let t0 = i * plan.tokens;
        WORK.with_borrow_mut(|w| {
            let mut a = t0;
            while a < t0 + o.len() / qd {
                let b = tile_end(spans, a, t0 + o.len() / qd, &plan);
                for h0 in (0..n_head).step_by(plan.heads) {
                    let o = &mut o[(a - t0) * qd..(b - t0) * qd];
                    query_tile(&cx, &q[a * qd..b * qd], &spans[a..b], h0, o, w);
                }
                a = b;
            }
        });
    });
}

/// Where the query tile that starts at token `a` (of a work item ending at `end`) ends: at
/// the first token whose span does not overlap the tile's keys so far, or whose scores would
/// not fit.
fn tile_end(spans: &[Range<usize>], a: usize, end: usize, plan: &Plan) -> usize {
    let mut keys: Option<Range<usize>> = None;
    for (t, s) in spans.iter().enumerate().take(end).skip(a) {
        if s.is_empty() {
            continue;
        }
        let u = match &keys {
            None => s.clone(),
            Some(u) if s.start < u.end && u.start < s.end => u.start.min(s.start)..u.end.max(s.end),
            Some(_) => return t,
        };
        if (t + 1 - a) * plan.heads * u.len() > SCORE_FLOATS {
            return t;
        }
        keys = Some(u);
    }
    end
}

/// What every work item of a batch reads.
struct Cx<'a, T> {
    /// `[rows, n_head_kv * head_dim]`: the cached keys.
    k: &'a [T],
    /// `[rows, n_head_kv * head_dim]`: the cached values.
    v: &'a [T],
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    scale: f32,
    softcap: Option<f32>,
    plan: Plan,
}

/// One thread's query-tile buffers. A row `r` is (token `r / heads`, head `r % heads`) of the
/// tile.
struct Work {
    /// `[rows, head_dim]`: the queries, rounded to the cache type.
    q: Vec<f32>,
    /// `[rows, head_dim]`: `Σ p · v` over the key tiles so far.
    acc: Vec<f32>,
    /// `[rows, keys]`: one key tile's scores or probabilities, as the kernels take them.
    tile: Vec<f32>,
    /// `[rows, union]`: the scores, then the probabilities, of the whole query tile over the
    /// union of its spans.
    p: Vec<f32>,
    /// `[keys, head_dim]`: a key or value tile of a narrower cache type, widened.
    kv: Vec<f32>,
}

thread_local! {
    /// Allocated on a thread's first tiled batch and kept (about 1.2 MiB).
    static WORK: RefCell<Work> = RefCell::new(Work {
        q: vec![0.0; TILE_FLOATS],
        acc: vec![0.0; TILE_FLOATS],
        tile: vec![0.0; MAX_ROWS * MAX_KEYS],
        p: vec![0.0; SCORE_FLOATS],
        kv: vec![0.0; KEY_TILE_BYTES / 4],
    });
}

/// Query heads `h0..h0 + plan.heads` (one KV head's) of the tokens of `q` (`[tokens, qd]`)
/// over their spans, into the same heads of `out` (`[tokens, qd]`).
fn query_tile<T: KvScalar>(
    cx: &Cx<'_, T>,
    q: &[f32],
    spans: &[Range<usize>],
    h0: usize,
    out: &mut [f32],
    w: &mut Work,
) {
    let (hd, gq, keys) = (cx.head_dim, cx.plan.heads, cx.plan.keys);
    let qd = cx.n_head * hd;
    let kv_dim = cx.n_head_kv * hd;
    let off = h0 / (cx.n_head / cx.n_head_kv) * hd;
    let rows = spans.len() * gq;
    let lo = spans.iter().filter(|s| !s.is_empty()).map(|s| s.start).min().unwrap_or(0);
    let hi = spans.iter().filter(|s| !s.is_empty()).map(|s| s.end).max().unwrap_or(lo);
    let union = hi - lo;
    let tiles = (lo..hi).step_by(keys).map(|a| a..(a + keys).min(hi));
    if union == 0 {
        for o in out.chunks_exact_mut(qd) {
            o[h0 * hd..][..gq * hd].fill(0.0);
        }
        return;
    }

    let qt = &mut w.q[..rows * hd];
    for (t, qrow) in qt.chunks_exact_mut(gq * hd).enumerate() {
        qrow.copy_from_slice(&q[t * qd + h0 * hd..][..gq * hd]);
    }
    T::round(qt);
    let p = &mut w.p[..rows * union];
    for ks in tiles.clone() {
        let (at, n) = (ks.start - lo, ks.len());
        let tile = &mut w.tile[..rows * n];
        let k = &cx.k[ks.start * kv_dim + off..];
        if narrow::<T>() {
            let kt = widen(k, kv_dim, n, hd, &mut w.kv);
            f32::scores(qt, kt, hd, n, cx.scale, tile);
        } else {
            T::scores(qt, k, kv_dim, n, cx.scale, tile);
        }
        for (pr, tr) in p.chunks_exact_mut(union).zip(tile.chunks_exact(n)) {
            pr[at..at + n].copy_from_slice(tr);
        }
    }
    // What `attend` does to one token's scores, on the same values: its keys' scores are a
    // slice of the row.
    let softmax = crate::cpu::kv_ops().softmax;
    for (r, pr) in p.chunks_exact_mut(union).enumerate() {
        let span = &spans[r / gq];
        let (s0, s1) = if span.is_empty() { (0, 0) } else { (span.start - lo, span.end - lo) };
        let (before, rest) = pr.split_at_mut(s0);
        let (seen, after) = rest.split_at_mut(s1 - s0);
        before.fill(0.0);
        after.fill(0.0);
        if !seen.is_empty() {
            if let Some(cap) = cx.softcap {
                super::softcap(seen, cap);
            }
            softmax(seen);
            T::round(seen);
        }
    }
    let acc = &mut w.acc[..rows * hd];
    acc.fill(0.0);
    for ks in tiles {
        let (at, n) = (ks.start - lo, ks.len());
        let tile = &mut w.tile[..rows * n];
        for (tr, pr) in tile.chunks_exact_mut(n).zip(p.chunks_exact(union)) {
            tr.copy_from_slice(&pr[at..at + n]);
        }
        let v = &cx.v[ks.start * kv_dim + off..];
        if narrow::<T>() {
            f32::mix_acc(tile, widen(v, kv_dim, n, hd, &mut w.kv), hd, n, acc);
        } else {
            T::mix_acc(tile, v, kv_dim, n, acc);
        }
    }
    for (o, a) in out.chunks_exact_mut(qd).zip(acc.chunks_exact(gq * hd)) {
        o[h0 * hd..][..gq * hd].copy_from_slice(a);
    }
}

/// Whether `T` is narrower than f32: its key and value tiles are then widened once per query
/// tile (the kernels would widen each row once per four query rows), which gives the same
/// numbers, as the kernels widen exactly.
fn narrow<T: KvScalar>() -> bool {
    std::mem::size_of::<T>() < std::mem::size_of::<f32>()
}

/// Rows `0..n` of `x` (row `j` at `x[j * stride..][..hd]`) widened into `buf`, as `[n, hd]`.
fn widen<'b, T: KvScalar>(x: &[T], stride: usize, n: usize, hd: usize, buf: &'b mut [f32]) -> &'b [f32] {
    let buf = &mut buf[..n * hd];
    for (j, row) in buf.chunks_exact_mut(hd).enumerate() {
        T::widen(&x[j * stride..][..hd], row);
    }
    buf
}
