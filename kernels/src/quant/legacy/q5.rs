//! `Q5_0` and `Q5_1`: as `Q4_0`/`Q4_1` with a fifth bit per element kept in `qh`.
//!
//! Matches `quantize_row_q5_{0,1}_ref` and `dequantize_row_q5_{0,1}` in `ggml/src/ggml-quants.c`
//! and `ggml_vec_dot_q5_{0,1}_q8_{0,1}_generic` in `ggml/src/ggml-cpu/quants.c`.

use super::{c_float_to_int, inverse, min_max, pack_5bit, signed_absmax, unpack_5bit};
use crate::DType;
use crate::quant::{Block, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, QK, Quantize};
use half::f16;

impl Block for BlockQ5_0 {
    const DTYPE: DType = DType::Q5_0;
    const SIZE: usize = QK;
    type Act = BlockQ8_0;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let d = b.d.to_f32();
            for (o, q) in out.iter_mut().zip(unpack_5bit(&b.qs, b.qh)) {
                *o = (i32::from(q) - 16) as f32 * d;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_0]) -> f32 {
        let mut sum = 0.0f32;
        for (w, a) in w.iter().zip(a) {
            let q = unpack_5bit(&w.qs, w.qh);
            let sumi: i32 = q.iter().zip(&a.qs).map(|(&q, &y)| (i32::from(q) - 16) * i32::from(y)).sum();
            sum += w.d.to_f32() * a.d.to_f32() * sumi as f32;
        }
        sum
    }
}

impl Quantize for BlockQ5_0 {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            // As Q4_0: the signed extreme maps to -16 exactly.
            let d = signed_absmax(x) / -16.0;
            let id = inverse(d);
            let q: [u8; QK] = std::array::from_fn(|j| {
                let q = c_float_to_int(x[j] * id + 16.5) as i8;
                q.min(31) as u8
            });
            let (qs, qh) = pack_5bit(&q);
            *b = BlockQ5_0 { d: f16::from_f32(d), qh, qs };
        }
    }
}

impl Block for BlockQ5_1 {
    const DTYPE: DType = DType::Q5_1;
    const SIZE: usize = QK;
    type Act = BlockQ8_1;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, out) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
            let (d, m) = (b.d.to_f32(), b.m.to_f32());
            for (o, q) in out.iter_mut().zip(unpack_5bit(&b.qs, b.qh)) {
                *o = f32::from(q) * d + m;
            }
        }
    }

    fn dot(w: &[Self], a: &[BlockQ8_1]) -> f32 {
        let mut sum = 0.0f32;
        for (w, a) in w.iter().zip(a) {
            let q = unpack_5bit(&w.qs, w.qh);
            let sumi: i32 = q.iter().zip(&a.qs).map(|(&q, &y)| i32::from(q) * i32::from(y)).sum();
            sum += w.d.to_f32() * a.d.to_f32() * sumi as f32 + w.m.to_f32() * a.s.to_f32();
        }
        sum
    }
}

impl Quantize for BlockQ5_1 {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, b) in x.chunks_exact(QK).zip(out) {
            let (min, max) = min_max(x);
            let d = (max - min) / 31.0;
            let id = inverse(d);
            // No clamp here, unlike Q4_1 (ggml's `(uint8_t)(x0 + 0.5f)`): (max - min) * id
            // rounds to at most 31.5, never 32.
            let q: [u8; QK] = std::array::from_fn(|j| c_float_to_int((x[j] - min) * id + 0.5) as u8);
            let (qs, qh) = pack_5bit(&q);
            *b = BlockQ5_1 { d: f16::from_f32(d), m: f16::from_f32(min), qh, qs };
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
    fn q5_0_known_block() {
        // qh = 0x8000_0001: elements 0 and 31 have the fifth bit.
        let b = BlockQ5_0 { d: h(1.0), qh: [0x01, 0, 0, 0x80], qs: [0x21; 16] }; // low 1, high 2
        let mut y = [0.0; 32];
        BlockQ5_0::dequantize(&[b], &mut y);
        assert_eq!(y[0], 17.0 - 16.0);
        assert!(y[1..16].iter().all(|&v| v == 1.0 - 16.0));
        assert!(y[16..31].iter().all(|&v| v == 2.0 - 16.0));
        assert_eq!(y[31], 18.0 - 16.0);
    }

    #[test]
    fn q5_0_quantize_and_dot_known_answer() {
        let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
        let mut b = [BlockQ5_0::zeroed()];
        BlockQ5_0::quantize(&x, &mut b);
        // Extreme -16 -> d = 1, q = x + 16 = i: fifth bit set for i >= 16.
        assert_eq!(b[0].d, h(1.0));
        assert_eq!(b[0].qh, [0, 0, 0xFF, 0xFF]);
        let expected: [u8; 16] = std::array::from_fn(|j| (j as u8) << 4 | j as u8);
        assert_eq!(b[0].qs, expected);
        let a = BlockQ8_0 { d: h(0.5), qs: [1; 32] };
        // Σ (i - 16) = -16, * 1 * 0.5.
        assert_eq!(BlockQ5_0::dot(&b, &[a]), -8.0);
    }

    #[test]
    fn q5_1_known_block_and_dot() {
        let b = BlockQ5_1 { d: h(0.5), m: h(2.0), qh: [0xFF, 0xFF, 0, 0], qs: [0xF0; 16] };
        let mut y = [0.0; 32];
        BlockQ5_1::dequantize(&[b], &mut y);
        assert!(y[..16].iter().all(|&v| v == 16.0 * 0.5 + 2.0)); // q = 0 | 16
        assert!(y[16..].iter().all(|&v| v == 15.0 * 0.5 + 2.0)); // q = 15
        let a = BlockQ8_1 { d: h(1.0), s: h(-32.0), qs: [-1; 32] };
        // 0.5 * -(16 * 16 + 16 * 15) + 2 * -32 = -248 - 64.
        assert_eq!(BlockQ5_1::dot(&[b], &[a]), -312.0);
    }

    #[test]
    fn q5_1_quantize_uses_all_32_levels() {
        let x: Vec<f32> = (0..32).map(|i| 0.25 * i as f32 - 1.0).collect();
        let mut b = [BlockQ5_1::zeroed()];
        BlockQ5_1::quantize(&x, &mut b);
        assert_eq!((b[0].d, b[0].m), (h(0.25), h(-1.0)));
        assert_eq!(b[0].qh, [0, 0, 0xFF, 0xFF]);
        let mut y = [0.0; 32];
        BlockQ5_1::dequantize(&b, &mut y);
        assert_eq!(y.to_vec(), x);
    }
}
