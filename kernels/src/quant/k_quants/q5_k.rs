//! `Q5_K`: 5-bit quants, 8 sub-blocks of 32 with a 6-bit scale and a 6-bit min each.
//!
//! `block_q5_K` in `ggml/src/ggml-common.h` (176 bytes): [`BlockQ4_K`](crate::quant::BlockQ4_K)'s
//! layout plus a fifth bit per quant. Element `e` of the 256 is
//!
//! ```text
//! x[e] = d * sc[e/32] * q[e] - dmin * m[e/32]
//! q[e] = ((qs[32*(e/64) + e%32] >> (4 * ((e%64) / 32))) & 0xf) | ((qh[e%32] >> (e/32)) & 1) << 4
//! ```
//!
//! with `(sc, m)` unpacked by [`scale_min_k4`]. Matches `dequantize_row_q5_K` and
//! `quantize_row_q5_K_ref` (`ggml-quants.c`) and `ggml_vec_dot_q5_K_q8_K_generic`
//! (`ggml-cpu/quants.c`).

use super::q4_k::dot_scale_min_k4;
use super::{out_blocks, quantize_scale_min_k4, scale_min_k4, super_blocks};
use crate::DType;
use crate::quant::{Block, BlockQ5_K, BlockQ8_K, QK_K, Quantize};

/// Byte of `qs` and bit shift holding the low four bits of element `e`.
fn qs_pos(e: usize) -> (usize, u32) {
    (32 * (e / 64) + e % 32, 4 * ((e % 64) / 32) as u32)
}

/// Byte of `qh` and bit holding the fifth bit of element `e`.
fn qh_pos(e: usize) -> (usize, u32) {
    (e % 32, (e / 32) as u32)
}

impl BlockQ5_K {
    /// The 256 quants, each in `0..32`.
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (byte, shift) = qs_pos(e);
            let (hbyte, hbit) = qh_pos(e);
            (((self.qs[byte] >> shift) & 0xf) | (((self.qh[hbyte] >> hbit) & 1) << 4)) as i8
        })
    }
}

impl Block for BlockQ5_K {
    const DTYPE: DType = DType::Q5_K;
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

impl Quantize for BlockQ5_K {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, y) in super_blocks(x, out) {
            let (d, dmin, scales, l) = quantize_scale_min_k4(x, 31, -0.5, 15);
            *y = BlockQ5_K { d, dmin, scales, qh: [0; QK_K / 8], qs: [0; QK_K / 2] };
            for (e, &q) in l.iter().enumerate() {
                let (byte, shift) = qs_pos(e);
                y.qs[byte] |= (q & 0xf) << shift;
                let (hbyte, hbit) = qh_pos(e);
                y.qh[hbyte] |= (q >> 4) << hbit;
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
        let mut b = BlockQ5_K::zeroed();
        b.d = f16::from_f32(0.5);
        b.dmin = f16::from_f32(1.0);
        b.scales = pack_scale_min_k4(&[0, 0, 0, 0, 0, 63, 0, 0], &[0, 0, 0, 0, 0, 17, 0, 0]);
        // Element 170 = 128 + 32 + 10: sub-block 5, high nibble of qs[64 + 10], fifth bit in
        // bit 5 of qh[10].
        b.qs[74] = 0x90;
        b.qh[10] = 1 << 5;
        let mut y = [0f32; QK_K];
        BlockQ5_K::dequantize(&[b], &mut y);
        assert_eq!(y[170], 0.5 * 63.0 * 25.0 - 17.0);
        // Element 138 = 128 + 10: sub-block 4, low nibble 0, fifth bit (bit 4 of qh[10]) clear.
        assert_eq!(y[138], 0.0);
    }

    #[test]
    fn round_trip_and_dot() {
        test_util::round_trip::<BlockQ5_K>(&test_util::row(3), 0.05);
    }
}
