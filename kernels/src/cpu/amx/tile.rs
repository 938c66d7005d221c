//! The AMX micro-kernel of the tiled GEMM: one [`Tile`] (16 weight rows × 16 tokens), its
//! sub-blocks' exact sums from `tdpbsud`, four sub-blocks at a time (tiles 0–3), then the
//! AVX-512 tier's epilogue per token and sub-block in the canonical order.
//!
//! Needs the tile configuration of [`super::Tiles`] for sub-blocks of `4 K` bytes.

use crate::cpu::avx512::gemm::finish;
use crate::cpu::gemm::Tile;
use std::arch::asm;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;

/// Tokens per tile (the rows of tiles A and C).
const T: usize = 16;

/// Four sub-blocks' sums as `tilestored` writes them: `[sub-block][token][row]` i32.
#[repr(C, align(64))]
struct Sums([[i32; T * 16]; 4]);

/// One tile of `T` tokens against 16 weight rows; `K = S / 4`, `MINS` adds the mins.
///
/// Software-pipelined: the products of the next four sub-blocks are issued before the
/// epilogue of the current four, into the other of two buffers, so that the matrix unit works
/// while the vector units finish, and the epilogue's loads find sums whose tile stores have
/// long completed (a load waits for an earlier store to the same bytes to reach the cache).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(in crate::cpu) fn tile<const K: usize, const MINS: bool>(t: &Tile<'_>, out: &mut [[f32; 16]; T]) {
    // A sub-block's activations (16 tokens × S bytes) and weights (S / 4 × 64 bytes) are both
    // `16 S` bytes.
    let step = 64 * K;
    assert!(t.aq.len() >= t.nsb * step && t.wq.len() >= t.nsb * step, "tile shorter than its sub-blocks");
    // The types with mins (`Q4_K`, `Q5_K`) have no offset: their sums start at zero.
    debug_assert!(!MINS || t.off.iter().all(|&o| o == 0));
    let mut acc = [_mm512_setzero_ps(); T];
    // Two buffers of sums, never zeroed (8 KiB a tile, which a narrow matrix's short tiles
    // felt): the epilogue reads only sums a tile store has just written.
    let mut c = [const { MaybeUninit::<Sums>::uninit() }; 2];
    let groups = t.nsb.div_ceil(4);
    let issue = |g: usize, c: *mut Sums| {
        let sb = 4 * g;
        let n = (t.nsb - sb).min(4);
        let (a, w) = (t.aq[sb * step..].as_ptr(), t.wq[sb * step..].as_ptr());
        // SAFETY: the tiles are configured for `S = 4 K` (the caller holds a `Tiles`); the
        // `n` sub-blocks from `sb` lie within `aq` and `wq` (asserted above), and `c` has
        // room for four tiles of sums.
        unsafe {
            if n == 4 {
                products4(a, w, 4 * K, step, c);
            } else {
                for i in 0..n {
                    products1(a.add(i * step), w.add(i * step), 4 * K, c.cast::<[i32; T * 16]>().add(i));
                }
            }
        }
    };
    issue(0, c[0].as_mut_ptr());
    for g in 0..groups {
        if g + 1 < groups {
            issue(g + 1, c[(g + 1) % 2].as_mut_ptr());
        }
        let now = c[g % 2].as_ptr().cast::<[i32; T * 16]>();
        let sb = 4 * g;
        for i in 0..(t.nsb - sb).min(4) {
            let s = sb + i;
            // SAFETY: `s1` and `s2` hold 16 floats per sub-block; `loadu` needs no alignment.
            let (s1, s2) =
                unsafe { (_mm512_loadu_ps(t.s1[s * 16..].as_ptr()), _mm512_loadu_ps(t.s2[s * 16..].as_ptr())) };
            let (off, da, dys) = (&t.off[s * T..][..T], &t.da[s * T..][..T], &t.dys[s * T..][..T]);
            // SAFETY: sub-block `i`'s sums in `now`, which `issue` stored.
            let sums = unsafe { now.add(i).cast::<i32>() };
            unroll!(j in [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15] {
                // SAFETY: token `j`'s 16 sums, written by a tile store; `load` reads 64
                // aligned bytes.
                let sum = unsafe { _mm512_load_si512(sums.add(j * 16).cast()) };
                let sum = if MINS { sum } else { _mm512_add_epi32(sum, _mm512_set1_epi32(off[j])) };
                acc[j] = finish::<MINS>(sum, s1, s2, da[j], dys[j], acc[j]);
            });
        }
    }
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 16 floats.
        unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
    }
}

/// Four consecutive sub-blocks (`step` bytes apart in both `a` and `w`) into `c`: tiles 0–3
/// the sums, 4 and 5 the activations, 6 and 7 the weights, alternating so that consecutive
/// loads do not wait on the previous product.
///
/// # Safety
/// Tiles configured for sub-blocks of `s` bytes; `a` and `w` readable for `4 step` bytes, `c`
/// writable.
#[inline(always)]
unsafe fn products4(a: *const i8, w: *const u8, s: usize, step: usize, c: *mut Sums) {
    // SAFETY: per the contract; `tilestored` writes 4 × 1 KiB into `c`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{w} + {row}*1]",
            "tdpbsud tmm0, tmm4, tmm6",
            "add {a}, {step}",
            "add {w}, {step}",
            "tileloadd tmm5, [{a} + {s}*1]",
            "tileloadd tmm7, [{w} + {row}*1]",
            "tdpbsud tmm1, tmm5, tmm7",
            "add {a}, {step}",
            "add {w}, {step}",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{w} + {row}*1]",
            "tdpbsud tmm2, tmm4, tmm6",
            "add {a}, {step}",
            "add {w}, {step}",
            "tileloadd tmm5, [{a} + {s}*1]",
            "tileloadd tmm7, [{w} + {row}*1]",
            "tdpbsud tmm3, tmm5, tmm7",
            "tilestored [{c} + {row}*1], tmm0",
            "add {c}, 1024",
            "tilestored [{c} + {row}*1], tmm1",
            "add {c}, 1024",
            "tilestored [{c} + {row}*1], tmm2",
            "add {c}, 1024",
            "tilestored [{c} + {row}*1], tmm3",
            a = inout(reg) a => _,
            w = inout(reg) w => _,
            c = inout(reg) c => _,
            s = in(reg) s,
            step = in(reg) step,
            row = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// One sub-block into `c` through tiles 0, 4 and 6.
///
/// # Safety
/// As [`products4`], for one sub-block.
#[inline(always)]
unsafe fn products1(a: *const i8, w: *const u8, s: usize, c: *mut [i32; T * 16]) {
    // SAFETY: per the contract; `tilestored` writes 1 KiB into `c`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tileloadd tmm4, [{a} + {s}*1]",
            "tileloadd tmm6, [{w} + {row}*1]",
            "tdpbsud tmm0, tmm4, tmm6",
            "tilestored [{c} + {row}*1], tmm0",
            a = in(reg) a,
            w = in(reg) w,
            c = in(reg) c,
            s = in(reg) s,
            row = in(reg) 64usize,
            options(nostack),
        );
    }
}
