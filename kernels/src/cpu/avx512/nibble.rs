//! The AVX-512 kernels over `Q4_0` and `Q4_K` nibble panels ([`crate::cpu::nibble`]): sixteen rows in the
//! lanes, each activation's four bytes broadcast into `vpdpbusd`, per block one FMA of the
//! exact sums into the rows' accumulator: the canonical order, so each output has the bits of
//! the tier's `dot`.
//!
//! A small batch runs token by token over each panel, which stays in L1 for the tokens after
//! the first: the panel is read from memory once per call. From [`TILE_FROM`] tokens (a
//! prompt), each panel is decoded once into the tiled GEMM's layout and its tiles run over it
//! (`avx512::gemm`), the same bits.

use crate::cpu::nibble::{
    L, Q6_K_WORDS, panel_words_q4_0, panel_words_q4_k, panel_words_q5_0, panel_words_q6_k, panel_words_q8_0,
};
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

/// Defines `$name(p, rows, cols, a, n, out, ldo)`: `out[t * ldo + r] = dot(row r, a row t)`
/// for the `rows` rows held in panels `p` and the `n` activation rows of `a`, each bit for bit
/// the canonical `dot`: from [`TILE_FROM`] tokens through the tiled GEMM (`$tiles`), below
/// token by token per panel (`$tokens`).
macro_rules! packed_kernel {
    ($name:ident, $act:ty, $tiles:path, $tokens:expr) => {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(in crate::cpu) unsafe fn $name(
            p: &[u32],
            rows: usize,
            cols: usize,
            a: &[$act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            if n >= TILE_FROM { $tiles(p, rows, cols, a, n, out, ldo) } else { $tokens(p, rows, cols, a, n, out, ldo) }
        }
    };
}

packed_kernel!(gemm_packed_q4_0, BlockQ8_0, super::gemm::gemm_nibble_q4_0, legacy_tokens::<false>);
packed_kernel!(gemm_packed_q5_0, BlockQ8_0, super::gemm::gemm_nibble_q5_0, legacy_tokens::<true>);
packed_kernel!(gemm_packed_q8_0, BlockQ8_0, super::gemm::gemm_bytes_q8_0, q8_0_tokens);
packed_kernel!(gemm_packed_q4_k, BlockQ8_K, super::gemm::gemm_nibble_q4_k, q4_k_tokens);
packed_kernel!(gemm_packed_q6_k, BlockQ8_K, super::gemm::gemm_nibble_q6_k, q6_k_tokens);

/// Every panel (`words` words, `L` rows; `rows` in all) against each of `n` tokens: `token(panel,
/// t)` gives the panel's sixteen outputs for token `t`, stored at `out[t * ldo + r0..]` (the
/// rows past `rows` left out).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn each_panel(
    p: &[u32],
    words: usize,
    rows: usize,
    n: usize,
    out: &mut [f32],
    ldo: usize,
    token: impl Fn(&[u32], usize) -> __m512,
) {
    for (pi, panel) in p.chunks_exact(words).enumerate().take(rows.div_ceil(L)) {
        let r0 = pi * L;
        let live = L.min(rows - r0);
        for t in 0..n {
            let acc = token(panel, t);
            let dst = &mut out[t * ldo + r0..][..live];
            // SAFETY: `dst` holds `live <= 16` floats, the ones the mask writes; the caller's
            // features include AVX-512F.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << live) - 1) as u16, acc) };
        }
    }
}

/// `f(offs, das)` with each activation block's `-off Σ y` and scale, in a per-thread buffer
/// that grows to the largest call once (no allocation after that).
#[inline(always)]
fn with_legacy_terms(a: &[BlockQ8_0], off: i32, f: impl FnOnce(&[i32], &[f32])) {
    SCRATCH.with_borrow_mut(|(offs, das)| {
        offs.clear();
        das.clear();
        offs.extend(a.iter().map(|y| -off * y.qs.iter().map(|&q| i32::from(q)).sum::<i32>()));
        das.extend(a.iter().map(|y| y.d.to_f32()));
        f(offs, das)
    })
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
    with_legacy_terms(a, off, |offs, das| {
        each_panel(p, words, rows, n, out, ldo, |panel, t| {
            let (quants, rest) = panel.split_at(nb * 64);
            let (planes, scales) = if FIFTH { rest.split_at(nb * L) } else { (&rest[..0], rest) };
            let (quants, scales): (&[u8], &[u16]) = (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
            let at = t * nb..(t + 1) * nb;
            panel_token::<FIFTH>(quants, planes, scales, &a[at.clone()], &offs[at.clone()], &das[at])
        })
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

/// A small batch over `Q4_K` nibble panels, token by token per panel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q4_k_tokens(p: &[u32], rows: usize, cols: usize, a: &[BlockQ8_K], n: usize, out: &mut [f32], ldo: usize) {
    let nb = cols / 256;
    DYS.with_borrow_mut(|dys| {
        // Grows to the largest call once; no allocation after that.
        dys.clear();
        for y in a {
            let sums = y.bsums.as_chunks::<2>().0;
            dys.extend(sums.iter().map(|s| y.d * (i32::from(s[0]) + i32::from(s[1])) as f32));
        }
        each_panel(p, panel_words_q4_k(cols), rows, n, out, ldo, |panel, t| {
            let (quants, rest) = panel.split_at(nb * 512);
            let (halves, bytes) = rest.split_at(nb * 16);
            let (quants, halves, bytes): (&[u8], &[u16], &[u8]) =
                (bytemuck::cast_slice(quants), bytemuck::cast_slice(halves), bytemuck::cast_slice(bytes));
            panel_token_q4_k(quants, halves, bytes, &a[t * nb..][..nb], &dys[t * nb * 8..][..nb * 8])
        })
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

/// A small batch over `Q8_0` byte panels, token by token per panel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q8_0_tokens(p: &[u32], rows: usize, cols: usize, a: &[BlockQ8_0], n: usize, out: &mut [f32], ldo: usize) {
    let nb = cols / 32;
    with_legacy_terms(a, 128, |offs, das| {
        each_panel(p, panel_words_q8_0(cols), rows, n, out, ldo, |panel, t| {
            let (quants, scales) = panel.split_at(nb * 128);
            let (quants, scales): (&[u8], &[u16]) = (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
            let at = t * nb..(t + 1) * nb;
            panel_token_q8_0(quants, scales, &a[at.clone()], &offs[at.clone()], &das[at])
        })
    });
}

/// One token's outputs for one `Q6_K` panel: per sub-block `j` of 16 (in order), `acc =
/// fma(f32(Σ (q - 32) y), (d · sc_j) · d_a, acc)`, the offset taken off as `-32 Σ y` from the
/// activation's stated sums.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_token_q6_k(panel: &[u32], y: &[BlockQ8_K]) -> __m512 {
    let m4 = _mm512_set1_epi8(0x0f);
    let mask = |m: u8| _mm512_set1_epi8(m as i8);
    let mut acc = _mm512_setzero_ps();
    for (b, yb) in y.iter().enumerate() {
        let sb = &panel[b * Q6_K_WORDS..][..Q6_K_WORDS];
        for c in 0..(Q6_K_WORDS * 4 / 64) {
            // A hint that never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(sb.as_ptr().cast::<u8>().wrapping_add(PREFETCH + 64 * c).cast());
        }
        let load = |w: usize| {
            // SAFETY: every `w` used below is `16 g` for a vector `g` inside the super-block's
            // words; `loadu` needs no alignment.
            unsafe { _mm512_loadu_si512(sb[w..].as_ptr().cast()) }
        };
        // SAFETY: the scales (256 bytes) and `d` (16 halves) lie at words 768 and 832.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(sb[832..].as_ptr().cast()) });
        let da = _mm512_set1_ps(yb.d);
        let yw = yb.qs.as_chunks::<4>().0;
        let bc = |k: usize| _mm512_set1_epi32(i32::from_le_bytes(yw[k].map(|x| x as u8)));
        let scale_bytes: &[u8] = bytemuck::cast_slice(&sb[768..832]);
        for h in 0..2 {
            // Sub-blocks `8h + 2k + v / 4` for quarter `k` (elements `128h + 32k..`).
            let mut isum: [__m512i; 8] =
                std::array::from_fn(|m| _mm512_set1_epi32(-32 * i32::from(yb.bsums[8 * h + m])));
            for v in 0..8 {
                let (qa, qb, top) = (load((16 * h + v) * L), load((16 * h + 8 + v) * L), load(512 + (8 * h + v) * L));
                let q = [
                    _mm512_or_si512(
                        _mm512_and_si512(qa, m4),
                        _mm512_slli_epi16::<4>(_mm512_and_si512(top, mask(0x03))),
                    ),
                    _mm512_or_si512(
                        _mm512_and_si512(qb, m4),
                        _mm512_slli_epi16::<2>(_mm512_and_si512(top, mask(0x0c))),
                    ),
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(qa), m4),
                        _mm512_and_si512(top, mask(0x30)),
                    ),
                    _mm512_or_si512(
                        _mm512_and_si512(_mm512_srli_epi16::<4>(qb), m4),
                        _mm512_srli_epi16::<2>(_mm512_and_si512(top, mask(0xc0))),
                    ),
                ];
                for k in 0..4 {
                    let m = 2 * k + v / 4;
                    isum[m] = _mm512_dpbusd_epi32(isum[m], q[k], bc(32 * h + 8 * k + v));
                }
            }
            for (m, sum) in isum.iter().enumerate() {
                let j = 8 * h + m;
                // SAFETY: 16 bytes at `scale_bytes[16 j..]`, inside its 256.
                let sc = unsafe { _mm_loadu_si128(scale_bytes[16 * j..].as_ptr().cast()) };
                let s1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)));
                acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*sum), _mm512_mul_ps(s1, da), acc);
            }
        }
    }
    acc
}

/// A small batch over `Q6_K` nibble panels, token by token per panel.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k_tokens(p: &[u32], rows: usize, cols: usize, a: &[BlockQ8_K], n: usize, out: &mut [f32], ldo: usize) {
    let nb = cols / 256;
    each_panel(p, panel_words_q6_k(cols), rows, n, out, ldo, |panel, t| panel_token_q6_k(panel, &a[t * nb..][..nb]));
}
