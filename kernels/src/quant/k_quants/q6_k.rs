//! `Q6_K`: 6-bit symmetric quants, 16 sub-blocks of 16 with a signed 8-bit scale each.
//!
//! `block_q6_K` in `ggml/src/ggml-common.h` (210 bytes). Write element `e` of the 256 as
//! `e = 128*h + 32*k + i` (half `h`, quarter `k` in 0..4, `i` in 0..32); then
//!
//! ```text
//! x[e] = d * scales[e/16] * (q[e] - 32)
//! q[e] = low4 | high2 << 4, with
//!        low4  = (ql[64*h + 32*(k%2) + i] >> (4 * (k/2))) & 0xf
//!        high2 = (qh[32*h + i] >> (2*k)) & 3
//! ```
//!
//! so each 64 bytes of `ql` hold a half's low nibbles (quarters 0, 1 in the low nibbles,
//! 2, 3 in the high ones) and each byte of `qh` the top bits of four elements 32 apart.
//! Matches `dequantize_row_q6_K` and `quantize_row_q6_K_ref` (`ggml-quants.c`) and
//! `ggml_vec_dot_q6_K_q8_K_generic` (`ggml-cpu/quants.c`).

use super::search::{GROUP_MAX_EPS, make_qx_quants, nearest_int};
use super::{Lanes, fp16, out_blocks, super_blocks};
use crate::DType;
use crate::quant::{Block, BlockQ6_K, BlockQ8_K, QK_K, Quantize};

/// Where element `e` lives: (byte of `ql`, shift, byte of `qh`, shift).
fn pos(e: usize) -> (usize, u32, usize, u32) {
    let (h, k, i) = (e / 128, (e % 128) / 32, e % 32);
    (64 * h + 32 * (k % 2) + i, 4 * (k / 2) as u32, 32 * h + i, 2 * k as u32)
}

impl BlockQ6_K {
    /// The 256 quants, each in `-32..32`.
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| self.stored(e) as i8 - 32)
    }

    /// Element `e`'s quant as stored, unsigned (`0..64`).
    pub(crate) fn stored(&self, e: usize) -> u8 {
        let (lb, ls, hb, hs) = pos(e);
        ((self.ql[lb] >> ls) & 0xf) | (((self.qh[hb] >> hs) & 3) << 4)
    }

    /// Stores `q` (`0..64`) as element `e`'s quant, into a block whose bits for it are zero.
    pub(crate) fn store(&mut self, e: usize, q: u8) {
        let (lb, ls, hb, hs) = pos(e);
        self.ql[lb] |= (q & 0xf) << ls;
        self.qh[hb] |= (q >> 4) << hs;
    }
}

impl Block for BlockQ6_K {
    const DTYPE: DType = DType::Q6_K;
    const SIZE: usize = QK_K;
    type Act = BlockQ8_K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in out_blocks(blocks, out) {
            let d = b.d.to_f32();
            for (e, (y, q)) in y.iter_mut().zip(b.quants()).enumerate() {
                *y = d * f32::from(b.scales[e / 16]) * f32::from(q);
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot: row lengths differ");
        let mut lanes = Lanes::new();
        for (x, y) in w.iter().zip(a) {
            lanes.add_block(x.d.to_f32() * y.d, &x.quants(), &y.qs, |j| i32::from(x.scales[j]));
        }
        lanes.finish(0.0)
    }
}

impl Quantize for BlockQ6_K {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, y) in super_blocks(x, out) {
            *y = quantize_block(x);
        }
    }
}

/// `quantize_row_q6_K_ref` for one super-block: a symmetric scale per sub-block of 16
/// (`make_qx_quants`), the scales quantized to i8 against `d = -max_scale / 128`, then the
/// values re-quantized against the rounded scales. A super-block whose scales are all (near)
/// zero is all zero bytes.
fn quantize_block(x: &[f32; QK_K]) -> BlockQ6_K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut max_abs_scale) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_qx_quants(32, &x[16 * j..16 * (j + 1)], &mut l[16 * j..16 * (j + 1)]);
        if scales[j].abs() > max_abs_scale {
            max_abs_scale = scales[j].abs();
            max_scale = scales[j];
        }
    }
    let mut y = BlockQ6_K::zeroed();
    if max_abs_scale < GROUP_MAX_EPS {
        return y;
    }

    let iscale = -128.0 / max_scale;
    y.d = fp16(1.0 / iscale);
    for (s, &scale) in y.scales.iter_mut().zip(&scales) {
        // Only the upper end is clamped (scales of the other sign reach +128); ggml then
        // narrows the int to int8_t.
        *s = nearest_int(iscale * scale).min(127) as i8;
    }
    for j in 0..16 {
        let d = y.d.to_f32() * f32::from(y.scales[j]);
        if d == 0.0 {
            continue; // keeps the search's quants, as ggml does
        }
        for e in 16 * j..16 * (j + 1) {
            l[e] = (nearest_int(x[e] / d).clamp(-32, 31) + 32) as i8;
        }
    }
    for (e, &q) in l.iter().enumerate() {
        y.store(e, q as u8); // in 0..64
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::k_quants::test_util;
    use half::f16;

    #[test]
    fn known_block_dequantizes_to_known_values() {
        let mut b = BlockQ6_K::zeroed();
        b.d = f16::from_f32(1.0);
        b.scales = std::array::from_fn(|j| j as i8 - 8);
        // Element 200 = 128 + 64 + 8: half 1, quarter 2 -> high nibble of ql[64 + 8], top bits
        // at bits 4-5 of qh[32 + 8]. q = 0xf | 0b10 << 4 = 47, minus 32 = 15.
        b.ql[72] = 0xf0;
        b.qh[40] = 0b10 << 4;
        let mut y = [0f32; QK_K];
        BlockQ6_K::dequantize(&[b], &mut y);
        assert_eq!(y[200], (12 - 8) as f32 * 15.0);
        // Element 136 = 128 + 8 shares both bytes: low nibble 0, bits 0-1 of qh[40] = 0.
        assert_eq!(y[136], (8 - 8) as f32 * -32.0);
        // Everything else is q = -32.
        assert_eq!(y[0], -8.0 * -32.0);
        assert_eq!(y[255], 7.0 * -32.0);
    }

    #[test]
    fn round_trip_and_dot() {
        test_util::round_trip::<BlockQ6_K>(&test_util::row(3), 0.03);
    }
}
