//! [`activation::softmax`] on 256-bit vectors, bit for bit, as the AVX-512 tier's
//! (`avx512/softmax.rs`) is on 512-bit ones: the portable function's sixteen lanes (element
//! `i` in lane `i % 16`) held in two vectors for the maximum and four for the f64 sums, and
//! [`activation::exp_neg`]'s operations one for one. A build for the baseline CPU (the
//! default) vectorises the portable function in 128 bits only.

use crate::ops::activation::{self, exp_neg};
use std::arch::x86_64::*;

/// [`activation::exp_neg`] of eight lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn exp_neg8(x: __m256) -> __m256 {
    let c = |v: f32| _mm256_set1_ps(v);
    let (log2e, round) = (c(activation::EXP_LOG2E), c(activation::EXP_ROUND));
    let t = _mm256_add_ps(_mm256_mul_ps(x, log2e), round);
    let n = _mm256_sub_ps(t, round);
    let r = _mm256_sub_ps(
        _mm256_sub_ps(x, _mm256_mul_ps(n, c(activation::EXP_LN2_HI))),
        _mm256_mul_ps(n, c(activation::EXP_LN2_LO)),
    );
    // 1 + r (1 + r (1/2 + r (1/6 + r (1/24 + r (1/120 + r / 720))))), inside out.
    let mut p = c(1.0 / 720.0);
    for k in [1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = _mm256_add_ps(c(k), _mm256_mul_ps(r, p));
    }
    let bias = _mm256_set1_epi32(127u32.wrapping_sub(activation::EXP_ROUND.to_bits()) as i32);
    let scale = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_castps_si256(t), bias)));
    // Lanes below the range give +0, as the portable `if`.
    let low = _mm256_cmp_ps::<_CMP_LT_OQ>(x, c(activation::EXP_LOWEST));
    _mm256_andnot_ps(low, _mm256_mul_ps(p, scale))
}

/// [`activation::softmax`], in place.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn softmax(x: &mut [f32]) {
    let (rows, rest) = x.as_chunks_mut::<16>();
    // SAFETY: a row is 16 floats, half `h < 2` of it 8; `loadu` needs no alignment.
    let ld = |row: &[f32; 16], h: usize| unsafe { _mm256_loadu_ps(row.as_ptr().add(8 * h)) };
    let mut top = [_mm256_set1_ps(f32::NEG_INFINITY); 2];
    for row in rows.iter() {
        for (h, t) in top.iter_mut().enumerate() {
            // `max(v, m)` is `v > m ? v : m`: the portable fold's step, NaNs skipped.
            *t = _mm256_max_ps(ld(row, h), *t);
        }
    }
    let mut lanes = [0f32; 16];
    // SAFETY: `lanes` is 16 floats; `storeu` needs no alignment.
    unsafe {
        _mm256_storeu_ps(lanes.as_mut_ptr(), top[0]);
        _mm256_storeu_ps(lanes.as_mut_ptr().add(8), top[1]);
    }
    let bigger = |m: f32, v: f32| if v > m { v } else { m };
    let max = rest.iter().chain(&lanes).fold(f32::NEG_INFINITY, |m, &v| bigger(m, v));
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let m = _mm256_set1_ps(max);
    // Lanes 4q..4q + 4 of the sixteen.
    let mut sums = [_mm256_setzero_pd(); 4];
    for row in rows.iter_mut() {
        for h in 0..2 {
            let e = exp_neg8(_mm256_sub_ps(ld(row, h), m));
            // SAFETY: half `h < 2` of the 16-float row is 8 floats; `storeu` needs no alignment.
            unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(8 * h), e) };
            sums[2 * h] = _mm256_add_pd(sums[2 * h], _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
            sums[2 * h + 1] = _mm256_add_pd(sums[2 * h + 1], _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(e)));
        }
    }
    let mut lanes = [0f64; 16];
    for (q, s) in sums.iter().enumerate() {
        // SAFETY: lanes `4q..4q + 4` of the 16 doubles, `q < 4`; `storeu` needs no alignment.
        unsafe { _mm256_storeu_pd(lanes.as_mut_ptr().add(4 * q), *s) };
    }
    let mut sum: f64 = lanes.iter().sum();
    for v in rest.iter_mut() {
        *v = exp_neg(*v - max);
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    let s = _mm256_set1_ps(inv);
    for row in rows.iter_mut() {
        for h in 0..2 {
            let v = _mm256_mul_ps(ld(row, h), s);
            // SAFETY: as for the stores above.
            unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(8 * h), v) };
        }
    }
    for v in rest {
        *v *= inv;
    }
}
