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
                // Types without a min term (`$off != 0`) fold the scaled sum into the
                // accumulator with one rounding; `rows_0!` and `block_pairs_x4!` do the same.
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
            s00 = term_x4(q, dw, a0, i, $off, s00);
            s10 = term_x4(q, dw, a1, i, $off, s10);
            s20 = term_x4(q, dw, a2, i, $off, s20);
            s30 = term_x4(q, dw, a3, i, $off, s30);
            if i + 2 < n {
                let (q, dw) = decode(i + 2);
                s01 = term_x4(q, dw, a0, i + 2, $off, s01);
                s11 = term_x4(q, dw, a1, i + 2, $off, s11);
                s21 = term_x4(q, dw, a2, i + 2, $off, s21);
                s31 = term_x4(q, dw, a3, i + 2, $off, s31);
            }
            i += 4;
        }
        [(s00, s01), (s10, s11), (s20, s21), (s30, s31)].map(|(x, y)| hsum(_mm512_add_ps(x, y)))
    }};
}

/// `acc` plus one activation row's term for the weight pair at block `i` (quants `q`, scales
/// `dw`): `d_w d_a Σ (q - off) y` in 16 lanes, added as `block_pairs!` adds it (a missing
/// second block is zeros).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn term_x4(q: __m512i, dw: __m512, a: &[BlockQ8_0], i: usize, off: u8, acc: __m512) -> __m512 {
    let two = i + 1 < a.len();
    let (y1, e1) = if two { (ld256(&a[i + 1].qs), a[i + 1].d) } else { (_mm256_setzero_si256(), half::f16::ZERO) };
    let sumi = dot_u8_i8_offset(q, join(ld256(&a[i].qs), y1), off);
    let d = _mm512_mul_ps(dw, scales_pair(a[i].d, e1));
    _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc)
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
/// (the same floats `fp16` gives: f16 to f32 is exact).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scales_pair(d0: half::f16, d1: half::f16) -> __m512 {
    let h = _mm256_mask_set1_epi16(_mm256_set1_epi16(d0.to_bits() as i16), 0xff00, d1.to_bits() as i16);
    _mm512_cvtph_ps(h)
}

/// Two weight scales laid out for split order: `d0` in lanes 0–3 and 8–11, `d1` in 4–7 and
/// 12–15.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scales_split(d0: half::f16, d1: half::f16) -> __m512 {
    let h = _mm256_mask_set1_epi16(_mm256_set1_epi16(d0.to_bits() as i16), 0xf0f0, d1.to_bits() as i16);
    _mm512_cvtph_ps(h)
}

/// Two 4-bit blocks' nibbles in split order: 128-bit lanes `[lo0, lo1, hi0, hi1]` (block 0's
/// quants 0–15, block 1's 0–15, block 0's 16–31, block 1's 16–31): both blocks' bytes shifted
/// and masked at once, one [`swap_mid_lanes`] short of `join(nibbles_32(qs0), nibbles_32(qs1))`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn nibbles_pair_split(qs0: &[u8; 16], qs1: &[u8; 16]) -> __m512i {
    let v = _mm256_set_m128i(ld128(qs1), ld128(qs0));
    _mm512_and_si512(join(v, _mm256_srli_epi16::<4>(v)), _mm512_set1_epi8(0x0f))
}

/// 128-bit lanes `[a, b, c, d]` to `[a, c, b, d]`: block order to split order and back.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn swap_mid_lanes(x: __m512i) -> __m512i {
    _mm512_shuffle_i64x2::<0xd8>(x, x)
}

/// [`pair_q4_0`] in split order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn split_q4_0(x0: &BlockQ4_0, x1: &BlockQ4_0) -> __m512i {
    nibbles_pair_split(&x0.qs, &x1.qs)
}

/// [`pair_q5_0`] in split order: the fifth bits rearranged to match.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn split_q5_0(x0: &BlockQ5_0, x1: &BlockQ5_0) -> __m512i {
    let (h0, h1) = (u32::from_le_bytes(x0.qh) as u64, u32::from_le_bytes(x1.qh) as u64);
    let bits = (h0 & 0xffff) | (h1 & 0xffff) << 16 | (h0 >> 16) << 32 | (h1 >> 16) << 48;
    _mm512_or_si512(nibbles_pair_split(&x0.qs, &x1.qs), _mm512_maskz_mov_epi8(bits, _mm512_set1_epi8(0x10)))
}

/// Two `Q4_0` blocks' quants as `join(nibbles_32(..), nibbles_32(..))` gives them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_q4_0(x0: &BlockQ4_0, x1: &BlockQ4_0) -> __m512i {
    swap_mid_lanes(split_q4_0(x0, x1))
}

/// Two `Q5_0` blocks' quants as `join(quants_5bit(..), quants_5bit(..))` gives them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn pair_q5_0(x0: &BlockQ5_0, x1: &BlockQ5_0) -> __m512i {
    swap_mid_lanes(split_q5_0(x0, x1))
}

/// Consecutive weight rows against one activation row, each output formed exactly as
/// `block_pairs!` forms that row's `dot` (same integer sums, same float operations in the same
/// order), with what depends on the activations only prepared once per call: the joined
/// activation pairs, their offset sums `dpbusd($off, y)`, their scales. Rows go one after
/// another, their sums reduced four at a time ([`hsum_x4`], the tree of [`hsum`]): with rows
/// of a few blocks (Gemma's 640 columns are 20) one row's reduction costs as much as the row.
/// `$pair` decodes two weight blocks at once, `$quants` one (an odd last block), `$dot` is the
/// tier's `dot`. With `$split`,
/// `$pair` gives its quants in split order (see [`nibbles_pair_split`]) and the activations
/// and scales are laid out to match, which saves a shuffle per pair; each 16-lane sum is put
/// back in block order before it is reduced, so every lane holds the same float it would.
macro_rules! rows_0 {
    ($w:expr, $a:expr, $out:expr, $off:expr, $split:expr, $pair:ident, $quants:ident, $dot:ident) => {{
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
            // Per pair: the joined activations, their offset sums and their scales, side by
            // side (three arrays 4 KiB apart would share cache sets).
            let mut acts = [(_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_ps()); ROWS_MAX_PAIRS];
            for p in 0..pairs {
                let i = 2 * p;
                let two = i + 1 < nb;
                let y = join(ld256(&a[i].qs), if two { ld256(&a[i + 1].qs) } else { zero });
                let y = if $split { swap_mid_lanes(y) } else { y };
                let off = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8($off as u8 as i8), y);
                let d1 = if two { fp16(a[i + 1].d) } else { 0.0 };
                let second = if $split { 0xf0f0 } else { 0xff00 };
                acts[p] = (y, off, _mm512_mask_blend_ps(second, _mm512_set1_ps(fp16(a[i].d)), _mm512_set1_ps(d1)));
            }
            let full = nb / 2;
            // Row `w`'s term for pair `p`: `d_w d_a Σ (q - off) y` in 16 lanes.
            let term = |w: &[_], p: usize, acc: __m512| -> __m512 {
                let i = 2 * p;
                let (q, (d0, d1)) = if p < full {
                    ($pair(&w[i], &w[i + 1]), (w[i].d, w[i + 1].d))
                } else {
                    let q = join($quants(&w[i]).0, zero);
                    (if $split { swap_mid_lanes(q) } else { q }, (w[i].d, half::f16::ZERO))
                };
                let dw = if $split { scales_split(d0, d1) } else { scales_pair(d0, d1) };
                let (y, off, da) = acts[p];
                let sumi = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y), off);
                let d = _mm512_mul_ps(dw, da);
                _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(sumi), acc)
            };
            // Row `w`'s sum, before the reduction: pairs alternate between two accumulators,
            // as in `block_pairs!`.
            let row_sum = |w: &[_]| {
                let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
                let mut p = 0;
                while p < pairs {
                    acc0 = term(w, p, acc0);
                    if p + 1 < pairs {
                        acc1 = term(w, p + 1, acc1);
                    }
                    p += 2;
                }
                let sum = _mm512_add_ps(acc0, acc1);
                if $split { _mm512_castsi512_ps(swap_mid_lanes(_mm512_castps_si512(sum))) } else { sum }
            };
            // Rows one after another in memory order, through one copy of the loop (so that
            // each load instruction walks the weights at one stride, which the hardware
            // prefetcher follows), their sums reduced four at a time.
            let rows = out.len();
            let mut sums = [_mm512_setzero_ps(); 4];
            for r in 0..rows {
                sums[r % 4] = row_sum(&w[r * nb..(r + 1) * nb]);
                if r % 4 == 3 {
                    let four = &mut out[r - 3..r + 1];
                    // SAFETY: `four` is 16 writable bytes; `storeu` needs no alignment.
                    unsafe { _mm_storeu_ps(four.as_mut_ptr(), hsum_x4(sums)) };
                }
            }
            let tail = rows / 4 * 4;
            for (o, &v) in out[tail..].iter_mut().zip(&sums) {
                *o = hsum(v);
            }
        }
    }};
}

/// The sum of 16 lanes by halving: lanes `i + 8` onto `i`, then `i + 4`, `i + 2`, `i + 1`.
/// Every legacy kernel of this tier ends with it, so that their sums agree bit for bit.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
    let x = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
    let x = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x));
    let x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)))
}

/// `[hsum(v[0]), .., hsum(v[3])]` in one vector, the same additions done for four vectors at
/// once.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum_x4(v: [__m512; 4]) -> __m128 {
    // Lanes `i + 8` onto `i`: rows 0 and 1 in the halves of `s01`, rows 2 and 3 in `s23`.
    let halves = |a: __m512, b: __m512| {
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b01_00_01_00>(a, b), _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b))
    };
    let (s01, s23) = (halves(v[0], v[1]), halves(v[2], v[3]));
    // Lanes `i + 4` onto `i`: row `k` in 128-bit lane `k`.
    let x =
        _mm512_add_ps(_mm512_shuffle_f32x4::<0b10_00_10_00>(s01, s23), _mm512_shuffle_f32x4::<0b11_01_11_01>(s01, s23));
    // Then `i + 2` and `i + 1`, within each 128-bit lane.
    let x = _mm512_add_ps(x, _mm512_permute_ps::<0b11_10_11_10>(x));
    let x = _mm512_add_ps(x, _mm512_movehdup_ps(x));
    // Lanes 0, 4, 8 and 12 to 0..4, kept in a register (a store and four loads would wait
    // on store forwarding).
    let x = _mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 12, 8, 4, 0), x);
    _mm512_castps512_ps128(x)
}

/// `Q4_0` rows against one activation row; each output bit for bit [`dot_q4_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0], out: &mut [f32]) {
    rows_0!(w, a, out, 8, true, split_q4_0, quants_q4_0, dot_q4_0)
}

/// `Q5_0` rows against one activation row; each output bit for bit [`dot_q5_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0], out: &mut [f32]) {
    rows_0!(w, a, out, 16, true, split_q5_0, quants_q5_0, dot_q5_0)
}

/// `Q8_0` rows against one activation row; each output bit for bit [`dot_q8_0`].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0], out: &mut [f32]) {
    rows_0!(w, a, out, 128, false, pair_q8_0, quants_q8_0, dot_q8_0)
}
