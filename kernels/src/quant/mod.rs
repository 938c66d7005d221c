//! Block formats and their reference kernels.
//!
//! Each supported ggml type is a `#[repr(C)]` block struct (or a plain scalar for F32, F16 and
//! BF16) implementing [`Block`]: a readable `dequantize`, and a `dot` of a row of weight blocks
//! with a row of activation blocks of the type ggml pairs it with (`Q8_0` for `Q4_0`/`Q5_0`/`Q8_0`,
//! `Q8_1` for `Q4_1`/`Q5_1`, `Q8_K` for the k-quants, the float type itself for floats). Types
//! with a reference quantizer also implement [`Quantize`].
//!
//! These are the reference tier: written to be checked against ggml's `ggml-quants.c`
//! (which they match bit for bit: `kernels/tests/oracle_legacy.rs` and `oracle_k_quants.rs`), not to be fast. Faster
//! tiers are tested against them.
//!
//! The blocks are plain old data, so a row of them is read straight from a memory-mapped file
//! with [`bytemuck::try_cast_slice`] (no copy); [`ops`] does that for callers that hold bytes.

mod blocks;
mod erased;
mod float;
mod k_quants;
mod legacy;
pub(crate) use legacy::{unpack_5bit, unpack_nibbles};

pub use blocks::*;
pub(crate) use erased::portable_gemm_from;
pub use erased::{Gemm, GemmPacked, Ops, Pack, PackedRow, Quantizer, ops};

use crate::DType;

/// A block of quantized values as stored in GGUF.
pub trait Block: bytemuck::Pod + Send + Sync + 'static {
    /// The ggml type this block stores.
    const DTYPE: DType;
    /// Elements per block.
    const SIZE: usize;
    /// The activation block type the dot product pairs this with, as ggml does.
    type Act: Block;

    /// Expand `blocks` to `out`; `out.len()` must be `blocks.len() * Self::SIZE`.
    fn dequantize(blocks: &[Self], out: &mut [f32]);

    /// The dot product of a weight row with an activation row of the same element count
    /// (`w.len() == a.len()`, both in blocks: every pairing has equal block sizes).
    fn dot(w: &[Self], a: &[Self::Act]) -> f32;

    /// An all-zero block.
    fn zeroed() -> Self {
        bytemuck::Zeroable::zeroed()
    }
}

/// A block type with a reference quantizer that matches ggml's (`quantize_row_*_ref`).
pub trait Quantize: Block {
    /// Quantize `x` into `out`; `x.len()` must be `out.len() * Self::SIZE`.
    fn quantize(x: &[f32], out: &mut [Self]);

    /// Quantize activations `x` into `out` as ggml's CPU backend does before a matmul on
    /// x86-64 (the `from_float` of its CPU type traits), so that pupil's matmuls see the
    /// activations llama.cpp's do. That is [`Quantize::quantize`] except for `Q8_0` and
    /// `Q8_1`, whose CPU quantizers round differently from their `_ref`s (see
    /// `legacy/q8.rs`).
    fn quantize_activations(x: &[f32], out: &mut [Self]) {
        Self::quantize(x, out)
    }
}
