//! `Q3_K`: 3-bit symmetric quants, 16 sub-blocks of 16 with a signed 6-bit scale each.
//!
//! `block_q3_K` in `ggml/src/ggml-common.h` (110 bytes); element `e` of the 256 is
//!
//! ```text
//! x[e]  = d * (sc[e/16] - 32) * (low[e] - (hbit[e] ? 0 : 4))
//! low[e]  = (qs[32*(e/128) + e%32] >> (2 * ((e%128) / 32))) & 3     (as Q2_K)
//! hbit[e] = (hmask[e%32] >> (e/32)) & 1
//! sc[j]   = low4 | high2 << 4, with
//!           low4  = j < 8 ? scales[j] & 0xf : scales[j-8] >> 4
//!           high2 = (scales[8 + j%4] >> (2 * (j/4))) & 3
//! ```
//!
//! so `scales[0..8]` hold the low nibbles of scales 0..16 (two per byte) and `scales[8..12]`
//! their top two bits, four per byte. Matches `dequantize_row_q3_K` and
//! `quantize_row_q3_K_ref` (`ggml-quants.c`) and `ggml_vec_dot_q3_K_q8_K_generic`
//! (`ggml-cpu/quants.c`).

use super::search::{make_q3_quants, nearest_int};
use super::{Lanes, fp16, out_blocks, super_blocks};
use crate::DType;
use crate::quant::{Block, BlockQ3_K, BlockQ8_K, QK_K, Quantize};

/// Byte of `qs` and bit shift holding the low two bits of element `e`.
fn qs_pos(e: usize) -> (usize, u32) {
    (32 * (e / 128) + e % 32, 2 * ((e % 128) / 32) as u32)
}

/// Byte of `hmask` and bit holding the high bit of element `e`.
fn hmask_pos(e: usize) -> (usize, u32) {
    (e % 32, (e / 32) as u32)
}

/// Scale `j` (0..16) of the packed 12 bytes, in `-32..32`.
fn scale(s: &[u8; 12], j: usize) -> i32 {
    let low4 = if j < 8 { s[j] & 0xf } else { s[j - 8] >> 4 };
    let high2 = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    i32::from(low4 | (high2 << 4)) - 32
}

/// Packs 16 scales, each already offset into `0..64`.
fn pack_scales(ls: &[u8; 16]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for (j, &l) in ls.iter().enumerate() {
        if j < 8 {
            s[j] |= l & 0xf;
        } else {
            s[j - 8] |= (l & 0xf) << 4;
        }
        s[8 + j % 4] |= (l >> 4) << (2 * (j / 4));
    }
    s
}

impl BlockQ3_K {
    /// The 256 quants, each in `-4..4`.
    fn quants(&self) -> [i8; QK_K] {
        std::array::from_fn(|e| {
            let (byte, shift) = qs_pos(e);
            let (hbyte, hbit) = hmask_pos(e);
            let low = ((self.qs[byte] >> shift) & 3) as i8;
            if (self.hmask[hbyte] >> hbit) & 1 == 1 { low } else { low - 4 }
        })
    }
}

impl Block for BlockQ3_K {
    const DTYPE: DType = DType::Q3_K;
    const SIZE: usize = QK_K;
    type Act = BlockQ8_K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in out_blocks(blocks, out) {
            let d = b.d.to_f32();
            for (e, (y, q)) in y.iter_mut().zip(b.quants()).enumerate() {
                let dl = d * scale(&b.scales, e / 16) as f32;
                *y = dl * f32::from(q);
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot: row lengths differ");
        let mut lanes = Lanes::new();
        for (x, y) in w.iter().zip(a) {
            let d = x.d.to_f32() * y.d;
            lanes.add_block(d, &x.quants(), &y.qs, |j| scale(&x.scales, j));
        }
        lanes.finish(0.0)
    }
}

impl Quantize for BlockQ3_K {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, y) in super_blocks(x, out) {
            *y = quantize_block(x);
        }
    }
}

/// `quantize_row_q3_K_ref` for one super-block: a symmetric scale per sub-block of 16
/// (`make_q3_quants`), the 16 scales quantized to 6 bits against `d = -max_scale / 32`, then
/// the values re-quantized against the rounded scales.
fn quantize_block(x: &[f32; QK_K]) -> BlockQ3_K {
    let mut l = [0i8; QK_K];
    let mut scales = [0f32; 16];
    let (mut max_scale, mut amax) = (0f32, 0f32);
    for j in 0..16 {
        scales[j] = make_q3_quants(4, &x[16 * j..16 * (j + 1)], &mut l[16 * j..16 * (j + 1)]);
        if scales[j].abs() > amax {
            amax = scales[j].abs();
            max_scale = scales[j];
        }
    }

    let mut y = BlockQ3_K::zeroed();
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        // ggml narrows nearest_int to int8_t before clamping.
        let ls: [u8; 16] = std::array::from_fn(|j| ((nearest_int(iscale * scales[j]) as i8).clamp(-32, 31) + 32) as u8);
        y.scales = pack_scales(&ls);
        y.d = fp16(1.0 / iscale);
    }

    for j in 0..16 {
        let d = y.d.to_f32() * scale(&y.scales, j) as f32;
        if d == 0.0 {
            continue; // keeps the search's quants, as ggml does
        }
        for e in 16 * j..16 * (j + 1) {
            l[e] = (nearest_int(x[e] / d).clamp(-4, 3) + 4) as i8;
        }
    }
    for (e, &q) in l.iter().enumerate() {
        // q is in 0..8: bit 2 goes to hmask, the low two bits to qs.
        let q = q as u8;
        let (hbyte, hbit) = hmask_pos(e);
        y.hmask[hbyte] |= (q >> 2) << hbit;
        let (byte, shift) = qs_pos(e);
        y.qs[byte] |= (q & 3) << shift;
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::k_quants::test_util;
    use half::f16;

    #[test]
    fn scales_round_trip_every_6_bit_value() {
        for v in 0..64u8 {
            for slot in 0..16 {
                let ls: [u8; 16] = std::array::from_fn(|j| if j == slot { v } else { (j as u8 * 11 + 7) % 64 });
                let s = pack_scales(&ls);
                for (j, &l) in ls.iter().enumerate() {
                    assert_eq!(scale(&s, j), i32::from(l) - 32, "v {v} slot {slot} j {j}");
                }
            }
        }
    }

    #[test]
    fn known_block_dequantizes_to_known_values() {
        let mut b = BlockQ3_K::zeroed();
        b.d = f16::from_f32(0.5);
        // Scale 9 = 0b10_0111 - 32 = 7: low nibble in the high nibble of byte 1, top bits at
        // bits 4-5 of byte 9 (byte 8 + 9 % 4, shift 2 * (9 / 4)).
        b.scales[1] = 0b0111 << 4;
        b.scales[9] = 0b10 << 4;
        // Element 150 = 128 + 22: sub-block 9, plane 0 of the second half, high bit in bit 4
        // of hmask[22].
        b.qs[32 + 22] = 0b10;
        b.hmask[22] = 1 << 4;
        let mut y = [0f32; QK_K];
        BlockQ3_K::dequantize(&[b], &mut y);
        assert_eq!(y[150], 0.5 * 7.0 * 2.0);
        // Element 151 has no high bit: q = 0 - 4, same sub-block.
        assert_eq!(y[151], 0.5 * 7.0 * -4.0);
        // Every other sub-block has scale 0 - 32.
        assert_eq!(y[0], 0.5 * -32.0 * -4.0);
    }

    #[test]
    fn round_trip_and_dot() {
        test_util::round_trip::<BlockQ3_K>(&test_util::row(3), 0.2);
    }
}
