//! The reference kernels of attention over a KV cache (the scalar tier of
//! [`crate::cpu::KvOps`]): plain loops, summed in order.
//!
//! ```
//! use pupil_kernels::ops::kv_reference;
//! assert_eq!(kv_reference::dot(&[1.0, 2.0], &[3.0f32, 4.0]), 11.0);
//! ```

use super::KvScalar;

/// `Σ q[i] · k[i]` over the common length.
pub fn dot<T: KvScalar>(q: &[f32], k: &[T]) -> f32 {
    q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum()
}

/// `o[i] += p · v[i]` over the common length.
pub fn axpy<T: KvScalar>(o: &mut [f32], p: f32, v: &[T]) {
    for (o, x) in o.iter_mut().zip(v) {
        *o += p * x.to_f32();
    }
}

/// Scores of several query heads against a run of cache rows: with `gp = out.len() / n`
/// heads of `hd = q.len() / gp` elements, `out[g * n + j] = scale · q_g · k_j`, where row `j`'s
/// key is `k[j * stride..][..hd]`.
pub fn scores<T: KvScalar>(q: &[f32], k: &[T], stride: usize, n: usize, scale: f32, out: &mut [f32]) {
    if n == 0 {
        return;
    }
    let gp = out.len() / n;
    let hd = q.len() / gp.max(1);
    for (qg, og) in q.chunks_exact(hd.max(1)).zip(out.chunks_exact_mut(n)) {
        for (j, o) in og.iter_mut().enumerate() {
            *o = dot(qg, &k[j * stride..][..hd]) * scale;
        }
    }
}

/// Probability-weighted sums of a run of cache rows for several heads: with `gp = p.len() / n`
/// heads of `hd = out.len() / gp` elements, `out_g = Σ_j p[g * n + j] · v_j` (overwriting
/// `out`), row `j`'s value being `v[j * stride..][..hd]`.
pub fn mix<T: KvScalar>(p: &[f32], v: &[T], stride: usize, n: usize, out: &mut [f32]) {
    out.fill(0.0);
    mix_acc(p, v, stride, n, out);
}

/// [`mix`] adding to `out` instead of overwriting it: the sums go on from `out`'s values, so
/// mixing rows `0..a` then `a..n` gives what mixing `0..n` at once gives, bit for bit.
pub fn mix_acc<T: KvScalar>(p: &[f32], v: &[T], stride: usize, n: usize, out: &mut [f32]) {
    if n == 0 {
        return;
    }
    let gp = p.len() / n;
    let hd = out.len() / gp.max(1);
    for (pg, og) in p.chunks_exact(n).zip(out.chunks_exact_mut(hd.max(1))) {
        for (j, &pj) in pg.iter().enumerate() {
            axpy(og, pj, &v[j * stride..][..hd]);
        }
    }
}

/// `out[i] = x[i]` widened to f32, over the common length.
pub fn widen_f16(x: &[half::f16], out: &mut [f32]) {
    for (o, v) in out.iter_mut().zip(x) {
        *o = v.to_f32();
    }
}

/// Rounds each value to f16 and back.
pub fn round_f16(x: &mut [f32]) {
    for v in x {
        *v = half::f16::from_f32(*v).to_f32();
    }
}
