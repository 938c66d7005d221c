//! The AVX2 kernels over the nibble panels packed at load ([`crate::cpu::nibble`], the AVX-512
//! tier's layout): a panel of sixteen rows is two halves of eight, the i32 lanes of a 256-bit
//! vector. Per group of four columns, one load gives the half's eight rows' bytes; a mask and a
//! shift give their unsigned quants; `maddubs` against the activation's four bytes broadcast
//! puts each row's products, in pairs, into its own two i16 lanes. The pairs of a sub-block
//! add up in i16 exactly (at most `32767 / (256 · QMAX)` of them: 8 for 4-bit quants, 4 for
//! 5-bit) and one `madd` by ones widens them into each row's exact i32 sum: no
//! horizontal sums, where the row-major kernels (`canon::rows_*`) need a reduction per block.
//! Then the canonical FMAs (`cpu::gemm`), so every output has the bits of the tier's `dot`.
//!
//! A small batch (a decode step of several sequences) runs over each panel token after token
//! (`Q4_K`: two at a time), the panel read from memory once per call and from L1 for the
//! tokens after the first; from [`TILE_FROM`] tokens each panel is decoded once into the
//! tiled GEMM's layout (`gemm::gemm_nibble_*`), the same bits.
//!
//! `Q6_K` is not packed on this tier: a kernel over its panels in this style (three loads and
//! fourteen operations per four quant vectors, as on AVX-512; two pair sums per widening)
//! streamed at 0.7–0.8× the row-major `canon::rows_q6_k` (`matvec` example, 65536 × 2048, 2
//! threads), whose eight row streams keep more of this machine's memory bandwidth busy.

use crate::cpu::entry::word;
use crate::cpu::nibble::{
    L, panel_words_q4_0, panel_words_q4_k, panel_words_q5_0, rows_of, with_legacy_terms, with_sub_sums,
};
use crate::quant::{BlockQ8_0, BlockQ8_K};
use std::arch::x86_64::*;

/// Batches from this many tokens go through the tiled GEMM. Below, the token kernels are
/// faster (`packed_batch` example, 1024 × 2048, one thread, AVX2 EPYC: `Q4_0` 44 GMAC/s at
/// every batch size, `Q4_K` 51–56 from two tokens; the unpacking GEMM 22–27 at 4 and 5
/// tokens, `Q4_K` 33 at 16 and 60 at 256: `gemm_tiers`).
const TILE_FROM: usize = 16;

/// The two halves' accumulators of a panel (rows 0–7, 8–15).
type Acc = [__m256; 2];

/// Activation bytes `4k..4k + 4` of a block, broadcast to every lane.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn bcast(qs: &[i8], k: usize) -> __m256i {
    let w = &qs[4 * k..4 * k + 4];
    _mm256_set1_epi32(word([w[0], w[1], w[2], w[3]]))
}

/// The 32 bytes at `b[at..]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld(b: &[u8], at: usize) -> __m256i {
    let b = &b[at..at + 32];
    // SAFETY: `b` is 32 readable bytes; `loadu` needs no alignment.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

/// The eight f16 at `h[at..]` as floats.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_ph(h: &[u16], at: usize) -> __m256 {
    let h = &h[at..at + 8];
    // SAFETY: `h` is 16 readable bytes; `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(h.as_ptr().cast()) })
}

/// The eight bytes at `b[at..]` as i32 lanes, zero- or (`SIGNED`) sign-extended.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld8<const SIGNED: bool>(b: &[u8], at: usize) -> __m256i {
    let b = &b[at..at + 8];
    // SAFETY: `b` is 8 readable bytes; `loadl` reads 8 and needs no alignment.
    let x = unsafe { _mm_loadl_epi64(b.as_ptr().cast()) };
    if SIGNED { _mm256_cvtepi8_epi32(x) } else { _mm256_cvtepu8_epi32(x) }
}

/// `Σ maddubs(q[i], y[i])` in i16 (exact when the caller keeps to `32767 / (256 · QMAX)`
/// terms), widened to each row's i32 sum.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widened<const N: usize>(q: [__m256i; N], y: [__m256i; N]) -> __m256i {
    let mut p = _mm256_maddubs_epi16(q[0], y[0]);
    for i in 1..N {
        p = _mm256_add_epi16(p, _mm256_maddubs_epi16(q[i], y[i]));
    }
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// `T` tokens' outputs for one `Q4_0` panel, or with `FIFTH` a `Q5_0` one (its plane words
/// in `planes`): `Σ_b fma(f32(Σ (q - OFF) y), d_w · d_a, acc)` per lane (`offs` holds
/// `-OFF Σ y`), token `t` reading activation blocks `y[t]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn panel_legacy<const T: usize, const FIFTH: bool>(
    quants: &[u8],
    planes: &[u32],
    scales: &[u16],
    y: [&[BlockQ8_0]; T],
    offs: [&[i32]; T],
    das: [&[f32]; T],
) -> [Acc; T] {
    let m4 = _mm256_set1_epi8(0x0f);
    let bits = _mm256_set1_epi32(0x1010_1010);
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    for b in 0..y[0].len() {
        let q = &quants[b * 256..][..256];
        let yq: [&[i8]; T] = arr!(&[][..]; T, |t| &y[t][b].qs[..]);
        for h in 0..2 {
            let raw = arr!(_mm256_setzero_si256(); 4, |v| ld(q, 64 * v + 32 * h));
            let mut ql = arr!(_mm256_setzero_si256(); 4, |v| _mm256_and_si256(raw[v], m4));
            let mut qh = arr!(_mm256_setzero_si256(); 4, |v| _mm256_and_si256(_mm256_srli_epi16::<4>(raw[v]), m4));
            if FIFTH {
                // SAFETY: `planes[b * 16 + 8h..]` holds 8 words; `loadu` needs no alignment.
                let pl = unsafe { _mm256_loadu_si256(planes[b * L + 8 * h..][..8].as_ptr().cast()) };
                // Plane bits `8i + v` and `8i + 4 + v` to bit 4 of byte `i` (`cpu::nibble`).
                let up = [
                    _mm256_slli_epi32::<4>(pl),
                    _mm256_slli_epi32::<3>(pl),
                    _mm256_slli_epi32::<2>(pl),
                    _mm256_slli_epi32::<1>(pl),
                ];
                let down = [pl, _mm256_srli_epi32::<1>(pl), _mm256_srli_epi32::<2>(pl), _mm256_srli_epi32::<3>(pl)];
                for v in 0..4 {
                    ql[v] = _mm256_or_si256(ql[v], _mm256_and_si256(up[v], bits));
                    qh[v] = _mm256_or_si256(qh[v], _mm256_and_si256(down[v], bits));
                }
            }
            let d = ld_ph(scales, b * L + 8 * h);
            for t in 0..T {
                let ylo = arr!(_mm256_setzero_si256(); 4, |v| bcast(yq[t], v));
                let yhi = arr!(_mm256_setzero_si256(); 4, |v| bcast(yq[t], 4 + v));
                // Eight pair sums of 4-bit quants fit in i16; of 5-bit ones, four.
                let sum = if FIFTH {
                    _mm256_add_epi32(widened(ql, ylo), widened(qh, yhi))
                } else {
                    widened(
                        [ql[0], ql[1], ql[2], ql[3], qh[0], qh[1], qh[2], qh[3]],
                        [ylo[0], ylo[1], ylo[2], ylo[3], yhi[0], yhi[1], yhi[2], yhi[3]],
                    )
                };
                let sum = _mm256_add_epi32(sum, _mm256_set1_epi32(offs[t][b]));
                let s = _mm256_mul_ps(d, _mm256_set1_ps(das[t][b]));
                acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), s, acc[t][h]);
            }
        }
    }
    acc
}

/// Both halves' accumulators into `dst` (the first `dst.len() <= 16` floats).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn store(dst: &mut [f32], acc: &Acc) {
    let mut all = [0f32; 16];
    // SAFETY: `all` holds 16 floats; `storeu` needs no alignment.
    unsafe {
        _mm256_storeu_ps(all.as_mut_ptr(), acc[0]);
        _mm256_storeu_ps(all[8..].as_mut_ptr(), acc[1]);
    }
    dst.copy_from_slice(&all[..dst.len()]);
}

/// Eight `f32(bytes[at..at + 8])` (unsigned).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn col(bytes: &[u8], at: usize) -> __m256 {
    _mm256_cvtepi32_ps(ld8::<false>(bytes, at))
}

/// Token `y`'s exact `Σ q y` over sub-block `j` of a `Q4_K` super-block, whose quants are
/// `q` (columns `32 j..32 j + 32`, activation words `8 j..8 j + 8`): eight pair sums of 4-bit
/// quants fit in i16.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_sum(q: [__m256i; 8], y: &BlockQ8_K, j: usize) -> __m256i {
    let mut ys = [_mm256_setzero_si256(); 8];
    for (v, ys) in ys.iter_mut().enumerate() {
        *ys = bcast(&y.qs, 8 * j + v);
    }
    widened(q, ys)
}

/// `T` tokens' outputs for one `Q4_K` panel, sub-block after sub-block:
/// `acc = fma(f32(Σ q y), (d · sc) · d_a, acc)`, then `acc = fma(-dmin · m, d_a · Σ y, acc)`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn panel_q4_k<const T: usize>(
    quants: &[u8],
    halves: &[u16],
    bytes: &[u8],
    y: [&[BlockQ8_K]; T],
    dys: [&[f32]; T],
) -> [Acc; T] {
    let m4 = _mm256_set1_epi8(0x0f);
    let sign = _mm256_set1_ps(-0.0);
    let mut acc = [[_mm256_setzero_ps(); 2]; T];
    for b in 0..y[0].len() {
        let sb = &quants[b * 2048..][..2048];
        for h in 0..2 {
            let (d, ndmin) = (ld_ph(halves, b * 32 + 8 * h), _mm256_xor_ps(ld_ph(halves, b * 32 + L + 8 * h), sign));
            for k in 0..4 {
                // Vectors `8k..8k + 8`: sub-block `2k` in their low nibbles, `2k + 1` in the high.
                let mut raw = [_mm256_setzero_si256(); 8];
                for (v, r) in raw.iter_mut().enumerate() {
                    *r = ld(sb, 512 * k + 64 * v + 32 * h);
                }
                for half in 0..2 {
                    let j = 2 * k + half;
                    let mut q = raw;
                    for q in &mut q {
                        let x = if half == 0 { *q } else { _mm256_srli_epi16::<4>(*q) };
                        *q = _mm256_and_si256(x, m4);
                    }
                    let s1 = _mm256_mul_ps(d, col(bytes, b * 256 + j * L + 8 * h));
                    let s2 = _mm256_mul_ps(ndmin, col(bytes, b * 256 + (8 + j) * L + 8 * h));
                    for t in 0..T {
                        let s = _mm256_mul_ps(s1, _mm256_set1_ps(y[t][b].d));
                        let isum = q4_k_sum(q, &y[t][b], j);
                        acc[t][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), s, acc[t][h]);
                        acc[t][h] = _mm256_fmadd_ps(s2, _mm256_set1_ps(dys[t][8 * b + j]), acc[t][h]);
                    }
                }
            }
        }
    }
    acc
}

// The drivers: `Q4_0`/`Q5_0` one token at a time (two at a time spill: `packed_batch`, two
// tokens took 3× one's time against 1.95×), `Q4_K` two at a time.
nibble_drivers!("avx2,fma,f16c", 1, 2);

packed_kernels! {
    "avx2,fma,f16c":
    gemm_packed_q4_0(BlockQ8_0, super::gemm::gemm_nibble_q4_0, legacy_tokens::<false>);
    gemm_packed_q5_0(BlockQ8_0, super::gemm::gemm_nibble_q5_0, legacy_tokens::<true>);
    gemm_packed_q4_k(BlockQ8_K, super::gemm::gemm_nibble_q4_k, q4_k_tokens);
}
