//! The activation quantizers `Q8_0` and `Q8_K` in 512-bit vectors, producing the reference's
//! bytes exactly; the points that takes are listed in the AVX2 tier's `quantize` module. Here
//! `vpmovdb` narrows i32 to i8 by truncation, which is C's `(int8_t)` cast.

use crate::quant::{BlockQ8_0, BlockQ8_K, QK, QK_K};
use half::f16;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn load16(x: &[f32; 16]) -> __m512 {
    // SAFETY: `x` is 16 readable floats; `loadu` needs no alignment.
    unsafe { _mm512_loadu_ps(x.as_ptr()) }
}

/// The largest `|x|` of the non-NaN values (0 if none).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn abs_max(x: &[[f32; 16]]) -> f32 {
    let mut m = _mm512_setzero_ps();
    for c in x {
        // `max_ps` returns its second operand when either is NaN: NaN never enters `m`.
        m = _mm512_max_ps(_mm512_abs_ps(load16(c)), m);
    }
    _mm512_reduce_max_ps(m)
}

/// The low bytes of 16 i32 lanes, stored to `out`; returns them sign-extended back.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn store_low_bytes(v: __m512i, out: &mut [i8; 16]) -> __m512i {
    let bytes = _mm512_cvtepi32_epi8(v);
    // SAFETY: `out` is 16 writable bytes; `storeu` needs no alignment.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
    _mm512_cvtepi8_epi32(bytes)
}

/// `Q8_0` activations as ggml's AVX quantizer makes them: `d = amax / 127`,
/// `q = round_half_even(x * (127 / amax))` (`cvtps`: `i32::MIN` for NaN and out of range),
/// saturated to i8.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    for (x, b) in x.as_chunks::<QK>().0.iter().zip(out) {
        let x = x.as_chunks::<16>().0;
        let amax = abs_max(x);
        let id = _mm512_set1_ps(if amax != 0.0 { 127.0 / amax } else { 0.0 });
        for (x, q) in x.iter().zip(b.qs.as_chunks_mut::<16>().0) {
            let bytes = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(load16(x), id)));
            // SAFETY: `q` is 16 writable bytes; `storeu` needs no alignment.
            unsafe { _mm_storeu_si128(q.as_mut_ptr().cast(), bytes) };
        }
        b.d = f16::from_f32(amax / 127.0);
    }
}

/// `Q8_K` activations: `d = max / -127` for the first value of largest magnitude, quants by
/// ggml's `nearest_int` bit trick clamped above at 127; each vector of 16 is one `bsums` group.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn quantize_q8_k(x: &[f32], out: &mut [BlockQ8_K]) {
    for (x, b) in x.as_chunks::<QK_K>().0.iter().zip(out) {
        let xc = x.as_chunks::<16>().0;
        let amax = abs_max(xc);
        if amax == 0.0 {
            *b = bytemuck::Zeroable::zeroed();
            continue;
        }
        // The reference keeps the first element whose |x| beats all before it.
        let target = _mm512_set1_ps(amax);
        let first = xc
            .iter()
            .enumerate()
            .find_map(|(i, c)| {
                let hits = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(_mm512_abs_ps(load16(c)), target);
                (hits != 0).then(|| 16 * i + hits.trailing_zeros() as usize)
            })
            .unwrap_or(0);
        let iscale = -127.0 / x[first];
        let (vs, magic) = (_mm512_set1_ps(iscale), _mm512_set1_ps(12_582_912.0));
        let (mant, bias, top) =
            (_mm512_set1_epi32(0x007f_ffff), _mm512_set1_epi32(0x0040_0000), _mm512_set1_epi32(127));
        for ((x, q), s) in xc.iter().zip(b.qs.as_chunks_mut::<16>().0).zip(&mut b.bsums) {
            // Multiply, then add: two roundings, as the reference (no FMA).
            let t = _mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps(vs, load16(x)), magic));
            let v = _mm512_min_epi32(_mm512_sub_epi32(_mm512_and_si512(t, mant), bias), top);
            *s = _mm512_reduce_add_epi32(store_low_bytes(v, q)) as i16;
        }
        b.d = 1.0 / iscale;
    }
}
