//! Dot products of `Q4_K`, `Q5_K` and `Q6_K` with `Q8_K` activations (after
//! `ggml_vec_dot_q{4,5,6}_K_q8_K` in `ggml-cpu/arch/x86/quants.c`).
//!
//! Per super-block: unsigned quants times activations with `maddubs` (pairs below
//! 2 * 63 * 128, so exact), times the sub-block scale with `madd`, summed in 8 i32 lanes;
//! then one float FMA by `d_w * d_a`. The mins of `Q4_K`/`Q5_K` meet the activations through
//! `bsums`, exactly as the reference does; `Q6_K` subtracts its offset of 32 from the quants
//! themselves (`maddubs(32, y)`), never from `bsums`, which the reference does not read.

use super::{bsums_dot_mins_k4, fp16, hsum_ps, ld128, ld256, scales_mins_k4};
use crate::quant::{BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K};
use std::arch::x86_64::*;

/// `Σ q * y * scale` over 32 elements in 8 i32 lanes, one scale for all 32, `q` in `0..32`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_scaled_32(q: __m256i, y: &[i8; 32], scale: u8) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, ld256(y)), _mm256_set1_epi16(i16::from(scale)))
}

/// `0x10` in byte `i` where bit `b` of `qh[i]` is set: the fifth bits of one `Q5_K` sub-block.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fifth_bits(qh: __m256i, b: usize) -> __m256i {
    let m = _mm256_set1_epi8((1u8 << b) as i8);
    _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, m), m), _mm256_set1_epi8(0x10))
}

/// The shared body of `Q4_K` and `Q5_K`: `high(j)` gives the fifth bits of sub-block `j`
/// (zero for `Q4_K`). Returns `Σ d * products - Σ dmin * mins`.
macro_rules! scale_min_k4_dot {
    ($w:expr, $a:expr, |$x:ident, $j:ident| $high:expr) => {{
        let m4 = _mm256_set1_epi8(0x0f);
        let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for ($x, y) in $w.iter().zip($a) {
            let sm = scales_mins_k4(&$x.scales);
            let mins = _mm_srli_si128::<8>(ld128(&sm));
            let summs = _mm256_cvtepi32_ps(bsums_dot_mins_k4(&y.bsums, mins));
            acc_m = _mm256_fmadd_ps(_mm256_set1_ps(fp16($x.dmin) * y.d), summs, acc_m);
            let q8 = y.qs.as_chunks::<32>().0;
            let mut sumi = _mm256_setzero_si256();
            for (k, q4) in $x.qs.as_chunks::<32>().0.iter().enumerate() {
                let bits = ld256(q4);
                let ($j, lo) = (2 * k, _mm256_and_si256(bits, m4));
                let lo = _mm256_or_si256(lo, $high);
                let ($j, hi) = (2 * k + 1, _mm256_and_si256(_mm256_srli_epi16::<4>(bits), m4));
                let hi = _mm256_or_si256(hi, $high);
                let p = _mm256_add_epi32(
                    dot_scaled_32(lo, &q8[2 * k], sm[2 * k]),
                    dot_scaled_32(hi, &q8[2 * k + 1], sm[2 * k + 1]),
                );
                sumi = _mm256_add_epi32(sumi, p);
            }
            acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16($x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
        }
        hsum_ps(acc) - hsum_ps(acc_m)
    }};
}

/// `Q4_K · Q8_K`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    scale_min_k4_dot!(w, a, |x, j| {
        let _ = (x, j);
        _mm256_setzero_si256()
    })
}

/// `Q5_K · Q8_K`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    scale_min_k4_dot!(w, a, |x, j| fifth_bits(ld256(&x.qh), j))
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

/// `Q6_K · Q8_K`. Per half of 128: quarter `k` has its low nibbles in `ql[32 * (k % 2)..]`
/// (`k < 2`: low nibble, else high) and its top bits at bits `2k..2k+2` of `qh`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let mask = |m: u8| _mm256_set1_epi8(m as i8);
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let scales = ld128(&x.scales);
        let ql = x.ql.as_chunks::<32>().0;
        let qh = x.qh.as_chunks::<32>().0;
        let q8 = y.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for h in 0..2 {
            let (lo, hi, top) = (ld256(&ql[2 * h]), ld256(&ql[2 * h + 1]), ld256(&qh[h]));
            // Masking before each shift keeps bits from crossing into the neighbouring byte.
            let q = [
                _mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(top, mask(0x03)))),
                _mm256_or_si256(_mm256_and_si256(hi, m4), _mm256_slli_epi16::<2>(_mm256_and_si256(top, mask(0x0c)))),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(lo), m4), _mm256_and_si256(top, mask(0x30))),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(hi), m4),
                    _mm256_srli_epi16::<2>(_mm256_and_si256(top, mask(0xc0))),
                ),
            ];
            for (k, q) in q.into_iter().enumerate() {
                let p = dot_offset_scaled_32(q, &q8[4 * h + k], 32, scale_pair(scales, 8 * h + 2 * k));
                sumi = _mm256_add_epi32(sumi, p);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}
