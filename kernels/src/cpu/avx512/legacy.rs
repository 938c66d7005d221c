//! Dot products of `Q4_1` and `Q5_1` with their `Q8_1` activations, two blocks
//! to a 512-bit vector: each block's unsigned quants and activations are loaded as 256 bits,
//! joined, multiplied with `vpdpbusd`, and scaled by a vector holding each block's
//! `d_w * d_a` in its half.

use super::super::avx2::{fp16, ld256, nibbles_32};
use super::{dot_u8_i8_offset, join};
use crate::quant::{BlockQ4_1, BlockQ5_1, BlockQ8_1};
use std::arch::x86_64::*;

/// Runs `$load(&w[i], &a[i]) -> (quants, activations, d, m * s)` over the blocks two to a
/// vector, two vectors to a step (alternating accumulators, so that consecutive adds do not
/// wait on each other); missing blocks at the end are zeros, which add nothing. Evaluates to
/// `Σ d * Σ (quants - $off) * activations + Σ m * s`.
macro_rules! block_pairs {
    ($w:expr, $a:expr, $off:expr, $load:ident) => {{
        let (w, a) = ($w, $a);
        let n = w.len().min(a.len());
        let zero = (_mm256_setzero_si256(), _mm256_setzero_si256(), 0.0, 0.0);
        let block = |i: usize| if i < n { $load(&w[i], &a[i]) } else { zero };
        let mut acc = [_mm512_setzero_ps(); 2];
        let mut i = 0;
        while i < n {
            for k in 0..2 {
                let ((q0, y0, d0, m0), (q1, y1, d1, m1)) = (block(i), block(i + 1));
                let sumi = dot_u8_i8_offset(join(q0, q1), join(y0, y1), $off);
                let d = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0), _mm512_set1_ps(d1));
                // Types without a min term (`$off != 0`) fold the scaled sum into the
                // accumulator with one rounding.
                acc[k] = if $off != 0 {
                    _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc[k])
                } else {
                    // The min terms in lanes 0 and 8.
                    let m = _mm512_maskz_mov_ps(
                        0x0101,
                        _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(m0), _mm512_set1_ps(m1)),
                    );
                    _mm512_add_ps(acc[k], _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), m))
                };
                i += 2;
            }
        }
        hsum(_mm512_add_ps(acc[0], acc[1]))
    }};
}

/// The 32 quants of a 5-bit block: nibbles, with 16 added where `qh` has the bit (a masked
/// move does what `bytes_from_bits_32` does in five instructions).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn quants_5bit(qs: &[u8; 16], qh: [u8; 4]) -> __m256i {
    _mm256_or_si256(nibbles_32(qs), _mm256_maskz_mov_epi8(u32::from_le_bytes(qh), _mm256_set1_epi8(0x10)))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load_q4_1(x: &BlockQ4_1, y: &BlockQ8_1) -> (__m256i, __m256i, f32, f32) {
    (nibbles_32(&x.qs), ld256(&y.qs), fp16(x.d) * fp16(y.d), fp16(x.m) * fp16(y.s))
}

/// `Q4_1 · Q8_1`: `d_w d_a Σ q y + m_w s_a` per block.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_1(w: &[BlockQ4_1], a: &[BlockQ8_1]) -> f32 {
    block_pairs!(w, a, 0, load_q4_1)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load_q5_1(x: &BlockQ5_1, y: &BlockQ8_1) -> (__m256i, __m256i, f32, f32) {
    (quants_5bit(&x.qs, x.qh), ld256(&y.qs), fp16(x.d) * fp16(y.d), fp16(x.m) * fp16(y.s))
}

/// `Q5_1 · Q8_1`: as `Q4_1` with the fifth bits.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_1(w: &[BlockQ5_1], a: &[BlockQ8_1]) -> f32 {
    block_pairs!(w, a, 0, load_q5_1)
}

/// The sum of 16 lanes by halving: lanes `i + 8` onto `i`, then `i + 4`, `i + 2`, `i + 1`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let x = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    let x = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}
