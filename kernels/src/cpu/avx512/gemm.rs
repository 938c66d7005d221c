//! The AVX-512 micro-kernel of the tiled GEMM ([`crate::cpu::gemm`]): 16 weight rows (the
//! i32 lanes of a 512-bit vector) by [`T`] tokens. Per sub-block, the `S / 4` interleaved
//! weight vectors are loaded once; per token, each `vpdpbusd` takes the token's four
//! activation bytes as an embedded broadcast, so the weights stay in registers for the whole
//! tile and the activations are read straight from the packed buffer.
//!
//! `vpdpbusd` multiplies unsigned weight bytes by signed activation bytes and adds four
//! products to an i32 with no intermediate saturation: exact for every byte.

use crate::cpu::avx2::fp16;
use crate::cpu::entry::word;
use crate::cpu::gemm::{self, Tile};
use crate::cpu::nibble;
use crate::quant::{BlockQ4_0, BlockQ4_K, BlockQ5_0, BlockQ5_K, BlockQ6_K, BlockQ8_0};
use std::arch::x86_64::*;

/// Tokens per tile: 16 accumulators, with the 8 weight vectors of a sub-block of 32, its
/// scales and the temporaries, fill the 32 registers without spilling.
const T: usize = 16;
const _: () = assert!(T == 16, "`tile` unrolls 16 tokens");

/// One tile: `K = S / 4` weight vectors per sub-block; `MINS` adds the `s2 · d Σ y` terms.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile<const K: usize, const MINS: bool>(t: &Tile<'_>, out: &mut [[f32; 16]; T]) {
    let mut acc = [_mm512_setzero_ps(); T];
    for sb in 0..t.nsb {
        let (w, s1, s2) = weights::<K>(t, sb);
        let y = t.aq[sb * T * 4 * K..][..T * 4 * K].as_chunks::<4>().0;
        let (off, da, dys) = (&t.off[sb * T..][..T], &t.da[sb * T..][..T], &t.dys[sb * T..][..T]);
        // Each token's step written out (`unroll!`), so that `acc` lives in registers and the
        // tokens' independent `vpdpbusd` chains overlap.
        unroll!(j in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
            acc[j] = finish::<MINS>(sums::<K>(&w, &y[j * K..][..K], off[j]), s1, s2, da[j], dys[j], acc[j]);
        });
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// How far ahead of its reads a one-token tile asks for the weights (bytes).
const PREFETCH: usize = 4096;

/// A tile of one token, formed as [`tile`] forms each of its tokens.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile1<const K: usize, const MINS: bool>(t: &Tile<'_>, out: &mut [[f32; 16]; 1]) {
    let mut acc = _mm512_setzero_ps();
    for sb in 0..t.nsb {
        for k in 0..K {
            let ahead = t.wq.as_ptr().wrapping_add(sb * 64 * K + 64 * k + PREFETCH);
            // A hint that never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
        }
        let (w, s1, s2) = weights::<K>(t, sb);
        let y = t.aq[sb * 4 * K..][..4 * K].as_chunks::<4>().0;
        acc = finish::<MINS>(sums_split::<K>(&w, y, t.off[sb]), s1, s2, t.da[sb], t.dys[sb], acc);
    }
    // SAFETY: `out[0]` is 16 floats.
    unsafe { _mm512_storeu_ps(out[0].as_mut_ptr(), acc) };
}

/// Sub-block `sb`'s weight vectors, scales and mins.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn weights<const K: usize>(t: &Tile<'_>, sb: usize) -> ([__m512i; K], __m512, __m512) {
    let wq = &t.wq[sb * 64 * K..][..64 * K];
    let (s1, s2) = (&t.s1[sb * 16..][..16], &t.s2[sb * 16..][..16]);
    // SAFETY: `wq` holds `K` vectors of 64 bytes, `s1` and `s2` 16 floats each; `loadu`
    // needs no alignment.
    let w = arr!(_mm512_setzero_si512(); K, |k| unsafe { _mm512_loadu_si512(wq[64 * k..].as_ptr().cast()) });
    unsafe { (w, _mm512_loadu_ps(s1.as_ptr()), _mm512_loadu_ps(s2.as_ptr())) }
}

/// One token's sub-block sums `off + Σ w y` (per lane, exact), the products summed by
/// `vpdpbusd` with the token's four bytes `y[k]` broadcast.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sums<const K: usize>(w: &[__m512i; K], y: &[[i8; 4]], off: i32) -> __m512i {
    let mut sum = _mm512_set1_epi32(off);
    for k in 0..K {
        sum = _mm512_dpbusd_epi32(sum, w[k], _mm512_set1_epi32(word(y[k])));
    }
    sum
}

/// [`sums`] for a lone token: two chains of `vpdpbusd` (even and odd `k`), added at the end.
/// The i32 sums are exact, so the split changes no bit; it halves the chain the token waits on
/// (a tile of many tokens has their chains to overlap instead, and no registers to spare).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sums_split<const K: usize>(w: &[__m512i; K], y: &[[i8; 4]], off: i32) -> __m512i {
    let (mut even, mut odd) = (_mm512_set1_epi32(off), _mm512_setzero_si512());
    for k in 0..K {
        let yk = _mm512_set1_epi32(word(y[k]));
        if k % 2 == 0 {
            even = _mm512_dpbusd_epi32(even, w[k], yk);
        } else {
            odd = _mm512_dpbusd_epi32(odd, w[k], yk);
        }
    }
    _mm512_add_epi32(even, odd)
}

/// `acc + cvt(sum) · (s1 · da) (+ s2 · dys)`: a sub-block's sums into the accumulator.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) fn finish<const MINS: bool>(
    sum: __m512i,
    s1: __m512,
    s2: __m512,
    da: f32,
    dys: f32,
    acc: __m512,
) -> __m512 {
    let acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(s1, _mm512_set1_ps(da)), acc);
    if MINS { _mm512_fmadd_ps(s2, _mm512_set1_ps(dys), acc) } else { acc }
}

/// `dst[c * 16 + l] = src[l * m + c]`: 16 rows of `m` words to `m` rows of 16, sixteen
/// columns at a time through registers (unpack 32-bit, unpack 64-bit, then two rounds of
/// 128-bit lane shuffles), the last `m % 16` columns one word at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn transpose(src: &[u32], m: usize, dst: &mut [u32]) {
    let full = m / 16 * 16;
    let rows: [&[u32]; 16] = arr!(&[][..]; 16, |l| &src[l * m..][..m]);
    for c in (0..full).step_by(16) {
        // SAFETY: each row holds `c + 16` words; `loadu` needs no alignment.
        let r = arr!(_mm512_setzero_si512(); 16, |l| unsafe { _mm512_loadu_si512(rows[l][c..].as_ptr().cast()) });
        let t = arr!(_mm512_setzero_si512(); 16, |i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 { _mm512_unpacklo_epi32(a, b) } else { _mm512_unpackhi_epi32(a, b) }
        });
        // u[4i + j], lane k: rows 4i..4i + 4 of column 4k + j.
        let u = arr!(_mm512_setzero_si512(); 16, |x| {
            let (i, j) = (x / 4, x % 4);
            let (a, b) = (t[4 * i + j / 2], t[4 * i + j / 2 + 2]);
            if j % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
        });
        let d = &mut dst[c * 16..][..256];
        for j in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x88>(u[j], u[4 + j]);
            let w0 = _mm512_shuffle_i32x4::<0xdd>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_i32x4::<0x88>(u[8 + j], u[12 + j]);
            let w1 = _mm512_shuffle_i32x4::<0xdd>(u[8 + j], u[12 + j]);
            let cols = [
                (j, _mm512_shuffle_i32x4::<0x88>(v0, v1)),
                (4 + j, _mm512_shuffle_i32x4::<0x88>(w0, w1)),
                (8 + j, _mm512_shuffle_i32x4::<0xdd>(v0, v1)),
                (12 + j, _mm512_shuffle_i32x4::<0xdd>(w0, w1)),
            ];
            for (col, v) in cols {
                // SAFETY: `d` holds 16 rows of 16 words; `storeu` needs no alignment.
                unsafe { _mm512_storeu_si512(d[col * 16..].as_mut_ptr().cast(), v) };
            }
        }
    }
    for (l, row) in rows.iter().enumerate() {
        for c in full..m {
            dst[c * 16 + l] = row[c];
        }
    }
}

/// The frame of this tier's GEMMs: nothing to set up.
///
/// # Safety
/// None needed; `unsafe` as the AMX tier's frame is.
unsafe fn no_frame(_s: usize) {}

/// Defines `$name`, the GEMM of weight type `$b` (sub-blocks of `S / 4` words), whose tiles of
/// `T` tokens run `$tile` (this tier's [`tile`], or the AMX tier's) inside the frame `$frame(S)`
/// (nothing, or the AMX tiles' configuration); the tail tokens run [`tile1`].
macro_rules! gemm_kernel {
    ($name:ident, $b:ty) => {
        gemm_kernel!($name, $b, tile, no_frame);
    };
    ($name:ident, $b:ty, $tile:ident, $frame:expr) => {
        /// Tiled GEMM: `out[t * ldo + r] = dot(w row r, a row t)`, bit for bit.
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(in crate::cpu) unsafe fn $name(
            w: &[$b],
            a: &[<$b as crate::quant::Block>::Act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            const K: usize = <$b as gemm::GemmWeight>::S / 4;
            const MINS: bool = <$b as gemm::GemmWeight>::MINS;
            // SAFETY: the caller's contract (the tier's host) covers the frame.
            let _frame = unsafe { $frame(4 * K) };
            gemm::gemm::<$b, 16, T>(
                w,
                a,
                n,
                out,
                ldo,
                |h| fp16(h),
                |rows, width, scratch, wq, s1, s2| {
                    gemm::unpack_transpose::<$b, 16>(
                        rows,
                        width,
                        scratch,
                        wq,
                        s1,
                        s2,
                        |h| fp16(h),
                        |s, m, d| transpose(s, m, d),
                    )
                },
                |t, acc| $tile::<K, MINS>(t, acc),
                |t, acc| tile1::<K, MINS>(t, acc),
            )
        }
    };
}

gemm_kernel!(gemm_q4_0, BlockQ4_0);
gemm_kernel!(gemm_q5_0, BlockQ5_0);
gemm_kernel!(gemm_q8_0, BlockQ8_0);
gemm_kernel!(gemm_q4_k, BlockQ4_K);
gemm_kernel!(gemm_q5_k, BlockQ5_K);
gemm_kernel!(gemm_q6_k, BlockQ6_K);

// The AMX tier's: tiles of 16 tokens on the matrix unit, with the AMX tiles configured for
// the call. Reachable only through that tier's table.
use crate::cpu::amx::{Tiles, tile::tile as amx_tile};
gemm_kernel!(amx_gemm_q4_0, BlockQ4_0, amx_tile, Tiles::configure);
gemm_kernel!(amx_gemm_q5_0, BlockQ5_0, amx_tile, Tiles::configure);
gemm_kernel!(amx_gemm_q8_0, BlockQ8_0, amx_tile, Tiles::configure);
gemm_kernel!(amx_gemm_q4_k, BlockQ4_K, amx_tile, Tiles::configure);
gemm_kernel!(amx_gemm_q5_k, BlockQ5_K, amx_tile, Tiles::configure);
gemm_kernel!(amx_gemm_q6_k, BlockQ6_K, amx_tile, Tiles::configure);

/// Defines `$name`, the GEMM over panels packed at load (`crate::cpu::nibble`: `$words`
/// words a panel of `$b`), each panel turned into the decoded one by `$unpack(panel, blocks
/// per row, wq, s1, s2)` once per call: for prompts, whose tiles reuse it across 16 tokens.
/// `$tile` and `$frame` as in `gemm_kernel`.
macro_rules! unpacking_kernel {
    ($name:ident, $b:ty, $words:path, $unpack:expr) => {
        unpacking_kernel!($name, $b, $words, $unpack, tile, no_frame);
    };
    ($name:ident, $b:ty, $words:path, $unpack:expr, $tile:ident, $frame:expr) => {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        pub(in crate::cpu) unsafe fn $name(
            p: &[u32],
            rows: usize,
            cols: usize,
            a: &[<$b as crate::quant::Block>::Act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            const K: usize = <$b as gemm::GemmWeight>::S / 4;
            const MINS: bool = <$b as gemm::GemmWeight>::MINS;
            let nb = cols / <$b as crate::quant::Block>::SIZE;
            let unpack: fn(&[u32], usize, &mut [u8], &mut [f32], &mut [f32]) = $unpack;
            // SAFETY: the caller's contract (the tier's host) covers the frame.
            let _frame = unsafe { $frame(4 * K) };
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
                |t, acc| $tile::<K, MINS>(t, acc),
                |t, acc| tile1::<K, MINS>(t, acc),
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
unpacking_kernel!(gemm_bytes_q8_0, BlockQ8_0, nibble::panel_words_q8_0, |p, nb, wq, s1, _| {
    nibble::unpack_panel_q8_0(p, nb, wq, s1)
});
unpacking_kernel!(gemm_nibble_q4_k, BlockQ4_K, nibble::panel_words_q4_k, nibble::unpack_panel_q4_k);
unpacking_kernel!(gemm_nibble_q6_k, BlockQ6_K, nibble::panel_words_q6_k, |p, nb, wq, s1, _| {
    nibble::unpack_panel_q6_k(p, nb, wq, s1)
});

// The AMX tier's.
unpacking_kernel!(
    amx_gemm_nibble_q4_0,
    BlockQ4_0,
    nibble::panel_words_q4_0,
    |p, nb, wq, s1, _| { nibble::unpack_panel_q4_0(p, nb, wq, s1) },
    amx_tile,
    Tiles::configure
);
unpacking_kernel!(
    amx_gemm_nibble_q5_0,
    BlockQ5_0,
    nibble::panel_words_q5_0,
    |p, nb, wq, s1, _| { nibble::unpack_panel_q5_0(p, nb, wq, s1) },
    amx_tile,
    Tiles::configure
);
unpacking_kernel!(
    amx_gemm_bytes_q8_0,
    BlockQ8_0,
    nibble::panel_words_q8_0,
    |p, nb, wq, s1, _| { nibble::unpack_panel_q8_0(p, nb, wq, s1) },
    amx_tile,
    Tiles::configure
);
unpacking_kernel!(
    amx_gemm_nibble_q4_k,
    BlockQ4_K,
    nibble::panel_words_q4_k,
    nibble::unpack_panel_q4_k,
    amx_tile,
    Tiles::configure
);
unpacking_kernel!(
    amx_gemm_nibble_q6_k,
    BlockQ6_K,
    nibble::panel_words_q6_k,
    |p, nb, wq, s1, _| { nibble::unpack_panel_q6_k(p, nb, wq, s1) },
    amx_tile,
    Tiles::configure
);
