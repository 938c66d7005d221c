//! A safe wrapper over llama.cpp's `llama_model_quantize` (llama-quantize's library call),
//! which `llama-cpp-2` does not wrap. The only `unsafe` of the quantize oracle lives here.

use std::ffi::CString;
use std::path::Path;

use llama_cpp_sys_2 as sys;

/// The llama-quantize options the oracle varies.
#[derive(Clone, Copy, Debug)]
pub struct Params {
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
/// overrides); `Err` if llama.cpp reports failure.
pub fn quantize(input: &Path, output: &Path, p: Params) -> Result<(), String> {
    let c = |path: &Path| CString::new(path.to_str().ok_or("path is not UTF-8")?).map_err(|e| e.to_string());
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
    if rc == 0 { Ok(()) } else { Err(format!("llama_model_quantize failed with status {rc}")) }
}
