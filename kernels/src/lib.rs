//! Numbers in, numbers out: pupil's quantized block formats and the kernels that compute on them.
//!
//! This crate knows nothing of files or models. It defines
//! - [`DType`], the table of ggml element types with their block geometry;
//! - [`quant`], one `#[repr(C)]` block struct per supported type with a readable reference
//!   `dequantize`, `quantize` and dot product against the activation type ggml pairs it with,
//!   matching ggml bit for bit;
//! - [`ops`], the operations of a forward pass (matmul, norms, RoPE, attention);
//! - [`quant::ops`], the same kernels behind a type-erased table for callers that pick the
//!   type at run time (a model loaded from a file);
//! - [`cpu`], the SIMD tiers of those kernels (AVX2, AVX-512, AMX), chosen at run time for the host
//!   and handed out as the same table by [`cpu::ops`], which the forward-pass ops use.
//!
//! ```
//! use pupil_kernels::quant::{Block, BlockQ8_0, Quantize};
//! let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
//! let mut q = vec![BlockQ8_0::zeroed(); 2];
//! BlockQ8_0::quantize(&x, &mut q);
//! let mut y = vec![0.0; 64];
//! BlockQ8_0::dequantize(&q, &mut y);
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 0.01));
//! ```
#![deny(missing_docs)]

pub mod cpu;
pub mod dtype;
pub mod ops;
pub mod quant;

#[cfg(feature = "ggml")]
pub mod ggml;

#[cfg(feature = "cuda")]
pub mod cuda;

pub use dtype::DType;

/// Errors from the type-erased kernel entry points.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// The type has no kernels in pupil.
    #[error("no {op} kernel for type {dtype}")]
    Unsupported {
        /// The operation asked for.
        op: &'static str,
        /// The element type.
        dtype: DType,
    },
    /// A byte buffer is not a whole number of blocks, or is not aligned for the block type.
    #[error("{dtype} buffer of {len} bytes is misaligned or not a whole number of {block_bytes}-byte blocks")]
    BadBuffer {
        /// The element type.
        dtype: DType,
        /// Buffer length in bytes.
        len: usize,
        /// Bytes per block.
        block_bytes: usize,
    },
    /// Input and output lengths disagree.
    #[error("length mismatch: {what}: expected {expected}, found {found}")]
    Length {
        /// Which buffer.
        what: &'static str,
        /// The length implied by the other arguments.
        expected: usize,
        /// The length given.
        found: usize,
    },
}
