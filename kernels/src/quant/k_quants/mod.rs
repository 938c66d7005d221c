//! The k-quants: `Q2_K`, `Q3_K`, `Q4_K`, `Q5_K`, `Q6_K`, and their activation type `Q8_K`.
//!
//! A k-quant block is a super-block of [`QK_K`] = 256 values cut into sub-blocks of 16 or 32,
//! each with a small integer scale (and for Q2_K/Q4_K/Q5_K a min), and one or two f16
//! super-scales that turn those integers into floats. Every weight type pairs with [`BlockQ8_K`]
//! activations in the dot product, as in ggml's CPU backend.
//!
//! The kernels match ggml (llama.cpp at the version vendored by `llama-cpp-sys-2` 0.1.161):
//! - `dequantize` and `quantize` match `dequantize_row_q*_K` and `quantize_row_q*_K_ref` in
//!   `ggml/src/ggml-quants.c` bit for bit (quantize as `ggml_quantize_chunk` runs it without an
//!   importance matrix);
//! - `dot` mirrors the scalar `ggml_vec_dot_q*_K_q8_K_generic` of `ggml/src/ggml-cpu/quants.c`:
//!   the same integer sums and the same float order, so it usually equals ggml's result exactly
//!   (ggml's SIMD versions differ from it, and from us, by float rounding only).
//!
//! Layout facts used by several types live here: the 6-bit scale/min packing of Q4_K and Q5_K
//! ([`scale_min_k4`]), and the eight-lane accumulation of ggml's scalar dots ([`Lanes`]).
//! The scale searches that decide the quantized bytes are in [`search`].
//!
//! ```
//! use pupil_kernels::quant::{Block, BlockQ4_K, BlockQ8_K, Quantize};
//! let x: Vec<f32> = (0..512).map(|i| (i as f32 * 0.1).sin()).collect();
//! let mut w = vec![BlockQ4_K::zeroed(); 2];
//! BlockQ4_K::quantize(&x, &mut w);
//! let mut a = vec![BlockQ8_K::zeroed(); 2];
//! BlockQ8_K::quantize(&x, &mut a);
//! let dot = BlockQ4_K::dot(&w, &a);
//! let exact: f32 = x.iter().map(|v| v * v).sum();
//! assert!((dot - exact).abs() < 0.01 * exact);
//! ```

mod q2_k;
mod q3_k;
mod q4_k;
mod q5_k;
mod q6_k;
mod q8_k;
mod search;

use super::QK_K;
use half::f16;

/// ggml's `GGML_FP32_TO_FP16` (`ggml_compute_fp32_to_fp16` in `ggml/src/ggml-impl.h`).
///
/// Finite values and infinities round to nearest even, as [`f16::from_f32`] does; a NaN
/// becomes the canonical `0x7e00` with its sign, where `half` would keep payload bits.
/// The quantizers can produce NaN scales from rows that overflow f32 (`1e30` squared).
pub(crate) fn fp16(v: f32) -> f16 {
    if v.is_nan() {
        f16::from_bits(((v.to_bits() >> 16) as u16 & 0x8000) | 0x7e00)
    } else {
        f16::from_f32(v)
    }
}

/// Scale and min `j` (0..8) of a Q4_K or Q5_K block, 6 bits each (`get_scale_min_k4` in
/// `ggml-quants.c`). The 12 bytes hold
///
/// ```text
/// byte  0..4   bits 0-5: scale j (j < 4)     bits 6-7: bits 4-5 of scale j+4
/// byte  4..8   bits 0-5: min j   (j < 4)     bits 6-7: bits 4-5 of min j+4
/// byte  8..12  bits 0-3: bits 0-3 of scale j+4   bits 4-7: bits 0-3 of min j+4
/// ```
pub(crate) fn scale_min_k4(j: usize, s: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Packs eight 6-bit scales and mins into the layout [`scale_min_k4`] reads (values must be
/// below 64).
pub(crate) fn pack_scale_min_k4(scales: &[u8; 8], mins: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (sc, m) = (scales[j], mins[j]);
        debug_assert!(sc < 64 && m < 64);
        if j < 4 {
            s[j] |= sc;
            s[j + 4] |= m;
        } else {
            s[j + 4] = (sc & 0xf) | ((m & 0xf) << 4);
            s[j - 4] |= (sc >> 4) << 6;
            s[j] |= (m >> 4) << 6;
        }
    }
    s
}

/// The float partial sums of ggml's scalar k-quant dots.
///
/// `ggml_vec_dot_q{3,4,5,6}_K_q8_K_generic` sum integer products per block in eight lanes
/// (element `i` in lane `i % 8`), scale each lane to float, keep eight float sums across blocks
/// and add them up at the end. The integer sums are exact whatever the order, but the float
/// rounding depends on this shape, so we keep it to get ggml's result to the bit.
pub(crate) struct Lanes([f32; 8]);

impl Lanes {
    pub(crate) fn new() -> Self {
        Lanes([0.0; 8])
    }

    /// Adds one block: `d * Σ scale(i / 16) * q[i] * a[i]`, lane by lane. The products fit i32
    /// for any bytes (at most 256 * 128 * 128 * 128 in magnitude).
    pub(crate) fn add_block(&mut self, d: f32, q: &[i8; QK_K], a: &[i8; QK_K], scale: impl Fn(usize) -> i32) {
        let mut lanes = [0i32; 8];
        for (i, (&q, &a)) in q.iter().zip(a).enumerate() {
            lanes[i % 8] += scale(i / 16) * (i32::from(q) * i32::from(a));
        }
        for (s, l) in self.0.iter_mut().zip(lanes) {
            *s += d * l as f32;
        }
    }

    /// Adds the lanes, in order, to `sumf` (what ggml has accumulated outside the lanes).
    pub(crate) fn finish(self, mut sumf: f32) -> f32 {
        for s in self.0 {
            sumf += s;
        }
        sumf
    }
}

/// Splits a row into super-blocks of `QK_K`, checking the lengths the traits promise.
pub(crate) fn super_blocks<'a, B>(x: &'a [f32], out: &'a mut [B]) -> impl Iterator<Item = (&'a [f32; QK_K], &'a mut B)> {
    assert_eq!(x.len(), out.len() * QK_K, "quantize: input length must be blocks * {QK_K}");
    x.chunks_exact(QK_K).map(|c| c.try_into().expect("chunks_exact yields QK_K")).zip(out)
}

/// Output chunks of `QK_K` for dequantize, with the length checked.
pub(crate) fn out_blocks<'a, B>(blocks: &'a [B], out: &'a mut [f32]) -> impl Iterator<Item = (&'a B, &'a mut [f32; QK_K])> {
    assert_eq!(out.len(), blocks.len() * QK_K, "dequantize: output length must be blocks * {QK_K}");
    blocks.iter().zip(out.chunks_exact_mut(QK_K).map(|c| c.try_into().expect("chunks_exact yields QK_K")))
}

/// The shared half of the Q4_K and Q5_K quantizers (`quantize_row_q4_K_ref` and
/// `quantize_row_q5_K_ref` differ only in `nmax` and the search range): per sub-block of 32,
/// search a scale and min weighted by `rms(x) + |x|`, quantize those to 6 bits against the two
/// f16 super-scales, then re-quantize the values against the rounded scales.
///
/// Returns `(d, dmin, packed scales, quants in 0..=nmax)`.
pub(crate) fn quantize_scale_min_k4(x: &[f32; QK_K], nmax: i32, rmin: f32, nstep: i32) -> (f16, f16, [u8; 12], [u8; QK_K]) {
    use search::{make_qkx2_quants, nearest_int};
    let mut l = [0u8; QK_K];
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    let (mut max_scale, mut max_min) = (0f32, 0f32);
    for j in 0..8 {
        let xs = &x[32 * j..32 * (j + 1)];
        let mut sum_x2 = 0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; 32] = std::array::from_fn(|i| av_x + xs[i].abs());
        let (scale, min) = make_qkx2_quants(nmax, xs, &weights, &mut l[32 * j..32 * (j + 1)], rmin, 0.1, nstep, false);
        scales[j] = scale;
        mins[j] = min;
        if scale > max_scale {
            max_scale = scale;
        }
        if min > max_min {
            max_min = min;
        }
    }

    let inv_scale = if max_scale > 0.0 { 63.0 / max_scale } else { 0.0 };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // ggml stores nearest_int into a uint8_t before clamping: keep that truncation.
    let ls: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let lm: [u8; 8] = std::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let packed = pack_scale_min_k4(&ls, &lm);
    let d = fp16(max_scale / 63.0);
    let dmin = fp16(max_min / 63.0);

    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &packed);
        let dj = d.to_f32() * f32::from(sc);
        // A zero scale keeps the search's quants (NaN is not zero, as in C's `if (!d)`).
        if dj == 0.0 {
            continue;
        }
        let dm = dmin.to_f32() * f32::from(m);
        for i in 32 * j..32 * (j + 1) {
            l[i] = nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8;
        }
    }
    (d, dmin, packed, l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_k4_round_trips_every_6_bit_value() {
        for v in 0..64u8 {
            // Put v in one slot at a time, with distinct values elsewhere, so crossed bits show.
            for slot in 0..8 {
                let scales: [u8; 8] = std::array::from_fn(|j| if j == slot { v } else { (j as u8 * 9 + 5) % 64 });
                let mins: [u8; 8] = std::array::from_fn(|j| if j == slot { 63 - v } else { (j as u8 * 13 + 2) % 64 });
                let packed = pack_scale_min_k4(&scales, &mins);
                for j in 0..8 {
                    assert_eq!(scale_min_k4(j, &packed), (scales[j], mins[j]), "v {v} slot {slot} j {j}");
                }
            }
        }
    }

    #[test]
    fn scale_min_k4_known_bits() {
        // Scale 4 = 0b10_0101: low nibble in byte 8, high bits in bits 6-7 of byte 0.
        // Min 7 = 0b11_1000: low nibble in the high nibble of byte 11, high bits atop byte 7.
        let mut s = [0u8; 12];
        s[8] = 0b0101;
        s[0] = 0b10 << 6;
        s[11] = 0b1000 << 4;
        s[7] = 0b11 << 6;
        assert_eq!(scale_min_k4(4, &s), (0b10_0101, 0));
        assert_eq!(scale_min_k4(7, &s), (0, 0b11_1000));
        assert_eq!(scale_min_k4(0, &s), (0, 0));
        assert_eq!(scale_min_k4(3, &s), (0, 0));
    }

    #[test]
    fn fp16_canonicalizes_nan_like_ggml() {
        assert_eq!(fp16(f32::NAN).to_bits(), 0x7e00);
        assert_eq!(fp16(-f32::from_bits(0x7fc0_1234)).to_bits(), 0xfe00);
        assert_eq!(fp16(65520.0).to_bits(), 0x7c00);
        assert_eq!(fp16(1.0).to_bits(), 0x3c00);
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Checks shared by the per-type unit tests: a quantize/dequantize round trip and a dot
    //! product against the f64 dot of the dequantized values.
    use crate::quant::{Block, BlockQ8_K, Quantize, QK_K};

    /// A smooth row with a few sign changes and an outlier per block.
    pub fn row(blocks: usize) -> Vec<f32> {
        (0..blocks * QK_K).map(|i| (i as f32 * 0.37).sin() + if i % 97 == 3 { 4.0 } else { 0.0 }).collect()
    }

    /// Quantizes `row`, checks the relative RMS error of the round trip is below `tol`, and
    /// checks `dot` against the dequantized values; returns the blocks.
    pub fn round_trip<B: Quantize + Block<Act = BlockQ8_K>>(x: &[f32], tol: f32) -> Vec<B> {
        let mut q = vec![<B as Block>::zeroed(); x.len() / QK_K];
        B::quantize(x, &mut q);
        let mut y = vec![0.0; x.len()];
        B::dequantize(&q, &mut y);
        let err: f32 = x.iter().zip(&y).map(|(a, b)| (a - b) * (a - b)).sum::<f32>();
        let norm: f32 = x.iter().map(|a| a * a).sum();
        assert!((err / norm).sqrt() < tol, "{}: relative rms error {} >= {tol}", B::DTYPE, (err / norm).sqrt());

        let mut a = vec![BlockQ8_K::zeroed(); q.len()];
        BlockQ8_K::quantize(x, &mut a);
        let mut xa = vec![0.0; x.len()];
        BlockQ8_K::dequantize(&a, &mut xa);
        let exact: f64 = y.iter().zip(&xa).map(|(&w, &v)| f64::from(w) * f64::from(v)).sum();
        let scale: f64 = y.iter().zip(&xa).map(|(&w, &v)| (f64::from(w) * f64::from(v)).abs()).sum();
        let dot = B::dot(&q, &a);
        assert!((f64::from(dot) - exact).abs() <= 1e-5 * scale, "{}: dot {dot} vs {exact}", B::DTYPE);
        q
    }
}
