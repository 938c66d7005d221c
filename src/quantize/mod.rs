//! Quantizing a GGUF model to another file type, with the same output as llama.cpp's
//! `llama-quantize` (without an importance matrix): the same type for every tensor, the same
//! bytes, the same file.
//!
//! - [`parse_type`] reads a type name as llama-quantize does (`Q4_K_M`, `q8_0`, `Q4_K`, `15`).
//! - [`Quantizer::open`] maps the input and plans the output: llama.cpp's tensor order, and
//!   per tensor the type its mixture rules give (`recipe.rs`, a port of
//!   `llama_tensor_get_type`: `output.weight` in Q6_K, more bits for some `attn_v` and
//!   `ffn_down` layers, fallbacks for rows that are not whole 256-blocks, norms kept in F32).
//! - [`Quantizer::write`] streams the output tensor by tensor: the input is read from the
//!   memory map and converted a slab of rows at a time, so memory use stays a few tens of
//!   MiB whatever the model's size.
//!
//! Metadata is copied in order, without split keys, then `general.quantization_version` (2)
//! and `general.file_type` are set, which moves them to the end, as llama.cpp does. Already
//! quantized tensors are only re-quantized (dequantized, then quantized) when
//! [`Options::allow_requantize`] says so, as llama-quantize's `--allow-requantize`.
//!
//! ```
//! use pupil::kernels::DType;
//! use pupil::model::synth::{Synth, SynthModel};
//! use pupil::model::Arch;
//! use pupil::quantize::{Options, Quantizer, parse_type};
//! # let dir = tempfile::tempdir().unwrap();
//! # let (input, output) = (dir.path().join("f32.gguf"), dir.path().join("q4_k_m.gguf"));
//! SynthModel::build(&Synth::new(Arch::Llama, DType::F32), None).unwrap().write(&input).unwrap();
//! let q = Quantizer::open(&input, &Options::new(parse_type("Q4_K_M")?))?;
//! let out = q.tensors().iter().find(|t| t.name == "output.weight").unwrap();
//! assert_eq!(out.to, DType::Q6_K);
//! let summary = q.write(&output, |_| {})?;
//! assert!(summary.out_bytes < summary.in_bytes);
//! # Ok::<(), pupil::quantize::QuantizeError>(())
//! ```

mod convert;
mod error;
mod output;
mod plan;
mod recipe;
mod types;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use error::QuantizeError;
pub use plan::{QUANTIZATION_VERSION, TensorPlan};
pub use recipe::{Hparams, Recipe};
pub use types::{TYPE_NAMES, default_type, parse_type};

use crate::gguf::{FileType, GgufFile, Value};

/// What to make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// The file type (recipe).
    pub ftype: FileType,
    /// Re-quantize tensors that are already quantized (loses precision: each one is
    /// dequantized, then quantized again).
    pub allow_requantize: bool,
    /// Every matrix in the file type's base type, without the mixture rules (fallbacks for
    /// row lengths still apply): llama-quantize's `--pure`.
    pub pure: bool,
}

impl Options {
    /// `ftype` with llama-quantize's defaults.
    pub fn new(ftype: FileType) -> Options {
        Options { ftype, allow_requantize: false, pure: false }
    }
}

/// Totals of a finished quantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Tensors written.
    pub tensors: usize,
    /// Tensors whose type changed.
    pub converted: usize,
    /// Tensors whose row length forced a fallback type.
    pub fell_back: usize,
    /// Elements in all tensors.
    pub elements: u64,
    /// Tensor data in the input.
    pub in_bytes: u64,
    /// Tensor data in the output.
    pub out_bytes: u64,
    /// Size of the output file.
    pub file_bytes: u64,
}

/// An input file and the plan of its quantized output.
#[derive(Debug)]
pub struct Quantizer {
    input: GgufFile,
    options: Options,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorPlan>,
}

impl Quantizer {
    /// Opens `path` and plans its quantization. Fails on a malformed input, a tensor that
    /// would be re-quantized without [`Options::allow_requantize`], or a type pupil has no
    /// kernel for.
    pub fn open(path: impl AsRef<Path>, options: &Options) -> Result<Quantizer, QuantizeError> {
        let path = path.as_ref();
        let input = GgufFile::open(path)?;
        let tensors = plan::tensors(&input, path, options.ftype, options.pure)?;
        for t in tensors.iter().filter(|t| t.converts()) {
            if t.requantizes() && !options.allow_requantize {
                return Err(QuantizeError::Requantize { tensor: t.name.clone(), from: t.from, to: t.to });
            }
            let no_kernel = |op, dtype| QuantizeError::NoKernel { tensor: t.name.clone(), op, dtype };
            pupil_kernels::quant::ops(t.from).ok_or_else(|| no_kernel("dequantize", t.from))?;
            pupil_kernels::quant::ops(t.to).and_then(|o| o.quantize).ok_or_else(|| no_kernel("quantize", t.to))?;
        }
        let metadata = plan::metadata(&input, options.ftype);
        Ok(Quantizer { input, options: *options, metadata, tensors })
    }

    /// The input file.
    pub fn input(&self) -> &GgufFile {
        &self.input
    }

    /// The options this plan was made with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The output's tensors, in file order, with their types.
    pub fn tensors(&self) -> &[TensorPlan] {
        &self.tensors
    }

    /// The output's metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// Writes the output to `path` (created or truncated), calling `progress` after each
    /// tensor. A partial file is removed on failure.
    pub fn write(&self, path: impl AsRef<Path>, progress: impl FnMut(&TensorPlan)) -> Result<Summary, QuantizeError> {
        let path = path.as_ref();
        if let (Ok(a), Ok(b)) = (path.canonicalize(), self.input.path().canonicalize())
            && a == b
        {
            return Err(QuantizeError::SameFile(path.to_path_buf()));
        }
        let out = output::Output::create(path, &self.metadata, &self.tensors)?;
        let result = self.write_data(out, progress);
        if result.is_err() {
            // Best effort: the error that matters is the one being returned.
            let _ = std::fs::remove_file(path);
        }
        result
    }

    fn write_data(
        &self,
        mut out: output::Output,
        mut progress: impl FnMut(&TensorPlan),
    ) -> Result<Summary, QuantizeError> {
        let mut bufs = convert::Buffers::default();
        let mut s =
            Summary { tensors: 0, converted: 0, fell_back: 0, elements: 0, in_bytes: 0, out_bytes: 0, file_bytes: 0 };
        for t in &self.tensors {
            let src = self.input.tensor_data(&self.input.tensors()[t.input_index]);
            if t.converts() {
                convert::convert(t, src, &mut bufs, |bytes| out.write(bytes))?;
                s.converted += 1;
            } else {
                out.write(src)?;
            }
            out.end_tensor()?;
            s.tensors += 1;
            s.fell_back += usize::from(t.fell_back_from.is_some());
            s.elements += t.n_elements();
            s.in_bytes += src.len() as u64;
            s.out_bytes += t.out_bytes();
            progress(t);
        }
        s.file_bytes = out.finish()?;
        Ok(s)
    }
}
