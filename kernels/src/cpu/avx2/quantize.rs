//! The activation quantizers `Q8_0`, `Q8_1` and `Q8_K`, producing the reference's
//! activation bytes exactly ([`Quantize::quantize_activations`](crate::quant::Quantize):
//! ggml's x86 `quantize_row_q8_{0,1}` and `quantize_row_q8_K_ref`), for every input including
//! NaN, infinities and subnormals.
//!
//! What that takes, beside doing the reference's float operations in the same order:
//! - the absolute maximum ignores NaN, as `f32::max` does: `max_ps(|x|, acc)` returns `acc`
//!   when `|x|` is NaN;
//! - `Q8_0`/`Q8_1` multiply by `127 / amax` and round half to even (`cvtps`, which gives
//!   `i32::MIN` for NaN and out-of-range values), then narrow with saturating packs, as ggml's
//!   AVX code does;
//! - `Q8_K`'s out-of-range and NaN conversions give `i32::MIN` (`cvttps`, as C on x86-64),
//!   and its narrowing to i8 keeps the low byte (C's cast), so a saturating pack would be
//!   wrong there.

use crate::quant::{BlockQ8_0, BlockQ8_1, BlockQ8_K, QK, QK_K};
use half::f16;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load8(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is 8 readable floats; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn abs(v: __m256) -> __m256 {
    _mm256_andnot_ps(_mm256_set1_ps(-0.0), v)
}

/// The largest `|x|` of the rows' non-NaN values (0 if none).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn abs_max(x: &[[f32; 8]]) -> f32 {
    let mut m = _mm256_setzero_ps();
    for c in x {
        // Operand order matters: `max_ps` returns its second operand when either is NaN.
        m = _mm256_max_ps(abs(load8(c)), m);
    }
    let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)))
}

/// The low bytes of 32 i32 lanes, in order (C's `(int8_t)` of each).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn low_bytes(v: [__m256i; 4], out: &mut [i8; 32]) {
    let ff = _mm256_set1_epi32(0xff);
    // Masked to 0..=255 first, so the saturating packs pack without saturating.
    let ab = _mm256_packus_epi32(_mm256_and_si256(v[0], ff), _mm256_and_si256(v[1], ff));
    let cd = _mm256_packus_epi32(_mm256_and_si256(v[2], ff), _mm256_and_si256(v[3], ff));
    let bytes = _mm256_packus_epi16(ab, cd);
    // The packs work within 128-bit lanes: dwords come out as 0 2 4 6 1 3 5 7.
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `out` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), bytes) }
}

/// `d` and the quants of one `Q8_0`/`Q8_1` block as ggml's AVX quantizer makes them:
/// `d = amax / 127`, `q = round_half_even(x * (127 / amax))` saturated to i8; returns `d` and
/// the wrapping sum of the quants before saturation (`Q8_1`'s `s`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q8_block(x: &[f32; QK], qs: &mut [i8; QK]) -> (f32, i32) {
    let x = x.as_chunks::<8>().0;
    let amax = abs_max(x);
    let id = _mm256_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
    let q: [__m256i; 4] = std::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_mul_ps(load8(&x[i]), id)));
    let sum = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let sum = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256::<1>(sum));
    let sum = _mm_add_epi32(sum, _mm_unpackhi_epi64(sum, sum));
    let sum = _mm_cvtsi128_si32(_mm_add_epi32(sum, _mm_shuffle_epi32::<0b01>(sum)));
    let bytes = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    // The packs work within 128-bit lanes: dwords come out as 0 2 4 6 1 3 5 7.
    let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    // SAFETY: `qs` is 32 writable bytes; `storeu` needs no alignment.
    unsafe { _mm256_storeu_si256(qs.as_mut_ptr().cast(), bytes) };
    (amax / 127.0, sum)
}

/// `Q8_0` activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (x, b) in x.as_chunks::<QK>().0.iter().zip(out) {
        b.d = f16::from_f32(q8_block(x, &mut b.qs).0);
    }
}

/// `Q8_1` activations: `Q8_0`'s, plus `s = d * Σ q` from the unrounded `d`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1]) {
    for (x, b) in x.as_chunks::<QK>().0.iter().zip(out) {
        let (d, sum) = q8_block(x, &mut b.qs);
        b.d = f16::from_f32(d);
        b.s = f16::from_f32(d * sum as f32);
    }
}

/// `Q8_K` activations: `d = max / -127` for the first value of largest magnitude, quants by
/// ggml's `nearest_int` bit trick (ties to even), clamped above at 127, and the sums of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    for (x, b) in x.as_chunks::<QK_K>().0.iter().zip(out) {
        let xc = x.as_chunks::<8>().0;
        let amax = abs_max(xc);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        // The reference keeps the first element whose |x| beats all before it: the first
        // that equals the maximum.
        let target = _mm256_set1_ps(amax);
        let first = xc
            .iter()
            .enumerate()
            .find_map(|(i, c)| {
                let hits = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(abs(load8(c)), target));
                (hits != 0).then(|| 8 * i + hits.trailing_zeros() as usize)
            })
            .unwrap_or(0);
        let iscale = -127.0 / x[first];
        let (vs, magic) = (_mm256_set1_ps(iscale), _mm256_set1_ps(12_582_912.0));
        let (mant, bias, top) =
            (_mm256_set1_epi32(0x007f_ffff), _mm256_set1_epi32(0x0040_0000), _mm256_set1_epi32(127));
        for (xq, qs) in xc.as_chunks::<4>().0.iter().zip(b.qs.as_chunks_mut::<32>().0) {
            let q = std::array::from_fn(|i| {
                // Multiply, then add: two roundings, as the reference (no FMA).
                let t = _mm256_castps_si256(_mm256_add_ps(_mm256_mul_ps(vs, load8(&xq[i])), magic));
                _mm256_min_epi32(_mm256_sub_epi32(_mm256_and_si256(t, mant), bias), top)
            });
            low_bytes(q, qs);
        }
        for (s, q) in b.bsums.iter_mut().zip(b.qs.chunks_exact(16)) {
            *s = q.iter().map(|&q| i16::from(q)).sum();
        }
        b.d = 1.0 / iscale;
    }
}
