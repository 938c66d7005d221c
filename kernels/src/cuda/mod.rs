//! NVIDIA GPU kernels (feature `cuda`), the second implementation of [`crate::ops`]: the CPU
//! kernels stay the reference every GPU kernel is tested against.
//!
//! - The kernels are CUDA C in this folder (`*.cu`), compiled at first use by NVRTC for the
//!   device present and cached on disk ([`compile`]). They include no headers (NVRTC's pip
//!   wheels ship none): f16 conversion and the block structs, which mirror
//!   [`crate::quant`]'s with size checks, are in `prelude.cu`.
//! - The CUDA libraries are opened at run time, so the feature builds and runs on machines
//!   with no CUDA at all; [`probe`] and [`Gpu::open`] say which library is missing and where
//!   they looked, instead of cudarc's panic.
//! - [`Gpu`] owns the context, one stream, cuBLAS and the loaded kernels; its methods
//!   ([`ops`]) queue one op each, after checking every buffer against the shapes given.
//!
//! The forward pass on the GPU is pupil's `model` module's business; this crate knows nothing
//! of models.

pub mod compile;
mod device;
mod error;
mod graph;
pub mod libs;
mod ops;

pub use compile::KernelStats;
pub use cudarc::driver::CudaSlice;
pub use device::{DeviceInfo, Gpu, probe};
pub use error::GpuError;
pub use graph::GpuGraph;
pub use ops::{ATTENTION_CHUNK, GpuWeight, MAX_MATVEC_TOKENS, MatmulScratch, Q8_1_BYTES, supports};

/// The names of every kernel entry point, as [`Gpu::open`] loads them.
pub fn kernel_names() -> &'static [&'static str] {
    device::Kernels::NAMES
}
