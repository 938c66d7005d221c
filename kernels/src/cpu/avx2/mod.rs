//! The AVX2 tier (with FMA and F16C): 256-bit versions of the dot products and activation
//! quantizers, after ggml's `ggml-cpu/arch/x86/quants.c` but with exact integer sums.
//!
//! Where ggml multiplies two signed byte vectors with the sign trick
//! (`maddubs(abs(x), sign(y, x))`), it gets `-128 * -128` wrong (`sign` cannot negate -128);
//! its quantizers never write -128, but a file may hold it and the reference handles it. So:
//! - signed × signed (`Q8_0`) widens to i16 and uses `madd`, exact for every byte;
//! - unsigned × signed (4-, 5-, 6-bit weights, stored with an offset) uses `maddubs` on the
//!   unsigned quants, whose pair sums stay below 2 * 63 * 128 < 2^15, and subtracts the offset
//!   times the activations (`maddubs(offset, y)`) in i16.
//!
//! Every kernel here is an `unsafe fn` with `#[target_feature(enable = "avx2,fma,f16c")]`,
//! called only through [`patch`]'s entries, on hosts where [`supported`] holds.

pub(in crate::cpu) mod canon;
mod float;
mod gemm;
mod k_quants;
mod k_small;
pub(in crate::cpu) mod kv;
mod legacy;
mod nibble;
mod quantize;
mod softmax;

use crate::DType;
use crate::quant::*;
use half::f16;
use std::arch::x86_64::*;

/// Whether the host has what this tier's kernels are compiled for.
pub(super) fn supported() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Replaces `ops`' functions with this tier's, where it has them.
///
/// # Safety
/// The entries written call AVX2/FMA/F16C code: the host must satisfy [`supported`].
pub(super) unsafe fn patch(ops: &mut crate::quant::Ops) {
    match ops.dtype {
        DType::Q4_0 => ops.dot = dot_entry!(BlockQ4_0, canon::dot_q4_0),
        DType::Q4_1 => ops.dot = dot_entry!(BlockQ4_1, legacy::dot_q4_1),
        DType::Q5_0 => ops.dot = dot_entry!(BlockQ5_0, canon::dot_q5_0),
        DType::Q5_1 => ops.dot = dot_entry!(BlockQ5_1, legacy::dot_q5_1),
        DType::Q8_0 => {
            ops.dot = dot_entry!(BlockQ8_0, canon::dot_q8_0);
            ops.activate = quantize_entry!(BlockQ8_0, quantize::quantize_q8_0);
        }
        DType::Q8_1 => ops.activate = quantize_entry!(BlockQ8_1, quantize::quantize_q8_1),
        DType::Q2_K => ops.dot = dot_entry!(BlockQ2_K, k_small::dot_q2_k),
        DType::Q3_K => ops.dot = dot_entry!(BlockQ3_K, k_small::dot_q3_k),
        DType::Q4_K => ops.dot = dot_entry!(BlockQ4_K, canon::dot_q4_k),
        DType::Q5_K => ops.dot = dot_entry!(BlockQ5_K, canon::dot_q5_k),
        DType::Q6_K => ops.dot = dot_entry!(BlockQ6_K, canon::dot_q6_k),
        DType::Q8_K => ops.activate = quantize_entry!(BlockQ8_K, quantize::quantize_q8_k),
        _ => {}
    }
    // Floats: one order for `dot`, `dot_rows` and `gemm` (`float`).
    float_entries!(ops, float);
    // The tiled GEMM of the quantized types. Its panels are decoded in registers
    // (`gemm::decode`), cheaply enough that it wins from three tokens on (`gemm_tiers`
    // example, 4096 × 2048, 2 threads, AVX2 EPYC: `Q4_0` at 4 tokens 0.83 ms against 1.50
    // through `dot_rows`, about even at 2).
    let gemm = match ops.dtype {
        DType::Q4_0 => gemm_entry!(BlockQ4_0, gemm::gemm_q4_0),
        DType::Q5_0 => gemm_entry!(BlockQ5_0, gemm::gemm_q5_0),
        DType::Q8_0 => gemm_entry!(BlockQ8_0, gemm::gemm_q8_0),
        DType::Q4_K => gemm_entry!(BlockQ4_K, gemm::gemm_q4_k),
        DType::Q5_K => gemm_entry!(BlockQ5_K, gemm::gemm_q5_k),
        DType::Q6_K => gemm_entry!(BlockQ6_K, gemm::gemm_q6_k),
        _ => None,
    };
    if gemm.is_some() {
        ops.gemm = gemm;
        ops.gemm_from = 3;
    }
    // Weights packed once at load into nibble panels of their own stored bytes
    // (`cpu::nibble`, the AVX-512 tier's layout): the file's size, read by every batch size
    // and row lookup, so the map is released. Decoding one token over them needs no
    // horizontal sums (`nibble`).
    match ops.dtype {
        DType::Q4_0 => nibble_entries!(ops, BlockQ4_0, pack_q4_0, nibble::gemm_packed_q4_0, panel_words_q4_0, row_q4_0),
        DType::Q5_0 => nibble_entries!(ops, BlockQ5_0, pack_q5_0, nibble::gemm_packed_q5_0, panel_words_q5_0, row_q5_0),
        DType::Q4_K => nibble_entries!(ops, BlockQ4_K, pack_q4_k, nibble::gemm_packed_q4_k, panel_words_q4_k, row_q4_k),
        _ => {}
    }
    // `dot_rows` beside every dot above (each row bit for bit that `dot`).
    match ops.dtype {
        DType::Q4_0 => ops.dot_rows = dot_rows_entry!(BlockQ4_0, canon::rows_q4_0),
        DType::Q4_1 => ops.dot_rows = dot_rows_entry!(BlockQ4_1, rows::rows_q4_1),
        DType::Q5_0 => ops.dot_rows = dot_rows_entry!(BlockQ5_0, canon::rows_q5_0),
        DType::Q5_1 => ops.dot_rows = dot_rows_entry!(BlockQ5_1, rows::rows_q5_1),
        DType::Q8_0 => ops.dot_rows = dot_rows_entry!(BlockQ8_0, canon::rows_q8_0),
        DType::Q2_K => ops.dot_rows = dot_rows_entry!(BlockQ2_K, rows::rows_q2_k),
        DType::Q3_K => ops.dot_rows = dot_rows_entry!(BlockQ3_K, rows::rows_q3_k),
        DType::Q4_K => ops.dot_rows = dot_rows_entry!(BlockQ4_K, canon::rows_q4_k),
        DType::Q5_K => ops.dot_rows = dot_rows_entry!(BlockQ5_K, canon::rows_q5_k),
        DType::Q6_K => ops.dot_rows = dot_rows_entry!(BlockQ6_K, canon::rows_q6_k),
        _ => {}
    }
}

/// The `dot_rows` kernels: this tier's dots looped over consecutive rows.
mod rows {
    use super::{k_small, legacy};
    use crate::quant::*;
    dot_rows_kernel!(rows_q4_1, BlockQ4_1, legacy::dot_q4_1, "avx2,fma,f16c");
    dot_rows_kernel!(rows_q5_1, BlockQ5_1, legacy::dot_q5_1, "avx2,fma,f16c");
    dot_rows_kernel!(rows_q2_k, BlockQ2_K, k_small::dot_q2_k, "avx2,fma,f16c");
    dot_rows_kernel!(rows_q3_k, BlockQ3_K, k_small::dot_q3_k, "avx2,fma,f16c");
}

pub(in crate::cpu) use kv::patch as patch_kv;

// Helpers shared by the kernels of this tier and the AVX-512 one (which implies it).

/// An f16 as f32 (F16C; exact, as `f16::to_f32` is).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn fp16(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// 32 bytes as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn ld256<T: bytemuck::Pod>(b: &[T; 32]) -> __m256i {
    const { assert!(std::mem::size_of::<T>() == 1) };
    // SAFETY: `b` is 32 readable bytes (asserted above); `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// 16 bytes as a vector.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn ld128<T: bytemuck::Pod>(b: &[T; 16]) -> __m128i {
    const { assert!(std::mem::size_of::<T>() == 1) };
    // SAFETY: `b` is 16 readable bytes (asserted above); `loadu` needs no alignment.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

/// The 16 i16 of a Q8_K block's `bsums`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn ld_bsums(s: &[i16; 16]) -> __m256i {
    // SAFETY: `s` is 32 readable bytes; `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(s.as_ptr().cast()) }
}

/// The sum of the lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// `Σ (q - off) * y` over 32 elements in 8 i32 lanes, exact for `q` in `0..64` (unsigned)
/// and any `y`, `off <= 32`: every i16 pair sum is below 2 * 63 * 128.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn dot_u8_i8_offset(q: __m256i, y: __m256i, off: i8) -> __m256i {
    let p = _mm256_maddubs_epi16(q, y);
    let p = if off == 0 { p } else { _mm256_sub_epi16(p, _mm256_maddubs_epi16(_mm256_set1_epi8(off), y)) };
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// The 32 quants of a 4-bit legacy block, element `j` in byte `j` (`bytes_from_nibbles_32`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn nibbles_32(qs: &[u8; 16]) -> __m256i {
    let b = ld128(qs);
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16::<4>(b), b), _mm256_set1_epi8(0x0f))
}

/// `0x10` in byte `j` where bit `j` of the little-endian `qh` is set: the fifth bits of a
/// `Q5_0`/`Q5_1` block (`bytes_from_bits_32`, masked).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn fifth_bits_32(qh: [u8; 4]) -> __m256i {
    let shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(i32::from_le_bytes(qh)), shuf);
    // Byte j now holds byte j/8 of qh; set every bit but bit j%8 and test for all ones.
    let bytes = _mm256_or_si256(bytes, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    _mm256_and_si256(_mm256_cmpeq_epi8(bytes, _mm256_set1_epi64x(-1)), _mm256_set1_epi8(0x10))
}

/// The 8 scales then the 8 mins of a Q4_K/Q5_K block as four little-endian words, unpacked
/// from their 12 bytes (the `utmp` shuffle of ggml's `ggml_vec_dot_q4_K_q8_K`).
#[inline]
pub(in crate::cpu) fn scales_mins_words(s: &[u8; 12]) -> [u32; 4] {
    const KMASK1: u32 = 0x3f3f3f3f;
    const KMASK2: u32 = 0x0f0f0f0f;
    const KMASK3: u32 = 0x03030303;
    let u = |i: usize| u32::from_le_bytes([s[4 * i], s[4 * i + 1], s[4 * i + 2], s[4 * i + 3]]);
    let (u0, u1, u2) = (u(0), u(1), u(2));
    let scales_lo = u0 & KMASK1;
    let scales_hi = (u2 & KMASK2) | (((u0 >> 6) & KMASK3) << 4);
    let mins_lo = u1 & KMASK1;
    let mins_hi = ((u2 >> 4) & KMASK2) | (((u1 >> 6) & KMASK3) << 4);
    [scales_lo, scales_hi, mins_lo, mins_hi]
}

/// [`scales_mins_words`] as 16 bytes.
#[inline]
pub(in crate::cpu) fn scales_mins_k4(s: &[u8; 12]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, w) in out.chunks_exact_mut(4).zip(scales_mins_words(s)) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `scales_mins_k4` against the reference's per-sub-block dequantization: a block with
    /// quants all 1 and `d = dmin = 1` dequantizes to `sc - m` per sub-block; with quants 0,
    /// to `-m`.
    #[test]
    fn scales_mins_k4_matches_reference_unpacking() {
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut s = [0u8; 12];
            for b in &mut s {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                *b = (seed >> 24) as u8;
            }
            let sm = scales_mins_k4(&s);
            for (q, expect) in [(0x00u8, 0), (0x11, 1)] {
                let b = BlockQ4_K { d: f16::ONE, dmin: f16::ONE, scales: s, qs: [q; 128] };
                let mut y = [0f32; 256];
                BlockQ4_K::dequantize(&[b], &mut y);
                for j in 0..8 {
                    let want = f32::from(sm[j]) * expect as f32 - f32::from(sm[8 + j]);
                    assert_eq!(y[32 * j], want, "{s:?} sub-block {j}");
                }
            }
        }
    }
}
