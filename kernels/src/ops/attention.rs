//! Scaled dot-product attention of one query token over a run of cached keys and values.

use half::f16;

/// An element type the KV cache may store.
pub trait KvScalar: Copy + Send + Sync + bytemuck::Pod {
    /// Widen to f32.
    fn to_f32(self) -> f32;
    /// Narrow from f32 (round to nearest).
    fn from_f32(v: f32) -> Self;
}

impl KvScalar for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
}

impl KvScalar for f16 {
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
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
        let kv_off = (h / group) * head_dim;
        // As ggml multiplies an f16 cache with f32 activations, the f32 side (the query, then
        // the probabilities) is first rounded to the cache's type; `out` holds the rounded
        // query until the values are summed into it.
        let oh = &mut out[h * head_dim..(h + 1) * head_dim];
        for (o, &x) in oh.iter_mut().zip(qh) {
            *o = T::from_f32(x).to_f32();
        }
        for (j, s) in scores.iter_mut().enumerate() {
            let kj = &k[j * kv_dim + kv_off..j * kv_dim + kv_off + head_dim];
            let dot: f32 = oh.iter().zip(kj).map(|(a, b)| a * b.to_f32()).sum();
            *s = dot * scale;
        }
        if let Some(cap) = softcap {
            super::softcap(scores, cap);
        }
        super::softmax(scores);
        oh.fill(0.0);
        for (j, &p) in scores.iter().enumerate() {
            let p = T::from_f32(p).to_f32();
            let vj = &v[j * kv_dim + kv_off..j * kv_dim + kv_off + head_dim];
            for (o, x) in oh.iter_mut().zip(vj) {
                *o += p * x.to_f32();
            }
        }
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
