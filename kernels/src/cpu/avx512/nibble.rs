//! The AVX-512 kernels over nibble and byte panels ([`crate::cpu::nibble`]): sixteen rows in the
//! lanes, each activation's four bytes broadcast into `vpdpbusd`, per block one FMA of the
//! exact sums into the rows' accumulator: the canonical order, so each output has the bits of
//! the tier's `dot`.
//!
//! A small batch (decode steps of several sequences) runs over each panel in groups of
//! tokens: the panel's quant vectors are loaded and unpacked once per group and feed every
//! token's own accumulators, so the unpacking is shared and only the `vpdpbusd`s grow with the
//! batch. The panel stays in L1 for the groups after the first: it is read from memory once
//! per call. A token's sums are exact integers and its FMAs run in the same order whatever
//! group it is in, so grouping changes no bit. From [`TILE_FROM`] tokens (a prompt), each
//! panel is decoded once into the tiled GEMM's layout and its tiles run over it
//! (`avx512::gemm`), the same bits.

use crate::cpu::entry::word;
use crate::cpu::nibble::{
    L, Q6_K_SUB, Q6_K_WORDS, panel_words_q4_0, panel_words_q4_k, panel_words_q5_0, panel_words_q6_k, panel_words_q8_0,
    rows_of, with_legacy_terms, with_sub_sums,
};
use crate::quant::{BlockQ8_0, BlockQ8_K};
use std::arch::x86_64::*;

/// Batches from this many tokens go through the tiled GEMM.
const TILE_FROM: usize = 16;

/// How far ahead of the quants being summed the next ones are asked for, into L2 and into L1
/// (bytes): [`prefetch`]. The L1 hint: [`L1_AHEAD`] for every group of two or more tokens and
/// for `Q6_K`, [`Q4_0_L1`] for one token of `Q4_0`, none for one token of the others.
const PREFETCH_L2: usize = 32768;
const L1_AHEAD: usize = 16384;
const Q4_0_L1: usize = 4096;

/// Asks for the line `PREFETCH_L2` bytes past `at` into L2 and, with `L1 > 0`, the one `L1`
/// bytes past it into L1: the far hint keeps enough misses in flight to stream from memory;
/// the near one has the line in L1 when the kernel gets there. One core streaming a matrix
/// far larger than the caches (`matvec` example, 65536 x 2048, one token, AVX-512 EPYC, Zen
/// 4), the L2 hint against the L1 hint 2 KiB ahead it replaced: `Q8_0` 24-25 GB/s against
/// 12-14, `Q4_0` 24 against 16, `Q4_K` 20 against 14, `Q5_0` 21 against 16, `Q6_K` 13 against
/// 8 (and against no hint at all, `Q6_K` 13.4-13.6 against 8.4-8.6). The
/// L1 hint as well, one thread / two: `Q6_K` (8 KiB ahead) 13.4-13.6 -> 16.5-17.6 GB/s /
/// 24.1-24.4 -> 28.2-29.0 (16 KiB: 15.2-15.7 / 25.6-26.9); `Q4_0` (4 KiB) 21.7-21.9 ->
/// 23.7-23.9 / 41.7-43.3 -> 46.3-47.8, and 16384 x 8192 21.5-22.0 -> 24.4-25.0 / 32.7-33.9 ->
/// 34.7-35.4. For one token, `Q4_K` ran 2-5% slower with it (2 and 4 KiB), `Q5_0` 4-5% on
/// one thread, and `Q8_0`, 5-7% faster at 65536 x 2048, 4-8% slower as Gemma 3's output head
/// (262144 x 640, whose panels are 10 KiB), 10% slower at 16 KiB: they go without. For a
/// group of tokens the kernel is longer per line and the L1 hint pays for every type
/// (`packed_batch`, 65536 x 2048, one thread, GMAC/s without / with it 16 KiB ahead): two
/// tokens `Q4_K` 72-76 -> 90-95, `Q5_0` 61-63 -> 64-67; four `Q4_K` 110-113 -> 133-134,
/// `Q5_0` 94-99 -> 118-119; eight `Q4_K` 142 -> 154-156, `Q5_0` 135-137 -> 151-158, `Q8_0`
/// 122-123 -> 139-140 (Gemma 3's head: 129-131 -> 147).
#[inline(always)]
fn prefetch<const L1: usize>(at: *const u8) {
    // SAFETY: a prefetch never faults, whatever the address (`wrapping_add` makes none out of
    // bounds in Rust's sense either); SSE is in every x86-64.
    unsafe {
        _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(PREFETCH_L2).cast());
        if L1 > 0 {
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(L1).cast());
        }
    }
}

/// [`prefetch`] for a group of `T` tokens: the L1 hint [`L1_AHEAD`] from two tokens on,
/// `ONE` bytes ahead (0: none) for one token.
#[inline(always)]
fn prefetch_for<const T: usize, const ONE: usize>(at: *const u8) {
    if T >= 2 { prefetch::<L1_AHEAD>(at) } else { prefetch::<ONE>(at) }
}

/// `[x; T]` of one vector (the accumulators of a group of tokens).
#[inline(always)]
fn splat<V: Copy, const T: usize>(x: V) -> [V; T] {
    [x; T]
}

/// Activation bytes `4k..4k + 4` of a block, broadcast to every lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn bcast(qs: &[i8], k: usize) -> __m512i {
    let w = &qs[4 * k..4 * k + 4];
    _mm512_set1_epi32(word([w[0], w[1], w[2], w[3]]))
}

/// `T` tokens' outputs for one `Q4_0` panel, or with `planes` a `Q5_0` one:
/// `Σ_b fma(f32(Σ (q - OFF) y), d_w · d_a, acc)` per lane (`offs` holds `-OFF Σ y`), token
/// `t` reading activation blocks `y[t]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_legacy<const T: usize, const FIFTH: bool>(
    quants: &[u8],
    planes: &[u32],
    scales: &[u16],
    y: [&[BlockQ8_0]; T],
    offs: [&[i32]; T],
    das: [&[f32]; T],
) -> [__m512; T] {
    let m4 = _mm512_set1_epi8(0x0f);
    let bits = _mm512_set1_epi32(0x1010_1010);
    let mut acc = splat::<_, T>(_mm512_setzero_ps());
    for b in 0..y[0].len() {
        let q = &quants[b * 256..][..256];
        for c in 0..4 {
            let at = q.as_ptr().wrapping_add(64 * c);
            if FIFTH { prefetch_for::<T, 0>(at) } else { prefetch_for::<T, Q4_0_L1>(at) }
        }
        // SAFETY: with `FIFTH`, `planes[b * 16..]` holds 16 words; `loadu` needs no alignment.
        let pl =
            if FIFTH { unsafe { _mm512_loadu_si512(planes[b * L..].as_ptr().cast()) } } else { _mm512_setzero_si512() };
        let yq: [&[i8]; T] = arr!(&[][..]; T, |t| &y[t][b].qs[..]);
        // Two chains per token (low nibbles, high nibbles); the i32 sums are exact, so how
        // they are split changes no bit.
        let mut lo = arr!(_mm512_setzero_si512(); T, |t| _mm512_set1_epi32(offs[t][b]));
        let mut hi = splat::<_, T>(_mm512_setzero_si512());
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
            for t in 0..T {
                lo[t] = _mm512_dpbusd_epi32(lo[t], ql, bcast(yq[t], v));
                hi[t] = _mm512_dpbusd_epi32(hi[t], qh, bcast(yq[t], 4 + v));
            }
        });
        // SAFETY: `scales[b * 16..]` holds 16 halves (32 bytes); `loadu` needs no alignment.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales[b * L..].as_ptr().cast()) });
        for t in 0..T {
            let s = _mm512_mul_ps(d, _mm512_set1_ps(das[t][b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo[t], hi[t])), s, acc[t]);
        }
    }
    acc
}

packed_kernels! {
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c":
    gemm_packed_q4_0(BlockQ8_0, super::gemm::gemm_nibble_q4_0, legacy_tokens::<false>);
    gemm_packed_q5_0(BlockQ8_0, super::gemm::gemm_nibble_q5_0, legacy_tokens::<true>);
    gemm_packed_q8_0(BlockQ8_0, super::gemm::gemm_bytes_q8_0, q8_0_tokens);
    gemm_packed_q4_k(BlockQ8_K, super::gemm::gemm_nibble_q4_k, q4_k_tokens);
    gemm_packed_q6_k(BlockQ8_K, super::gemm::gemm_nibble_q6_k, q6_k_tokens);
    // The AMX tier's: prompts' tiles on the matrix unit, small batches as above.
    amx_gemm_packed_q4_0(BlockQ8_0, super::gemm::amx_gemm_nibble_q4_0, legacy_tokens::<false>);
    amx_gemm_packed_q5_0(BlockQ8_0, super::gemm::amx_gemm_nibble_q5_0, legacy_tokens::<true>);
    amx_gemm_packed_q8_0(BlockQ8_0, super::gemm::amx_gemm_bytes_q8_0, q8_0_tokens);
    amx_gemm_packed_q4_k(BlockQ8_K, super::gemm::amx_gemm_nibble_q4_k, q4_k_tokens);
    amx_gemm_packed_q6_k(BlockQ8_K, super::gemm::amx_gemm_nibble_q6_k, q6_k_tokens);
}

/// `acc`'s lanes into `dst` (the first `dst.len() <= 16`).
#[inline(always)]
fn store(dst: &mut [f32], acc: &__m512) {
    // SAFETY: `dst` holds the `dst.len() <= 16` floats the mask writes; the callers' features
    // include AVX-512F.
    unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr(), ((1u32 << dst.len()) - 1) as u16, *acc) };
}

/// `T` tokens' outputs for one `Q4_K` panel, sub-block after sub-block:
/// `acc = fma(f32(Σ q y), (d · sc) · d_a, acc)`, then `acc = fma(-dmin · m, d_a · Σ y, acc)`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_q4_k<const T: usize>(
    quants: &[u8],
    halves: &[u16],
    bytes: &[u8],
    y: [&[BlockQ8_K]; T],
    dys: [&[f32]; T],
) -> [__m512; T] {
    let m4 = _mm512_set1_epi8(0x0f);
    let sign = _mm512_set1_epi32(i32::MIN);
    let mut acc = splat::<_, T>(_mm512_setzero_ps());
    for b in 0..y[0].len() {
        let q = &quants[b * 2048..][..2048];
        // SAFETY: `halves[b * 32..]` holds 32 halves and `bytes[b * 256..]` 256 bytes;
        // `loadu` needs no alignment.
        let (d, ndmin) = unsafe {
            let h = halves[b * 32..].as_ptr();
            (_mm512_cvtph_ps(_mm256_loadu_si256(h.cast())), _mm512_cvtph_ps(_mm256_loadu_si256(h.add(L).cast())))
        };
        // `-dmin` by the sign bit (xor in the integer domain: `xorps` on zmm is AVX512DQ).
        let ndmin = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(ndmin), sign));
        let da = arr!(_mm512_setzero_ps(); T, |t| _mm512_set1_ps(y[t][b].d));
        let yq: [&[i8]; T] = arr!(&[][..]; T, |t| &y[t][b].qs[..]);
        let col = |j: usize| {
            // SAFETY: 16 bytes at `bytes[b * 256 + 16 j..]`, inside the super-block's 256.
            let x = unsafe { _mm_loadu_si128(bytes[b * 256 + 16 * j..].as_ptr().cast()) };
            _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(x))
        };
        for k in 0..4 {
            let qk = &q[512 * k..][..512];
            for c in 0..8 {
                prefetch_for::<T, 0>(qk.as_ptr().wrapping_add(64 * c));
            }
            let (mut lo, mut hi) = (splat::<_, T>(_mm512_setzero_si512()), splat::<_, T>(_mm512_setzero_si512()));
            for v in 0..8 {
                // SAFETY: `qk` holds eight vectors of 64 bytes; `loadu` needs no alignment.
                let raw = unsafe { _mm512_loadu_si512(qk[64 * v..].as_ptr().cast()) };
                let (ql, qh) = (_mm512_and_si512(raw, m4), _mm512_and_si512(_mm512_srli_epi16::<4>(raw), m4));
                for t in 0..T {
                    lo[t] = _mm512_dpbusd_epi32(lo[t], ql, bcast(yq[t], 16 * k + v));
                    hi[t] = _mm512_dpbusd_epi32(hi[t], qh, bcast(yq[t], 16 * k + 8 + v));
                }
            }
            for (j, isum) in [(2 * k, lo), (2 * k + 1, hi)] {
                let (s1, s2) = (_mm512_mul_ps(d, col(j)), _mm512_mul_ps(ndmin, col(8 + j)));
                for t in 0..T {
                    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(s1, da[t]), acc[t]);
                    acc[t] = _mm512_fmadd_ps(s2, _mm512_set1_ps(dys[t][8 * b + j]), acc[t]);
                }
            }
        }
    }
    acc
}

/// `T` tokens' outputs for one `Q8_0` panel: `Σ_b fma(f32(Σ q y), d_w · d_a, acc)` per lane,
/// the unsigned quants' offset (`q + 128`) taken off as `-128 Σ y`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_q8_0<const T: usize>(
    quants: &[u8],
    scales: &[u16],
    y: [&[BlockQ8_0]; T],
    offs: [&[i32]; T],
    das: [&[f32]; T],
) -> [__m512; T] {
    let mut acc = splat::<_, T>(_mm512_setzero_ps());
    for b in 0..y[0].len() {
        let q = &quants[b * 512..][..512];
        for c in 0..8 {
            prefetch_for::<T, 0>(q.as_ptr().wrapping_add(64 * c));
        }
        let yq: [&[i8]; T] = arr!(&[][..]; T, |t| &y[t][b].qs[..]);
        let mut even = arr!(_mm512_setzero_si512(); T, |t| _mm512_set1_epi32(offs[t][b]));
        let mut odd = splat::<_, T>(_mm512_setzero_si512());
        for v in (0..8).step_by(2) {
            // SAFETY: `q` holds eight vectors of 64 bytes; `loadu` needs no alignment.
            let (w0, w1) = unsafe {
                (_mm512_loadu_si512(q[64 * v..].as_ptr().cast()), _mm512_loadu_si512(q[64 * v + 64..].as_ptr().cast()))
            };
            for t in 0..T {
                even[t] = _mm512_dpbusd_epi32(even[t], w0, bcast(yq[t], v));
                odd[t] = _mm512_dpbusd_epi32(odd[t], w1, bcast(yq[t], v + 1));
            }
        }
        // SAFETY: `scales[b * 16..]` holds 16 halves (32 bytes); `loadu` needs no alignment.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(scales[b * L..].as_ptr().cast()) });
        for t in 0..T {
            let s = _mm512_mul_ps(d, _mm512_set1_ps(das[t][b]));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even[t], odd[t])), s, acc[t]);
        }
    }
    acc
}

// Groups of eight tokens: each panel's nibbles are unpacked once for eight decode rows, not
// twice (`packed_batch`, one thread, eight tokens, AVX-512 EPYC: `Q5_0` 2048 x 640 143 -> 155
// GMAC/s, `Q4_K` 1024 x 2048 151 -> 159). Thirty-two registers hold their accumulators.
// `Q8_0` has nothing to unpack, but eight tokens still read each panel from L1 half as often
// and keep more `vpdpbusd`s in flight: Gemma 3's output head (262144 x 640) for eight
// tokens, 111-112 -> 129-132 GMAC/s. `Q6_K`, whose panels give one sub-block per three
// vectors (one sum live per token), also runs eight: 65536 x 2048, 84-85 -> 91-92 GMAC/s
// (256 x 2048, in cache: 102 -> 136).
nibble_drivers!("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c", 8, 8);

/// A small batch over `Q8_0` byte panels, eight tokens at a time.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q8_0_tokens(p: &[u32], rows: usize, cols: usize, a: &[BlockQ8_0], n: usize, out: &mut [f32], ldo: usize) {
    let nb = cols / 32;
    with_legacy_terms(a, 128, |offs, das| {
        each_panel!(store, p, panel_words_q8_0(cols), rows, n, out, ldo, 8, |panel, t0, T| {
            let (quants, scales) = panel.split_at(nb * 128);
            let (quants, scales): (&[u8], &[u16]) = (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
            panel_q8_0::<T>(quants, scales, rows_of(a, nb, t0), rows_of(offs, nb, t0), rows_of(das, nb, t0))
        })
    });
}

/// `T` tokens' outputs for one `Q6_K` panel: per sub-block `j` of 16 (in order), `acc =
/// fma(f32(Σ (q - 32) y), (d · sc_j) · d_a, acc)`, the offset taken off as `-32 Σ y` from the
/// activation's stated sums. A sub-block's three vectors give its sixteen columns (four
/// vectors of four), so each token has one sum live. (Two to four sub-blocks side by side for
/// one to four tokens, more independent chains, were 15% faster in cache and no faster or
/// slower from memory, where the weights are.)
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn panel_q6_k<const T: usize>(panel: &[u32], y: [&[BlockQ8_K]; T]) -> [__m512; T] {
    let m4 = _mm512_set1_epi8(0x0f);
    let mask = |m: u8| _mm512_set1_epi8(m as i8);
    let mut acc = splat::<_, T>(_mm512_setzero_ps());
    for b in 0..y[0].len() {
        let sb = &panel[b * Q6_K_WORDS..][..Q6_K_WORDS];
        // The lines ahead are asked for as the sub-blocks are read (three each, the scales'
        // here), not all 52 at the super-block's start: `packed_batch`, 65536 x 2048, one
        // thread, GMAC/s one / two / four / eight tokens 20 / 36 / 62 / 91 -> 30 / 85 / 127 /
        // 141 (with L1 hints 8 KiB ahead; 16 KiB: one token 26-35).
        let ahead = |c: usize| prefetch_for::<T, L1_AHEAD>(sb.as_ptr().cast::<u8>().wrapping_add(64 * c));
        for c in 48..(Q6_K_WORDS * 4 / 64) {
            ahead(c);
        }
        // SAFETY: the scales (256 bytes) and `d` (16 halves) lie at words 768 and 832.
        let d = _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(sb[832..].as_ptr().cast()) });
        let da = arr!(_mm512_setzero_ps(); T, |t| _mm512_set1_ps(y[t][b].d));
        let yq: [&[i8]; T] = arr!(&[][..]; T, |t| &y[t][b].qs[..]);
        let scale_bytes: &[u8] = bytemuck::cast_slice(&sb[768..832]);
        for j in 0..16 {
            for c in 3 * j..3 * j + 3 {
                ahead(c);
            }
            // SAFETY: the sub-block's three vectors lie at words `j · Q6_K_SUB..`, inside the
            // super-block's; `loadu` needs no alignment.
            let [qa, qb, top] = arr!(_mm512_setzero_si512(); 3, |v| unsafe { _mm512_loadu_si512(sb[j * Q6_K_SUB + v * L..].as_ptr().cast()) });
            let q = [
                _mm512_or_si512(_mm512_and_si512(qa, m4), _mm512_slli_epi16::<4>(_mm512_and_si512(top, mask(0x03)))),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(qa), m4),
                    _mm512_slli_epi16::<2>(_mm512_and_si512(top, mask(0x0c))),
                ),
                _mm512_or_si512(_mm512_and_si512(qb, m4), _mm512_and_si512(top, mask(0x30))),
                _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16::<4>(qb), m4),
                    _mm512_srli_epi16::<2>(_mm512_and_si512(top, mask(0xc0))),
                ),
            ];
            let mut isum = arr!(_mm512_setzero_si512(); T, |t| _mm512_set1_epi32(-32 * i32::from(y[t][b].bsums[j])));
            for (g, q) in q.iter().enumerate() {
                for t in 0..T {
                    isum[t] = _mm512_dpbusd_epi32(isum[t], *q, bcast(yq[t], 4 * j + g));
                }
            }
            // SAFETY: 16 bytes at `scale_bytes[16 j..]`, inside its 256.
            let sc = unsafe { _mm_loadu_si128(scale_bytes[16 * j..].as_ptr().cast()) };
            let s1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(sc)));
            for t in 0..T {
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(s1, da[t]), acc[t]);
            }
        }
    }
    acc
}

/// A small batch over `Q6_K` nibble panels, eight tokens at a time.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn q6_k_tokens(p: &[u32], rows: usize, cols: usize, a: &[BlockQ8_K], n: usize, out: &mut [f32], ldo: usize) {
    let nb = cols / 256;
    each_panel!(store, p, panel_words_q6_k(cols), rows, n, out, ldo, 8, |panel, t0, T| {
        panel_q6_k::<T>(panel, rows_of(a, nb, t0))
    });
}
