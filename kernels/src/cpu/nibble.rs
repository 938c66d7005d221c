//! `Q4_0` and `Q4_K` weights packed once into nibble panels, the layout of the AVX-512 decode
//! mat-vec and small batches: the stored quant bytes themselves, rearranged, so the copy is
//! about the size of the file's (`Q4_0` exactly, `Q4_K` 3% more) and nothing is decoded at
//! load.
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
//! `Q4_K` the same way per super-block of 256: 32 vectors, vector `8k + v` holding bytes
//! `32k + 4v..+ 4` of each row (low nibbles: sub-block `2k`, columns `4v..`; high: sub-block
//! `2k + 1`), `[nb][32][L][4]` bytes; then per super-block the rows' `d` and `dmin` (f16,
//! `[L]` each) and their eight 6-bit scales and mins unpacked to bytes (`[8][L]` each).
//!
//! Every output is formed in the canonical order (`cpu::gemm`), so it has the bits of the
//! tier's `dot` and of the GEMM.

use super::gemm::huge_zeroed;
use crate::quant::{BlockQ4_0, BlockQ4_K};

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
    for (p, panel) in out.chunks_exact_mut(words).enumerate() {
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
    }
    out
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
    for (p, panel) in out.chunks_exact_mut(words).enumerate() {
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
    }
    out
}
