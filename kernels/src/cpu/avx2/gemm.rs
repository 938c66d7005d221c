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

use crate::cpu::avx2::canon::{column_i, column_u, scales_mins_reg, scales8, transpose_8x16};
use crate::cpu::avx2::k_quants::fifth_bits;
use crate::cpu::avx2::{fifth_bits_32, fp16, ld128, ld256, nibbles_32};
use crate::cpu::entry::word;
use crate::cpu::gemm::{self, GemmWeight, Tile};
use crate::cpu::nibble;
use crate::quant::{BlockQ4_0, BlockQ4_K, BlockQ5_0, BlockQ5_K, BlockQ6_K, BlockQ8_0};
use std::arch::x86_64::*;

/// Tokens per tile (16 registers: 8 weight vectors, the accumulators, temporaries).
const T: usize = 4;
const _: () = assert!(T == 4, "`tile` unrolls 4 tokens");

/// One tile of `L` rows (8, or 16 for the panels packed at load, as two halves of 8): `K = S /
/// 4` weight vectors per sub-block, `G` i16 sums per widening.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile<const K: usize, const MINS: bool, const G: usize, const L: usize>(t: &Tile<'_>, out: &mut [[f32; L]; T]) {
    for h in 0..L / 8 {
        let mut acc = [_mm256_setzero_ps(); T];
        for sb in 0..t.nsb {
            let (w, s1, s2) = weights::<K, L>(t, sb, h);
            let y = t.aq[sb * T * 4 * K..][..T * 4 * K].as_chunks::<4>().0;
            let (off, da, dys) = (&t.off[sb * T..][..T], &t.da[sb * T..][..T], &t.dys[sb * T..][..T]);
            unroll!(j in [0, 1, 2, 3] {
                acc[j] = step::<K, MINS, G>(&w, s1, s2, &y[j * K..][..K], off[j], da[j], dys[j], acc[j]);
            });
        }
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: `o[8h..]` holds 8 floats.
            unsafe { _mm256_storeu_ps(o[8 * h..][..8].as_mut_ptr(), a) };
        }
    }
}

/// A tile of one token, formed as [`tile`] forms each of its tokens.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile1<const K: usize, const MINS: bool, const G: usize, const L: usize>(t: &Tile<'_>, out: &mut [[f32; L]; 1]) {
    for h in 0..L / 8 {
        let mut acc = _mm256_setzero_ps();
        for sb in 0..t.nsb {
            let (w, s1, s2) = weights::<K, L>(t, sb, h);
            let y = t.aq[sb * 4 * K..][..4 * K].as_chunks::<4>().0;
            acc = step::<K, MINS, G>(&w, s1, s2, y, t.off[sb], t.da[sb], t.dys[sb], acc);
        }
        // SAFETY: `out[0][8h..]` holds 8 floats.
        unsafe { _mm256_storeu_ps(out[0][8 * h..][..8].as_mut_ptr(), acc) };
    }
}

/// Sub-block `sb`'s weight vectors, scales and mins for rows `8h..8h + 8` of a panel of `L`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn weights<const K: usize, const L: usize>(t: &Tile<'_>, sb: usize, h: usize) -> ([__m256i; K], __m256, __m256) {
    let wq = &t.wq[sb * 4 * K * L..][..4 * K * L];
    let (s1, s2) = (&t.s1[sb * L + 8 * h..][..8], &t.s2[sb * L + 8 * h..][..8]);
    // SAFETY: `wq` holds `K` groups of `4 L` bytes, each with 32 at `32 h`; `s1` and `s2` 8
    // floats each; `loadu` needs no alignment.
    let w = arr!(_mm256_setzero_si256(); K, |k| unsafe { _mm256_loadu_si256(wq[4 * L * k + 32 * h..][..32].as_ptr().cast()) });
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
            let a = _mm256_set1_epi32(word(y[kk]));
            p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[kk], a));
        }
        sum = _mm256_add_epi32(sum, _mm256_madd_epi16(p, ones));
        k += G;
    }
    let acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(s1, _mm256_set1_ps(da)), acc);
    if MINS { _mm256_fmadd_ps(s2, _mm256_set1_ps(dys), acc) } else { acc }
}

/// `maddubs` results of weight type `W` that sum exactly in i16 (see the module docs).
const fn g<W: GemmWeight>() -> usize {
    (32767 / (256 * W::QMAX)) as usize
}

/// Defines `$name`, the GEMM of weight type `$b` (sub-blocks of `S / 4` words), whose panels
/// [`decode`] forms with `$chunk` (`|block, c|`: the block's unsigned quants of columns
/// `32 c..32 c + 32`, in element order) and `$scales` (`|eight blocks, s1, s2|`: their
/// scales and mins, `[per][8]` each), whose tiles are [`tile`] and [`tile1`] unless
/// `tiles(T tokens, one token)` names others.
macro_rules! gemm_kernel {
    ($name:ident, $b:ty, |$x:ident, $c:ident| $chunk:expr, |$xs:ident, $s1:ident, $s2:ident| $scales:expr) => {
        gemm_kernel!(
            $name,
            $b,
            |$x, $c| $chunk,
            |$xs, $s1, $s2| $scales,
            tiles(
                tile::<{ <$b as GemmWeight>::S / 4 }, { <$b as GemmWeight>::MINS }, { g::<$b>() }, 8>,
                tile1::<{ <$b as GemmWeight>::S / 4 }, { <$b as GemmWeight>::MINS }, { g::<$b>() }, 8>
            )
        );
    };
    ($name:ident, $b:ty, |$x:ident, $c:ident| $chunk:expr, |$xs:ident, $s1:ident, $s2:ident| $scales:expr,
     tiles($tile:expr, $tile1:expr)) => {
        /// Tiled GEMM: `out[t * ldo + r] = dot(w row r, a row t)` within float rounding.
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(in crate::cpu) unsafe fn $name(
            w: &[$b],
            a: &[<$b as crate::quant::Block>::Act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            gemm::gemm::<$b, 8, T>(
                w,
                a,
                n,
                out,
                ldo,
                |h| fp16(h),
                |rows, width, _, wq, s1, s2| {
                    decode(
                        rows,
                        width,
                        wq,
                        (s1, s2),
                        |$x: &$b, $c: usize| $chunk,
                        |$xs: [&$b; 8], $s1: &mut [f32], $s2: &mut [f32]| $scales,
                    )
                },
                |t, acc| $tile(t, acc),
                |t, acc| $tile1(t, acc),
            )
        }
    };
}

gemm_kernel!(gemm_q4_0, BlockQ4_0, |x, _c| nibbles_32(&x.qs), |xs, s1, s2| d_scales(xs.map(|x| x.d), s1, s2));
gemm_kernel!(gemm_q5_0, BlockQ5_0, |x, _c| _mm256_or_si256(nibbles_32(&x.qs), fifth_bits_32(x.qh)), |xs, s1, s2| {
    d_scales(xs.map(|x| x.d), s1, s2)
});
gemm_kernel!(gemm_q4_k, BlockQ4_K, |x, c| k4_nibbles(x.qs.as_chunks::<32>().0[c / 2], c), |xs, s1, s2| k4_scales(
    xs.map(|x| (x.d, x.dmin, &x.scales)),
    s1,
    s2
));
gemm_kernel!(
    gemm_q5_k,
    BlockQ5_K,
    |x, c| _mm256_or_si256(k4_nibbles(x.qs.as_chunks::<32>().0[c / 2], c), fifth_bits(ld256(&x.qh), c)),
    |xs, s1, s2| k4_scales(xs.map(|x| (x.d, x.dmin, &x.scales)), s1, s2)
);
gemm_kernel!(gemm_q6_k, BlockQ6_K, |x, c| q6_k_chunk(x, c), |xs, s1, _s2| q6_k_scales(xs, s1));

/// The legacy types' scale per row (`s1`, `[1][8]`; no mins).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn d_scales(d: [half::f16; 8], s1: &mut [f32], _: &mut [f32]) {
    // SAFETY: `s1` holds 8 floats; `storeu` needs no alignment.
    unsafe { _mm256_storeu_ps(s1[..8].as_mut_ptr(), scales8(d)) };
}

/// `Q4_K`/`Q5_K` scales and mins of eight rows' blocks: `s1 = d · sc`, `s2 = -dmin · m` per
/// sub-block (`[8][8]` each; exact, as `GemmWeight::scales`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_scales(x: [(half::f16, half::f16, &[u8; 12]); 8], s1: &mut [f32], s2: &mut [f32]) {
    let sm = transpose_8x16(x.map(|(_, _, s)| scales_mins_reg(s)));
    let d = scales8(x.map(|(d, _, _)| d));
    let ndmin = _mm256_sub_ps(_mm256_setzero_ps(), scales8(x.map(|(_, m, _)| m)));
    for j in 0..8 {
        // SAFETY: `s1` and `s2` hold 64 floats; `storeu` needs no alignment.
        unsafe {
            _mm256_storeu_ps(s1[8 * j..][..8].as_mut_ptr(), _mm256_mul_ps(d, column_u(&sm, j)));
            _mm256_storeu_ps(s2[8 * j..][..8].as_mut_ptr(), _mm256_mul_ps(ndmin, column_u(&sm, 8 + j)));
        }
    }
}

/// `Q6_K` scales of eight rows' blocks: `s1 = d · sc` per sub-block of 16 (`[16][8]`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_scales(x: [&BlockQ6_K; 8], s1: &mut [f32]) {
    let sc = transpose_8x16(x.map(|x| ld128(bytemuck::cast_ref::<[i8; 16], [u8; 16]>(&x.scales))));
    let d = scales8(x.map(|x| x.d));
    for j in 0..16 {
        // SAFETY: `s1` holds 128 floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(s1[8 * j..][..8].as_mut_ptr(), _mm256_mul_ps(d, column_i(&sc, j))) };
    }
}

/// Sub-block `c` of a `Q4_K`/`Q5_K` block from its 32 bytes `qs` (`c / 2` of the block's
/// four): the low nibbles for even `c`, the high ones for odd.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn k4_nibbles(qs: [u8; 32], c: usize) -> __m256i {
    let q = ld256(&qs);
    let q = if c % 2 == 0 { q } else { _mm256_srli_epi16::<4>(q) };
    _mm256_and_si256(q, _mm256_set1_epi8(0x0f))
}

/// Columns `32 c..32 c + 32` of a `Q6_K` block: element `128 h + 32 k + i` (`c = 4 h + k`)
/// from the low nibbles of `ql` (bytes `64 h + 32 (k % 2) + i`, high nibbles for `k >= 2`) and
/// bits `2 k..2 k + 2` of `qh[32 h + i]` (as `GemmWeight::unpack`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_chunk(x: &BlockQ6_K, c: usize) -> __m256i {
    let (h, k) = (c / 4, c % 4);
    let ql = ld256(&x.ql.as_chunks::<32>().0[2 * h + k % 2]);
    let top = ld256(&x.qh.as_chunks::<32>().0[h]);
    // Shifts by a count in a register, not a branch on `k`: the 16-bit shifts carry bits
    // across bytes, which the masks then clear.
    let m4 = _mm256_set1_epi8(0x0f);
    let low = _mm256_and_si256(_mm256_srl_epi16(ql, _mm_cvtsi32_si128(4 * (k / 2) as i32)), m4);
    let bits = _mm256_and_si256(_mm256_srl_epi16(top, _mm_cvtsi32_si128(2 * k as i32)), _mm256_set1_epi8(3));
    _mm256_or_si256(low, _mm256_slli_epi16::<4>(bits))
}

/// The eight rows' words `k` as vector `k`: `r[l]` holds row `l`'s eight words (four bytes
/// each), the result the same words by column (an 8 × 8 transpose of 32-bit words: unpack
/// 32-bit, unpack 64-bit, then 128-bit lane swaps).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    let t: [__m256i; 8] = std::array::from_fn(|i| {
        let (a, b) = (r[2 * (i / 2)], r[2 * (i / 2) + 1]);
        if i % 2 == 0 { _mm256_unpacklo_epi32(a, b) } else { _mm256_unpackhi_epi32(a, b) }
    });
    // `t[2 p]`: words 0, 1 | 4, 5 of rows 2p, 2p + 1 interleaved; `t[2 p + 1]`: 2, 3 | 6, 7.
    let u: [__m256i; 8] = std::array::from_fn(|i| {
        let (g, j) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + j / 2], t[4 * g + 2 + j / 2]);
        if j % 2 == 0 { _mm256_unpacklo_epi64(a, b) } else { _mm256_unpackhi_epi64(a, b) }
    });
    // `u[4 g + j]`: word `j` | `4 + j` of rows `4 g..4 g + 4`.
    std::array::from_fn(|k| {
        let (lo, hi) = (u[k % 4], u[4 + k % 4]);
        if k < 4 { _mm256_permute2x128_si256::<0x20>(lo, hi) } else { _mm256_permute2x128_si256::<0x31>(lo, hi) }
    })
}

/// The panel decoding of this tier's GEMM: for every 32 columns, each of the `width` rows'
/// unsigned quants in one vector (`chunk(block, c)`, zeros past `width`), the eight
/// transposed into the `[cols / 4][8][4]` bytes of `wq`; per block, the eight rows' scales
/// and mins by `scales` into `[nsb][8]` (zeros past `width`): what `gemm::unpack_transpose`
/// gives, in registers.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn decode<W: GemmWeight>(
    rows: &[W],
    width: usize,
    wq: &mut [u32],
    (s1, s2): (&mut [f32], &mut [f32]),
    chunk: impl Fn(&W, usize) -> __m256i,
    scales: impl Fn([&W; 8], &mut [f32], &mut [f32]),
) {
    let (per, sub) = (W::SIZE / 32, W::SIZE / W::S);
    let nb = wq.len() / 64 / per;
    let wq: &mut [u8] = bytemuck::cast_slice_mut(wq);
    let zero = <W as bytemuck::Zeroable>::zeroed();
    for b in 0..nb {
        let mut blocks = [&zero; 8];
        for (l, blk) in blocks.iter_mut().enumerate().take(width) {
            *blk = &rows[l * nb + b];
        }
        for c in 0..per {
            let mut r = [_mm256_setzero_si256(); 8];
            for l in 0..width {
                r[l] = chunk(blocks[l], c);
            }
            let dst = &mut wq[(b * per + c) * 256..][..256];
            for (k, v) in transpose8(r).into_iter().enumerate() {
                // SAFETY: `dst` holds eight vectors of 32 bytes; `storeu` needs no alignment.
                unsafe { _mm256_storeu_si256(dst[32 * k..].as_mut_ptr().cast(), v) };
            }
        }
        scales(blocks, &mut s1[b * sub * 8..][..sub * 8], &mut s2[b * sub * 8..][..sub * 8]);
    }
}

/// A `Q8_0` tile of `N` tokens (the whole tiles and the one-token tail alike), over a panel of
/// the stored signed quants (see [`gemm_q8_0`]). Per group of four columns, the weight vector
/// (eight rows' bytes) is widened to i16 once, rows 0–3 and 4–7 apart, for all the tokens; a
/// token's four
/// activation bytes, widened and repeated, meet them in `madd`, two columns to an i32 lane.
/// At the end of the sub-block a horizontal add pairs each row's two lanes into its exact
/// `Σ w y` (which is the canonical `Σ (q - 128) y`: the tile's offset term is not needed),
/// then the canonical FMA.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile_q8_0<const N: usize>(t: &Tile<'_>, out: &mut [[f32; 8]; N]) {
    let mut acc = [_mm256_setzero_ps(); N];
    for sb in 0..t.nsb {
        let wq = &t.wq[sb * 256..][..256];
        let y = t.aq[sb * N * 32..][..N * 32].as_chunks::<4>().0;
        let (mut lo, mut hi) = ([_mm256_setzero_si256(); N], [_mm256_setzero_si256(); N]);
        for k in 0..8 {
            // SAFETY: `wq` holds eight vectors of 32 bytes; `loadu` needs no alignment.
            let w = unsafe { _mm256_loadu_si256(wq[32 * k..].as_ptr().cast()) };
            let (wl, wh) = (
                _mm256_cvtepi8_epi16(_mm256_castsi256_si128(w)),
                _mm256_cvtepi8_epi16(_mm256_extracti128_si256::<1>(w)),
            );
            for j in 0..N {
                let a = _mm256_cvtepi8_epi16(_mm_set1_epi32(word(y[8 * j + k])));
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

// The one panel of this tier that holds signed bytes: the stored `Q8_0` quants as they are,
// which only `tile_q8_0` reads (the GEMM's unsigned form, `q + 128`, would be flipped back
// there for every tile).
gemm_kernel!(
    gemm_q8_0,
    BlockQ8_0,
    |x, _c| ld256(&x.qs),
    |xs, s1, s2| d_scales(xs.map(|x| x.d), s1, s2),
    tiles(tile_q8_0::<T>, tile_q8_0::<1>)
);

/// Defines `$name`, the GEMM over panels packed at load (`crate::cpu::nibble`: `$words` words
/// a panel of 16 rows of `$b`), each panel turned into the decoded one by `$unpack(panel,
/// blocks per row, wq, s1, s2)` once per call, and its tiles run as two halves of 8 rows: for
/// prompts, whose tiles reuse it across [`T`] tokens.
macro_rules! unpacking_kernel {
    ($name:ident, $b:ty, $words:path, $unpack:expr) => {
        #[target_feature(enable = "avx2,fma,f16c")]
        pub(in crate::cpu) unsafe fn $name(
            p: &[u32],
            rows: usize,
            cols: usize,
            a: &[<$b as crate::quant::Block>::Act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            const K: usize = <$b as GemmWeight>::S / 4;
            const MINS: bool = <$b as GemmWeight>::MINS;
            const G: usize = g::<$b>();
            let nb = cols / <$b as crate::quant::Block>::SIZE;
            let unpack: fn(&[u32], usize, &mut [u8], &mut [f32], &mut [f32]) = $unpack;
            gemm::gemm_unpacking::<$b, 16, T>(
                (p, $words(cols)),
                rows,
                cols,
                a,
                n,
                out,
                ldo,
                |h| fp16(h),
                |panel, wq, s1, s2| unpack(panel, nb, wq, s1, s2),
                |t, acc| tile::<K, MINS, G, 16>(t, acc),
                |t, acc| tile1::<K, MINS, G, 16>(t, acc),
            )
        }
    };
}

unpacking_kernel!(gemm_nibble_q4_0, BlockQ4_0, nibble::panel_words_q4_0, |p, nb, wq, s1, _| {
    nibble::unpack_panel_q4_0(p, nb, wq, s1)
});
unpacking_kernel!(gemm_nibble_q5_0, BlockQ5_0, nibble::panel_words_q5_0, |p, nb, wq, s1, _| {
    nibble::unpack_panel_q5_0(p, nb, wq, s1)
});
unpacking_kernel!(gemm_nibble_q4_k, BlockQ4_K, nibble::panel_words_q4_k, nibble::unpack_panel_q4_k);
