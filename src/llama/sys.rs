//! The llama.cpp calls `llama-cpp-2` does not wrap, made through the raw bindings
//! (`llama-cpp-sys-2`, the same build): llama-quantize's library call and the system-info
//! string. With `trace.rs` (the evaluation callback), the only `unsafe` of the llama.cpp
//! module.

use std::ffi::CString;
use std::path::Path;
use std::sync::OnceLock;

use llama_cpp_sys_2 as sys;

use super::{LlamaError, backend};

/// The llama-quantize options pupil's quantizer is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantizeParams {
    /// `llama_ftype` (the `general.file_type` id).
    pub ftype: u32,
    /// `--allow-requantize`.
    pub allow_requantize: bool,
    /// `--pure`.
    pub pure: bool,
    /// Threads.
    pub nthread: i32,
}

/// Quantizes `input` to `output` as `llama-quantize` does (no importance matrix, no
/// overrides).
pub fn quantize(input: &Path, output: &Path, p: QuantizeParams) -> Result<(), LlamaError> {
    backend()?;
    let err = |message: String| LlamaError::Call { what: "quantizing", message };
    let c = |path: &Path| {
        let s = path.to_str().ok_or_else(|| err(format!("{} is not UTF-8", path.display())))?;
        CString::new(s).map_err(|e| err(e.to_string()))
    };
    let (inp, out) = (c(input)?, c(output)?);
    // SAFETY: returns a plain struct by value; its pointer fields are null (no imatrix, no
    // overrides, no pruning), which llama.cpp reads as "none".
    let mut params = unsafe { sys::llama_model_quantize_default_params() };
    params.ftype = p.ftype;
    params.allow_requantize = p.allow_requantize;
    params.pure_ = p.pure;
    params.nthread = p.nthread;
    // SAFETY: both paths are NUL-terminated strings and `params` a valid struct (the
    // defaults' null pointers untouched), all alive for the whole call; llama.cpp only reads
    // them during the call and keeps no pointer to them. Errors are C++ exceptions caught
    // inside `llama_model_quantize` and returned as a non-zero status.
    let rc = unsafe { sys::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &params) };
    if rc == 0 { Ok(()) } else { Err(err(format!("llama_model_quantize failed with status {rc}"))) }
}

/// `llama_print_system_info()`: the CPU features ggml was compiled for (`AVX2 = 1 |
/// AVX512 = 1 | ...`), read once, after the backend (and so the CPU backend, whose features
/// it lists) is initialised.
pub(super) fn system_info() -> Result<String, LlamaError> {
    static INFO: OnceLock<String> = OnceLock::new();
    backend()?;
    Ok(INFO
        .get_or_init(|| {
            // SAFETY: no arguments; returns a pointer to a NUL-terminated static buffer that
            // each call rewrites. The OnceLock makes this pupil's only call, and the text is
            // copied out before anything else can call it.
            let p = unsafe { sys::llama_print_system_info() };
            if p.is_null() {
                return String::new();
            }
            // SAFETY: non-null and NUL-terminated, as above; alive for the process.
            unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
        })
        .clone())
}
