//! Dot products of float rows (`F32`, `F16`, `BF16`, each with itself): four 8-lane FMA
//! accumulators, then the tail one element at a time.
//!
//! The reference sums in f64 (as ggml's scalar path does); these sum in f32 over 32 lanes, as
//! ggml's SIMD `ggml_vec_dot_f16` does, so long rows differ from it by float rounding.

use super::{fp16, hsum_ps};
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Runs `$load(&chunk) -> __m256` over chunks of 8 of both rows with four accumulators, then
/// `$scalar(x) -> f32` over the tail; evaluates to the dot product.
macro_rules! dot_by_8 {
    ($w:expr, $a:expr, $load:ident, $scalar:expr) => {{
        let n = $w.len().min($a.len());
        let (w, a) = (&$w[..n], &$a[..n]);
        let (wc, wt) = w.as_chunks::<8>();
        let (ac, at) = a.as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (w4, w1) = wc.as_chunks::<4>();
        let (a4, a1) = ac.as_chunks::<4>();
        for (x, y) in w4.iter().zip(a4) {
            acc[0] = _mm256_fmadd_ps($load(&x[0]), $load(&y[0]), acc[0]);
            acc[1] = _mm256_fmadd_ps($load(&x[1]), $load(&y[1]), acc[1]);
            acc[2] = _mm256_fmadd_ps($load(&x[2]), $load(&y[2]), acc[2]);
            acc[3] = _mm256_fmadd_ps($load(&x[3]), $load(&y[3]), acc[3]);
        }
        for (x, y) in w1.iter().zip(a1) {
            acc[0] = _mm256_fmadd_ps($load(x), $load(y), acc[0]);
        }
        let mut tail = 0f32;
        for (&x, &y) in wt.iter().zip(at) {
            tail += $scalar(x) * $scalar(y);
        }
        hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail
    }};
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is 8 readable floats; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f16(x: &[f16; 8]) -> __m256 {
    // SAFETY: `x` is 16 readable bytes; `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
}

/// bf16 is the top half of an f32: widen and shift (keeps NaN payloads, as the reference).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_bf16(x: &[bf16; 8]) -> __m256 {
    // SAFETY: `x` is 16 readable bytes; `loadu` needs no alignment.
    let v = unsafe { _mm_loadu_si128(x.as_ptr().cast()) };
    _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)))
}

fn bf16_scalar(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// `F32 · F32`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_f32(w: &[f32], a: &[f32]) -> f32 {
    dot_by_8!(w, a, load_f32, |x: f32| x)
}

/// `F16 · F16`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_f16(w: &[f16], a: &[f16]) -> f32 {
    dot_by_8!(w, a, load_f16, fp16)
}

/// `BF16 · BF16`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_bf16(w: &[bf16], a: &[bf16]) -> f32 {
    dot_by_8!(w, a, load_bf16, bf16_scalar)
}
