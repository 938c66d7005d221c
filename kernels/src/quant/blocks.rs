//! The block structs, laid out exactly as ggml's `ggml-common.h` defines them.
//!
//! Sizes are asserted at compile time; a wrong field order or width fails the build.

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Elements in a k-quant super-block.
pub const QK_K: usize = 256;
/// Elements in a legacy (`Q4_0`...`Q8_1`) block.
pub const QK: usize = 32;

/// `Q4_0`: x = d * (q - 8), q in 0..16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// 32 nibbles: element `j` in the low nibble of byte `j`, element `j + 16` in the high one.
    pub qs: [u8; QK / 2],
}

/// `Q4_1`: x = d * q + m, q in 0..16.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Nibbles, laid out as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}

/// `Q5_0`: x = d * (q - 16), q in 0..32; the fifth bits live in `qh`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ5_0 {
    /// Scale.
    pub d: f16,
    /// Fifth bit of element `j` is bit `j` of this little-endian u32.
    pub qh: [u8; 4],
    /// Low nibbles, laid out as in [`BlockQ4_0`].
    pub qs: [u8; QK / 2],
}

/// `Q5_1`: x = d * q + m, q in 0..32.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ5_1 {
    /// Scale.
    pub d: f16,
    /// Minimum.
    pub m: f16,
    /// Fifth bits, as in [`BlockQ5_0`].
    pub qh: [u8; 4],
    /// Low nibbles.
    pub qs: [u8; QK / 2],
}

/// `Q8_0`: x = d * q.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants.
    pub qs: [i8; QK],
}

/// `Q8_1`: x = d * q, with `s = d * sum(q)` precomputed for the min terms of `Q4_1`/`Q5_1`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ8_1 {
    /// Scale.
    pub d: f16,
    /// `d * sum(qs)`.
    pub s: f16,
    /// Quants.
    pub qs: [i8; QK],
}

/// `Q2_K`: 16 sub-blocks of 16, 4-bit scale and min each; x = d * sc * q - dmin * m.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ2_K {
    /// Low nibble: scale, high nibble: min, one byte per sub-block.
    pub scales: [u8; QK_K / 16],
    /// 2-bit quants.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
}

/// `Q3_K`: 16 sub-blocks of 16 with 6-bit scales; x = d * (sc - 32) * (q - 4 * !hbit).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ3_K {
    /// High bit of each quant.
    pub hmask: [u8; QK_K / 8],
    /// Low 2 bits of each quant.
    pub qs: [u8; QK_K / 4],
    /// 16 scales of 6 bits, packed.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: f16,
}

/// `Q4_K`: 8 sub-blocks of 32, 6-bit scale and min each; x = d * sc * q - dmin * m.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ4_K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins of 6 bits, packed.
    pub scales: [u8; 12],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}

/// `Q5_K`: as [`BlockQ4_K`] with a fifth bit per quant.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ5_K {
    /// Super-block scale for the scales.
    pub d: f16,
    /// Super-block scale for the mins.
    pub dmin: f16,
    /// 8 scales and 8 mins of 6 bits, packed.
    pub scales: [u8; 12],
    /// Fifth bits.
    pub qh: [u8; QK_K / 8],
    /// Low 4 bits.
    pub qs: [u8; QK_K / 2],
}

/// `Q6_K`: 16 sub-blocks of 16 with 8-bit scales; x = d * sc * (q - 32).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ6_K {
    /// Low 4 bits of each quant.
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of each quant.
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales.
    pub scales: [i8; QK_K / 16],
    /// Super-block scale.
    pub d: f16,
}

/// `Q8_K`: activations for the k-quants; x = d * q, with sums of each group of 16 quants.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable, PartialEq)]
pub struct BlockQ8_K {
    /// Scale (f32, unlike the others).
    pub d: f32,
    /// Quants.
    pub qs: [i8; QK_K],
    /// Sum of each group of 16 quants.
    pub bsums: [i16; QK_K / 16],
}

macro_rules! assert_block_size {
    ($($t:ty => $d:ident),* $(,)?) => {
        $(const _: () = assert!(std::mem::size_of::<$t>() == crate::DType::$d.type_size());)*
    };
}

assert_block_size! {
    BlockQ4_0 => Q4_0, BlockQ4_1 => Q4_1, BlockQ5_0 => Q5_0, BlockQ5_1 => Q5_1,
    BlockQ8_0 => Q8_0, BlockQ8_1 => Q8_1, BlockQ2_K => Q2_K, BlockQ3_K => Q3_K,
    BlockQ4_K => Q4_K, BlockQ5_K => Q5_K, BlockQ6_K => Q6_K, BlockQ8_K => Q8_K,
    f32 => F32, f16 => F16, half::bf16 => BF16,
}
