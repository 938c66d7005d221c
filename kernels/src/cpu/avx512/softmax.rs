//! [`activation::softmax`] on 512-bit vectors, bit for bit: the same sixteen lanes (element
//! `i` in lane `i % 16`) for the maximum and the f64 sums, and [`activation::exp_neg`]'s
//! operations one for one (each multiply and add rounded on its own, as the scalar code is
//! compiled: Rust does not fuse them), so every probability is the portable function's.
//! A default build compiles the portable function for the baseline CPU, in 128-bit vectors:
//! there this made attention at head size 64 (`kernels/examples/prefill_attention.rs`, one
//! thread, Llama 1B's shape) 1.35× faster over a 512-token prompt and 1.4× for one token at
//! depth 512 (Gemma 3's shape, head size 256: 1.13×). With `-C target-cpu=native`, which
//! vectorises the portable function in 256 bits, the gain is 1–2%.

use crate::ops::activation::{self, exp_neg};
use std::arch::x86_64::*;

/// [`activation::exp_neg`] of sixteen lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn exp_neg16(x: __m512) -> __m512 {
    let c = |v: f32| _mm512_set1_ps(v);
    let (log2e, round) = (c(activation::EXP_LOG2E), c(activation::EXP_ROUND));
    let t = _mm512_add_ps(_mm512_mul_ps(x, log2e), round);
    let n = _mm512_sub_ps(t, round);
    let r = _mm512_sub_ps(
        _mm512_sub_ps(x, _mm512_mul_ps(n, c(activation::EXP_LN2_HI))),
        _mm512_mul_ps(n, c(activation::EXP_LN2_LO)),
    );
    // 1 + r (1 + r (1/2 + r (1/6 + r (1/24 + r (1/120 + r / 720))))), inside out.
    let mut p = c(1.0 / 720.0);
    for k in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm512_add_ps(c(k), _mm512_mul_ps(r, p));
    }
    let bias = _mm512_set1_epi32(127u32.wrapping_sub(activation::EXP_ROUND.to_bits()) as i32);
    let scale = _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_castps_si512(t), bias)));
    let low = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(x, c(activation::EXP_LOWEST));
    _mm512_maskz_mul_ps(!low, p, scale)
}

/// [`activation::softmax`], in place.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) fn softmax(x: &mut [f32]) {
    let (rows, rest) = x.as_chunks_mut::<16>();
    let mut top = _mm512_set1_ps(f32::NEG_INFINITY);
    for row in rows.iter() {
        // `max(v, m)` is `v > m ? v : m`: the portable fold's step, NaNs skipped.
        // SAFETY: `row` is 16 floats; `loadu` needs no alignment.
        top = _mm512_max_ps(unsafe { _mm512_loadu_ps(row.as_ptr()) }, top);
    }
    let mut lanes = [0f32; 16];
    // SAFETY: `lanes` is 16 floats; `storeu` needs no alignment.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), top) };
    let bigger = |m: f32, v: f32| if v > m { v } else { m };
    let max = rest.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| bigger(m, v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let m = _mm512_set1_ps(max);
    let (mut lo, mut hi) = (_mm512_setzero_pd(), _mm512_setzero_pd());
    for row in rows.iter_mut() {
        // SAFETY (both): `row` is 16 floats; `loadu`/`storeu` need no alignment.
        let e = exp_neg16(_mm512_sub_ps(unsafe { _mm512_loadu_ps(row.as_ptr()) }, m));
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), e) };
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(e)))));
    }
    let mut sums = [0f64; 16];
    // SAFETY: `sums` is 16 doubles; `storeu` needs no alignment.
    unsafe {
        _mm512_storeu_pd(sums.as_mut_ptr(), lo);
        _mm512_storeu_pd(sums.as_mut_ptr().add(8), hi);
    }
    let mut sum: f64 = sums.iter().sum();
    for v in rest.iter_mut() {
        *v = exp_neg(*v - max);
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    let s = _mm512_set1_ps(inv);
    for row in rows.iter_mut() {
        // SAFETY: `row` is 16 floats; `loadu`/`storeu` need no alignment.
        unsafe { _mm512_storeu_ps(row.as_mut_ptr(), _mm512_mul_ps(_mm512_loadu_ps(row.as_ptr()), s)) };
    }
    for v in rest {
        *v *= inv;
    }
}
