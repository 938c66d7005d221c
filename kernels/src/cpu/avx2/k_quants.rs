//! Helpers of the k-quant dots (`canon.rs` for `Q4_K`, `Q5_K`, `Q6_K`; `k_small.rs` for
//! `Q2_K`, `Q3_K`), after `ggml_vec_dot_q{2,3,4,5,6}_K_q8_K` in `ggml-cpu/arch/x86/quants.c`:
//! unsigned quants times activations with `maddubs` (pairs below 2 * 63 * 128, so exact),
//! an offset subtracted as `maddubs(offset, y)` from the quants, never from `bsums`.

use super::ld256;
use std::arch::x86_64::*;

/// `0x10` in byte `i` where bit `b` of `qh[i]` is set: the fifth bits of one `Q5_K` sub-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn fifth_bits(qh: __m256i, b: usize) -> __m256i {
    let m = _mm256_set1_epi8((1u8 << b) as i8);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, m), m), _mm256_set1_epi8(0x10))
}

/// The 16 i16 `[s[a]; 8] ++ [s[a + 1]; 8]` from 16 signed scales: the scales of two
/// sub-blocks of 16 as `madd` wants them beside 32 products.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn scale_pair(scales: __m128i, a: usize) -> __m256i {
    const ONES: i64 = 0x0101_0101_0101_0101;
    let shuf = _mm_set_epi64x(ONES * (a as i64 + 1), ONES * a as i64);
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, shuf))
}

/// `Σ (q - off) * y * scale` over 32 elements (two sub-blocks of 16, scales as [`scale_pair`]
/// gives them) in 8 i32 lanes, `q` in `0..64`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_offset_scaled_32(q: __m256i, y: &[i8; 32], off: i8, scales: __m256i) -> __m256i {
    let y = ld256(y);
    let p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, y), _mm256_maddubs_epi16(_mm256_set1_epi8(off), y));
    _mm256_madd_epi16(p, scales)
}
