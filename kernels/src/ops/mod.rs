//! The operations a transformer forward pass is made of, on f32 activations.
//!
//! Reference versions: plain loops written to be read and checked against ggml's CPU ops
//! (`ggml-cpu/ops.cpp`, `ggml-cpu/vec.h`). They take slices with the shapes documented on
//! each function (row-major, the last dimension contiguous), so a faster tier or another
//! device can replace one without the model noticing.
//!
//! ```
//! use pupil_kernels::ops;
//! let x = [3.0f32, 4.0];
//! let mut y = [0.0; 2];
//! ops::rms_norm(&x, &[1.0, 1.0], 0.0, &mut y);
//! assert!((y[0] - 3.0 / 12.5f32.sqrt()).abs() < 1e-6);
//! ```

pub(crate) mod activation;
mod attention;
mod attention_tiles;
mod gelu_f16;
pub mod kv_reference;
mod matmul;
mod norm;
mod rope;

pub use activation::{add_assign, gelu_tanh, max_of, mul_assign, scale, silu, softcap, softmax};
pub use attention::{KvScalar, attend, attend_batch};
pub use gelu_f16::gelu_tanh_f16;
pub use matmul::{Activations, EXACT_BATCH_TOKENS, PackedWeight, WeightRef, get_row, matmul, matmul_many, matmul_on};
pub use norm::rms_norm;
pub use rope::Rope;
