//! `Q4_K`: 4-bit quants, 8 sub-blocks of 32 with a 6-bit scale and a 6-bit min each.
//!
//! `block_q4_K` in `ggml/src/ggml-common.h` (144 bytes); element `e` of the 256 is
//!
//! ```text
//! x[e] = d * sc[e/32] * q[e] - dmin * m[e/32]
//! q[e] = (qs[32*(e/64) + e%32] >> (4 * ((e%64) / 32))) & 0xf
//! ```
//!
//! i.e. each 32 bytes of `qs` hold 64 values, the first 32 in the low nibbles, the next 32 in
//! the high ones; `(sc, m)` are unpacked by [`scale_min_k4`]. Matches `dequantize_row_q4_K`
//! and `quantize_row_q4_K_ref` (`ggml-quants.c`) and `ggml_vec_dot_q4_K_q8_K_generic`
//! (`ggml-cpu/quants.c`).

use super::{Lanes, out_blocks, quantize_scale_min_k4, scale_min_k4, super_blocks};
use crate::DType;
use crate::quant::{Block, BlockQ4_K, BlockQ8_K, QK_K, Quantize};

/// Byte of `qs` and bit shift holding element `e`.
fn qs_pos(e: usize) -> (usize, u32) {
    (32 * (e / 64) + e % 32, 4 * ((e % 64) / 32) as u32)
}

impl BlockQ4_K {
    /// The 256 quants, each in `0..16`.
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (byte, shift) = qs_pos(e);
            ((self.qs[byte] >> shift) & 0xf) as i8
        })
    }
}

impl Block for BlockQ4_K {
    const DTYPE: DType = DType::Q4_K;
    const SIZE: usize = QK_K;
    type Act = BlockQ8_K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in out_blocks(blocks, out) {
            let (d, dmin) = (b.d.to_f32(), b.dmin.to_f32());
            for (e, (y, q)) in y.iter_mut().zip(b.quants()).enumerate() {
                let (sc, m) = scale_min_k4(e / 32, &b.scales);
                *y = d * f32::from(sc) * f32::from(q) - dmin * f32::from(m);
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot: row lengths differ");
        dot_scale_min_k4(w.iter().zip(a).map(|(x, y)| (x.d.to_f32(), x.dmin.to_f32(), &x.scales, x.quants(), y)))
    }
}

/// The dot shared by Q4_K and Q5_K (`ggml_vec_dot_q{4,5}_K_q8_K_generic` differ only in how
/// they unpack quants): per block, the scaled products in eight lanes, and the min term from
/// the activation's sums of 16 (`Σ bsums[j] * m[j/2]`), subtracted from a running float sum to
/// which the lanes are added at the end.
pub(super) fn dot_scale_min_k4<'a>(blocks: impl Iterator<Item = (f32, f32, &'a [u8; 12], [i8; QK_K], &'a BlockQ8_K)>) -> f32 {
    let mut lanes = Lanes::new();
    let mut sumf = 0f32;
    for (d, dmin, scales, q, y) in blocks {
        let sumi: i32 = (0..16).map(|j| i32::from(y.bsums[j]) * i32::from(scale_min_k4(j / 2, scales).1)).sum();
        // Scales are per 32: the lane helper asks per 16.
        lanes.add_block(d * y.d, &q, &y.qs, |j16| i32::from(scale_min_k4(j16 / 2, scales).0));
        sumf -= dmin * y.d * sumi as f32;
    }
    lanes.finish(sumf)
}

impl Quantize for BlockQ4_K {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, y) in super_blocks(x, out) {
            let (d, dmin, scales, l) = quantize_scale_min_k4(x, 15, -1.0, 20);
            *y = BlockQ4_K { d, dmin, scales, qs: [0; QK_K / 2] };
            for (e, &q) in l.iter().enumerate() {
                let (byte, shift) = qs_pos(e);
                y.qs[byte] |= q << shift;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::k_quants::{pack_scale_min_k4, test_util};
    use half::f16;

    #[test]
    fn known_block_dequantizes_to_known_values() {
        let mut b = BlockQ4_K::zeroed();
        b.d = f16::from_f32(0.25);
        b.dmin = f16::from_f32(2.0);
        b.scales = pack_scale_min_k4(&[1, 2, 3, 4, 5, 6, 7, 40], &[0, 0, 0, 0, 0, 0, 1, 33]);
        // Element 234 = 192 + 42: sub-block 7, high nibble of qs[96 + 10].
        b.qs[106] = 0xc0;
        let mut y = [0f32; QK_K];
        BlockQ4_K::dequantize(&[b], &mut y);
        assert_eq!(y[234], 0.25 * 40.0 * 12.0 - 2.0 * 33.0);
        // Element 202 = 192 + 10: sub-block 6, low nibble of the same byte, which is 0.
        assert_eq!(y[202], -2.0);
    }

    #[test]
    fn round_trip_and_dot() {
        test_util::round_trip::<BlockQ4_K>(&test_util::row(3), 0.1);
    }
}
