//! What can go wrong on the GPU side, with the data to act on it.

use std::path::PathBuf;

use crate::DType;

/// Errors from finding, compiling for and running on an NVIDIA GPU.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// A CUDA library could not be opened. pupil opens them at run time, so a build with the
    /// `cuda` feature runs everywhere and says here what it looked for.
    #[error("{library} not found: tried {tried} on the loader path (LD_LIBRARY_PATH={path}); {hint}")]
    MissingLibrary {
        /// The library (`libcuda`, `libnvrtc`, `libcublas`).
        library: &'static str,
        /// The file names tried, comma-separated.
        tried: String,
        /// `LD_LIBRARY_PATH` as the process saw it.
        path: String,
        /// What provides it.
        hint: &'static str,
    },
    /// The driver is there but reports no device (or not the one asked for).
    #[error("no CUDA device {ordinal}: the driver reports {count}")]
    NoDevice {
        /// The device asked for.
        ordinal: usize,
        /// How many the driver sees.
        count: usize,
    },
    /// The device is older than the kernels need (dp4a and the warp intrinsics: sm_61; pupil
    /// builds for sm_80 and newer).
    #[error("{name} is sm_{major}{minor}; pupil's CUDA kernels need sm_80 or newer")]
    TooOld {
        /// The device's name.
        name: String,
        /// Compute capability, major.
        major: i32,
        /// Compute capability, minor.
        minor: i32,
    },
    /// A driver call failed.
    #[error("CUDA driver: {0}")]
    Driver(#[from] cudarc::driver::DriverError),
    /// NVRTC rejected the kernels (a bug in pupil, or an NVRTC too old for the options).
    #[error("NVRTC {version} compiling the kernels for {arch}: {log}")]
    Compile {
        /// The target (`sm_90`, `compute_80`).
        arch: String,
        /// NVRTC's version, `major.minor`.
        version: String,
        /// NVRTC's log.
        log: String,
    },
    /// Another NVRTC call failed.
    #[error("NVRTC: {0}")]
    Nvrtc(String),
    /// A cuBLAS call failed.
    #[error("cuBLAS: {0}")]
    Cublas(String),
    /// The on-disk kernel cache could not be written.
    #[error("kernel cache {path}: {source}")]
    Cache {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A buffer is smaller than the shapes passed with it.
    #[error("{op}: {what}: needs {expected} elements, has {found}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// Which buffer or bound.
        what: &'static str,
        /// What the shapes need.
        expected: usize,
        /// What was given.
        found: usize,
    },
    /// A recorded op sequence (CUDA graph) could not be made.
    #[error("CUDA graph: {0}")]
    Graph(&'static str),
    /// No GPU kernel for this weight type.
    #[error("no GPU {op} kernel for type {dtype}")]
    Unsupported {
        /// The operation.
        op: &'static str,
        /// The weight type.
        dtype: DType,
    },
}
