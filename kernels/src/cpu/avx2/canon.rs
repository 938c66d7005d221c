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
use super::{dot_u8_i8_offset, fifth_bits_32, fp16, ld256, nibbles_32};
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
