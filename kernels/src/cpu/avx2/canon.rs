//! The dots of the types the tiled GEMM covers (`Q4_0`, `Q5_0`, `Q8_0`, `Q4_K`, `Q5_K`,
//! `Q6_K`), in the GEMM's canonical float order ([`crate::cpu::gemm`], "The canonical
//! order"), so that a (row, token) output has the same bits decoded alone as prefilled in a
//! batch of any size.
//!
//! The integer part is the usual one (exact sums in 8 i32 lanes per 32 elements, as in
//! `legacy.rs` and `k_quants.rs`); the sums of eight sub-blocks are then reduced together into
//! one vector of eight exact sub-block sums ([`reduce8`], horizontal adds), and the float
//! part is [`gemm::accumulate`]: one scalar FMA chain per output, sub-block after sub-block.
//! The AVX-512 tier uses these kernels too (its GEMM forms the same numbers).

use super::k_quants::{dot_offset_scaled_32, fifth_bits};
use super::legacy::dot_i8_i8;
use super::{dot_u8_i8_offset, fifth_bits_32, fp16, ld128, ld256, nibbles_32};
use crate::cpu::gemm::accumulate;
use crate::quant::{BlockQ4_0, BlockQ4_K, BlockQ5_0, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_K};
use std::arch::x86_64::*;

/// Lane `i`: the sum of the 8 lanes of `v[i]` (exact: i32 adds of sums far below 2^31).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce8(v: [__m256i; 8]) -> __m256i {
    let (g0, g1) = (reduce_halves([v[0], v[1], v[2], v[3]]), reduce_halves([v[4], v[5], v[6], v[7]]));
    _mm256_add_epi32(_mm256_permute2x128_si256::<0x20>(g0, g1), _mm256_permute2x128_si256::<0x31>(g0, g1))
}

/// Lane `i < 4`: the sum of the low four lanes of `v[i]`; lane `4 + i`: of its high four.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce_halves(v: [__m256i; 4]) -> __m256i {
    _mm256_hadd_epi32(_mm256_hadd_epi32(v[0], v[1]), _mm256_hadd_epi32(v[2], v[3]))
}

/// Lane `i`: the sum of the 16 i16 lanes of `p[i]` (`maddubs` outputs), exact when each
/// 128-bit half of each `p[i]` sums to within ±32767 at every step (`Q4_K`'s 4-bit quants:
/// eight pair sums of at most 2 · 15 · 128 each, 30,720). Three rounds of `hadd` in i16 give
/// each row's two half sums in one vector, then the halves are widened and added: fewer
/// operations than a `madd` by ones per row and [`reduce8`].
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn reduce8_i16(p: [__m256i; 8]) -> __m256i {
    let h = |a, b| _mm256_hadd_epi16(a, b);
    let v = h(h(h(p[0], p[1]), h(p[2], p[3])), h(h(p[4], p[5]), h(p[6], p[7])));
    let lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(v));
    let hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256::<1>(v));
    _mm256_add_epi32(lo, hi)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store(v: __m256i) -> [i32; 8] {
    let mut out = [0i32; 8];
    // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), v) };
    out
}

/// The canonical dot of legacy blocks (one sub-block each): `$sum(x, y)` is a block's exact
/// `Σ (q - OFF) y` in 8 i32 lanes; eight blocks' sums are reduced at once.
macro_rules! legacy_dot {
    ($w:expr, $a:expr, $sum:ident) => {{
        let (w, a) = ($w, $a);
        let mut acc = 0f32;
        let (w8, wt) = w.as_chunks::<8>();
        let (a8, at) = a.as_chunks::<8>();
        for (x, y) in w8.iter().zip(a8) {
            let isum = store(reduce8(std::array::from_fn(|k| $sum(&x[k], &y[k]))));
            for k in 0..8 {
                acc = accumulate(acc, &x[k], &y[k], &isum[k..k + 1], |h| fp16(h));
            }
        }
        if !wt.is_empty() {
            let v = std::array::from_fn(|k| if k < wt.len() { $sum(&wt[k], &at[k]) } else { _mm256_setzero_si256() });
            let isum = store(reduce8(v));
            for (k, (x, y)) in wt.iter().zip(at).enumerate() {
                acc = accumulate(acc, x, y, &isum[k..k + 1], |h| fp16(h));
            }
        }
        acc
    }};
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_q4_0(x: &BlockQ4_0, y: &BlockQ8_0) -> __m256i {
    dot_u8_i8_offset(nibbles_32(&x.qs), ld256(&y.qs), 8)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_q5_0(x: &BlockQ5_0, y: &BlockQ8_0) -> __m256i {
    dot_u8_i8_offset(_mm256_or_si256(nibbles_32(&x.qs), fifth_bits_32(x.qh)), ld256(&y.qs), 16)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn sum_q8_0(x: &BlockQ8_0, y: &BlockQ8_0) -> __m256i {
    dot_i8_i8(ld256(&x.qs), ld256(&y.qs))
}

/// `Q4_0 · Q8_0` in the canonical order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0]) -> f32 {
    legacy_dot!(w, a, sum_q4_0)
}

/// `Q5_0 · Q8_0` in the canonical order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0]) -> f32 {
    legacy_dot!(w, a, sum_q5_0)
}

/// `Q8_0 · Q8_0` in the canonical order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0]) -> f32 {
    legacy_dot!(w, a, sum_q8_0)
}

/// The shared body of `Q4_K` and `Q5_K`: `$high(x, j)` is sub-block `j`'s fifth bits (as
/// 0x10), zero for `Q4_K`. Sub-block `2k` is the low nibbles of `qs[32k..]`, `2k + 1` the
/// high ones.
macro_rules! k4_dot {
    ($w:expr, $a:expr, |$x:ident, $j:ident| $high:expr) => {{
        let m4 = _mm256_set1_epi8(0x0f);
        let mut acc = 0f32;
        for ($x, y) in $w.iter().zip($a) {
            let q8 = y.qs.as_chunks::<32>().0;
            let q4 = $x.qs.as_chunks::<32>().0;
            let v = std::array::from_fn(|$j| {
                let bits = ld256(&q4[$j / 2]);
                let bits = if $j % 2 == 0 { bits } else { _mm256_srli_epi16::<4>(bits) };
                let q = _mm256_or_si256(_mm256_and_si256(bits, m4), $high);
                dot_u8_i8_offset(q, ld256(&q8[$j]), 0)
            });
            acc = accumulate(acc, $x, y, &store(reduce8(v)), |h| fp16(h));
        }
        acc
    }};
}

/// `Q4_K · Q8_K` in the canonical order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    k4_dot!(w, a, |x, j| {
        let _ = (x, j);
        _mm256_setzero_si256()
    })
}

/// `Q5_K · Q8_K` in the canonical order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    k4_dot!(w, a, |x, j| fifth_bits(ld256(&x.qh), j))
}

/// `Q6_K · Q8_K` in the canonical order. Quarter `k` of half `h` (elements `128h + 32k..`,
/// decoded as in `k_quants::dot_q6_k`) holds sub-blocks `8h + 2k` and `8h + 2k + 1` in its
/// 128-bit halves.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm256_set1_epi8(0x0f);
    let mask = |m: u8| _mm256_set1_epi8(m as i8);
    let ones = _mm256_set1_epi16(1);
    // Sub-blocks in order from `reduce_halves`' (v0 lo, v1 lo, .., v0 hi, ..).
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let mut acc = 0f32;
    for (x, y) in w.iter().zip(a) {
        let ql = x.ql.as_chunks::<32>().0;
        let qh = x.qh.as_chunks::<32>().0;
        let q8 = y.qs.as_chunks::<32>().0;
        let mut isum = [0i32; 16];
        for h in 0..2 {
            let (lo, hi, top) = (ld256(&ql[2 * h]), ld256(&ql[2 * h + 1]), ld256(&qh[h]));
            let q = [
                _mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_slli_epi16::<4>(_mm256_and_si256(top, mask(0x03)))),
                _mm256_or_si256(_mm256_and_si256(hi, m4), _mm256_slli_epi16::<2>(_mm256_and_si256(top, mask(0x0c)))),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(lo), m4), _mm256_and_si256(top, mask(0x30))),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(hi), m4),
                    _mm256_srli_epi16::<2>(_mm256_and_si256(top, mask(0xc0))),
                ),
            ];
            let v = std::array::from_fn(|k| dot_offset_scaled_32(q[k], &q8[4 * h + k], 32, ones));
            let s = _mm256_permutevar8x32_epi32(reduce_halves(v), order);
            isum[8 * h..][..8].copy_from_slice(&store(s));
        }
        acc = accumulate(acc, x, y, &isum, |h| fp16(h));
    }
    acc
}

// Consecutive weight rows against one activation row (the decode mat-vec), eight rows at a
// time with the rows in the lanes: per sub-block, the eight rows' exact sums are reduced
// into one vector ([`reduce8`] across rows rather than across sub-blocks) and the canonical
// chain runs in every lane at once, `acc = fma(f32(isum), s1 · d, acc)` (then the min term),
// which is [`accumulate`] lane by lane. One chain per eight rows hides the FMA latency that a
// row's own chain would wait on. The rows past the last eight go through the one-row dots.

/// Prefetches the `b`-th of `nb` equal parts of `next` (the next eight rows, which follow the
/// current ones in memory), so that the next group streams in while this one is summed: the
/// eight rows are read a block of each at a time, eight interleaved streams that the hardware
/// prefetchers follow poorly (without this, a matrix that does not fit the caches decodes
/// about five times slower).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prefetch_part<B>(next: &[B], b: usize, nb: usize) {
    let bytes = std::mem::size_of_val(next);
    let per = bytes.div_ceil(64 * nb.max(1)) * 64;
    let base = next.as_ptr().cast::<i8>();
    let mut at = b * per;
    while at < ((b + 1) * per).min(bytes) {
        // SAFETY: `at < bytes`, so the address is inside `next`; a prefetch reads nothing.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(base.add(at)) };
        at += 64;
    }
}

/// The eight rows `r0..r0 + 8` of `w` (`nb` blocks each).
#[inline(always)]
fn eight<B>(w: &[B], r0: usize, nb: usize) -> [&[B]; 8] {
    std::array::from_fn(|i| &w[(r0 + i) * nb..][..nb])
}

/// Eight rows' f16 scales as one vector (lane = row; exact, as `fp16`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn scales8(d: [half::f16; 8]) -> __m256 {
    let b = d.map(|h| h.to_bits() as i16);
    _mm256_cvtph_ps(_mm_setr_epi16(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]))
}

/// Eight rows of 16 bytes to 16 columns of 8: `out[c]` holds column `2c` (byte `2c` of every
/// row, row order) in its low half and column `2c + 1` in its high half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn transpose_8x16(a: [__m128i; 8]) -> [__m128i; 8] {
    let t: [__m128i; 8] = std::array::from_fn(|i| {
        let (x, y) = (a[i / 2 * 2], a[i / 2 * 2 + 1]);
        if i % 2 == 0 { _mm_unpacklo_epi8(x, y) } else { _mm_unpackhi_epi8(x, y) }
    });
    // u[4h + m]: rows 4h..4h + 4, bytes 4m..4m + 4.
    let u: [__m128i; 8] = std::array::from_fn(|x| {
        let (h, m) = (x / 4, x % 4);
        let (p, q) = (t[4 * h + m / 2], t[4 * h + m / 2 + 2]);
        if m % 2 == 0 { _mm_unpacklo_epi16(p, q) } else { _mm_unpackhi_epi16(p, q) }
    });
    std::array::from_fn(|c| {
        let (p, q) = (u[c / 2], u[4 + c / 2]);
        if c % 2 == 0 { _mm_unpacklo_epi32(p, q) } else { _mm_unpackhi_epi32(p, q) }
    })
}

/// Column `k` of [`transpose_8x16`]'s output, widened (unsigned) to floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn column_u(cols: &[__m128i; 8], k: usize) -> __m256 {
    let c = cols[k / 2];
    let c = if k.is_multiple_of(2) { c } else { _mm_unpackhi_epi64(c, c) };
    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(c))
}

/// Column `k` of [`transpose_8x16`]'s output, widened (signed) to floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn column_i(cols: &[__m128i; 8], k: usize) -> __m256 {
    let c = cols[k / 2];
    let c = if k.is_multiple_of(2) { c } else { _mm_unpackhi_epi64(c, c) };
    _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(c))
}

/// A `Q4_K`/`Q5_K` block's 8 scales then 8 mins (as [`super::scales_mins_k4`] gives them) in
/// a register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn scales_mins_reg(s: &[u8; 12]) -> __m128i {
    let [a, b, c, d] = super::scales_mins_words(s);
    _mm_setr_epi32(a as i32, b as i32, c as i32, d as i32)
}

/// The `Q4_K`/`Q5_K` rows kernel; `$high(x, j)` as in [`k4_dot!`], `$dot` the one-row dot;
/// with `$narrow`, the eight rows' products are summed by [`reduce8_i16`] (exact for 4-bit
/// quants only).
macro_rules! k4_rows {
    ($w:expr, $a:expr, $out:expr, |$x:ident, $j:ident| $high:expr, $dot:ident, $narrow:expr) => {{
        let (w, a, out) = ($w, $a, $out);
        let nb = a.len();
        let m4 = _mm256_set1_epi8(0x0f);
        let full = out.len() / 8 * 8;
        for r0 in (0..full).step_by(8) {
            let rows = eight(w, r0, nb);
            let mut acc = _mm256_setzero_ps();
            for (b, y) in a.iter().enumerate() {
                prefetch_part(&w[((r0 + 8) * nb).min(w.len())..((r0 + 16) * nb).min(w.len())], b, nb);
                let xs: [_; 8] = std::array::from_fn(|i| &rows[i][b]);
                // Column `j` (row = lane): sub-block `j`'s scales; column `8 + j`: its mins.
                let sm = transpose_8x16(std::array::from_fn(|i| scales_mins_reg(&xs[i].scales)));
                let d = scales8(xs.map(|x| x.d));
                let ndmin = _mm256_sub_ps(_mm256_setzero_ps(), scales8(xs.map(|x| x.dmin)));
                let da = _mm256_set1_ps(y.d);
                let q8 = y.qs.as_chunks::<32>().0;
                for k in 0..4 {
                    let bits: [__m256i; 8] = std::array::from_fn(|i| ld256(&xs[i].qs.as_chunks::<32>().0[k]));
                    for half in 0..2 {
                        let $j = 2 * k + half;
                        let yv = ld256(&q8[$j]);
                        let q: [__m256i; 8] = std::array::from_fn(|i| {
                            let $x = xs[i];
                            let q = if half == 0 { bits[i] } else { _mm256_srli_epi16::<4>(bits[i]) };
                            _mm256_or_si256(_mm256_and_si256(q, m4), $high)
                        });
                        let isum = if $narrow {
                            reduce8_i16(q.map(|q| _mm256_maddubs_epi16(q, yv)))
                        } else {
                            reduce8(q.map(|q| dot_u8_i8_offset(q, yv, 0)))
                        };
                        let s1 = _mm256_mul_ps(d, column_u(&sm, $j));
                        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s1, da), acc);
                        let s2 = _mm256_mul_ps(ndmin, column_u(&sm, 8 + $j));
                        let dys = y.d * (i32::from(y.bsums[2 * $j]) + i32::from(y.bsums[2 * $j + 1])) as f32;
                        acc = _mm256_fmadd_ps(s2, _mm256_set1_ps(dys), acc);
                    }
                }
            }
            // SAFETY: `out[r0..r0 + 8]` is 8 writable floats; `storeu` needs no alignment.
            unsafe { _mm256_storeu_ps(out[r0..].as_mut_ptr(), acc) };
        }
        for r in full..out.len() {
            // SAFETY: the caller's features are `$dot`'s; the row holds `nb` blocks.
            out[r] = unsafe { $dot(&w[r * nb..][..nb], a) };
        }
    }};
}

/// `Q4_K` rows against one activation row; each output bit for bit [`dot_q4_k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K], out: &mut [f32]) {
    k4_rows!(
        w,
        a,
        out,
        |x, j| {
            let _ = (x, j);
            _mm256_setzero_si256()
        },
        dot_q4_k,
        true
    )
}

/// `Q5_K` rows against one activation row; each output bit for bit [`dot_q5_k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K], out: &mut [f32]) {
    k4_rows!(w, a, out, |x, j| fifth_bits(ld256(&x.qh), j), dot_q5_k, false)
}

/// `Q6_K` rows against one activation row; each output bit for bit [`dot_q6_k`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K], out: &mut [f32]) {
    let nb = a.len();
    let m4 = _mm256_set1_epi8(0x0f);
    let mask = |m: u8| _mm256_set1_epi8(m as i8);
    let ones = _mm256_set1_epi16(1);
    let full = out.len() / 8 * 8;
    for r0 in (0..full).step_by(8) {
        let rows = eight(w, r0, nb);
        let mut acc = _mm256_setzero_ps();
        for (b, y) in a.iter().enumerate() {
            prefetch_part(&w[((r0 + 8) * nb).min(w.len())..((r0 + 16) * nb).min(w.len())], b, nb);
            // Column `j` (row = lane): sub-block `j`'s scales.
            let sc = transpose_8x16(std::array::from_fn(|i| ld128(&rows[i][b].scales)));
            let d = scales8(rows.map(|r| r[b].d));
            let da = _mm256_set1_ps(y.d);
            let q8 = y.qs.as_chunks::<32>().0;
            for h in 0..2 {
                // Quarter `k` of every row: sub-blocks `8h + 2k` (low halves) and `+ 1`.
                let mut v = [[_mm256_setzero_si256(); 8]; 4];
                for (i, row) in rows.iter().enumerate() {
                    let x = &row[b];
                    let ql = x.ql.as_chunks::<32>().0;
                    let (lo, hi, top) = (ld256(&ql[2 * h]), ld256(&ql[2 * h + 1]), ld256(&x.qh.as_chunks::<32>().0[h]));
                    let q = [
                        _mm256_or_si256(
                            _mm256_and_si256(lo, m4),
                            _mm256_slli_epi16::<4>(_mm256_and_si256(top, mask(0x03))),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(hi, m4),
                            _mm256_slli_epi16::<2>(_mm256_and_si256(top, mask(0x0c))),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(lo), m4),
                            _mm256_and_si256(top, mask(0x30)),
                        ),
                        _mm256_or_si256(
                            _mm256_and_si256(_mm256_srli_epi16::<4>(hi), m4),
                            _mm256_srli_epi16::<2>(_mm256_and_si256(top, mask(0xc0))),
                        ),
                    ];
                    for k in 0..4 {
                        v[k][i] = dot_offset_scaled_32(q[k], &q8[4 * h + k], 32, ones);
                    }
                }
                for (k, vk) in v.iter().enumerate() {
                    // Lanes: rows 0..4 (low sub-block), rows 0..4 (high), then rows 4..8.
                    let g0 = reduce_halves([vk[0], vk[1], vk[2], vk[3]]);
                    let g1 = reduce_halves([vk[4], vk[5], vk[6], vk[7]]);
                    let j = 8 * h + 2 * k;
                    for (jj, isum) in [
                        (j, _mm256_permute2x128_si256::<0x20>(g0, g1)),
                        (j + 1, _mm256_permute2x128_si256::<0x31>(g0, g1)),
                    ] {
                        let s1 = _mm256_mul_ps(d, column_i(&sc, jj));
                        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(s1, da), acc);
                    }
                }
            }
        }
        // SAFETY: `out[r0..r0 + 8]` is 8 writable floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(out[r0..].as_mut_ptr(), acc) };
    }
    for r in full..out.len() {
        // SAFETY: this function's features are `dot_q6_k`'s; the row holds `nb` blocks.
        out[r] = unsafe { dot_q6_k(&w[r * nb..][..nb], a) };
    }
}

/// The legacy rows kernel: per block, `$prep(y)` once (what depends on the activations only),
/// then `$sum(x, &prep)` (a block's exact sum in 8 lanes, as the one-row dot's `$sum`) for
/// each of the eight rows; `$dot` is the one-row dot.
macro_rules! legacy_rows {
    ($w:expr, $a:expr, $out:expr, $prep:expr, $sum:ident, $dot:ident) => {{
        let (w, a, out) = ($w, $a, $out);
        let nb = a.len();
        let full = out.len() / 8 * 8;
        for r0 in (0..full).step_by(8) {
            let rows = eight(w, r0, nb);
            let mut acc = _mm256_setzero_ps();
            for (b, y) in a.iter().enumerate() {
                prefetch_part(&w[((r0 + 8) * nb).min(w.len())..((r0 + 16) * nb).min(w.len())], b, nb);
                let xs: [_; 8] = std::array::from_fn(|i| &rows[i][b]);
                let p = $prep(y);
                let isum = reduce8(std::array::from_fn(|i| $sum(xs[i], &p)));
                let s = _mm256_mul_ps(scales8(xs.map(|x| x.d)), _mm256_set1_ps(fp16(y.d)));
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc);
            }
            // SAFETY: `out[r0..r0 + 8]` is 8 writable floats; `storeu` needs no alignment.
            unsafe { _mm256_storeu_ps(out[r0..].as_mut_ptr(), acc) };
        }
        for r in full..out.len() {
            // SAFETY: the caller's features are `$dot`'s; the row holds `nb` blocks.
            out[r] = unsafe { $dot(&w[r * nb..][..nb], a) };
        }
    }};
}

/// An activation block's quants, and their products with an offset (`maddubs(off, y)`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prep_offset<const OFF: i8>(y: &BlockQ8_0) -> (__m256i, __m256i) {
    let yv = ld256(&y.qs);
    (yv, _mm256_maddubs_epi16(_mm256_set1_epi8(OFF), yv))
}

/// `Σ (q - OFF) y` as `dot_u8_i8_offset` forms it, the offset products prepared.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn offset_sum(q: __m256i, p: &(__m256i, __m256i)) -> __m256i {
    _mm256_madd_epi16(_mm256_sub_epi16(_mm256_maddubs_epi16(q, p.0), p.1), _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_sum_q4_0(x: &BlockQ4_0, p: &(__m256i, __m256i)) -> __m256i {
    offset_sum(nibbles_32(&x.qs), p)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_sum_q5_0(x: &BlockQ5_0, p: &(__m256i, __m256i)) -> __m256i {
    offset_sum(_mm256_or_si256(nibbles_32(&x.qs), fifth_bits_32(x.qh)), p)
}

/// A `Q8_0` activation block widened to i16, in its two halves.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn prep_q8_0(y: &BlockQ8_0) -> (__m256i, __m256i) {
    let yv = ld256(&y.qs);
    (_mm256_cvtepi8_epi16(_mm256_castsi256_si128(yv)), _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(yv)))
}

/// `Σ x y` as `dot_i8_i8` forms it, the activations widened once.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn rows_sum_q8_0(x: &BlockQ8_0, p: &(__m256i, __m256i)) -> __m256i {
    let xv = ld256(&x.qs);
    let lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv)), p.0);
    let hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(xv)), p.1);
    _mm256_add_epi32(lo, hi)
}

/// `Q4_0` rows against one activation row; each output bit for bit [`dot_q4_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q4_0(w: &[BlockQ4_0], a: &[BlockQ8_0], out: &mut [f32]) {
    legacy_rows!(w, a, out, prep_offset::<8>, rows_sum_q4_0, dot_q4_0)
}

/// `Q5_0` rows against one activation row; each output bit for bit [`dot_q5_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q5_0(w: &[BlockQ5_0], a: &[BlockQ8_0], out: &mut [f32]) {
    legacy_rows!(w, a, out, prep_offset::<16>, rows_sum_q5_0, dot_q5_0)
}

/// `Q8_0` rows against one activation row; each output bit for bit [`dot_q8_0`].
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn rows_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0], out: &mut [f32]) {
    legacy_rows!(w, a, out, prep_q8_0, rows_sum_q8_0, dot_q8_0)
}
