//! Attention over an f16 or f32 KV cache: `q · k` and `o += p · v` with the cache rows widened
//! to f32 on the fly (F16C `vcvtph2ps`), four 8-lane FMA accumulators for the dot product.
//!
//! The reference ([`crate::ops::kv_reference`]) sums the dot product in order, one element at a
//! time, and rounds `p · v` before adding it; these sum over 32 lanes and fuse the
//! multiply-add, so results differ from it by float rounding only.

use super::{fp16, hsum_ps};
use crate::cpu::KvOps;
use half::f16;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f32(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is 8 readable floats; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f16(x: &[f16; 8]) -> __m256 {
    // SAFETY: `x` is 16 readable bytes; `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
}

/// `Σ q[i] · k[i]` over the common length, `$ld` widening 8 cache elements.
macro_rules! dot {
    ($q:expr, $k:expr, $ld:ident, $scalar:expr) => {{
        let n = $q.len().min($k.len());
        let (qc, qt) = $q[..n].as_chunks::<8>();
        let (kc, kt) = $k[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (q4, q1) = qc.as_chunks::<4>();
        let (k4, k1) = kc.as_chunks::<4>();
        for (x, y) in q4.iter().zip(k4) {
            for i in 0..4 {
                acc[i] = _mm256_fmadd_ps(ld_f32(&x[i]), $ld(&y[i]), acc[i]);
            }
        }
        for (x, y) in q1.iter().zip(k1) {
            acc[0] = _mm256_fmadd_ps(ld_f32(x), $ld(y), acc[0]);
        }
        let mut tail = 0f32;
        for (&x, &y) in qt.iter().zip(kt) {
            tail += x * $scalar(y);
        }
        hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail
    }};
}

/// `o[i] += p · v[i]` over the common length.
macro_rules! axpy {
    ($o:expr, $p:expr, $v:expr, $ld:ident, $scalar:expr) => {{
        let n = $o.len().min($v.len());
        let (oc, ot) = $o[..n].as_chunks_mut::<8>();
        let (vc, vt) = $v[..n].as_chunks::<8>();
        let pv = _mm256_set1_ps($p);
        for (x, y) in oc.iter_mut().zip(vc) {
            // SAFETY: `x` is 8 writable floats; `loadu`/`storeu` need no alignment.
            unsafe { _mm256_storeu_ps(x.as_mut_ptr(), _mm256_fmadd_ps(pv, $ld(y), ld_f32(x))) };
        }
        for (x, &y) in ot.iter_mut().zip(vt) {
            *x += $p * $scalar(y);
        }
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    dot!(q, k, ld_f16, fp16)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32(q: &[f32], k: &[f32]) -> f32 {
    dot!(q, k, ld_f32, |x: f32| x)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16(o: &mut [f32], p: f32, v: &[f16]) {
    axpy!(o, p, v, ld_f16, fp16)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f32(o: &mut [f32], p: f32, v: &[f32]) {
    axpy!(o, p, v, ld_f32, |x: f32| x)
}

/// Replaces `ops`' functions with this tier's.
///
/// # Safety
/// The entries written call AVX2/FMA/F16C code: the host must satisfy [`super::supported`].
pub(in crate::cpu) unsafe fn patch(ops: &mut KvOps) {
    // The entries are defined here so they can be reached only through the table.
    fn e_dot_f16(q: &[f32], k: &[f16]) -> f32 {
        // SAFETY: reachable only through a table built for a detected tier (see `patch`).
        unsafe { dot_f16(q, k) }
    }
    fn e_dot_f32(q: &[f32], k: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_f32(q, k) }
    }
    fn e_axpy_f16(o: &mut [f32], p: f32, v: &[f16]) {
        // SAFETY: as above.
        unsafe { axpy_f16(o, p, v) }
    }
    fn e_axpy_f32(o: &mut [f32], p: f32, v: &[f32]) {
        // SAFETY: as above.
        unsafe { axpy_f32(o, p, v) }
    }
    *ops = KvOps { dot_f16: e_dot_f16, dot_f32: e_dot_f32, axpy_f16: e_axpy_f16, axpy_f32: e_axpy_f32 };
}
