//! The legacy block types `Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`, `Q8_0` and `Q8_1`: blocks of 32
//! elements with one f16 scale `d` (and, for the `_1` types, an f16 offset).
//!
//! | type   | element `x`      | `q` range | activation type |
//! |--------|------------------|-----------|-----------------|
//! | `Q4_0` | `d * (q - 8)`    | 0..16     | `Q8_0`          |
//! | `Q4_1` | `d * q + m`      | 0..16     | `Q8_1`          |
//! | `Q5_0` | `d * (q - 16)`   | 0..32     | `Q8_0`          |
//! | `Q5_1` | `d * q + m`      | 0..32     | `Q8_1`          |
//! | `Q8_0` | `d * q`          | -128..128 | `Q8_0`          |
//! | `Q8_1` | `d * q`          | -128..128 | `Q8_1` (see [`q8`]) |
//!
//! Bit layout (`ggml-common.h`, `block_q4_0` ... `block_q8_1`):
//! - 4-bit quants are packed two to a byte, but not neighbour with neighbour: byte `j` of `qs`
//!   holds element `j` in its low nibble and element `j + 16` in its high nibble;
//! - the 5-bit types keep the low four bits that way and put the fifth bit of element `j` in
//!   bit `j` of `qh` read as a little-endian `u32`.
//!
//! The quantizers follow `quantize_row_*_ref` and the dequantizers `dequantize_row_*` of
//! `ggml/src/ggml-quants.c` bit for bit; the dot products follow the scalar
//! `ggml_vec_dot_*_generic` of `ggml/src/ggml-cpu/quants.c` term by term, so they usually
//! agree with it exactly (the SIMD versions ggml actually runs sum in another order).
//!
//! ```
//! use pupil_kernels::quant::{Block, BlockQ4_0, Quantize};
//! let x: Vec<f32> = (0..32).map(|i| i as f32 - 16.0).collect();
//! let mut q = [BlockQ4_0::zeroed()];
//! BlockQ4_0::quantize(&x, &mut q);
//! // The largest magnitude, -16, becomes -8 * d: d = 2.
//! assert_eq!(q[0].d.to_f32(), 2.0);
//! let mut y = [0.0; 32];
//! BlockQ4_0::dequantize(&q, &mut y);
//! assert_eq!((y[0], y[31]), (-16.0, 14.0));
//! ```

pub(crate) mod q4;
pub(crate) mod q5;
pub(crate) mod q8;

use super::QK;

/// Element `j` of a block from the 4-bit packing: low nibble of byte `j` for the first half,
/// high nibble of byte `j - 16` for the second (`dequantize_row_q4_0`).
pub(crate) fn unpack_nibbles(qs: &[u8; QK / 2]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for (j, &b) in qs.iter().enumerate() {
        q[j] = b & 0x0F;
        q[j + QK / 2] = b >> 4;
    }
    q
}

/// The inverse of [`unpack_nibbles`]; each `q` must be below 16.
fn pack_nibbles(q: &[u8; QK]) -> [u8; QK / 2] {
    std::array::from_fn(|j| q[j] | (q[j + QK / 2] << 4))
}

/// Element `j` of a 5-bit block: its nibble, plus bit `j` of `qh` (little-endian) as bit 4.
pub(crate) fn unpack_5bit(qs: &[u8; QK / 2], qh: [u8; 4]) -> [u8; QK] {
    let high = u32::from_le_bytes(qh);
    let mut q = unpack_nibbles(qs);
    for (j, q) in q.iter_mut().enumerate() {
        *q |= (((high >> j) & 1) as u8) << 4;
    }
    q
}

/// The inverse of [`unpack_5bit`]: `(qs, qh)`; each `q` must be below 32.
fn pack_5bit(q: &[u8; QK]) -> ([u8; QK / 2], [u8; 4]) {
    let low = q.map(|q| q & 0x0F);
    let high = q.iter().enumerate().fold(0u32, |h, (j, &q)| h | (u32::from(q >> 4) & 1) << j);
    (pack_nibbles(&low), high.to_le_bytes())
}

/// The element of largest magnitude, with its sign; the first one wins a tie (the strict `<`
/// in `quantize_row_q4_0_ref`), which decides the sign of `d` when `v` and `-v` both occur.
fn signed_absmax(x: &[f32]) -> f32 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `(min, max)` of a block, starting from `±f32::MAX` as `quantize_row_q4_1_ref` does.
fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (if v < lo { v } else { lo }, if v > hi { v } else { hi }))
}

/// `1 / d`, or 0 for a zero scale (an all-zero block quantizes to zeros, not NaN).
fn inverse(d: f32) -> f32 {
    if d != 0.0 { 1.0 / d } else { 0.0 }
}

/// C's float-to-int conversion (`(int8_t)v`, `(uint8_t)v`) as compiled for x86-64: truncate
/// toward zero through `cvttss2si`, which gives `i32::MIN` for NaN and out-of-range values;
/// the caller then keeps the low bits. C leaves those cases undefined, and ggml reaches them
/// when `1 / d` overflows to infinity (blocks of subnormal f32 values), so the oracle's
/// answer there is this one; Rust's saturating `as` would give 127 where ggml stores 0.
fn c_float_to_int(v: f32) -> i32 {
    const LIMIT: f32 = 2_147_483_648.0; // 2^31
    if v.is_nan() || v.abs() >= LIMIT { i32::MIN } else { v as i32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nibble_packing_puts_element_j_low_and_j_plus_16_high() {
        let q: [u8; QK] = std::array::from_fn(|j| (j % 16) as u8);
        let expected: [u8; 16] = std::array::from_fn(|j| j as u8 | (j as u8) << 4);
        assert_eq!(pack_nibbles(&q), expected);
        assert_eq!(unpack_nibbles(&expected), q);
        let mut only_17_is_5 = [0u8; QK];
        only_17_is_5[17] = 5;
        assert_eq!(pack_nibbles(&only_17_is_5)[1], 0x50);
    }

    #[test]
    fn fifth_bit_of_element_j_is_bit_j_of_little_endian_qh() {
        let mut q = [0u8; QK];
        q[0] = 16; // bit 0: byte 0, bit 0
        q[9] = 16 | 3; // bit 9: byte 1, bit 1
        q[31] = 31; // bit 31: byte 3, bit 7
        let (qs, qh) = pack_5bit(&q);
        assert_eq!(qh, [0x01, 0x02, 0x00, 0x80]);
        assert_eq!(qs[9], 3);
        assert_eq!(qs[15], 0xF0);
        assert_eq!(unpack_5bit(&qs, qh), q);
    }

    #[test]
    fn absmax_keeps_sign_and_first_of_a_tie() {
        assert_eq!(signed_absmax(&[1.0, -3.0, 2.0]), -3.0);
        assert_eq!(signed_absmax(&[3.0, -3.0]), 3.0);
        assert_eq!(signed_absmax(&[-3.0, 3.0]), -3.0);
        assert_eq!(signed_absmax(&[0.0, -0.0]), 0.0);
    }

    #[test]
    fn c_conversion_wraps_out_of_range_to_int_min() {
        assert_eq!(c_float_to_int(8.9), 8);
        assert_eq!(c_float_to_int(-0.9), 0);
        assert_eq!(c_float_to_int(f32::INFINITY), i32::MIN);
        assert_eq!(c_float_to_int(f32::NEG_INFINITY), i32::MIN);
        assert_eq!(c_float_to_int(f32::NAN), i32::MIN);
        assert_eq!(c_float_to_int(3e9), i32::MIN);
        assert_eq!(c_float_to_int(-2147483648.0), i32::MIN);
        assert_eq!(c_float_to_int(2147483520.0), 2147483520);
    }
}
