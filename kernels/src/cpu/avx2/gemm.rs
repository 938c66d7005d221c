//! The AVX2 micro-kernel of the tiled GEMM ([`crate::cpu::gemm`]): 8 weight rows (the i32
//! lanes of a 256-bit vector) by [`T`] tokens.
//!
//! Without VNNI, four products go into an i32 lane in two steps: `maddubs` (unsigned weight
//! bytes times the broadcast signed activation bytes, pairs summed into i16) and `madd` by
//! ones. A pair is at most `2 · QMAX · 128` in magnitude, so `G = 32767 / (256 · QMAX)`
//! `maddubs` results can be added in i16 exactly before one `madd` widens them: 8 for 4-bit
//! quants, 4 for 5-bit, 2 for 6-bit.
//!
//! `Q8_0` (quants plus 128, up to 255) would saturate `maddubs` itself, and the sign trick
//! (`maddubs(|w|, sign(y, w))`) cannot negate an activation of -128; so its tile widens both
//! sides to i16 and multiplies with `madd` ([`tile_q8_0`]), exact for every byte.

use crate::cpu::avx2::fp16;
use crate::cpu::gemm::{self, GemmWeight, Tile};
use crate::quant::{BlockQ4_0, BlockQ4_K, BlockQ5_0, BlockQ5_K, BlockQ6_K, BlockQ8_0};
use std::arch::x86_64::*;

/// Tokens per tile (16 registers: 8 weight vectors, the accumulators, temporaries).
const T: usize = 4;
const _: () = assert!(T == 4, "`tile` unrolls 4 tokens");

/// One tile: `K = S / 4` weight vectors per sub-block, `G` i16 sums per widening.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile<const K: usize, const MINS: bool, const G: usize>(t: &Tile<'_>, out: &mut [[f32; 8]; T]) {
    let mut acc = [_mm256_setzero_ps(); T];
    for sb in 0..t.nsb {
        let (w, s1, s2) = weights::<K>(t, sb);
        let y = t.aq[sb * T * 4 * K..][..T * 4 * K].as_chunks::<4>().0;
        let (off, da, dys) = (&t.off[sb * T..][..T], &t.da[sb * T..][..T], &t.dys[sb * T..][..T]);
        unroll!(j in [0, 1, 2, 3] {
            acc[j] = step::<K, MINS, G>(&w, s1, s2, &y[j * K..][..K], off[j], da[j], dys[j], acc[j]);
        });
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 8 floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// A tile of one token, formed as [`tile`] forms each of its tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile1<const K: usize, const MINS: bool, const G: usize>(t: &Tile<'_>, out: &mut [[f32; 8]; 1]) {
    let mut acc = _mm256_setzero_ps();
    for sb in 0..t.nsb {
        let (w, s1, s2) = weights::<K>(t, sb);
        let y = t.aq[sb * 4 * K..][..4 * K].as_chunks::<4>().0;
        acc = step::<K, MINS, G>(&w, s1, s2, y, t.off[sb], t.da[sb], t.dys[sb], acc);
    }
    // SAFETY: `out[0]` is 8 floats.
    unsafe { _mm256_storeu_ps(out[0].as_mut_ptr(), acc) };
}

/// Sub-block `sb`'s weight vectors, scales and mins.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn weights<const K: usize>(t: &Tile<'_>, sb: usize) -> ([__m256i; K], __m256, __m256) {
    let wq = &t.wq[sb * 32 * K..][..32 * K];
    let (s1, s2) = (&t.s1[sb * 8..][..8], &t.s2[sb * 8..][..8]);
    // SAFETY: `wq` holds `K` vectors of 32 bytes, `s1` and `s2` 8 floats each; `loadu`
    // needs no alignment.
    let w = std::array::from_fn(|k| unsafe { _mm256_loadu_si256(wq[32 * k..].as_ptr().cast()) });
    unsafe { (w, _mm256_loadu_ps(s1.as_ptr()), _mm256_loadu_ps(s2.as_ptr())) }
}

/// One token's sub-block: `acc + cvt(off + Σ w y) · (s1 · da) (+ s2 · dys)`, the products
/// summed `G` at a time in i16 (`maddubs`), then widened (`madd` by ones).
#[allow(clippy::too_many_arguments)]
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn step<const K: usize, const MINS: bool, const G: usize>(
    w: &[__m256i; K],
    s1: __m256,
    s2: __m256,
    y: &[[i8; 4]],
    off: i32,
    da: f32,
    dys: f32,
    acc: __m256,
) -> __m256 {
    const { assert!(G > 0) };
    let ones = _mm256_set1_epi16(1);
    let mut sum = _mm256_set1_epi32(off);
    let mut k = 0;
    while k < K {
        let mut p = _mm256_setzero_si256();
        for kk in k..(k + G).min(K) {
            let a = _mm256_set1_epi32(i32::from_le_bytes(y[kk].map(|b| b as u8)));
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[kk], a));
        }
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, ones));
        k += G;
    }
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(s1, _mm256_set1_ps(da)), acc);
    if MINS { _mm256_fmadd_ps(s2, _mm256_set1_ps(dys), acc) } else { acc }
}

/// Defines `$name`, the GEMM of weight type `$b` (sub-blocks of `S / 4` words).
macro_rules! gemm_kernel {
    ($name:ident, $b:ty) => {
        /// Tiled GEMM: `out[t * ldo + r] = dot(w row r, a row t)` within float rounding.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(in crate::cpu) unsafe fn $name(
            w: &[$b],
            a: &[<$b as crate::quant::Block>::Act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            const G: usize = (32767 / (256 * <$b as GemmWeight>::QMAX)) as usize;
            gemm::gemm::<$b, 8, T>(
                w,
                a,
                n,
                out,
                ldo,
                |h| fp16(h),
                gemm::transpose_words::<8>,
                |t, acc| tile::<{ <$b as GemmWeight>::S / 4 }, { <$b as GemmWeight>::MINS }, G>(t, acc),
                |t, acc| tile1::<{ <$b as GemmWeight>::S / 4 }, { <$b as GemmWeight>::MINS }, G>(t, acc),
            )
        }
    };
}

gemm_kernel!(gemm_q4_0, BlockQ4_0);
gemm_kernel!(gemm_q5_0, BlockQ5_0);
gemm_kernel!(gemm_q4_k, BlockQ4_K);
gemm_kernel!(gemm_q5_k, BlockQ5_K);
gemm_kernel!(gemm_q6_k, BlockQ6_K);

/// A `Q8_0` tile of `N` tokens (the whole tiles and the one-token tail alike). Per group of
/// four columns, the weight vector (eight rows' bytes `w + 128`) is turned back into signed
/// bytes and widened to i16 once, rows 0–3 and 4–7 apart, for all the tokens; a token's four
/// activation bytes, widened and repeated, meet them in `madd`, two columns to an i32 lane.
/// At the end of the sub-block a horizontal add pairs each row's two lanes into its exact
/// `Σ w y` (which is the canonical `Σ (q - 128) y`: the tile's offset term is not needed),
/// then the canonical FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q8_0<const N: usize>(t: &Tile<'_>, out: &mut [[f32; 8]; N]) {
    let flip = _mm256_set1_epi8(i8::MIN);
    let mut acc = [_mm256_setzero_ps(); N];
    for sb in 0..t.nsb {
        let wq = &t.wq[sb * 256..][..256];
        let y = t.aq[sb * N * 32..][..N * 32].as_chunks::<4>().0;
        let (mut lo, mut hi) = ([_mm256_setzero_si256(); N], [_mm256_setzero_si256(); N]);
        for k in 0..8 {
            // SAFETY: `wq` holds eight vectors of 32 bytes; `loadu` needs no alignment.
            let w = _mm256_xor_si256(unsafe { _mm256_loadu_si256(wq[32 * k..].as_ptr().cast()) }, flip);
            let (wl, wh) = (
                _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
                _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(w)),
            );
            for j in 0..N {
                let a = _mm256_cvtepi8_epi16(_mm_set1_epi32(i32::from_le_bytes(y[8 * j + k].map(|b| b as u8))));
                lo[j] = _mm256_add_epi32(lo[j], _mm256_madd_epi16(wl, a));
                hi[j] = _mm256_add_epi32(hi[j], _mm256_madd_epi16(wh, a));
            }
        }
        // SAFETY: `s1` holds `nsb` groups of 8 floats.
        let s1 = unsafe { _mm256_loadu_ps(t.s1[sb * 8..].as_ptr()) };
        for j in 0..N {
            // Rows 0, 1, 4, 5 | 2, 3, 6, 7, then in order.
            let sum = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(lo[j], hi[j]));
            let s = _mm256_mul_ps(s1, _mm256_set1_ps(t.da[sb * N + j]));
            acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), s, acc[j]);
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 8 floats.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// Tiled `Q8_0` GEMM: `out[t * ldo + r] = dot(w row r, a row t)` within float rounding.
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) unsafe fn gemm_q8_0(w: &[BlockQ8_0], a: &[BlockQ8_0], n: usize, out: &mut [f32], ldo: usize) {
    gemm::gemm::<BlockQ8_0, 8, T>(
        w,
        a,
        n,
        out,
        ldo,
        |h| fp16(h),
        gemm::transpose_words::<8>,
        |t, acc| tile_q8_0::<T>(t, acc),
        |t, acc| tile_q8_0::<1>(t, acc),
    )
}
