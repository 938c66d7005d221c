//! The AVX-512 tier (F, BW, VL and VNNI): 512-bit dot products and activation quantizers.
//! Functions it has no version of are the AVX2 tier's.
//!
//! VNNI's `vpdpbusd` multiplies unsigned bytes by signed ones, four products to an i32, with no
//! intermediate saturation. Weights stored with an offset (`Q4_0`'s `q - 8`) stay unsigned and
//! the offset is subtracted as `dpbusd(offset, y)`; signed weights (`Q8_0`) become unsigned by
//! adding 128 (`x ^ 0x80`), then `dpbusd(128, y)` comes off. Both are exact for every byte,
//! unlike the sign trick (`dpbusd(|x|, sign(y, x))`), which cannot negate -128. The k-quants,
//! whose sub-block scales must multiply the products before they are summed, use `maddubs`
//! (exact for their small unsigned quants) and `vpdpwssd` (i16 pairs times the scales into
//! i32).
//!
//! Kernels are `unsafe fn` with `#[target_feature(enable =
//! "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]`, called only through [`patch`]'s
//! entries on hosts where [`supported`] (and the AVX2 tier's test) holds.

mod float;
pub(in crate::cpu) mod gemm;
mod kv;
mod legacy;
pub(in crate::cpu) mod nibble;
mod quantize;
mod softmax;

pub(in crate::cpu) use kv::patch as patch_kv;

use crate::DType;
use crate::quant::*;
use std::arch::x86_64::*;

/// Whether the host has what this tier's kernels are compiled for (beyond the AVX2 tier's).
pub(super) fn supported() -> bool {
    is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512vnni")
}

/// Replaces `ops`' functions with this tier's, where it has them.
///
/// # Safety
/// The entries written call AVX-512 code: the host must satisfy [`supported`] and the AVX2
/// tier's `supported`.
pub(super) unsafe fn patch(ops: &mut crate::quant::Ops) {
    // The types the GEMM below covers keep the AVX2 tier's dots, in the GEMM's canonical
    // order (its `dot` and `dot_rows`), so that a token gets the same bits alone and in any
    // batch.
    match ops.dtype {
        DType::Q4_1 => ops.dot = dot_entry!(BlockQ4_1, legacy::dot_q4_1),
        DType::Q5_1 => ops.dot = dot_entry!(BlockQ5_1, legacy::dot_q5_1),
        DType::Q8_0 => ops.activate = quantize_entry!(BlockQ8_0, quantize::quantize_q8_0),
        DType::Q8_K => ops.activate = quantize_entry!(BlockQ8_K, quantize::quantize_q8_k),
        _ => {}
    }
    // Floats: one order of this tier's own for `dot`, `dot_rows` and `gemm` (`float`).
    float_entries!(ops, float);
    // The tiled GEMM of the quantized types (its panels decoded by the portable code, so
    // from the batch sizes where that pays).
    ops.gemm_from = portable_gemm_from(ops.dtype);
    match ops.dtype {
        DType::Q4_0 => ops.gemm = gemm_entry!(BlockQ4_0, gemm::gemm_q4_0),
        DType::Q5_0 => ops.gemm = gemm_entry!(BlockQ5_0, gemm::gemm_q5_0),
        DType::Q8_0 => ops.gemm = gemm_entry!(BlockQ8_0, gemm::gemm_q8_0),
        DType::Q4_K => ops.gemm = gemm_entry!(BlockQ4_K, gemm::gemm_q4_k),
        DType::Q5_K => ops.gemm = gemm_entry!(BlockQ5_K, gemm::gemm_q5_k),
        DType::Q6_K => ops.gemm = gemm_entry!(BlockQ6_K, gemm::gemm_q6_k),
        _ => {}
    }
    // Weights packed once at load into panels of their own stored bytes (`cpu::nibble`):
    // the file's size, read by every batch size and row lookup, so the map is released.
    match ops.dtype {
        DType::Q4_0 => nibble_entries!(ops, BlockQ4_0, pack_q4_0, nibble::gemm_packed_q4_0, panel_words_q4_0, row_q4_0),
        DType::Q5_0 => nibble_entries!(ops, BlockQ5_0, pack_q5_0, nibble::gemm_packed_q5_0, panel_words_q5_0, row_q5_0),
        DType::Q8_0 => nibble_entries!(ops, BlockQ8_0, pack_q8_0, nibble::gemm_packed_q8_0, panel_words_q8_0, row_q8_0),
        DType::Q4_K => nibble_entries!(ops, BlockQ4_K, pack_q4_k, nibble::gemm_packed_q4_k, panel_words_q4_k, row_q4_k),
        DType::Q6_K => nibble_entries!(ops, BlockQ6_K, pack_q6_k, nibble::gemm_packed_q6_k, panel_words_q6_k, row_q6_k),
        _ => {}
    }
    // `dot_rows` beside every dot above (each row bit for bit that `dot`).
    match ops.dtype {
        DType::Q4_1 => ops.dot_rows = dot_rows_entry!(BlockQ4_1, rows::rows_q4_1),
        DType::Q5_1 => ops.dot_rows = dot_rows_entry!(BlockQ5_1, rows::rows_q5_1),
        _ => {}
    }
}

/// The `dot_rows` kernels: this tier's dots looped over consecutive rows.
mod rows {
    use super::legacy;
    use crate::quant::*;
    dot_rows_kernel!(rows_q4_1, BlockQ4_1, legacy::dot_q4_1, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
    dot_rows_kernel!(rows_q5_1, BlockQ5_1, legacy::dot_q5_1, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
}

/// `lo` in the low 256 bits, `hi` in the high.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn join(lo: __m256i, hi: __m256i) -> __m512i {
    _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
}

/// `Σ (q - off) * y` in 16 i32 lanes, four bytes to a lane, exact for any unsigned `q` and
/// signed `y`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn dot_u8_i8_offset(q: __m512i, y: __m512i, off: u8) -> __m512i {
    let zero = _mm512_setzero_si512();
    let p = _mm512_dpbusd_epi32(zero, q, y);
    if off == 0 { p } else { _mm512_sub_epi32(p, _mm512_dpbusd_epi32(zero, _mm512_set1_epi8(off as i8), y)) }
}
