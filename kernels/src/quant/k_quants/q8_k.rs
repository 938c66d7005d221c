//! `Q8_K`: the activation type of the k-quant dot products.
//!
//! `block_q8_K` in `ggml/src/ggml-common.h` (292 bytes): an f32 scale, 256 i8 quants and
//! `bsums[j] = Σ qs[16j..16j+16]`, which the Q2_K/Q4_K/Q5_K dots use for their min terms.
//! `x[e] = d * qs[e]`. Matches `dequantize_row_q8_K` and `quantize_row_q8_K_ref`
//! (`ggml-quants.c`); the CPU backend's activation quantizer (`quantize_row_q8_K`) calls the
//! same `_ref` function on x86.
//!
//! ggml has no `vec_dot` for Q8_K weights (its CPU type-traits entry is empty, so its
//! `vec_dot_type` reads as 0, `F32`). pupil pairs Q8_K with itself so the type can sit in the
//! same tables as the others; [`Block::dot`] here is a plain per-block integer dot with no
//! ggml counterpart to match.

use super::search::{nearest_int, signed_absmax};
use super::{out_blocks, super_blocks};
use crate::DType;
use crate::quant::{Block, BlockQ8_K, QK_K, Quantize};

impl Block for BlockQ8_K {
    const DTYPE: DType = DType::Q8_K;
    const SIZE: usize = QK_K;
    type Act = BlockQ8_K;

    fn dequantize(blocks: &[Self], out: &mut [f32]) {
        for (b, y) in out_blocks(blocks, out) {
            for (y, &q) in y.iter_mut().zip(&b.qs) {
                *y = b.d * f32::from(q);
            }
        }
    }

    /// `Σ_blocks (d_w * d_a) * Σ q_w * q_a`, the integer sum exact in i32.
    fn dot(w: &[Self], a: &[BlockQ8_K]) -> f32 {
        assert_eq!(w.len(), a.len(), "dot: row lengths differ");
        let mut sumf = 0f32;
        for (x, y) in w.iter().zip(a) {
            let isum: i32 = x.qs.iter().zip(&y.qs).map(|(&p, &q)| i32::from(p) * i32::from(q)).sum();
            sumf += x.d * y.d * isum as f32;
        }
        sumf
    }
}

impl Quantize for BlockQ8_K {
    fn quantize(x: &[f32], out: &mut [Self]) {
        for (x, y) in super_blocks(x, out) {
            *y = quantize_block(x);
        }
    }
}

/// `quantize_row_q8_K_ref` for one super-block: `d = max / -127` for the signed value of
/// largest magnitude, so that value quantizes to -127 (not 128: the AVX code for IQ2_XXS
/// relies on it).
///
/// For an all-zero block ggml sets `d` and `qs` to zero but leaves `bsums` as the output
/// buffer had them; we write zeros.
fn quantize_block(x: &[f32; QK_K]) -> BlockQ8_K {
    let mut y = BlockQ8_K::zeroed();
    let (amax, max) = signed_absmax(x);
    if amax == 0.0 {
        return y;
    }
    let iscale = -127.0 / max;
    for (q, &v) in y.qs.iter_mut().zip(x) {
        // Clamped above only, then narrowed to int8_t, as ggml does.
        *q = nearest_int(iscale * v).min(127) as i8;
    }
    for (s, qs) in y.bsums.iter_mut().zip(y.qs.chunks_exact(16)) {
        *s = qs.iter().map(|&q| i16::from(q)).sum();
    }
    y.d = 1.0 / iscale;
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_magnitude_maps_to_minus_127() {
        let mut x = [0f32; QK_K];
        x[3] = 2.0;
        x[17] = -1.0;
        x[200] = 0.5;
        let mut b = [BlockQ8_K::zeroed()];
        BlockQ8_K::quantize(&x, &mut b);
        assert_eq!(b[0].d, 2.0 / -127.0);
        assert_eq!((b[0].qs[3], b[0].qs[17], b[0].qs[200]), (-127, 64, -32));
        // 64 rounds from 63.5: ties go to even.
        assert_eq!(b[0].bsums[0], -127);
        assert_eq!(b[0].bsums[1], 64);
        assert_eq!(b[0].bsums[12], -32);
    }

    #[test]
    fn dot_is_the_exact_product_of_small_integers() {
        let mut w = BlockQ8_K::zeroed();
        let mut a = BlockQ8_K::zeroed();
        (w.d, a.d) = (0.5, 0.25);
        w.qs = [127; QK_K];
        a.qs = [-128; QK_K];
        // 256 * 127 * -128 = -4161536, times 0.125: exact in f32.
        assert_eq!(BlockQ8_K::dot(&[w], &[a]), -520192.0);
    }
}
