//! `Q4_0`, `Q5_0`, `Q8_0`, `Q4_K` and `Q6_K` weights packed once into nibble panels, the
//! layout the AVX-512 kernels read for every batch size: the stored quant bytes themselves,
//! rearranged, so the copy is about the size of the file's (exactly, `Q4_K` 3% more) and
//! nothing is decoded at load.
//!
//! A panel holds [`L`] consecutive rows (the i32 lanes of a 512-bit vector; rows past the end
//! are zeros). Per block `b` of 32 columns, four vectors of 64 bytes: vector `v`, lane `l`
//! holds bytes `4v..4v + 4` of row `l`'s quants, whose low nibbles are columns `4v..4v + 4`
//! and high nibbles columns `16 + 4v..16 + 4v + 4`. One load, a mask and a shift give the
//! unsigned quants of those columns for all sixteen rows, and `vpdpbusd` against the
//! activation's four bytes broadcast adds each row's products into its own lane: no
//! horizontal sums. After the `nb` blocks' quants (`[nb][4][L][4]` bytes) come the rows' f16
//! scales, `[nb][L]`.
//!
//! `Q5_0` as `Q4_0`, its fifth bits in one plane word per row and block, arranged so that a
//! shift and a mask put them at bit 4 of the right bytes: for vector `v`, byte `i`, bit
//! `8i + v` is the fifth bit of column `4v + i` and bit `8i + 4 + v` that of column
//! `16 + 4v + i`. Quants `[nb][4][L][4]` bytes, planes `[nb][L]` words, scales `[nb][L]`
//! f16: the file's 22 bytes per 32 weights.
//!
//! `Q8_0` (whole bytes, not nibbles, but the same idea and the file's size) as eight
//! vectors per block, vector `v` lane `l` holding row `l`'s quants `4v..4v + 4` as unsigned
//! bytes (`q + 128`, the GEMM's form), then the f16 scales `[nb][L]`.
//!
//! `Q6_K` per super-block: its sixteen sub-blocks of 16 columns in order, three vectors each
//! (`[16][3][L][4]` bytes), then the rows' sixteen scales (`[16][L]` bytes) and `d` (`[L]`
//! f16): the file's 210 bytes per row, its bits regrouped so that each sub-block's three
//! loads give all of its sixteen columns. In sub-block `j`, byte `i` of a lane: in vector
//! 0, the low four bits of columns `16j + i` (low nibble) and `16j + 4 + i` (high); in
//! vector 1, those of `16j + 8 + i` and `16j + 12 + i`; in vector 2, the top two bits of
//! the four, at bits 0, 2, 4 and 6. A small batch then keeps one sum per token live (a
//! sub-block is finished before the next starts), not four.
//!
//! `Q4_K` the same way per super-block of 256: 32 vectors, vector `8k + v` holding bytes
//! `32k + 4v..+ 4` of each row (low nibbles: sub-block `2k`, columns `4v..`; high: sub-block
//! `2k + 1`), `[nb][32][L][4]` bytes; then per super-block the rows' `d` and `dmin` (f16,
//! `[L]` each) and their eight 6-bit scales and mins unpacked to bytes (`[8][L]` each).
//!
//! Every output is formed in the canonical order (`cpu::gemm`), so it has the bits of the
//! tier's `dot` and of the GEMM.

use super::gemm::{huge_zeroed, par_panels};
use crate::quant::{BlockQ4_0, BlockQ4_K, BlockQ5_0, BlockQ6_K, BlockQ8_0, BlockQ8_K};

/// `f(offs, das)` with each activation block's `-off Σ y` and scale, in a per-thread buffer
/// that grows to the largest call once (no allocation after that): what the small-batch
/// kernels over legacy panels need per token and block.
#[inline(always)]
pub(in crate::cpu) fn with_legacy_terms(a: &[BlockQ8_0], off: i32, f: impl FnOnce(&[i32], &[f32])) {
    thread_local! {
        static TERMS: std::cell::RefCell<(Vec<i32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    TERMS.with_borrow_mut(|(offs, das)| {
        offs.clear();
        das.clear();
        offs.extend(a.iter().map(|y| -off * y.qs.iter().map(|&q| i32::from(q)).sum::<i32>()));
        das.extend(a.iter().map(|y| y.d.to_f32()));
        f(offs, das)
    })
}

/// `f(dys)` with each `Q8_K` activation block's `d · Σ y` per sub-block of 32 (from its stated
/// sums), `[block][8]`, in a per-thread buffer that grows to the largest call once: the mins'
/// terms of the `Q4_K` small-batch kernels.
#[inline(always)]
pub(in crate::cpu) fn with_sub_sums(a: &[BlockQ8_K], f: impl FnOnce(&[f32])) {
    thread_local! {
        static DYS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    DYS.with_borrow_mut(|dys| {
        dys.clear();
        for y in a {
            let sums = y.bsums.as_chunks::<2>().0;
            dys.extend(sums.iter().map(|s| y.d * (i32::from(s[0]) + i32::from(s[1])) as f32));
        }
        f(dys)
    })
}

/// `T` consecutive rows of `nb` items from row `t0` of `x`.
#[inline(always)]
pub(in crate::cpu) fn rows_of<X, const T: usize>(x: &[X], nb: usize, t0: usize) -> [&[X]; T] {
    std::array::from_fn(|t| &x[(t0 + t) * nb..][..nb])
}

/// Rows per panel.
pub(in crate::cpu) const L: usize = 16;

/// Words of one panel of rows of `cols` columns: per block, 256 bytes of quants and 32 of
/// scales.
pub(in crate::cpu) const fn panel_words_q4_0(cols: usize) -> usize {
    cols / 32 * (64 + 8)
}

/// `w` (whole rows of `nb` blocks) in nibble panels, back to back.
pub(in crate::cpu) fn pack_q4_0(w: &[BlockQ4_0], nb: usize) -> Vec<u32> {
    let rows = if nb == 0 { 0 } else { w.len() / nb };
    let words = panel_words_q4_0(nb * 32);
    let mut out = huge_zeroed(rows.div_ceil(L) * words);
    par_panels(&mut out, words, |p, panel| {
        let (quants, scales) = panel.split_at_mut(nb * 64);
        for l in 0..L.min(rows - p * L) {
            for (b, blk) in w[(p * L + l) * nb..][..nb].iter().enumerate() {
                for v in 0..4 {
                    let q = &blk.qs[4 * v..4 * v + 4];
                    quants[b * 64 + v * L + l] = u32::from_le_bytes([q[0], q[1], q[2], q[3]]);
                }
                let half = b * L + l;
                let word = &mut scales[half / 2];
                let shift = 16 * (half % 2);
                *word |= u32::from(blk.d.to_bits()) << shift;
            }
        }
    });
    out
}

/// Words of one `Q5_0` panel of rows of `cols` columns: per block, 256 bytes of quants, 64
/// of planes and 32 of scales.
pub(in crate::cpu) const fn panel_words_q5_0(cols: usize) -> usize {
    cols / 32 * (64 + 16 + 8)
}

/// A `Q5_0` block's fifth bits (`qh`, bit `e` for column `e`) as its plane word.
fn plane(qh: u32) -> u32 {
    let mut p = 0;
    for v in 0..4 {
        for i in 0..4 {
            p |= ((qh >> (4 * v + i)) & 1) << (8 * i + v);
            p |= ((qh >> (16 + 4 * v + i)) & 1) << (8 * i + 4 + v);
        }
    }
    p
}

/// The inverse of [`plane`].
fn unplane(p: u32) -> u32 {
    let mut qh = 0;
    for v in 0..4 {
        for i in 0..4 {
            qh |= ((p >> (8 * i + v)) & 1) << (4 * v + i);
            qh |= ((p >> (8 * i + 4 + v)) & 1) << (16 + 4 * v + i);
        }
    }
    qh
}

/// `w` (whole rows of `nb` blocks) in `Q5_0` nibble panels, back to back.
pub(in crate::cpu) fn pack_q5_0(w: &[BlockQ5_0], nb: usize) -> Vec<u32> {
    let rows = if nb == 0 { 0 } else { w.len() / nb };
    let words = panel_words_q5_0(nb * 32);
    let mut out = huge_zeroed(rows.div_ceil(L) * words);
    par_panels(&mut out, words, |p, panel| {
        let (quants, rest) = panel.split_at_mut(nb * 64);
        let (planes, scales) = rest.split_at_mut(nb * L);
        let scales: &mut [u16] = bytemuck::cast_slice_mut(scales);
        for l in 0..L.min(rows - p * L) {
            for (b, blk) in w[(p * L + l) * nb..][..nb].iter().enumerate() {
                for (v, q) in blk.qs.as_chunks::<4>().0.iter().enumerate() {
                    quants[b * 64 + v * L + l] = u32::from_le_bytes(*q);
                }
                planes[b * L + l] = plane(u32::from_le_bytes(blk.qh));
                scales[b * L + l] = blk.d.to_bits();
            }
        }
    });
    out
}

/// A `Q5_0` panel (`nb` blocks per row) as the tiled GEMM's decoded panel (five-bit unsigned
/// quants, as `Q4_0`'s with the plane bits at bit 4); `s2` is left alone.
#[inline(always)]
pub(in crate::cpu) fn unpack_panel_q5_0(panel: &[u32], nb: usize, wq: &mut [u8], s1: &mut [f32]) {
    let (quants, rest) = panel.split_at(nb * 64);
    let (planes, scales) = rest.split_at(nb * L);
    let scales: &[u16] = bytemuck::cast_slice(scales);
    // Word by word (a row's four bytes of a column group), so that the loops vectorise: byte
    // `i` of group `v` takes its fifth bits from plane bits `8i + v` (low nibble) and
    // `8i + 4 + v` (high nibble), both moved to bit `8i + 4`.
    const LOW: u32 = 0x0f0f_0f0f;
    const FIFTH: u32 = 0x1010_1010;
    // `v` unrolled, so that the shifts are constants: as a loop, they became per-lane
    // variable shifts on 128-bit vectors, and with the scales converted one at a time this
    // function (with the tiles inlined into it) took 4.7% of a Gemma 3 270M prompt's time,
    // 2.7% now (AVX-512 EPYC).
    let wq: &mut [u32] = bytemuck::cast_slice_mut(&mut wq[..nb * 512]);
    for b in 0..nb {
        let (src, dst) = (&quants[b * 64..][..64], &mut wq[b * 128..][..128]);
        let planes = &planes[b * L..][..L];
        let (lo, hi) = dst.split_at_mut(64);
        unroll!(v in [0, 1, 2, 3] {
            let (src, lo, hi) = (&src[v * L..][..L], &mut lo[v * L..][..L], &mut hi[v * L..][..L]);
            for l in 0..L {
                let (x, p) = (src[l], planes[l]);
                lo[l] = (x & LOW) | ((p << (4 - v)) & FIFTH);
                hi[l] = ((x >> 4) & LOW) | ((p >> v) & FIFTH);
            }
        });
    }
    widen(&scales[..nb * L], &mut s1[..nb * L]);
}

/// Blocks `first..first + out.len()` of row `r` of `Q5_0` nibble panels (`nb` blocks per
/// row), as they were stored.
pub(in crate::cpu) fn unpack_row_q5_0(panels: &[u32], nb: usize, r: usize, first: usize, out: &mut [BlockQ5_0]) {
    let words = panel_words_q5_0(nb * 32);
    let panel = &panels[r / L * words..][..words];
    let (quants, rest) = panel.split_at(nb * 64);
    let (planes, scales) = rest.split_at(nb * L);
    let scales: &[u16] = bytemuck::cast_slice(scales);
    let l = r % L;
    for (b, blk) in (first..nb).zip(out.iter_mut()) {
        for v in 0..4 {
            blk.qs[4 * v..4 * v + 4].copy_from_slice(&quants[b * 64 + v * L + l].to_le_bytes());
        }
        blk.qh = unplane(planes[b * L + l]).to_le_bytes();
        blk.d = half::f16::from_bits(scales[b * L + l]);
    }
}

/// f16 scales (as stored) to f32, the slice at once (the `half` crate's F16C path, looked up
/// once per call rather than once per value).
#[inline(always)]
fn widen(halves: &[u16], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    bytemuck::cast_slice::<u16, half::f16>(halves).convert_to_f32_slice(out);
}

/// Words of one `Q8_0` panel of rows of `cols` columns: per block, 512 bytes of quants and
/// 32 of scales.
pub(in crate::cpu) const fn panel_words_q8_0(cols: usize) -> usize {
    cols / 32 * (128 + 8)
}

/// `w` (whole rows of `nb` blocks) in `Q8_0` byte panels, back to back.
pub(in crate::cpu) fn pack_q8_0(w: &[BlockQ8_0], nb: usize) -> Vec<u32> {
    let rows = if nb == 0 { 0 } else { w.len() / nb };
    let words = panel_words_q8_0(nb * 32);
    let mut out = huge_zeroed(rows.div_ceil(L) * words);
    par_panels(&mut out, words, |p, panel| {
        let (quants, scales) = panel.split_at_mut(nb * 128);
        let scales: &mut [u16] = bytemuck::cast_slice_mut(scales);
        for l in 0..L.min(rows - p * L) {
            for (b, blk) in w[(p * L + l) * nb..][..nb].iter().enumerate() {
                for (v, q) in blk.qs.as_chunks::<4>().0.iter().enumerate() {
                    quants[b * 128 + v * L + l] = u32::from_le_bytes(q.map(|x| (x as u8) ^ 0x80));
                }
                scales[b * L + l] = blk.d.to_bits();
            }
        }
    });
    out
}

/// A `Q8_0` panel (`nb` blocks per row) as the tiled GEMM's decoded panel: the quants are
/// already in its layout; the scales become floats.
#[inline(always)]
pub(in crate::cpu) fn unpack_panel_q8_0(panel: &[u32], nb: usize, wq: &mut [u8], s1: &mut [f32]) {
    let (quants, scales) = panel.split_at(nb * 128);
    wq[..nb * 512].copy_from_slice(bytemuck::cast_slice(quants));
    let scales: &[u16] = bytemuck::cast_slice(scales);
    widen(&scales[..nb * L], &mut s1[..nb * L]);
}

/// Blocks `first..first + out.len()` of row `r` of `Q8_0` byte panels (`nb` blocks per row),
/// as they were stored.
pub(in crate::cpu) fn unpack_row_q8_0(panels: &[u32], nb: usize, r: usize, first: usize, out: &mut [BlockQ8_0]) {
    let words = panel_words_q8_0(nb * 32);
    let panel = &panels[r / L * words..][..words];
    let (quants, scales) = panel.split_at(nb * 128);
    let scales: &[u16] = bytemuck::cast_slice(scales);
    let l = r % L;
    for (b, blk) in (first..nb).zip(out.iter_mut()) {
        for v in 0..8 {
            let q = quants[b * 128 + v * L + l].to_le_bytes();
            for i in 0..4 {
                blk.qs[4 * v + i] = (q[i] ^ 0x80) as i8;
            }
        }
        blk.d = half::f16::from_bits(scales[b * L + l]);
    }
}

/// Words of one `Q6_K` panel of rows of `cols` columns: per super-block, 3072 bytes of
/// quants, 256 of scales and 32 of `d`.
pub(in crate::cpu) const fn panel_words_q6_k(cols: usize) -> usize {
    cols / 256 * Q6_K_WORDS
}

/// Words of one `Q6_K` super-block of a panel: 16 sub-blocks of [`Q6_K_SUB`], the scales at
/// word 768, `d` at 832.
pub(in crate::cpu) const Q6_K_WORDS: usize = 768 + 64 + 8;

/// Words of one `Q6_K` sub-block of a panel: three vectors.
pub(in crate::cpu) const Q6_K_SUB: usize = 3 * L;

/// The three words of one row's `Q6_K` sub-block in the panel layout (low nibbles of
/// columns `0..4` / `4..8`, of `8..12` / `12..16`, then the top bits), from its 16 quants
/// `q` (`0..64`).
fn q6_k_words(q: &[u8]) -> [u32; 3] {
    let mut w = [0u32; 3];
    for i in 0..4 {
        w[0] |= u32::from((q[i] & 0xf) | (q[4 + i] & 0xf) << 4) << (8 * i);
        w[1] |= u32::from((q[8 + i] & 0xf) | (q[12 + i] & 0xf) << 4) << (8 * i);
        for g in 0..4 {
            w[2] |= u32::from(q[4 * g + i] >> 4) << (8 * i + 2 * g);
        }
    }
    w
}

/// The 16 quants (`0..64`) of one row's `Q6_K` sub-block from its three panel words.
fn q6_k_quants(w: [u32; 3]) -> [u8; 16] {
    std::array::from_fn(|c| {
        let (g, i) = (c / 4, c % 4);
        let low = (w[g / 2] >> (8 * i + 4 * (g % 2))) & 0xf;
        let top = (w[2] >> (8 * i + 2 * g)) & 3;
        (low | top << 4) as u8
    })
}

/// `w` (whole rows of `nb` super-blocks) in `Q6_K` nibble panels, back to back.
pub(in crate::cpu) fn pack_q6_k(w: &[BlockQ6_K], nb: usize) -> Vec<u32> {
    let rows = if nb == 0 { 0 } else { w.len() / nb };
    let words = panel_words_q6_k(nb * 256);
    let mut out = huge_zeroed(rows.div_ceil(L) * words);
    par_panels(&mut out, words, |p, panel| {
        for l in 0..L.min(rows - p * L) {
            for (b, blk) in w[(p * L + l) * nb..][..nb].iter().enumerate() {
                let sb = &mut panel[b * Q6_K_WORDS..][..Q6_K_WORDS];
                let q: [u8; 256] = std::array::from_fn(|e| blk.stored(e));
                for j in 0..16 {
                    for (v, w) in q6_k_words(&q[16 * j..][..16]).into_iter().enumerate() {
                        sb[j * Q6_K_SUB + v * L + l] = w;
                    }
                }
                let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut sb[768..832]);
                for (j, &sc) in blk.scales.iter().enumerate() {
                    bytes[j * L + l] = sc as u8;
                }
                let halves: &mut [u16] = bytemuck::cast_slice_mut(&mut sb[832..]);
                halves[l] = blk.d.to_bits();
            }
        }
    });
    out
}

/// Super-block `b` of row `l` of a `Q6_K` panel, as it was stored.
fn q6_k_block(panel: &[u32], b: usize, l: usize) -> BlockQ6_K {
    let sb = &panel[b * Q6_K_WORDS..][..Q6_K_WORDS];
    let mut blk = BlockQ6_K { ql: [0; 128], qh: [0; 64], scales: [0; 16], d: half::f16::ZERO };
    for j in 0..16 {
        let w = std::array::from_fn(|v| sb[j * Q6_K_SUB + v * L + l]);
        for (c, q) in q6_k_quants(w).into_iter().enumerate() {
            blk.store(16 * j + c, q);
        }
    }
    let bytes: &[u8] = bytemuck::cast_slice(&sb[768..832]);
    for j in 0..16 {
        blk.scales[j] = bytes[j * L + l] as i8;
    }
    let halves: &[u16] = bytemuck::cast_slice(&sb[832..]);
    blk.d = half::f16::from_bits(halves[l]);
    blk
}

/// A `Q6_K` panel (`nb` super-blocks per row) as the tiled GEMM's decoded panel, four
/// quants (one word) at a time for all sixteen rows: column group `g` of sub-block `j` takes
/// its low bits from nibble `g % 2` of the sub-block's vector `g / 2` and its top two from
/// bits `2g..2g + 2` of its vector 2 (see the module docs); `s1 = d · sc`.
#[inline(always)]
pub(in crate::cpu) fn unpack_panel_q6_k(panel: &[u32], nb: usize, wq: &mut [u8], s1: &mut [f32]) {
    const LOW: u32 = 0x0f0f_0f0f;
    let wq: &mut [u32] = bytemuck::cast_slice_mut(&mut wq[..nb * 256 * L]);
    for b in 0..nb {
        let sb = &panel[b * Q6_K_WORDS..][..Q6_K_WORDS];
        for j in 0..16 {
            let sub = &sb[j * Q6_K_SUB..][..Q6_K_SUB];
            let (qa, qb, top) = (&sub[..L], &sub[L..2 * L], &sub[2 * L..]);
            for g in 0..4 {
                let dst = &mut wq[((b * 16 + j) * 4 + g) * L..][..L];
                for l in 0..L {
                    let (a, c, t) = (qa[l], qb[l], top[l]);
                    dst[l] = match g {
                        0 => (a & LOW) | (t & 0x0303_0303) << 4,
                        1 => ((a >> 4) & LOW) | (t & 0x0c0c_0c0c) << 2,
                        2 => (c & LOW) | (t & 0x3030_3030),
                        _ => ((c >> 4) & LOW) | (t & 0xc0c0_c0c0) >> 2,
                    };
                }
            }
        }
        let bytes: &[u8] = bytemuck::cast_slice(&sb[768..832]);
        let mut d = [0f32; L];
        widen(&bytemuck::cast_slice(&sb[832..])[..L], &mut d);
        for j in 0..16 {
            for l in 0..L {
                s1[(b * 16 + j) * L + l] = d[l] * f32::from(bytes[j * L + l] as i8);
            }
        }
    }
}

/// Blocks `first..first + out.len()` of row `r` of `Q6_K` nibble panels (`nb` super-blocks
/// per row), as they were stored.
pub(in crate::cpu) fn unpack_row_q6_k(panels: &[u32], nb: usize, r: usize, first: usize, out: &mut [BlockQ6_K]) {
    let words = panel_words_q6_k(nb * 256);
    let panel = &panels[r / L * words..][..words];
    for (b, blk) in (first..nb).zip(out.iter_mut()) {
        *blk = q6_k_block(panel, b, r % L);
    }
}

/// Words of one `Q4_K` panel of rows of `cols` columns: per super-block, 2048 bytes of
/// quants, 64 of `d` and `dmin`, 256 of scales and mins.
pub(in crate::cpu) const fn panel_words_q4_k(cols: usize) -> usize {
    cols / 256 * (512 + 16 + 64)
}

/// `w` (whole rows of `nb` super-blocks) in `Q4_K` nibble panels, back to back.
pub(in crate::cpu) fn pack_q4_k(w: &[BlockQ4_K], nb: usize) -> Vec<u32> {
    let rows = if nb == 0 { 0 } else { w.len() / nb };
    let words = panel_words_q4_k(nb * 256);
    let mut out = huge_zeroed(rows.div_ceil(L) * words);
    par_panels(&mut out, words, |p, panel| {
        let (quants, rest) = panel.split_at_mut(nb * 512);
        let (halves, bytes) = rest.split_at_mut(nb * 16);
        let halves: &mut [u16] = bytemuck::cast_slice_mut(halves);
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(bytes);
        for l in 0..L.min(rows - p * L) {
            for (b, blk) in w[(p * L + l) * nb..][..nb].iter().enumerate() {
                for (v, q) in blk.qs.as_chunks::<4>().0.iter().enumerate() {
                    quants[b * 512 + v * L + l] = u32::from_le_bytes(*q);
                }
                halves[b * 32 + l] = blk.d.to_bits();
                halves[b * 32 + L + l] = blk.dmin.to_bits();
                let sm = super::avx2::scales_mins_k4(&blk.scales);
                for (j, &x) in sm.iter().enumerate() {
                    bytes[b * 256 + j * L + l] = x;
                }
            }
        }
    });
    out
}

/// A `Q4_0` panel (`nb` blocks per row) as the tiled GEMM's decoded panel: per block, the
/// eight vectors of columns `4k..4k + 4` (the low nibbles of the four stored vectors, then
/// their high nibbles), and the rows' scales as floats; `s2` is left alone (no mins).
#[inline(always)]
pub(in crate::cpu) fn unpack_panel_q4_0(panel: &[u32], nb: usize, wq: &mut [u8], s1: &mut [f32]) {
    let (quants, scales) = panel.split_at(nb * 64);
    let (quants, scales): (&[u8], &[u16]) = (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
    for b in 0..nb {
        let (src, dst) = (&quants[b * 256..][..256], &mut wq[b * 512..][..512]);
        for i in 0..256 {
            dst[i] = src[i] & 0x0f;
            dst[256 + i] = src[i] >> 4;
        }
    }
    widen(&scales[..nb * L], &mut s1[..nb * L]);
}

/// A `Q4_K` panel (`nb` super-blocks per row) as the tiled GEMM's decoded panel: sub-block
/// `2k` is the low nibbles of vectors `8k..8k + 8`, `2k + 1` their high nibbles; `s1 = d ·
/// sc`, `s2 = -dmin · m`, as `GemmWeight` gives them.
#[inline(always)]
pub(in crate::cpu) fn unpack_panel_q4_k(panel: &[u32], nb: usize, wq: &mut [u8], s1: &mut [f32], s2: &mut [f32]) {
    let (quants, rest) = panel.split_at(nb * 512);
    let (halves, bytes) = rest.split_at(nb * 16);
    let (quants, halves, bytes): (&[u8], &[u16], &[u8]) =
        (bytemuck::cast_slice(quants), bytemuck::cast_slice(halves), bytemuck::cast_slice(bytes));
    for b in 0..nb {
        for k in 0..4 {
            let src = &quants[b * 2048 + k * 512..][..512];
            let dst = &mut wq[b * 4096 + k * 1024..][..1024];
            for i in 0..512 {
                dst[i] = src[i] & 0x0f;
                dst[512 + i] = src[i] >> 4;
            }
        }
        // The sixteen rows' scales at once, then each sub-block's in order: vector loops (row
        // by row, the conversions and strided stores took a quarter of this function's
        // samples in a 1B prompt).
        let (mut d, mut dmin) = ([0f32; L], [0f32; L]);
        widen(&halves[b * 32..][..L], &mut d);
        widen(&halves[b * 32 + L..][..L], &mut dmin);
        for j in 0..8 {
            for l in 0..L {
                s1[(b * 8 + j) * L + l] = d[l] * f32::from(bytes[b * 256 + j * L + l]);
                s2[(b * 8 + j) * L + l] = -dmin[l] * f32::from(bytes[b * 256 + (8 + j) * L + l]);
            }
        }
    }
}

/// Blocks `first..first + out.len()` of row `r` of `Q4_0` nibble panels (`nb` blocks per
/// row), as they were stored.
pub(in crate::cpu) fn unpack_row_q4_0(panels: &[u32], nb: usize, r: usize, first: usize, out: &mut [BlockQ4_0]) {
    let panel = &panels[r / L * panel_words_q4_0(nb * 32)..][..panel_words_q4_0(nb * 32)];
    let (quants, scales) = panel.split_at(nb * 64);
    let scales: &[u16] = bytemuck::cast_slice(scales);
    let l = r % L;
    for (b, blk) in (first..nb).zip(out.iter_mut()) {
        for v in 0..4 {
            blk.qs[4 * v..4 * v + 4].copy_from_slice(&quants[b * 64 + v * L + l].to_le_bytes());
        }
        blk.d = half::f16::from_bits(scales[b * L + l]);
    }
}

/// The 12 packed bytes of six-bit scales `sc` and mins `m` (ggml's `Q4_K` layout): the
/// inverse of `scales_mins_k4`.
fn pack_scales_mins(sc: &[u8], m: &[u8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[4 + j] >> 4) << 6);
        s[4 + j] = (m[j] & 63) | ((m[4 + j] >> 4) << 6);
        s[8 + j] = (sc[4 + j] & 15) | ((m[4 + j] & 15) << 4);
    }
    s
}

/// Blocks `first..first + out.len()` of row `r` of `Q4_K` nibble panels (`nb` super-blocks
/// per row), as they were stored.
pub(in crate::cpu) fn unpack_row_q4_k(panels: &[u32], nb: usize, r: usize, first: usize, out: &mut [BlockQ4_K]) {
    let words = panel_words_q4_k(nb * 256);
    let panel = &panels[r / L * words..][..words];
    let (quants, rest) = panel.split_at(nb * 512);
    let (halves, bytes) = rest.split_at(nb * 16);
    let (halves, bytes): (&[u16], &[u8]) = (bytemuck::cast_slice(halves), bytemuck::cast_slice(bytes));
    let l = r % L;
    for (b, blk) in (first..nb).zip(out.iter_mut()) {
        for v in 0..32 {
            blk.qs[4 * v..4 * v + 4].copy_from_slice(&quants[b * 512 + v * L + l].to_le_bytes());
        }
        blk.d = half::f16::from_bits(halves[b * 32 + l]);
        blk.dmin = half::f16::from_bits(halves[b * 32 + L + l]);
        let col = |j: usize| bytes[b * 256 + j * L + l];
        let (sc, m): ([u8; 8], [u8; 8]) = (std::array::from_fn(col), std::array::from_fn(|j| col(8 + j)));
        blk.scales = pack_scales_mins(&sc, &m);
    }
}

/// The checked entry of the row unpackers: `out` gets blocks `first..` of row `r` (as many
/// as it holds) of the panels `p` (rows of `cols` columns of `B`, `words(cols)` words a
/// panel), as they were stored.
fn row_entry<B: crate::quant::Block>(
    (p, cols): (&[u32], usize),
    (r, first): (usize, usize),
    out: &mut [u8],
    words: fn(usize) -> usize,
    unpack: fn(&[u32], usize, usize, usize, &mut [B]),
) -> Result<(), crate::KernelError> {
    let nb = cols / B::SIZE;
    let blocks = super::entry::blocks_mut::<B>(out)?;
    if first + blocks.len() > nb {
        return Err(crate::KernelError::Length {
            what: "row blocks (columns)",
            expected: nb - first.min(nb),
            found: blocks.len(),
        });
    }
    if p.len() < (r / L + 1) * words(cols) {
        return Err(crate::KernelError::Length {
            what: "packed row index",
            expected: p.len() / words(cols).max(1) * L,
            found: r,
        });
    }
    unpack(p, nb, r, first, blocks);
    Ok(())
}

/// [`crate::quant::Ops::packed_row`] for `Q4_0` nibble panels.
pub(in crate::cpu) fn row_q4_0(
    p: &[u32],
    cols: usize,
    r: usize,
    first: usize,
    out: &mut [u8],
) -> Result<(), crate::KernelError> {
    row_entry::<BlockQ4_0>((p, cols), (r, first), out, panel_words_q4_0, unpack_row_q4_0)
}

/// [`crate::quant::Ops::packed_row`] for `Q5_0` nibble panels.
pub(in crate::cpu) fn row_q5_0(
    p: &[u32],
    cols: usize,
    r: usize,
    first: usize,
    out: &mut [u8],
) -> Result<(), crate::KernelError> {
    row_entry::<BlockQ5_0>((p, cols), (r, first), out, panel_words_q5_0, unpack_row_q5_0)
}

/// [`crate::quant::Ops::packed_row`] for `Q8_0` byte panels.
pub(in crate::cpu) fn row_q8_0(
    p: &[u32],
    cols: usize,
    r: usize,
    first: usize,
    out: &mut [u8],
) -> Result<(), crate::KernelError> {
    row_entry::<BlockQ8_0>((p, cols), (r, first), out, panel_words_q8_0, unpack_row_q8_0)
}

/// [`crate::quant::Ops::packed_row`] for `Q6_K` nibble panels.
pub(in crate::cpu) fn row_q6_k(
    p: &[u32],
    cols: usize,
    r: usize,
    first: usize,
    out: &mut [u8],
) -> Result<(), crate::KernelError> {
    row_entry::<BlockQ6_K>((p, cols), (r, first), out, panel_words_q6_k, unpack_row_q6_k)
}

/// [`crate::quant::Ops::packed_row`] for `Q4_K` nibble panels.
pub(in crate::cpu) fn row_q4_k(
    p: &[u32],
    cols: usize,
    r: usize,
    first: usize,
    out: &mut [u8],
) -> Result<(), crate::KernelError> {
    row_entry::<BlockQ4_K>((p, cols), (r, first), out, panel_words_q4_k, unpack_row_q4_k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytemuck::Zeroable;

    /// `n` blocks of random bytes.
    fn random<B: crate::quant::Block>(n: usize, mut seed: u64) -> Vec<B> {
        let mut out: Vec<B> = vec![<B as Zeroable>::zeroed(); n];
        for b in bytemuck::cast_slice_mut::<B, u8>(&mut out) {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *b = (seed >> 56) as u8;
        }
        out
    }

    fn bytes<B: crate::quant::Block>(x: &[B]) -> Vec<u8> {
        bytemuck::cast_slice::<B, u8>(x).to_vec()
    }

    /// Every row of random blocks (37 rows: the last panel partial) comes back from the
    /// panels byte for byte: scales, mins and all 96 bits of `Q4_K`'s packed six-bit ones.
    #[test]
    fn rows_come_back_from_the_panels_as_stored() {
        const ROWS: usize = 37;
        let nb = 3;
        let q4_0: Vec<BlockQ4_0> = random(ROWS * nb, 1);
        let p4 = pack_q4_0(&q4_0, nb);
        let q4_k: Vec<BlockQ4_K> = random(ROWS * nb, 2);
        let pk = pack_q4_k(&q4_k, nb);
        let q8_0: Vec<BlockQ8_0> = random(ROWS * nb, 3);
        let p8 = pack_q8_0(&q8_0, nb);
        let q5_0: Vec<BlockQ5_0> = random(ROWS * nb, 9);
        let p5 = pack_q5_0(&q5_0, nb);
        let q6_k: Vec<BlockQ6_K> = random(ROWS * nb, 11);
        let p6 = pack_q6_k(&q6_k, nb);
        for r in 0..ROWS {
            let mut row: Vec<BlockQ4_0> = random(nb, 4);
            unpack_row_q4_0(&p4, nb, r, 0, &mut row);
            assert_eq!(bytes(&row), bytes(&q4_0[r * nb..][..nb]), "Q4_0 row {r}");
            let mut row: Vec<BlockQ4_K> = random(nb, 5);
            unpack_row_q4_k(&pk, nb, r, 0, &mut row);
            assert_eq!(bytes(&row), bytes(&q4_k[r * nb..][..nb]), "Q4_K row {r}");
            let mut tail: Vec<BlockQ4_K> = random(1, 6);
            unpack_row_q4_k(&pk, nb, r, nb - 1, &mut tail);
            assert_eq!(bytes(&tail), bytes(&q4_k[r * nb + nb - 1..][..1]), "Q4_K row {r}, last block");
            let mut row: Vec<BlockQ5_0> = random(nb, 8);
            unpack_row_q5_0(&p5, nb, r, 0, &mut row);
            assert_eq!(bytes(&row), bytes(&q5_0[r * nb..][..nb]), "Q5_0 row {r}");
            let mut row: Vec<BlockQ6_K> = random(nb, 10);
            unpack_row_q6_k(&p6, nb, r, 0, &mut row);
            assert_eq!(bytes(&row), bytes(&q6_k[r * nb..][..nb]), "Q6_K row {r}");
            let mut row: Vec<BlockQ8_0> = random(nb, 7);
            unpack_row_q8_0(&p8, nb, r, 0, &mut row);
            assert_eq!(bytes(&row), bytes(&q8_0[r * nb..][..nb]), "Q8_0 row {r}");
        }
    }
}
