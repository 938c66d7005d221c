//! Dot products of the legacy blocks of 32 with their `Q8_0`/`Q8_1` activations, two blocks
//! to a 512-bit vector: each block's unsigned quants and activations are loaded as 256 bits,
//! joined, multiplied with `vpdpbusd`, and scaled by a vector holding each block's
//! `d_w * d_a` in its half.

use super::super::avx2::{fp16, ld256, nibbles_32};
use super::{dot_u8_i8_offset, join};
use crate::quant::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1};
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
                // The min terms in lanes 0 and 8 (zero for the `_0` types).
                let m =
                    _mm512_maskz_mov_ps(0x0101, _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(m0), _mm512_set1_ps(m1)));
                acc[k] = _mm512_add_ps(acc[k], _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), m));
                i += 2;
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]))
    }};
}

/// Runs over the blocks of one weight row two to a vector, decoding each pair once with
/// `$quants(&w[i]) -> (quants, d)` and multiplying it with the same blocks of four activation
/// rows; evaluates to the four `Σ d_w d_a Σ (quants - $off) * activations`. Each row's sum is
/// formed exactly as `block_pairs!` forms it (same accumulators, same operations, same order),
/// so a token gets the same bits whether it is in a batch or decoded alone.
macro_rules! block_pairs_x4 {
    ($w:expr, $a:expr, $off:expr, $quants:ident) => {{
        let (w, a) = ($w, $a);
        let n = w.len();
        let zero = _mm256_setzero_si256();
        let mut acc = [[_mm512_setzero_ps(); 2]; 4];
        let mut i = 0;
        while i < n {
            let k = (i / 2) % 2;
            let two = i + 1 < n;
            let (q0, d0) = $quants(&w[i]);
            let (q1, d1) = if two { $quants(&w[i + 1]) } else { (zero, 0.0) };
            let q = join(q0, q1);
            for (acc, a) in acc.iter_mut().zip(a) {
                let y1 = if two { ld256(&a[i + 1].qs) } else { zero };
                let e1 = if two { d1 * fp16(a[i + 1].d) } else { 0.0 };
                let sumi = dot_u8_i8_offset(q, join(ld256(&a[i].qs), y1), $off);
                let d = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(d0 * fp16(a[i].d)), _mm512_set1_ps(e1));
                acc[k] = _mm512_add_ps(acc[k], _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), _mm512_setzero_ps()));
            }
            i += 2;
        }
        acc.map(|[a0, a1]| _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)))
    }};
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn quants_q8_0(x: &BlockQ8_0) -> (__m256i, f32) {
    (_mm256_xor_si256(ld256(&x.qs), _mm256_set1_epi8(-128)), fp16(x.d))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn quants_q4_0(x: &BlockQ4_0) -> (__m256i, f32) {
    (nibbles_32(&x.qs), fp16(x.d))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn quants_q5_0(x: &BlockQ5_0) -> (__m256i, f32) {
    (quants_5bit(&x.qs, x.qh), fp16(x.d))
}

/// `Q8_0 · Q8_0` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q8_0(w: &[BlockQ8_0], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    block_pairs_x4!(w, a, 128, quants_q8_0)
}

/// `Q4_0 · Q8_0` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q4_0(w: &[BlockQ4_0], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    block_pairs_x4!(w, a, 8, quants_q4_0)
}

/// `Q5_0 · Q8_0` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q5_0(w: &[BlockQ5_0], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    block_pairs_x4!(w, a, 16, quants_q5_0)
}

/// A `Q8_0` block's quants plus 128 (`x ^ 0x80`), unsigned, for `vpdpbusd`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load_q8_0(x: &BlockQ8_0, y: &BlockQ8_0) -> (__m256i, __m256i, f32, f32) {
    (_mm256_xor_si256(ld256(&x.qs), _mm256_set1_epi8(-128)), ld256(&y.qs), fp16(x.d) * fp16(y.d), 0.0)
}

/// `Q8_0 · Q8_0`: `Σ (x + 128) y - 128 Σ y`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    block_pairs!(w, a, 128, load_q8_0)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load_q4_0(x: &BlockQ4_0, y: &BlockQ8_0) -> (__m256i, __m256i, f32, f32) {
    (nibbles_32(&x.qs), ld256(&y.qs), fp16(x.d) * fp16(y.d), 0.0)
}

/// `Q4_0 · Q8_0`: `Σ q y - 8 Σ y`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    block_pairs!(w, a, 8, load_q4_0)
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
fn load_q5_0(x: &BlockQ5_0, y: &BlockQ8_0) -> (__m256i, __m256i, f32, f32) {
    (quants_5bit(&x.qs, x.qh), ld256(&y.qs), fp16(x.d) * fp16(y.d), 0.0)
}

/// `Q5_0 · Q8_0`: `Σ q y - 16 Σ y`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    block_pairs!(w, a, 16, load_q5_0)
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
