//! Dot products of the legacy blocks of 32 this tier has no GEMM for (`Q4_1`, `Q5_1`) with
//! their `Q8_1` activations: one block's exact integer sum in 8 i32 lanes, converted and
//! scaled by `d_w * d_a` into one of two float accumulators (after
//! `ggml_vec_dot_q{4,5}_1_q8_1` in `ggml-cpu/arch/x86/quants.c`). Every batch of these types
//! goes through the same `dot`, so they are batch invariant as they are; `Q4_0`, `Q5_0` and
//! `Q8_0` are in `canon.rs`, in the GEMM's order.

use super::{dot_u8_i8_offset, fifth_bits_32, fp16, hsum_ps, ld256, nibbles_32};
use crate::quant::{BlockQ4_1, BlockQ5_1, BlockQ8_1};
use std::arch::x86_64::*;

/// Runs `$blk(&w[i], &a[i], acc) -> acc` over the blocks, alternating two accumulators so that
/// consecutive FMAs do not wait on each other; evaluates to their sum.
macro_rules! two_acc {
    ($w:expr, $a:expr, $blk:ident) => {{
        let (w, a) = ($w, $a);
        let n = w.len().min(a.len());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 1 < n {
            acc0 = $blk(&w[i], &a[i], acc0);
            acc1 = $blk(&w[i + 1], &a[i + 1], acc1);
            i += 2;
        }
        if i < n {
            acc0 = $blk(&w[i], &a[i], acc0);
        }
        _mm256_add_ps(acc0, acc1)
    }};
}

/// `Σ x * y` of two signed byte vectors in 8 i32 lanes, exact: widened to i16, then `madd`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_i8_i8(x: __m256i, y: __m256i) -> __m256i {
    let lo = _mm256_madd_epi16(
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(x)),
        _mm256_cvtepi8_epi16(_mm256_castsi256_si128(y)),
    );
    let hi = _mm256_madd_epi16(
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(x)),
        _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(y)),
    );
    _mm256_add_epi32(lo, hi)
}

/// `d * sumi + m * s`: the `_1` types' block in lanes, the min term in lane 0. The FMA does
/// not wait on the accumulator; only the add that follows does.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scale_add_min(d: f32, sumi: __m256i, ms: f32, acc: __m256) -> __m256 {
    let t = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), _mm256_zextps128_ps256(_mm_set_ss(ms)));
    _mm256_add_ps(acc, t)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_q4_1(x: &BlockQ4_1, y: &BlockQ8_1, acc: __m256) -> __m256 {
    let sumi = dot_u8_i8_offset(nibbles_32(&x.qs), ld256(&y.qs), 0);
    scale_add_min(fp16(x.d) * fp16(y.d), sumi, fp16(x.m) * fp16(y.s), acc)
}

/// `Q4_1 · Q8_1`: `d_w d_a Σ q y + m_w s_a` per block.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    hsum_ps(two_acc!(w, a, block_q4_1))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn block_q5_1(x: &BlockQ5_1, y: &BlockQ8_1, acc: __m256) -> __m256 {
    let q = _mm256_or_si256(nibbles_32(&x.qs), fifth_bits_32(x.qh));
    scale_add_min(fp16(x.d) * fp16(y.d), dot_u8_i8_offset(q, ld256(&y.qs), 0), fp16(x.m) * fp16(y.s), acc)
}

/// `Q5_1 · Q8_1`: as `Q4_1` with the fifth bits.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    hsum_ps(two_acc!(w, a, block_q5_1))
}
