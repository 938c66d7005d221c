//! `Q4_0` and `Q4_1`: sixteen bytes of nibbles per 32 elements, with one f16 scale (`Q4_0`,
//! symmetric around 8) or a scale and a minimum (`Q4_1`).
//!
//! Matches `quantize_row_q4_{0,1}_ref` and `dequantize_row_q4_{0,1}` in `ggml/src/ggml-quants.c`
//! and `ggml_vec_dot_q4_{0,1}_q8_{0,1}_generic` in `ggml/src/ggml-cpu/quants.c`.

use super::{c_float_to_int, inverse, min_max, pack_nibbles, signed_absmax, unpack_nibbles};
use crate::DType;
use crate::quant::{Block, BlockQ4_0, BlockQ4_1, BlockQ8_0, BlockQ8_1, QK, Quantize};
use half::f16;

impl Block for BlockQ4_0 {
    const DTYPE: DType = DType::Q4_0;
    const SIZE: usize = QK;
    type Act = BlockQ8_0;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, q) in out.iter_mut().zip(unpack_nibbles(&b.qs)) {
                *o = (i32::from(q) - 8) as f32 * d;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (w, a) in w.iter().zip(a) {
            let sumi: i32 = unpack_nibbles(&w.qs).iter().zip(&a.qs).map(|(&q, &y)| (i32::from(q) - 8) * i32::from(y)).sum();
            sum += sumi as f32 * w.d.to_f32() * a.d.to_f32();
        }
        sum
    }
}

impl Quantize for BlockQ4_0 {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            // The signed extreme maps to -8 exactly, so the full range -8..=7 is used and the
            // sign of d follows the extreme, not always positive.
            let d = signed_absmax(x) / -8.0;
            let id = inverse(d);
            let q: [u8; QK] = std::array::from_fn(|j| {
                // Round by adding 0.5 and truncating (ggml's `(int8_t)(x*id + 8.5f)`), then clamp 16 to 15.
                let q = c_float_to_int(x[j] * id + 8.5) as i8;
                q.min(15) as u8
            });
            *b = BlockQ4_0 { d: f16::from_f32(d), qs: pack_nibbles(&q) };
        }
    }
}

impl Block for BlockQ4_1 {
    const DTYPE: DType = DType::Q4_1;
    const SIZE: usize = QK;
    type Act = BlockQ8_1;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let (d, m) = (b.d.to_f32(), b.m.to_f32());
            for (o, q) in out.iter_mut().zip(unpack_nibbles(&b.qs)) {
                *o = f32::from(q) * d + m;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut sum = 0.0f32;
        for (w, a) in w.iter().zip(a) {
            let sumi: i32 = unpack_nibbles(&w.qs).iter().zip(&a.qs).map(|(&q, &y)| i32::from(q) * i32::from(y)).sum();
            // The offset m meets the activations only through their precomputed sum s = d_a * Σ q_a.
            sum += w.d.to_f32() * a.d.to_f32() * sumi as f32 + w.m.to_f32() * a.s.to_f32();
        }
        sum
    }
}

impl Quantize for BlockQ4_1 {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            let (min, max) = min_max(x);
            let d = (max - min) / 15.0;
            let id = inverse(d);
            let q: [u8; QK] = std::array::from_fn(|j| {
                let q = c_float_to_int((x[j] - min) * id + 0.5) as i8;
                q.min(15) as u8
            });
            *b = BlockQ4_1 { d: f16::from_f32(d), m: f16::from_f32(min), qs: pack_nibbles(&q) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: f32) -> f16 {
        f16::from_f32(v)
    }

    #[test]
    fn q4_0_known_block() {
        // Byte j = 0x(j)(15 - j): element j is 15 - j, element j + 16 is j.
        let qs: [u8; 16] = std::array::from_fn(|j| (j as u8) << 4 | (15 - j as u8));
        let b = BlockQ4_0 { d: h(0.5), qs };
        let mut y = [0.0; 32];
        BlockQ4_0::dequantize(&[b], &mut y);
        for j in 0..16 {
            assert_eq!(y[j], (15.0 - j as f32 - 8.0) * 0.5);
            assert_eq!(y[j + 16], (j as f32 - 8.0) * 0.5);
        }
    }

    #[test]
    fn q4_0_quantizes_extreme_to_minus_8_and_clamps_its_negation() {
        let mut x = [0.0f32; 32];
        x[3] = 4.0; // d = 4 / -8 = -0.5: 4.0 -> q = 0
        x[20] = -4.0; // -4 / -0.5 + 8.5 = 16.5 -> 16, clamped to 15
        x[5] = 1.0; // 1 / -0.5 + 8.5 = 6.5 -> 6
        let mut b = [BlockQ4_0::zeroed()];
        BlockQ4_0::quantize(&x, &mut b);
        assert_eq!(b[0].d, h(-0.5));
        assert_eq!(b[0].qs[3], 0x80);
        assert_eq!(b[0].qs[4], 0xF8);
        assert_eq!(b[0].qs[5], 0x86);
    }

    #[test]
    fn q4_0_dot_known_answer() {
        let w = BlockQ4_0 { d: h(2.0), qs: [0x9A; 16] }; // low nibble 10 -> 2, high 9 -> 1
        let a = BlockQ8_0 { d: h(0.25), qs: [3; 32] };
        // 16 * 2 * 3 + 16 * 1 * 3 = 144; * 2 * 0.25 = 72.
        assert_eq!(BlockQ4_0::dot(&[w], &[a]), 72.0);
    }

    #[test]
    fn q4_1_known_block_and_dot() {
        let b = BlockQ4_1 { d: h(0.25), m: h(-1.0), qs: [0x3F; 16] }; // 15, then 3
        let mut y = [0.0; 32];
        BlockQ4_1::dequantize(&[b], &mut y);
        assert!(y[..16].iter().all(|&v| v == 2.75));
        assert!(y[16..].iter().all(|&v| v == -0.25));
        // Activations all 2 with d = 1: s = 64.
        let a = BlockQ8_1 { d: h(1.0), s: h(64.0), qs: [2; 32] };
        // 0.25 * (16 * 15 * 2 + 16 * 3 * 2) - 64 = 144 - 64.
        assert_eq!(BlockQ4_1::dot(&[b], &[a]), 80.0);
    }

    #[test]
    fn q4_1_quantize_maps_min_to_0_and_max_to_15() {
        let x: Vec<f32> = (0..32).map(|i| 1.0 + (i % 16) as f32 * 0.5).collect();
        let mut b = [BlockQ4_1::zeroed()];
        BlockQ4_1::quantize(&x, &mut b);
        assert_eq!((b[0].d, b[0].m), (h(0.5), h(1.0)));
        let expected: [u8; 16] = std::array::from_fn(|j| (j as u8) << 4 | j as u8);
        assert_eq!(b[0].qs, expected);
    }
}
