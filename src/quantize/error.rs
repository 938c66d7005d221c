//! [`QuantizeError`]: everything that can stop a quantization, naming the tensor or file.

use std::io;
use std::path::PathBuf;

use pupil_kernels::{DType, KernelError};

use crate::gguf::GgufError;

/// Why a file could not be quantized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// The type name is not one llama-quantize knows.
    #[error("unknown quantization type '{name}'; valid types: {valid}")]
    UnknownType {
        /// What was asked for.
        name: String,
        /// The names pupil accepts, comma-separated.
        valid: String,
    },
    /// llama-quantize knows the type, but pupil has no quantizer for what it needs (i-quants
    /// and ternary types, or recipes that require an importance matrix).
    #[error(
        "pupil cannot quantize to {name} (it needs kernels or an importance matrix pupil does not have); valid types: {valid}"
    )]
    UnsupportedType {
        /// The type asked for.
        name: String,
        /// The names pupil accepts, comma-separated.
        valid: String,
    },
    /// The input file could not be opened or parsed.
    #[error(transparent)]
    Input(#[from] GgufError),
    /// The input lacks a hyperparameter the recipe reads.
    #[error("{path}: missing or invalid metadata key '{key}', which quantization needs")]
    MissingKey {
        /// The input file.
        path: PathBuf,
        /// The key, e.g. `llama.block_count`.
        key: String,
    },
    /// A tensor is already quantized and re-quantizing was not allowed.
    #[error(
        "tensor '{tensor}' is already quantized ({from}); re-quantizing it to {to} loses precision, \
         allow it explicitly (--allow-requantize) or start from an F32/F16/BF16 file"
    )]
    Requantize {
        /// The tensor.
        tensor: String,
        /// Its type in the input.
        from: DType,
        /// The type the recipe chose.
        to: DType,
    },
    /// pupil has no kernel to read or write a tensor's type.
    #[error("tensor '{tensor}': pupil has no kernel to {op} {dtype}")]
    NoKernel {
        /// The tensor.
        tensor: String,
        /// `dequantize` or `quantize`.
        op: &'static str,
        /// The type.
        dtype: DType,
    },
    /// A tensor's rows fit neither its chosen type nor any fallback (llama.cpp's
    /// `tensor_type_fallback` has none for this type).
    #[error("tensor '{tensor}': {cols} columns are not whole blocks of {dtype}, and {dtype} has no fallback type")]
    NoFallback {
        /// The tensor.
        tensor: String,
        /// Its row length.
        cols: u64,
        /// The type chosen.
        dtype: DType,
    },
    /// A tensor holds NaN or infinity (or a value its new type cannot hold), which llama.cpp
    /// also refuses to write.
    #[error("tensor '{tensor}': row {row} has a value that is not finite in {dtype}")]
    NonFinite {
        /// The tensor.
        tensor: String,
        /// The first bad row.
        row: u64,
        /// The type being written.
        dtype: DType,
    },
    /// An expert tensor whose layer cannot be read from its name (`blk.N.`).
    #[error("tensor '{tensor}': cannot tell its layer (expected 'blk.N.' with N below {n_layer})")]
    BadLayer {
        /// The tensor.
        tensor: String,
        /// The model's layer count.
        n_layer: u64,
    },
    /// The output would overwrite the input, which is still being read.
    #[error("output {0} is the input file; write to another path")]
    SameFile(PathBuf),
    /// The output could not be written.
    #[error("writing {path}: {source}")]
    Output {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A kernel rejected its buffers (a bug in pupil, not in the input).
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

impl QuantizeError {
    /// Whether the user can fix this by changing the arguments or the input file (as opposed
    /// to a failing disk or a bug).
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, QuantizeError::Output { .. } | QuantizeError::Kernel(_))
    }
}
