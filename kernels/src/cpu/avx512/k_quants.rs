//! Dot products of `Q4_K`, `Q5_K` and `Q6_K` with `Q8_K` activations, 64 elements to a
//! 512-bit step: unsigned quants times activations with `maddubs` (pairs below 2 * 63 * 128,
//! exact), then `vpdpwssd` multiplies the i16 pairs by their sub-block's scale and adds them
//! into 16 i32 lanes. One float FMA per super-block; the mins as in the AVX2 tier.
//!
//! The quants of 64 consecutive elements come from 32 bytes of `qs` for `Q4_K`/`Q5_K` (low
//! nibbles: the first 32, high nibbles: the next), and from 64 bytes of `ql` plus 32 of `qh`
//! for `Q6_K`, so every step reads its 64 activations contiguously.

use super::super::avx2::{bsums_dot_mins_k4, fp16, hsum_ps, ld128, ld256, scales_mins_k4};
use super::{join, ld512, spread_index};
use crate::quant::{BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K};
use std::arch::x86_64::*;

/// The shared body of `Q4_K` and `Q5_K`; `$high(x, k)` is the fifth bits (as 0x10) of the 64
/// quants of step `k`, zero for `Q4_K`.
macro_rules! scale_min_k4_dot {
    ($w:expr, $a:expr, $high:ident) => {{
        let m4 = _mm512_set1_epi8(0x0f);
        let (mut acc, mut acc_m) = (_mm512_setzero_ps(), _mm256_setzero_ps());
        for (x, y) in $w.iter().zip($a) {
            let sm = ld128(&scales_mins_k4(&x.scales));
            let summs = _mm256_cvtepi32_ps(bsums_dot_mins_k4(&y.bsums, _mm_srli_si128::<8>(sm)));
            acc_m = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x.dmin) * y.d), summs, acc_m);
            // i16 lane j holds scale j (lanes 8.. the mins, never indexed).
            let scales = _mm512_cvtepu8_epi16(_mm256_zextsi128_si256(sm));
            let q8 = y.qs.as_chunks::<64>().0;
            let mut sumi = _mm512_setzero_si512();
            for (k, q4) in x.qs.as_chunks::<32>().0.iter().enumerate() {
                let bits = ld256(q4);
                let q = _mm512_and_si512(join(bits, _mm256_srli_epi16::<4>(bits)), m4);
                let q = _mm512_or_si512(q, $high(x, k));
                let p = _mm512_maddubs_epi16(q, ld512(&q8[k]));
                sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(spread_index(2 * k, 4), scales));
            }
            acc = _mm512_fmadd_ps(_mm512_set1_ps(fp16(x.d) * y.d), _mm512_cvtepi32_ps(sumi), acc);
        }
        _mm512_reduce_add_ps(acc) - hsum_ps(acc_m)
    }};
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn no_high_bits(_: &BlockQ4_K, _: usize) -> __m512i {
    _mm512_setzero_si512()
}

/// `Q4_K · Q8_K`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q4_k(w: &[BlockQ4_K], a: &[BlockQ8_K]) -> f32 {
    scale_min_k4_dot!(w, a, no_high_bits)
}

/// Step `k`'s fifth bits: bit `2k` of `qh[i]` for element `64k + i`, bit `2k + 1` for
/// `64k + 32 + i`, as 0x10 through a byte mask.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn fifth_bits(x: &BlockQ5_K, k: usize) -> __m512i {
    let qh = ld256(&x.qh);
    let lo = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((1u8 << (2 * k)) as i8));
    let hi = _mm256_test_epi8_mask(qh, _mm256_set1_epi8((1u8 << (2 * k + 1)) as i8));
    _mm512_maskz_mov_epi8(u64::from(lo) | u64::from(hi) << 32, _mm512_set1_epi8(0x10))
}

/// `Q5_K · Q8_K`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q5_k(w: &[BlockQ5_K], a: &[BlockQ8_K]) -> f32 {
    scale_min_k4_dot!(w, a, fifth_bits)
}

/// `Q6_K · Q8_K`. Per half of 128: the 64 bytes of `ql` give quarters 0, 1 (low nibbles) and
/// 2, 3 (high); the 32 bytes of `qh`, joined with themselves shifted by 2, give quarters 0, 1
/// their top bits at bits 0-1 and quarters 2, 3 at bits 4-5.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q6_k(w: &[BlockQ6_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm512_set1_epi8(0x0f);
    let (m03, m30) = (_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x30));
    let m32 = _mm512_set1_epi8(32);
    let mut acc = _mm512_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let scales = _mm512_cvtepi8_epi16(_mm256_zextsi128_si256(ld128(&x.scales)));
        let ql = x.ql.as_chunks::<64>().0;
        let qh = x.qh.as_chunks::<32>().0;
        let q8 = y.qs.as_chunks::<64>().0;
        let mut sumi = _mm512_setzero_si512();
        for h in 0..2 {
            let low = ld512(&ql[h]);
            let top = ld256(&qh[h]);
            // The shift drags bits of the next byte into bits 6-7, which the masks drop.
            let top = join(top, _mm256_srli_epi16::<2>(top));
            let q01 = _mm512_or_si512(_mm512_and_si512(low, m4), _mm512_slli_epi16::<4>(_mm512_and_si512(top, m03)));
            let q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(low), m4), _mm512_and_si512(top, m30));
            for (s, q) in [q01, q23].into_iter().enumerate() {
                let y = ld512(&q8[2 * h + s]);
                let p = _mm512_sub_epi16(_mm512_maddubs_epi16(q, y), _mm512_maddubs_epi16(m32, y));
                sumi = _mm512_dpwssd_epi32(sumi, p, _mm512_permutexvar_epi16(spread_index(8 * h + 4 * s, 3), scales));
            }
        }
        acc = _mm512_fmadd_ps(_mm512_set1_ps(fp16(x.d) * y.d), _mm512_cvtepi32_ps(sumi), acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// `scale_min_k4_dot!` for one weight row against four activation rows: each super-block's
/// quants and scale vectors are decoded once, then every activation row's sums are formed with
/// exactly the operations, in exactly the order, of `scale_min_k4_dot!` (so each output is bit
/// for bit that row's `dot`).
macro_rules! scale_min_k4_dot_x4 {
    ($w:expr, $a:expr, $high:ident) => {{
        let (w, a) = ($w, $a);
        let m4 = _mm512_set1_epi8(0x0f);
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut acc_m = [_mm256_setzero_ps(); 4];
        for (b, x) in w.iter().enumerate() {
            let sm = ld128(&scales_mins_k4(&x.scales));
            let mins = _mm_srli_si128::<8>(sm);
            let (d, dmin) = (fp16(x.d), fp16(x.dmin));
            let scales = _mm512_cvtepu8_epi16(_mm256_zextsi128_si256(sm));
            let mut q = [_mm512_setzero_si512(); 4];
            let mut sc = [_mm512_setzero_si512(); 4];
            for (k, q4) in x.qs.as_chunks::<32>().0.iter().enumerate() {
                let bits = ld256(q4);
                q[k] = _mm512_or_si512(_mm512_and_si512(join(bits, _mm256_srli_epi16::<4>(bits)), m4), $high(x, k));
                sc[k] = _mm512_permutexvar_epi16(spread_index(2 * k, 4), scales);
            }
            for j in 0..4 {
                let y: &BlockQ8_K = &a[j][b];
                let summs = _mm256_cvtepi32_ps(bsums_dot_mins_k4(&y.bsums, mins));
                acc_m[j] = _mm256_fmadd_ps(_mm256_set1_ps(dmin * y.d), summs, acc_m[j]);
                let q8 = y.qs.as_chunks::<64>().0;
                let mut sumi = _mm512_setzero_si512();
                for k in 0..4 {
                    sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[k], ld512(&q8[k])), sc[k]);
                }
                acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(d * y.d), _mm512_cvtepi32_ps(sumi), acc[j]);
            }
        }
        [0, 1, 2, 3].map(|j| _mm512_reduce_add_ps(acc[j]) - hsum_ps(acc_m[j]))
    }};
}

/// `Q4_K · Q8_K` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q4_k(w: &[BlockQ4_K], a: [&[BlockQ8_K]; 4]) -> [f32; 4] {
    scale_min_k4_dot_x4!(w, a, no_high_bits)
}

/// `Q5_K · Q8_K` against four activation rows (rows of equal length).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q5_k(w: &[BlockQ5_K], a: [&[BlockQ8_K]; 4]) -> [f32; 4] {
    scale_min_k4_dot_x4!(w, a, fifth_bits)
}

/// `Q6_K · Q8_K` against four activation rows (rows of equal length): each super-block's
/// quarters and scale vectors decoded once, then each row's sums formed as [`dot_q6_k`] forms
/// them (same operations, same order; bit for bit its `dot`).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_x4_q6_k(w: &[BlockQ6_K], a: [&[BlockQ8_K]; 4]) -> [f32; 4] {
    let m4 = _mm512_set1_epi8(0x0f);
    let (m03, m30) = (_mm512_set1_epi8(0x03), _mm512_set1_epi8(0x30));
    let m32 = _mm512_set1_epi8(32);
    let mut acc = [_mm512_setzero_ps(); 4];
    for (b, x) in w.iter().enumerate() {
        let scales = _mm512_cvtepi8_epi16(_mm256_zextsi128_si256(ld128(&x.scales)));
        let ql = x.ql.as_chunks::<64>().0;
        let qh = x.qh.as_chunks::<32>().0;
        let d = fp16(x.d);
        // Quarter `2h + s` and its scale vector, in `dot_q6_k`'s order.
        let mut q = [_mm512_setzero_si512(); 4];
        let mut sc = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            let low = ld512(&ql[h]);
            let top = ld256(&qh[h]);
            let top = join(top, _mm256_srli_epi16::<2>(top));
            q[2 * h] = _mm512_or_si512(_mm512_and_si512(low, m4), _mm512_slli_epi16::<4>(_mm512_and_si512(top, m03)));
            q[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16::<4>(low), m4), _mm512_and_si512(top, m30));
            for s in 0..2 {
                sc[2 * h + s] = _mm512_permutexvar_epi16(spread_index(8 * h + 4 * s, 3), scales);
            }
        }
        for j in 0..4 {
            let y: &BlockQ8_K = &a[j][b];
            let q8 = y.qs.as_chunks::<64>().0;
            let mut sumi = _mm512_setzero_si512();
            for k in 0..4 {
                let yk = ld512(&q8[k]);
                let p = _mm512_sub_epi16(_mm512_maddubs_epi16(q[k], yk), _mm512_maddubs_epi16(m32, yk));
                sumi = _mm512_dpwssd_epi32(sumi, p, sc[k]);
            }
            acc[j] = _mm512_fmadd_ps(_mm512_set1_ps(d * y.d), _mm512_cvtepi32_ps(sumi), acc[j]);
        }
    }
    acc.map(|a| _mm512_reduce_add_ps(a))
}
