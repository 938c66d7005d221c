//! The AVX-512 kernels over `Q4_0` and `Q4_K` nibble panels ([`crate::cpu::nibble`]): sixteen rows in the
//! lanes, each activation's four bytes broadcast into `vpdpbusd`, per block one FMA of the
//! exact sums into the rows' accumulator: the canonical order, so each output has the bits of
//! the tier's `dot`.
//!
//! A small batch runs token by token over each panel, which stays in L1 for the tokens after
//! the first: the panel is read from memory once per call. From [`TILE_FROM`] tokens (a
//! prompt), each panel is decoded once into the tiled GEMM's layout and its tiles run over it
//! (`avx512::gemm`), the same bits.

use crate::cpu::nibble::{L, panel_words_q4_0, panel_words_q4_k, panel_words_q5_0, panel_words_q8_0};
use crate::quant::{BlockQ8_0, BlockQ8_K};
use std::arch::x86_64::*;

/// Batches from this many tokens go through the tiled GEMM.
const TILE_FROM: usize = 16;

/// How far ahead of the quants being summed the next ones are asked for (bytes).
const PREFETCH: usize = 2048;

/// One token's outputs for one `Q4_0` panel, or with `planes` a `Q5_0` one:
/// `Σ_b fma(f32(Σ (q - OFF) y), d_w · d_a, acc)` per lane (`offs` holds `-OFF Σ y`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_token<const FIFTH: bool>(
    quants: &[u8],
    planes: &[u32],
    scales: &[u16],
    y: &[BlockQ8_0],
    offs: &[i32],
    das: &[f32],
) -> __m512 {
    let m4 = _mm512_set1_epi8(0x0f);
    let bits = _mm512_set1_epi32(0x1010_1010);
    let mut acc = _mm512_setzero_ps();
    for (b, yb) in y.iter().enumerate() {
        let q = &quants[b * 256..][..256];
        // A hint that never faults, whatever the address.
        for c in 0..4 {
            _mm_prefetch::<_MM_HINT_T0>(q.as_ptr().wrapping_add(PREFETCH + 64 * c).cast());
        }
        // SAFETY: with `FIFTH`, `planes[b * 16..]` holds 16 words; `loadu` needs no alignment.
        let pl =
            if FIFTH { unsafe { _mm512_loadu_si512(planes[b * L..].as_ptr().cast()) } } else { _mm512_setzero_si512() };
        let yw = yb.qs.as_chunks::<4>().0;
        let bc = |k: usize| _mm512_set1_epi32(i32::from_le_bytes(yw[k].map(|x| x as u8)));
        // Two chains (low nibbles, high nibbles); the i32 sums are exact, so how they are
        // split changes no bit.
        let (mut lo, mut hi) = (_mm512_set1_epi32(offs[b]), _mm512_setzero_si512());
        unroll!(v in [0, 1, 2, 3] {
            // SAFETY: `q` holds four vectors of 64 bytes; `loadu` needs no alignment.
            let raw = unsafe { _mm512_loadu_si512(q[64 * v..].as_ptr().cast()) };
            let (mut ql, mut qh) = (_mm512_and_si512(raw, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4));
            if FIFTH {
                // Plane bits `8i + v` and `8i + 4 + v` to bit 4 of byte `i`.
                let (up, down) = match v {
                    0 => (_mm512_slli_epi32::<4>(pl), pl),
                    1 => (_mm512_slli_epi32::<3>(pl), _mm512_srli_epi32::<1>(pl)),
                    2 => (_mm512_slli_epi32::<2>(pl), _mm512_srli_epi32::<2>(pl)),
                    _ => (_mm512_slli_epi32::<1>(pl), _mm512_srli_epi32::<3>(pl)),
                };
                ql = _mm512_or_si512(ql, _mm512_and_si512(up, bits));
                qh = _mm512_or_si512(qh, _mm512_and_si512(down, bits));
            }
            lo = _mm512_dpbusd_epi32(lo, ql, bc(v));
            hi = _mm512_dpbusd_epi32(hi, qh, bc(4 + v));
        });
        // SAFETY: `scales[b * 16..]` holds 16 halves (32 bytes); `loadu` needs no alignment.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales[b * L..].as_ptr().cast()) });
        let s = _mm512_mul_ps(d, _mm512_set1_ps(das[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), s, acc);
    }
    acc
}

thread_local! {
    /// Per thread: each token's per-block `-8 Σ y` and activation scale.
    static SCRATCH: std::cell::RefCell<(Vec<i32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `out[t * ldo + r] = dot(row r, a row t)` for the `rows` rows held in nibble panels `p`
/// and the `n` activation rows of `a`, each bit for bit the canonical `dot`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn gemm_packed_q4_0(
    p: &[u32],
    rows: usize,
    cols: usize,
    a: &[BlockQ8_0],
    n: usize,
    out: &mut [f32],
    ldo: usize,
) {
    if n >= TILE_FROM {
        return super::gemm::gemm_nibble_q4_0(p, rows, cols, a, n, out, ldo);
    }
    legacy_tokens::<false>(p, rows, cols, a, n, out, ldo);
}

/// [`gemm_packed_q4_0`] for `Q5_0` nibble panels.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn gemm_packed_q5_0(
    p: &[u32],
    rows: usize,
    cols: usize,
    a: &[BlockQ8_0],
    n: usize,
    out: &mut [f32],
    ldo: usize,
) {
    if n >= TILE_FROM {
        return super::gemm::gemm_nibble_q5_0(p, rows, cols, a, n, out, ldo);
    }
    legacy_tokens::<true>(p, rows, cols, a, n, out, ldo);
}

/// A small batch over `Q4_0` (or, `FIFTH`, `Q5_0`) nibble panels, token by token per panel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn legacy_tokens<const FIFTH: bool>(
    p: &[u32],
    rows: usize,
    cols: usize,
    a: &[BlockQ8_0],
    n: usize,
    out: &mut [f32],
    ldo: usize,
) {
    let nb = cols / 32;
    let (words, off) = if FIFTH { (panel_words_q5_0(cols), 16) } else { (panel_words_q4_0(cols), 8) };
    SCRATCH.with_borrow_mut(|(offs, das)| {
        // Grows to the largest call once; no allocation after that.
        offs.clear();
        das.clear();
        offs.extend(a.iter().map(|y| -off * y.qs.iter().map(|&q| i32::from(q)).sum::<i32>()));
        das.extend(a.iter().map(|y| y.d.to_f32()));
        for (pi, panel) in p.chunks_exact(words).enumerate().take(rows.div_ceil(L)) {
            let (quants, rest) = panel.split_at(nb * 64);
            let (planes, scales) = if FIFTH { rest.split_at(nb * L) } else { (&rest[..0], rest) };
            let (quants, scales): (&[u8], &[u16]) = (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
            let r0 = pi * L;
            let live = L.min(rows - r0);
            for t in 0..n {
                let acc = panel_token::<FIFTH>(
                    quants,
                    planes,
                    scales,
                    &a[t * nb..][..nb],
                    &offs[t * nb..][..nb],
                    &das[t * nb..][..nb],
                );
                let dst = &mut out[t * ldo + r0..][..live];
                // SAFETY: `dst` holds `live <= 16` floats, the ones the mask writes.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << live) - 1) as u16, acc) };
            }
        }
    });
}

/// One token's outputs for one `Q4_K` panel, sub-block after sub-block:
/// `acc = fma(f32(Σ q y), (d · sc) · d_a, acc)`, then `acc = fma(-dmin · m, d_a · Σ y, acc)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_token_q4_k(quants: &[u8], halves: &[u16], bytes: &[u8], y: &[BlockQ8_K], dys: &[f32]) -> __m512 {
    let m4 = _mm512_set1_epi8(0x0f);
    let sign = _mm512_set1_epi32(i32::MIN);
    let mut acc = _mm512_setzero_ps();
    for (b, yb) in y.iter().enumerate() {
        let q = &quants[b * 2048..][..2048];
        // SAFETY: `halves[b * 32..]` holds 32 halves and `bytes[b * 256..]` 256 bytes;
        // `loadu` needs no alignment.
        let (d, ndmin) = unsafe {
            let h = halves[b * 32..].as_ptr();
            (_mm512_cvtph_ps(_mm256_loadu_si256(h.cast())), _mm512_cvtph_ps(_mm256_loadu_si256(h.add(L).cast())))
        };
        // `-dmin` by the sign bit (xor in the integer domain: `xorps` on zmm is AVX512DQ).
        let ndmin = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(ndmin), sign));
        let da = _mm512_set1_ps(yb.d);
        let yw = yb.qs.as_chunks::<4>().0;
        let bc = |k: usize| _mm512_set1_epi32(i32::from_le_bytes(yw[k].map(|x| x as u8)));
        let col = |j: usize| {
            // SAFETY: 16 bytes at `bytes[b * 256 + 16 j..]`, inside the super-block's 256.
            let x = unsafe { _mm_loadu_si128(bytes[b * 256 + 16 * j..].as_ptr().cast()) };
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x))
        };
        for k in 0..4 {
            let qk = &q[512 * k..][..512];
            for c in 0..8 {
                // A hint that never faults, whatever the address.
                _mm_prefetch::<_MM_HINT_T0>(qk.as_ptr().wrapping_add(PREFETCH + 64 * c).cast());
            }
            let (mut lo, mut hi) = (_mm512_setzero_si512(), _mm512_setzero_si512());
            for v in 0..8 {
                // SAFETY: `qk` holds eight vectors of 64 bytes; `loadu` needs no alignment.
                let raw = unsafe { _mm512_loadu_si512(qk[64 * v..].as_ptr().cast()) };
                lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(raw, m4), bc(16 * k + v));
                hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4), bc(16 * k + 8 + v));
            }
            for (j, isum) in [(2 * k, lo), (2 * k + 1, hi)] {
                let s1 = _mm512_mul_ps(d, col(j));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(s1, da), acc);
                let s2 = _mm512_mul_ps(ndmin, col(8 + j));
                acc = _mm512_fmadd_ps(s2, _mm512_set1_ps(dys[8 * b + j]), acc);
            }
        }
    }
    acc
}

thread_local! {
    /// Per thread: each token's per-sub-block `d_a · Σ y`.
    static DYS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// [`gemm_packed_q4_0`] for `Q4_K` nibble panels.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn gemm_packed_q4_k(
    p: &[u32],
    rows: usize,
    cols: usize,
    a: &[BlockQ8_K],
    n: usize,
    out: &mut [f32],
    ldo: usize,
) {
    if n >= TILE_FROM {
        return super::gemm::gemm_nibble_q4_k(p, rows, cols, a, n, out, ldo);
    }
    let nb = cols / 256;
    let words = panel_words_q4_k(cols);
    DYS.with_borrow_mut(|dys| {
        // Grows to the largest call once; no allocation after that.
        dys.clear();
        for y in a {
            let sums = y.bsums.as_chunks::<2>().0;
            dys.extend(sums.iter().map(|s| y.d * (i32::from(s[0]) + i32::from(s[1])) as f32));
        }
        for (pi, panel) in p.chunks_exact(words).enumerate().take(rows.div_ceil(L)) {
            let (quants, rest) = panel.split_at(nb * 512);
            let (halves, bytes) = rest.split_at(nb * 16);
            let (quants, halves, bytes): (&[u8], &[u16], &[u8]) =
                (bytemuck::cast_slice(quants), bytemuck::cast_slice(halves), bytemuck::cast_slice(bytes));
            let r0 = pi * L;
            let live = L.min(rows - r0);
            for t in 0..n {
                let acc = panel_token_q4_k(quants, halves, bytes, &a[t * nb..][..nb], &dys[t * nb * 8..][..nb * 8]);
                let dst = &mut out[t * ldo + r0..][..live];
                // SAFETY: `dst` holds `live <= 16` floats, the ones the mask writes.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << live) - 1) as u16, acc) };
            }
        }
    });
}

/// One token's outputs for one `Q8_0` panel: `Σ_b fma(f32(Σ q y), d_w · d_a, acc)` per lane,
/// the unsigned quants' offset (`q + 128`) taken off as `-128 Σ y`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_token_q8_0(quants: &[u8], scales: &[u16], y: &[BlockQ8_0], offs: &[i32], das: &[f32]) -> __m512 {
    let mut acc = _mm512_setzero_ps();
    for (b, yb) in y.iter().enumerate() {
        let q = &quants[b * 512..][..512];
        for c in 0..8 {
            // A hint that never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(q.as_ptr().wrapping_add(PREFETCH + 64 * c).cast());
        }
        let yw = yb.qs.as_chunks::<4>().0;
        let bc = |k: usize| _mm512_set1_epi32(i32::from_le_bytes(yw[k].map(|x| x as u8)));
        let (mut even, mut odd) = (_mm512_set1_epi32(offs[b]), _mm512_setzero_si512());
        for v in (0..8).step_by(2) {
            // SAFETY: `q` holds eight vectors of 64 bytes; `loadu` needs no alignment.
            let (w0, w1) = unsafe {
                (_mm512_loadu_si512(q[64 * v..].as_ptr().cast()), _mm512_loadu_si512(q[64 * v + 64..].as_ptr().cast()))
            };
            even = _mm512_dpbusd_epi32(even, w0, bc(v));
            odd = _mm512_dpbusd_epi32(odd, w1, bc(v + 1));
        }
        // SAFETY: `scales[b * 16..]` holds 16 halves (32 bytes); `loadu` needs no alignment.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales[b * L..].as_ptr().cast()) });
        let s = _mm512_mul_ps(d, _mm512_set1_ps(das[b]));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), s, acc);
    }
    acc
}

/// [`gemm_packed_q4_0`] for `Q8_0` byte panels.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn gemm_packed_q8_0(
    p: &[u32],
    rows: usize,
    cols: usize,
    a: &[BlockQ8_0],
    n: usize,
    out: &mut [f32],
    ldo: usize,
) {
    if n >= TILE_FROM {
        return super::gemm::gemm_bytes_q8_0(p, rows, cols, a, n, out, ldo);
    }
    let nb = cols / 32;
    let words = panel_words_q8_0(cols);
    SCRATCH.with_borrow_mut(|(offs, das)| {
        // Grows to the largest call once; no allocation after that.
        offs.clear();
        das.clear();
        offs.extend(a.iter().map(|y| -128 * y.qs.iter().map(|&q| i32::from(q)).sum::<i32>()));
        das.extend(a.iter().map(|y| y.d.to_f32()));
        for (pi, panel) in p.chunks_exact(words).enumerate().take(rows.div_ceil(L)) {
            let (quants, scales) = panel.split_at(nb * 128);
            let (quants, scales): (&[u8], &[u16]) = (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
            let r0 = pi * L;
            let live = L.min(rows - r0);
            for t in 0..n {
                let acc =
                    panel_token_q8_0(quants, scales, &a[t * nb..][..nb], &offs[t * nb..][..nb], &das[t * nb..][..nb]);
                let dst = &mut out[t * ldo + r0..][..live];
                // SAFETY: `dst` holds `live <= 16` floats, the ones the mask writes.
                unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << live) - 1) as u16, acc) };
            }
        }
    });
}
