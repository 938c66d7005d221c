//! Dot products of the 2- and 3-bit k-quants, `Q2_K` and `Q3_K`, with `Q8_K` activations
//! (after `ggml_vec_dot_q{2,3}_K_q8_K` in `ggml-cpu/arch/x86/quants.c`). Both keep their
//! quants as four 2-bit planes per 32-byte half of `qs`: plane `k` of half `h` holds elements
//! `128h + 32k..+32`, sub-blocks of 16 `8h + 2k` and `8h + 2k + 1`.

use super::k_quants::{dot_offset_scaled_32, scale_pair};
use super::{fp16, hsum_ps, ld_bsums, ld128, ld256};
use crate::quant::{BlockQ2_K, BlockQ3_K, BlockQ8_K};
use std::arch::x86_64::*;

/// Plane `k` (0..4) of 32 bytes of 2-bit quants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn plane(qs: __m256i, k: usize) -> __m256i {
    let shifted = match k {
        0 => qs,
        1 => _mm256_srli_epi16::<2>(qs),
        2 => _mm256_srli_epi16::<4>(qs),
        _ => _mm256_srli_epi16::<6>(qs),
    };
    _mm256_and_si256(shifted, _mm256_set1_epi8(3))
}

/// `Q2_K · Q8_K`: `d Σ (sc & 15) q y - dmin Σ bsums (sc >> 4)`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q2_k(w: &[BlockQ2_K], a: &[BlockQ8_K]) -> f32 {
    let m4 = _mm_set1_epi8(0x0f);
    let (mut acc, mut acc_m) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for (x, y) in w.iter().zip(a) {
        let packed = ld128(&x.scales);
        let mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(packed), m4));
        let summs = _mm256_cvtepi32_ps(_mm256_madd_epi16(ld_bsums(&y.bsums), mins));
        acc_m = _mm256_fmadd_ps(_mm256_set1_ps(y.d * fp16(x.dmin)), summs, acc_m);
        let scales = _mm_and_si128(packed, m4);
        let q8 = y.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for (h, qs) in x.qs.as_chunks::<32>().0.iter().enumerate() {
            let qs = ld256(qs);
            for k in 0..4 {
                let p = dot_offset_scaled_32(plane(qs, k), &q8[4 * h + k], 0, scale_pair(scales, 8 * h + 2 * k));
                sumi = _mm256_add_epi32(sumi, p);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(y.d * fp16(x.d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc) - hsum_ps(acc_m)
}

/// The 16 scales of a `Q3_K` block, `-32..32`, from their 12 packed bytes (ggml's `aux`
/// shuffle): low nibbles in bytes 0..8 (scales 0..8 low, 8..16 high), top two bits in 8..12.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q3_k_scales(s: &[u8; 12]) -> __m128i {
    const KMASK1: u32 = 0x03030303;
    const KMASK2: u32 = 0x0f0f0f0f;
    let u = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (a0, a1, a2) = (u(0), u(1), u(2));
    let v = _mm_set_epi32(
        (((a1 >> 4) & KMASK2) | (((a2 >> 6) & KMASK1) << 4)) as i32,
        (((a0 >> 4) & KMASK2) | (((a2 >> 4) & KMASK1) << 4)) as i32,
        ((a1 & KMASK2) | (((a2 >> 2) & KMASK1) << 4)) as i32,
        ((a0 & KMASK2) | ((a2 & KMASK1) << 4)) as i32,
    );
    _mm_sub_epi8(v, _mm_set1_epi8(32))
}

/// `Q3_K · Q8_K`: quants `low | hbit << 2` in `0..8`, offset 4.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn dot_q3_k(w: &[BlockQ3_K], a: &[BlockQ8_K]) -> f32 {
    let mut acc = _mm256_setzero_ps();
    for (x, y) in w.iter().zip(a) {
        let scales = q3_k_scales(&x.scales);
        let hmask = ld256(&x.hmask);
        let q8 = y.qs.as_chunks::<32>().0;
        let mut sumi = _mm256_setzero_si256();
        for (h, qs) in x.qs.as_chunks::<32>().0.iter().enumerate() {
            let qs = ld256(qs);
            for k in 0..4 {
                let bit = _mm256_set1_epi8((1u8 << (4 * h + k)) as i8);
                let high = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hmask, bit), bit), _mm256_set1_epi8(4));
                let q = _mm256_or_si256(plane(qs, k), high);
                let p = dot_offset_scaled_32(q, &q8[4 * h + k], 4, scale_pair(scales, 8 * h + 2 * k));
                sumi = _mm256_add_epi32(sumi, p);
            }
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(fp16(x.d) * y.d), _mm256_cvtepi32_ps(sumi), acc);
    }
    hsum_ps(acc)
}
