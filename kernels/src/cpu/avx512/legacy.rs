//! Dot products of the legacy blocks of 32 with their `Q8_0`/`Q8_1` activations, two blocks
//! to a 512-bit vector: each block's unsigned quants and activations are loaded as 256 bits,
//! joined, multiplied with `vpdpbusd`, and scaled by a vector holding each block's
//! `d_w * d_a` in its half.

use super::super::avx2::{fp16, ld128, ld256, nibbles_32};
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
/// `$pair(&w[i], &w[i + 1]) -> quants` (`$quants(&w[i]).0` for an odd last block) and
/// multiplying it with the same blocks of four activation rows; evaluates to the four
/// `Σ d_w d_a Σ (quants - $off) * activations`. Each row's sum is formed exactly as
/// `block_pairs!` forms it (same integer sums, same float operations, same order; `d_w d_a`
/// as a vector product gives the same floats as the scalar one), so a token gets the same bits
/// whether it is in a batch or decoded alone.
macro_rules! block_pairs_x4 {
    ($w:expr, $a:expr, $off:expr, $pair:ident, $quants:ident) => {{
        let (w, [a0, a1, a2, a3]) = ($w, $a);
        let n = w.len();
        let zero = _mm256_setzero_si256();
        // The pair at block `i`: its quants, and its weight scales as a vector (`d_w d_a` is
        // then one vector product per row, the same floats as the scalar products of `dot`).
        let decode = |i: usize| {
            if i + 1 < n {
                ($pair(&w[i], &w[i + 1]), scales_pair(w[i].d, w[i + 1].d))
            } else {
                (join($quants(&w[i]).0, zero), scales_pair(w[i].d, half::f16::ZERO))
            }
        };
        // Accumulators `s{row}{k}`, as named variables so that they stay in registers.
        let [mut s00, mut s01, mut s10, mut s11, mut s20, mut s21, mut s30, mut s31] = [_mm512_setzero_ps(); 8];
        let mut i = 0;
        while i < n {
            let (q, dw) = decode(i);
            s00 = _mm512_add_ps(s00, term_x4(q, dw, a0, i, $off));
            s10 = _mm512_add_ps(s10, term_x4(q, dw, a1, i, $off));
            s20 = _mm512_add_ps(s20, term_x4(q, dw, a2, i, $off));
            s30 = _mm512_add_ps(s30, term_x4(q, dw, a3, i, $off));
            if i + 2 < n {
                let (q, dw) = decode(i + 2);
                s01 = _mm512_add_ps(s01, term_x4(q, dw, a0, i + 2, $off));
                s11 = _mm512_add_ps(s11, term_x4(q, dw, a1, i + 2, $off));
                s21 = _mm512_add_ps(s21, term_x4(q, dw, a2, i + 2, $off));
                s31 = _mm512_add_ps(s31, term_x4(q, dw, a3, i + 2, $off));
            }
            i += 4;
        }
        [(s00, s01), (s10, s11), (s20, s21), (s30, s31)].map(|(x, y)| _mm512_reduce_add_ps(_mm512_add_ps(x, y)))
    }};
}

/// One activation row's term for the weight pair at block `i` (quants `q`, scales `dw`):
/// `d_w d_a Σ (q - off) y` in 16 lanes, as `block_pairs!` forms it (a missing second block
/// is zeros).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn term_x4(q: __m512i, dw: __m512, a: &[BlockQ8_0], i: usize, off: u8) -> __m512 {
    let two = i + 1 < a.len();
    let (y1, e1) = if two { (ld256(&a[i + 1].qs), a[i + 1].d) } else { (_mm256_setzero_si256(), half::f16::ZERO) };
    let sumi = dot_u8_i8_offset(q, join(ld256(&a[i].qs), y1), off);
    let d = _mm512_mul_ps(dw, scales_pair(a[i].d, e1));
    _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), _mm512_setzero_ps())
}

/// Two `Q8_0` blocks' quants plus 128, as `join(quants_q8_0(..), quants_q8_0(..))`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_q8_0(x0: &BlockQ8_0, x1: &BlockQ8_0) -> __m512i {
    _mm512_xor_si512(join(ld256(&x0.qs), ld256(&x1.qs)), _mm512_set1_epi8(-128))
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
    block_pairs_x4!(w, a, 128, pair_q8_0, quants_q8_0)
}

/// `Q4_0 · Q8_0` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q4_0(w: &[BlockQ4_0], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    block_pairs_x4!(w, a, 8, pair_q4_0, quants_q4_0)
}

/// `Q5_0 · Q8_0` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q5_0(w: &[BlockQ5_0], a: [&[BlockQ8_0]; 4]) -> [f32; 4] {
    block_pairs_x4!(w, a, 16, pair_q5_0, quants_q5_0)
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

/// The most activation block pairs the `rows_*` kernels prepare (rows of up to 4096 values);
/// longer rows loop over `dot`.
const ROWS_MAX_PAIRS: usize = 64;

/// Two weight scales as the scale vector of a block pair: `d0` in lanes 0–7, `d1` in 8–15
/// (the same floats `fp16` gives, converted together).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scales_pair(d0: half::f16, d1: half::f16) -> __m512 {
    let h = _mm_cvtsi32_si128((d0.to_bits() as u32 | (d1.to_bits() as u32) << 16) as i32);
    let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_cvtph_ps(h)))
}

/// Two 4-bit blocks' nibbles as `join(nibbles_32(qs0), nibbles_32(qs1))` gives them: both
/// blocks' bytes shifted and masked at once, then the 128-bit lanes put in block order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn nibbles_pair(qs0: &[u8; 16], qs1: &[u8; 16]) -> __m512i {
    let v = _mm256_set_m128i(ld128(qs1), ld128(qs0));
    let x = _mm512_and_si512(join(v, _mm256_srli_epi16::<4>(v)), _mm512_set1_epi8(0x0f));
    // Lanes [lo0, lo1, hi0, hi1] to [lo0, hi0, lo1, hi1].
    _mm512_shuffle_i64x2::<0xd8>(x, x)
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_q4_0(x0: &BlockQ4_0, x1: &BlockQ4_0) -> __m512i {
    nibbles_pair(&x0.qs, &x1.qs)
}

/// Two `Q5_0` blocks' quants as `join(quants_5bit(..), quants_5bit(..))` gives them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_q5_0(x0: &BlockQ5_0, x1: &BlockQ5_0) -> __m512i {
    let bits = u32::from_le_bytes(x0.qh) as u64 | (u32::from_le_bytes(x1.qh) as u64) << 32;
    _mm512_or_si512(nibbles_pair(&x0.qs, &x1.qs), _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10)))
}

/// Consecutive weight rows against one activation row, each output formed exactly as
/// `block_pairs!` forms that row's `dot` (same integer sums, same float operations in the same
/// order), with what depends on the activations only prepared once per call: the joined
/// activation pairs, their offset sums `dpbusd($off, y)`, their scales. `$pair` decodes two
/// weight blocks at once, `$quants` one (an odd last block), `$dot` is the tier's `dot`.
macro_rules! rows_0 {
    ($w:expr, $a:expr, $out:expr, $off:expr, $pair:ident, $quants:ident, $dot:ident) => {{
        let (w, a, out): (&[_], &[BlockQ8_0], &mut [f32]) = ($w, $a, $out);
        let nb = a.len();
        let pairs = nb.div_ceil(2);
        if pairs > ROWS_MAX_PAIRS {
            for (r, o) in out.iter_mut().enumerate() {
                // SAFETY: same features as this kernel; the row holds `nb` blocks, as `a` does.
                *o = unsafe { $dot(&w[r * nb..(r + 1) * nb], a) };
            }
        } else {
            let zero = _mm256_setzero_si256();
            let mut ys = [_mm512_setzero_si512(); ROWS_MAX_PAIRS];
            let mut offs = [_mm512_setzero_si512(); ROWS_MAX_PAIRS];
            let mut das = [_mm512_setzero_ps(); ROWS_MAX_PAIRS];
            for p in 0..pairs {
                let i = 2 * p;
                let two = i + 1 < nb;
                let y = join(ld256(&a[i].qs), if two { ld256(&a[i + 1].qs) } else { zero });
                ys[p] = y;
                offs[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8($off as u8 as i8), y);
                let d1 = if two { fp16(a[i + 1].d) } else { 0.0 };
                das[p] = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(fp16(a[i].d)), _mm512_set1_ps(d1));
            }
            let full = nb / 2;
            for (r, o) in out.iter_mut().enumerate() {
                let w = &w[r * nb..(r + 1) * nb];
                let term = |p: usize| {
                    let i = 2 * p;
                    let (q, dw) = if p < full {
                        ($pair(&w[i], &w[i + 1]), scales_pair(w[i].d, w[i + 1].d))
                    } else {
                        (join($quants(&w[i]).0, zero), scales_pair(w[i].d, half::f16::ZERO))
                    };
                    let sumi = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, ys[p]), offs[p]);
                    let d = _mm512_mul_ps(dw, das[p]);
                    _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), _mm512_setzero_ps())
                };
                // Two pairs a step, into two named accumulators (kept in registers).
                let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                let mut p = 0;
                while p < pairs {
                    acc0 = _mm512_add_ps(acc0, term(p));
                    if p + 1 < pairs {
                        acc1 = _mm512_add_ps(acc1, term(p + 1));
                    }
                    p += 2;
                }
                *o = _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
            }
        }
    }};
}

/// `Q4_0` rows against one activation row; each output bit for bit [`dot_q4_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0], out: &mut [f32]) {
    rows_0!(w, a, out, 8, pair_q4_0, quants_q4_0, dot_q4_0)
}

/// `Q5_0` rows against one activation row; each output bit for bit [`dot_q5_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0], out: &mut [f32]) {
    rows_0!(w, a, out, 16, pair_q5_0, quants_q5_0, dot_q5_0)
}
