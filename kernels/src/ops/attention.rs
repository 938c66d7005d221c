//! Scaled dot-product attention of query tokens over runs of cached keys and values.
//!
//! [`attend`] takes one query token; [`attend_batch`] takes a batch, each token with its own
//! run of cache rows (causal and sliding-window masks are the caller's choice of runs), and
//! spreads the (token, head) pairs over threads. Both go through the `q · k` and `p · v`
//! kernels of the chosen tier ([`crate::cpu::kv_ops`]), which widen the cache elements on
//! the fly.

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
    let scores = &mut scores[..n_kv];
    for h in 0..n_head {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let oh = &mut out[h * head_dim..(h + 1) * head_dim];
        let kv = Head { k, v, kv_dim, off: (h / group) * head_dim };
        attend_head(qh, &kv, 0..n_kv, scale, softcap, oh, scores);
    }
}

/// Attention for a batch of query tokens: token `t` attends to cache rows `spans[t]`.
///
/// - `q`: `[n, n_head * head_dim]`, `n = spans.len()`.
/// - `k`, `v`: `[rows, n_head_kv * head_dim]`, the cache, indexed by the spans.
/// - `out`: `[n, n_head * head_dim]`.
/// - `scores`: scratch of at least the longest span; the (token, head) pairs are split into
///   as many parallel runs as it holds longest spans (so give it a few per thread).
///
/// Each (token, head) gives what [`attend`] gives for that token over `k[spans[t]]`.
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
    let items = spans.len() * n_head;
    let longest = spans.iter().map(|s| s.len()).max().unwrap_or(0).max(1);
    assert!(scores.len() >= longest, "attention scores: {} floats for a span of {longest}", scores.len());
    let runs = (scores.len() / longest).min(items).max(1);
    let per = items.div_ceil(runs);
    let out = &mut out[..items * head_dim];
    out.par_chunks_mut(per * head_dim).zip(scores.par_chunks_mut(longest)).enumerate().for_each(|(c, (o, sc))| {
        for (j, oh) in o.chunks_exact_mut(head_dim).enumerate() {
            let i = c * per + j;
            let (t, h) = (i / n_head, i % n_head);
            let qh = &q[i * head_dim..(i + 1) * head_dim];
            let kv = Head { k, v, kv_dim, off: (h / group) * head_dim };
            attend_head(qh, &kv, spans[t].clone(), scale, softcap, oh, sc);
        }
    });
}

/// One KV head's view of the cache: row `j`'s key is `k[j * kv_dim + off..][..head_dim]`.
struct Head<'a, T> {
    k: &'a [T],
    v: &'a [T],
    kv_dim: usize,
    off: usize,
}

/// One query head over cache rows `rows`; `oh` is `[head_dim]`, `scores` at least `rows.len()`.
fn attend_head<T: KvScalar>(
    qh: &[f32],
    kv: &Head<'_, T>,
    rows: Range<usize>,
    scale: f32,
    softcap: Option<f32>,
    oh: &mut [f32],
    scores: &mut [f32],
) {
    let hd = qh.len();
    let scores = &mut scores[..rows.len()];
    // As ggml multiplies an f16 cache with f32 activations, the f32 side (the query, then
    // the probabilities) is first rounded to the cache's type; `oh` holds the rounded query
    // until the values are summed into it.
    for (o, &x) in oh.iter_mut().zip(qh) {
        *o = T::from_f32(x).to_f32();
    }
    for (s, j) in scores.iter_mut().zip(rows.clone()) {
        *s = T::dot(oh, &kv.k[j * kv.kv_dim + kv.off..][..hd]) * scale;
    }
    if let Some(cap) = softcap {
        super::softcap(scores, cap);
    }
    super::softmax(scores);
    oh.fill(0.0);
    for (&p, j) in scores.iter().zip(rows) {
        let p = T::from_f32(p).to_f32();
        T::axpy(oh, p, &kv.v[j * kv.kv_dim + kv.off..][..hd]);
    }
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
        attend::<f16>(&q, &[f16::from_f32(1.0), f16::ZERO], &[f16::from_f32(5.0), f16::from_f32(6.0)], 2, 1, 2, 1.0, None, out, &mut [0.0; 1]);
        assert_eq!(out, &[5.0, 6.0, 5.0, 6.0]);
    }
}
