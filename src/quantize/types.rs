//! The file types pupil quantizes to, by the names `llama-quantize` takes, and the tensor type
//! each starts from (`llama_ftype_get_default_type` in llama.cpp's `src/llama-quant.cpp`).

use pupil_kernels::DType;

use super::QuantizeError;
use crate::gguf::FileType;

/// The names pupil accepts, as `llama-quantize` spells them (its `QUANT_OPTIONS` table),
/// with the file type each means. `Q3_K`, `Q4_K` and `Q5_K` are llama-quantize's aliases of
/// the `_M` recipes, not "everything in that type" (that is `--pure`).
pub const TYPE_NAMES: &[(&str, FileType)] = &[
    ("Q4_0", FileType::Q4_0),
    ("Q4_1", FileType::Q4_1),
    ("Q5_0", FileType::Q5_0),
    ("Q5_1", FileType::Q5_1),
    ("Q2_K", FileType::Q2_K),
    ("Q3_K", FileType::Q3_K_M),
    ("Q3_K_S", FileType::Q3_K_S),
    ("Q3_K_M", FileType::Q3_K_M),
    ("Q3_K_L", FileType::Q3_K_L),
    ("Q4_K", FileType::Q4_K_M),
    ("Q4_K_S", FileType::Q4_K_S),
    ("Q4_K_M", FileType::Q4_K_M),
    ("Q5_K", FileType::Q5_K_M),
    ("Q5_K_S", FileType::Q5_K_S),
    ("Q5_K_M", FileType::Q5_K_M),
    ("Q6_K", FileType::Q6_K),
    ("Q8_0", FileType::Q8_0),
    ("F16", FileType::F16),
    ("BF16", FileType::BF16),
    ("F32", FileType::F32),
];

/// The tensor type a file type quantizes matrices to before its recipe adjusts them, or
/// `None` if pupil cannot make that file type.
pub fn default_type(ftype: FileType) -> Option<DType> {
    use FileType as F;
    Some(match ftype {
        F::F32 => DType::F32,
        F::F16 => DType::F16,
        F::BF16 => DType::BF16,
        F::Q4_0 => DType::Q4_0,
        F::Q4_1 => DType::Q4_1,
        F::Q5_0 => DType::Q5_0,
        F::Q5_1 => DType::Q5_1,
        F::Q8_0 => DType::Q8_0,
        F::Q2_K => DType::Q2_K,
        F::Q3_K_S | F::Q3_K_M | F::Q3_K_L => DType::Q3_K,
        F::Q4_K_S | F::Q4_K_M => DType::Q4_K,
        F::Q5_K_S | F::Q5_K_M => DType::Q5_K,
        F::Q6_K => DType::Q6_K,
        // Q2_K_S needs an importance matrix; the i-quants, ternary and FP4 types need
        // quantizers pupil does not have.
        _ => return None,
    })
}

/// The file type named `name` (case-insensitive, or llama.cpp's numeric id), if pupil can
/// make it.
///
/// ```
/// use pupil::gguf::FileType;
/// use pupil::quantize::parse_type;
/// assert_eq!(parse_type("q4_k_m").unwrap(), FileType::Q4_K_M);
/// assert_eq!(parse_type("Q4_K").unwrap(), FileType::Q4_K_M);
/// assert_eq!(parse_type("15").unwrap(), FileType::Q4_K_M);
/// assert!(parse_type("Q4_K_X").unwrap_err().to_string().contains("Q4_K_M"));
/// ```
pub fn parse_type(name: &str) -> Result<FileType, QuantizeError> {
    let valid = || TYPE_NAMES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let trimmed = name.trim();
    let found = TYPE_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(trimmed))
        .map(|&(_, t)| t)
        .or_else(|| trimmed.parse::<u32>().ok().and_then(FileType::from_id))
        .or_else(|| FileType::ALL.iter().copied().find(|t| t.name().eq_ignore_ascii_case(trimmed)));
    match found {
        Some(t) if default_type(t).is_some() => Ok(t),
        Some(t) => Err(QuantizeError::UnsupportedType { name: t.name().to_owned(), valid: valid() }),
        None => Err(QuantizeError::UnknownType { name: name.to_owned(), valid: valid() }),
    }
}

/// Whether a type is block-quantized (ggml's `ggml_is_quantized`): floats and integers are
/// not.
pub(crate) fn is_quantized(t: DType) -> bool {
    !matches!(t, DType::F32 | DType::F16 | DType::BF16 | DType::F64 | DType::I8 | DType::I16 | DType::I32 | DType::I64)
}
