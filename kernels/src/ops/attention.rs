//! Scaled dot-product attention of query tokens over runs of cached keys and values.
//!
//! [`attend`] takes one query token; [`attend_batch`] takes a batch, each token with its own
//! run of cache rows (causal and sliding-window masks are the caller's choice of runs), and
//! spreads the (token, head) pairs over threads. Both take the query heads that share a KV
//! head together (grouped-query attention: each cache row is widened once for all of them)
//! through the multi-head `scores` and `mix` kernels of the chosen tier
//! ([`crate::cpu::kv_ops`]), which widen the cache elements on the fly; each head's numbers
//! are the same however the heads are grouped, so a token gets the same bits alone as in a
//! batch. Long batches (prefill) go by tiles of query tokens and key rows
//! ([`super::attention_tiles`]), which form the same numbers while reading each cache row once per tile
//! instead of once per token.

use super::attention_tiles;
use crate::cpu;
use half::f16;
use rayon::prelude::*;
use std::ops::Range;

/// An element type the KV cache may store.
pub trait KvScalar: Copy + Send + Sync + bytemuck::Pod {
    /// Widen to f32.
    fn to_f32(self) -> f32;
    /// Narrow from f32 (round to nearest).
    fn from_f32(v: f32) -> Self;
    /// `Σ q[i] · k[i]` over the common length, with the chosen tier's kernel.
    fn dot(q: &[f32], k: &[Self]) -> f32;
    /// `o[i] += p · v[i]` over the common length, with the chosen tier's kernel.
    fn axpy(o: &mut [f32], p: f32, v: &[Self]);
    /// Several heads' scores over a run of key rows, with the chosen tier's kernel (see
    /// [`kv_reference::scores`](super::kv_reference::scores)).
    fn scores(q: &[f32], k: &[Self], stride: usize, n: usize, scale: f32, out: &mut [f32]);
    /// Several heads' probability-weighted sums of a run of value rows, with the chosen tier's
    /// kernel (see [`kv_reference::mix`](super::kv_reference::mix)).
    fn mix(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32]);
    /// [`scores`](Self::scores), the same bits, for rows that come from memory (a decode
    /// step's cache): the tier's streamed kernel, which may ask for the `reach` elements of
    /// each row from the head's on ahead of its sums.
    fn scores_streamed(q: &[f32], k: &[Self], stride: usize, n: usize, scale: f32, out: &mut [f32], reach: usize);
    /// [`mix`](Self::mix), the same bits, for rows that come from memory: the tier's streamed
    /// kernel (`reach` as for the scores).
    fn mix_streamed(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32], reach: usize);
    /// [`mix`](Self::mix) adding to `out`, the sums going on from its values (see
    /// [`kv_reference::mix_acc`](super::kv_reference::mix_acc)).
    fn mix_acc(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32]);
    /// Rounds each value to this type and back (`x = from_f32(x).to_f32()`).
    fn round(x: &mut [f32]);
    /// `out[i] = x[i].to_f32()` over the common length.
    fn widen(x: &[Self], out: &mut [f32]);
}

impl KvScalar for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn dot(q: &[f32], k: &[Self]) -> f32 {
        (cpu::kv_ops().dot_f32)(q, k)
    }
    fn axpy(o: &mut [f32], p: f32, v: &[Self]) {
        (cpu::kv_ops().axpy_f32)(o, p, v)
    }
    fn scores(q: &[f32], k: &[Self], stride: usize, n: usize, scale: f32, out: &mut [f32]) {
        (cpu::kv_ops().scores_f32)(q, k, stride, n, scale, out)
    }
    fn mix(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32]) {
        (cpu::kv_ops().mix_f32)(p, v, stride, n, out)
    }
    fn mix_acc(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32]) {
        (cpu::kv_ops().mix_acc_f32)(p, v, stride, n, out)
    }
    fn scores_streamed(q: &[f32], k: &[Self], stride: usize, n: usize, scale: f32, out: &mut [f32], reach: usize) {
        (cpu::kv_ops().scores_streamed_f32)(q, k, stride, n, scale, out, reach)
    }
    fn mix_streamed(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32], reach: usize) {
        (cpu::kv_ops().mix_streamed_f32)(p, v, stride, n, out, reach)
    }
    fn round(_: &mut [f32]) {}
    fn widen(x: &[Self], out: &mut [f32]) {
        let n = x.len().min(out.len());
        out[..n].copy_from_slice(&x[..n]);
    }
}

impl KvScalar for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn dot(q: &[f32], k: &[Self]) -> f32 {
        (cpu::kv_ops().dot_f16)(q, k)
    }
    fn axpy(o: &mut [f32], p: f32, v: &[Self]) {
        (cpu::kv_ops().axpy_f16)(o, p, v)
    }
    fn scores(q: &[f32], k: &[Self], stride: usize, n: usize, scale: f32, out: &mut [f32]) {
        (cpu::kv_ops().scores_f16)(q, k, stride, n, scale, out)
    }
    fn mix(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32]) {
        (cpu::kv_ops().mix_f16)(p, v, stride, n, out)
    }
    fn mix_acc(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32]) {
        (cpu::kv_ops().mix_acc_f16)(p, v, stride, n, out)
    }
    fn scores_streamed(q: &[f32], k: &[Self], stride: usize, n: usize, scale: f32, out: &mut [f32], reach: usize) {
        (cpu::kv_ops().scores_streamed_f16)(q, k, stride, n, scale, out, reach)
    }
    fn mix_streamed(p: &[f32], v: &[Self], stride: usize, n: usize, out: &mut [f32], reach: usize) {
        (cpu::kv_ops().mix_streamed_f16)(p, v, stride, n, out, reach)
    }
    fn round(x: &mut [f32]) {
        (cpu::kv_ops().round_f16)(x)
    }
    fn widen(x: &[Self], out: &mut [f32]) {
        (cpu::kv_ops().widen_f16)(x, out)
    }
}

/// Attention for one query token.
///
/// - `q`: `[n_head, head_dim]`, already rotated and scaled is *not* assumed: `scale` is applied.
/// - `k`, `v`: `[n_kv, n_head_kv * head_dim]`, the visible cache rows (causal and
///   sliding-window masking are the caller's choice of which rows to pass).
/// - `out`: `[n_head, head_dim]`.
/// - `scores`: scratch of at least `n_kv` floats.
///
/// Grouped-query attention: query head `h` reads KV head `h / (n_head / n_head_kv)`.
/// `softcap`, if set, caps the scaled scores before the softmax (Gemma 2).
#[allow(clippy::too_many_arguments)]
pub fn attend<T: KvScalar>(
    q: &[f32],
    k: &[T],
    v: &[T],
    n_head: usize,
    n_head_kv: usize,
    head_dim: usize,
    scale: f32,
    softcap: Option<f32>,
    out: &mut [f32],
    scores: &mut [f32],
) {
    let kv_dim = n_head_kv * head_dim;
    let n_kv = k.len() / kv_dim;
    let group = n_head / n_head_kv;
    // The query heads of one KV head together, as many as the scores fit.
    let gp = (1..=group).rev().find(|&d| group.is_multiple_of(d) && d * n_kv.max(1) <= scores.len()).unwrap_or(1);
    for (i, (qh, oh)) in q.chunks_exact(gp * head_dim).zip(out.chunks_exact_mut(gp * head_dim)).enumerate() {
        let off = (i * gp / group) * head_dim;
        // The heads after this one come next, here: the rest of each row.
        let kv = Head { k, v, kv_dim, off, reach: kv_dim - off };
        attend_heads(qh, &kv, 0..n_kv, head_dim, scale, softcap, oh, scores);
    }
}

/// Attention for a batch of query tokens: token `t` attends to cache rows `spans[t]`.
///
/// - `q`: `[n, n_head * head_dim]`, `n = spans.len()`.
/// - `k`, `v`: `[rows, n_head_kv * head_dim]`, the cache, indexed by the spans.
/// - `out`: `[n, n_head * head_dim]`.
/// - `scores`: scratch of at least the longest span; the (token, head) pairs are split into
///   as many parallel runs as it holds longest spans (so give it a few per thread). The tiled
///   path of long batches does not use it: each thread keeps its own tiles (about 1.2 MiB,
///   allocated on its first long batch).
///
/// Each (token, head) gives what [`attend`] gives for that token over `k[spans[t]]`, bit for
/// bit. Batches of at least [`TILED_MIN_TOKENS`] tokens take the
/// tiled path of `ops/attention_tiles.rs` (each key and value row read once per tile of query tokens
/// rather than once per token), which forms the same numbers.
///
/// # Panics
/// If `scores` is shorter than a span, or a span runs past the cache.
#[allow(clippy::too_many_arguments)]
pub fn attend_batch<T: KvScalar>(
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
    scores: &mut [f32],
) {
    let kv_dim = n_head_kv * head_dim;
    let group = n_head / n_head_kv;
    let longest = spans.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    assert!(scores.len() >= longest, "attention scores: {} floats for a span of {longest}", scores.len());
    if spans.len() >= TILED_MIN_TOKENS && attention_tiles::fits(longest, n_head, n_head_kv, head_dim) {
        attention_tiles::attend_tiled(q, k, v, spans, n_head, n_head_kv, head_dim, scale, softcap, out);
        return;
    }
    // The query heads of one KV head go together (each cache row is widened once for all of
    // them), as many as the scores fit, unless that leaves fewer passes than threads.
    let heads = spans.len() * n_head;
    let threads = rayon::current_num_threads();
    let gp = (1..=group)
        .rev()
        .find(|&d| group.is_multiple_of(d) && d * longest <= scores.len() && (heads / d >= threads || d == 1))
        .unwrap_or(1);
    let items = heads / gp;
    let runs = (scores.len() / (gp * longest)).min(items).max(1);
    let per = items.div_ceil(runs);
    let out = &mut out[..heads * head_dim];
    let span = gp * head_dim;
    let per_token = n_head / gp;
    out.par_chunks_mut(per * span).zip(scores.par_chunks_mut(gp * longest)).enumerate().for_each(|(c, (o, sc))| {
        let end = c * per + o.len() / span;
        for (j, oh) in o.chunks_exact_mut(span).enumerate() {
            let i = c * per + j;
            let (t, h0) = (i * gp / n_head, i * gp % n_head);
            let qh = &q[i * span..][..span];
            // The KV heads this run takes next for the token, up to its last one here: the
            // part of each row to ask for (another thread's heads are its own to fetch).
            let last = (end.min((t + 1) * per_token) - 1) * gp % n_head;
            let (off, to) = ((h0 / group) * head_dim, (last / group + 1) * head_dim);
            let kv = Head { k, v, kv_dim, off, reach: to - off };
            attend_heads(qh, &kv, spans[t].clone(), head_dim, scale, softcap, oh, sc);
        }
    });
}

/// Batches from this many query tokens on take the tiled path (which gives every token the
/// bits it gets alone, as the per-token path does: the switch changes speed, not bits).
pub(super) const TILED_MIN_TOKENS: usize = 16;

/// One KV head's view of the cache: row `j`'s key is `k[j * kv_dim + off..][..head_dim]`; the
/// streamed kernels ask for elements `off..off + reach` of each row.
struct Head<'a, T> {
    k: &'a [T],
    v: &'a [T],
    kv_dim: usize,
    off: usize,
    reach: usize,
}

/// Query heads `qh` (`[gp, head_dim]`, all reading the KV head of `kv`) over cache rows
/// `rows`; `oh` is `[gp, head_dim]`, `scores` at least `gp * rows.len()`.
#[allow(clippy::too_many_arguments)]
fn attend_heads<T: KvScalar>(
    qh: &[f32],
    kv: &Head<'_, T>,
    rows: Range<usize>,
    head_dim: usize,
    scale: f32,
    softcap: Option<f32>,
    oh: &mut [f32],
    scores: &mut [f32],
) {
    let n = rows.len();
    if n == 0 {
        oh.fill(0.0);
        return;
    }
    let gp = oh.len() / head_dim;
    let scores = &mut scores[..gp * n];
    // As ggml multiplies an f16 cache with f32 activations, the f32 side (the query, then
    // the probabilities) is first rounded to the cache's type; `oh` holds the rounded query
    // until the values are summed into it.
    oh.copy_from_slice(qh);
    T::round(oh);
    let base = rows.start * kv.kv_dim + kv.off;
    // The rows come from memory (a decode step reads each cache row once, after the whole
    // model's weights have gone through the caches): the streamed kernels, which ask for
    // them ahead.
    T::scores_streamed(oh, &kv.k[base..], kv.kv_dim, n, scale, scores, kv.reach);
    let softmax = crate::cpu::kv_ops().softmax;
    for s in scores.chunks_exact_mut(n) {
        if let Some(cap) = softcap {
            super::softcap(s, cap);
        }
        softmax(s);
    }
    T::round(scores);
    T::mix_streamed(scores, &kv.v[base..], kv.kv_dim, n, oh, kv.reach);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_returns_its_value_and_equal_keys_average() {
        let q = [1.0f32, 0.0];
        let out = &mut [0.0f32; 2];
        attend::<f32>(&q, &[1.0, 0.0], &[3.0, 4.0], 1, 1, 2, 1.0, None, out, &mut [0.0; 1]);
        assert_eq!(out, &[3.0, 4.0]);
        attend::<f32>(&q, &[0.0, 1.0, 0.0, 1.0], &[2.0, 0.0, 4.0, 2.0], 1, 1, 2, 1.0, None, out, &mut [0.0; 2]);
        assert_eq!(out, &[3.0, 1.0]);
    }

    #[test]
    fn grouped_heads_share_kv() {
        // Two query heads, one KV head: both read the same value.
        let q = [1.0f32, 0.0, 0.0, 1.0];
        let out = &mut [0.0f32; 4];
        attend::<f16>(
            &q,
            &[f16::from_f32(1.0), f16::ZERO],
            &[f16::from_f32(5.0), f16::from_f32(6.0)],
            2,
            1,
            2,
            1.0,
            None,
            out,
            &mut [0.0; 1],
        );
        assert_eq!(out, &[5.0, 6.0, 5.0, 6.0]);
    }
}
