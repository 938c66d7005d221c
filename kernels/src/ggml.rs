//! ggml itself, as the oracle the reference kernels are tested against (feature `ggml`).
//!
//! Safe wrappers over ggml's type traits from `llama-cpp-sys-2`: its own `to_float`,
//! `ggml_quantize_chunk`, the reference `from_float`, and the CPU backend's `vec_dot` and
//! activation quantizer. Each wrapper checks buffer sizes before it hands pointers to C.
//!
//! ```no_run
//! use pupil_kernels::{DType, ggml};
//! let x = vec![0.5f32; 32];
//! let q = ggml::quantize(DType::Q8_0, &x).unwrap();
//! assert_eq!(ggml::dequantize(DType::Q8_0, &q).unwrap(), x);
//! ```

use crate::DType;
use llama_cpp_sys_2 as sys;
use std::sync::Once;

/// Why ggml could not be asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OracleError {
    /// ggml has no such function for the type.
    #[error("ggml has no {what} for {dtype}")]
    Missing {
        /// Which trait function.
        what: &'static str,
        /// The type.
        dtype: DType,
    },
    /// A buffer does not hold a whole number of blocks of the type.
    #[error("{dtype}: {len} is not a whole number of blocks")]
    BadLength {
        /// The type.
        dtype: DType,
        /// The length (elements or bytes) given.
        len: usize,
    },
}

fn init() {
    static INIT: Once = Once::new();
    // SAFETY: ggml_cpu_init only fills ggml's global conversion tables; Once makes it run once.
    INIT.call_once(|| unsafe { sys::ggml_cpu_init() });
}

fn traits(t: DType) -> &'static sys::ggml_type_traits {
    init();
    // SAFETY: ggml returns a pointer into its static, immutable type-traits table for every
    // id below GGML_TYPE_COUNT, and every DType id is one.
    unsafe { &*sys::ggml_get_type_traits(t.id()) }
}

fn traits_cpu(t: DType) -> &'static sys::ggml_type_traits_cpu {
    init();
    // SAFETY: as for `traits`, a static table of the CPU backend.
    unsafe { &*sys::ggml_get_type_traits_cpu(t.id()) }
}

fn blocks_in_elems(t: DType, n: usize) -> Result<usize, OracleError> {
    if n % t.block_size() == 0 {
        Ok(n / t.block_size())
    } else {
        Err(OracleError::BadLength { dtype: t, len: n })
    }
}

fn elems_in_bytes(t: DType, len: usize) -> Result<usize, OracleError> {
    if len % t.type_size() == 0 {
        Ok(len / t.type_size() * t.block_size())
    } else {
        Err(OracleError::BadLength { dtype: t, len })
    }
}

// ggml's type-traits entry for Q8_K is empty (no `to_float`, no `from_float_ref`), but
// ggml-base exports the row functions (`ggml-quants.h`); the CPU backend calls the first one
// as its Q8_K activation quantizer. Declared as there, with the block pointer as `void *`,
// which is the type-traits function-pointer signature, so they are called like the others.
#[allow(non_snake_case)]
unsafe extern "C" {
    fn quantize_row_q8_K_ref(x: *const f32, y: *mut std::ffi::c_void, k: i64);
    fn dequantize_row_q8_K(x: *const std::ffi::c_void, y: *mut f32, k: i64);
}

/// The reference quantizer and dequantizer of `t` when ggml's traits table lacks them (Q8_K).
fn q8_k_row_fns(t: DType) -> (sys::ggml_from_float_t, sys::ggml_to_float_t) {
    match t {
        DType::Q8_K => (Some(quantize_row_q8_K_ref), Some(dequantize_row_q8_K)),
        _ => (None, None),
    }
}

/// ggml's `to_float` for `t` over a row of block bytes (for Q8_K, `dequantize_row_q8_K`).
pub fn dequantize(t: DType, bytes: &[u8]) -> Result<Vec<f32>, OracleError> {
    let n = elems_in_bytes(t, bytes.len())?;
    let f = traits(t).to_float.or(q8_k_row_fns(t).1).ok_or(OracleError::Missing { what: "to_float", dtype: t })?;
    let mut out = vec![0f32; n];
    // SAFETY: `bytes` holds exactly n / block_size blocks of `t` and `out` has room for n floats;
    // ggml reads and writes nothing beyond that.
    unsafe { f(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    Ok(out)
}

/// One row quantized by `ggml_quantize_chunk` (no importance matrix): the reference quantizer
/// that llama-quantize uses.
pub fn quantize(t: DType, x: &[f32]) -> Result<Vec<u8>, OracleError> {
    let nb = blocks_in_elems(t, x.len())?;
    // SAFETY: pure queries on the type id.
    if unsafe { sys::ggml_quantize_requires_imatrix(t.id()) } {
        return Err(OracleError::Missing { what: "quantizer without imatrix", dtype: t });
    }
    init();
    // SAFETY: initialises lookup tables for i-quants; a no-op for the rest.
    unsafe { sys::ggml_quantize_init(t.id()) };
    let mut out = vec![0u8; nb * t.type_size()];
    // SAFETY: one row of x.len() floats in, nb blocks of type_size bytes out, as allocated.
    let written = unsafe {
        sys::ggml_quantize_chunk(
            t.id(),
            x.as_ptr(),
            out.as_mut_ptr().cast(),
            0,
            1,
            x.len() as i64,
            std::ptr::null(),
        )
    };
    assert_eq!(written, out.len(), "ggml_quantize_chunk wrote an unexpected size");
    Ok(out)
}

/// ggml's reference `from_float` (`quantize_row_*_ref`), which also exists for the activation
/// types `Q8_1` and `Q8_K` that `ggml_quantize_chunk` does not take (for Q8_K, which its
/// traits table omits, `quantize_row_q8_K_ref` itself).
pub fn quantize_ref(t: DType, x: &[f32]) -> Result<Vec<u8>, OracleError> {
    let nb = blocks_in_elems(t, x.len())?;
    let f = traits(t).from_float_ref.or(q8_k_row_fns(t).0).ok_or(OracleError::Missing { what: "from_float_ref", dtype: t })?;
    let mut out = vec![0u8; nb * t.type_size()];
    // SAFETY: x.len() floats in, nb whole blocks out.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    Ok(out)
}

/// The CPU backend's activation quantizer (`from_float` of `ggml_type_traits_cpu`): what ggml
/// runs on activations before a quantized matmul.
pub fn quantize_activations(t: DType, x: &[f32]) -> Result<Vec<u8>, OracleError> {
    let nb = blocks_in_elems(t, x.len())?;
    let f = traits_cpu(t).from_float.ok_or(OracleError::Missing { what: "cpu from_float", dtype: t })?;
    let mut out = vec![0u8; nb * t.type_size()];
    // SAFETY: x.len() floats in, nb whole blocks out.
    unsafe { f(x.as_ptr(), out.as_mut_ptr().cast(), x.len() as i64) };
    Ok(out)
}

/// The activation type ggml's CPU backend pairs with `t` in `vec_dot`.
pub fn vec_dot_type(t: DType) -> Option<DType> {
    DType::from_id(traits_cpu(t).vec_dot_type)
}

/// ggml's CPU `vec_dot` of a weight row of type `t` with an activation row of
/// [`vec_dot_type`]`(t)`, both given as block bytes of the same element count.
pub fn vec_dot(t: DType, w: &[u8], a: &[u8]) -> Result<f32, OracleError> {
    let n = elems_in_bytes(t, w.len())?;
    let at = vec_dot_type(t).ok_or(OracleError::Missing { what: "vec_dot_type", dtype: t })?;
    if elems_in_bytes(at, a.len())? != n {
        return Err(OracleError::BadLength { dtype: at, len: a.len() });
    }
    let f = traits_cpu(t).vec_dot.ok_or(OracleError::Missing { what: "vec_dot", dtype: t })?;
    let mut s = 0f32;
    // SAFETY: both rows hold n elements of their types; one result (nrc = 1) is written to s.
    unsafe { f(n as i32, &mut s, 0, w.as_ptr().cast(), 0, a.as_ptr().cast(), 0, 1) };
    Ok(s)
}

/// llama.cpp's `llama_print_system_info()`: the CPU features ggml was compiled for
/// (`AVX2 = 1 | AVX512 = 1 | ...`), read once. Register the CPU backend first
/// (`llama_backend_init`) for the backend's features to be listed.
pub fn system_info() -> String {
    static INFO: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    INFO.get_or_init(|| {
        // SAFETY: no arguments; returns a pointer to a NUL-terminated static buffer that each
        // call rewrites. The OnceLock makes this the only call, and the text is copied out
        // before anything else can call it.
        let p = unsafe { sys::llama_print_system_info() };
        if p.is_null() {
            return String::new();
        }
        // SAFETY: non-null and NUL-terminated, as above; alive for the process.
        unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
    })
    .clone()
}
