//! Tensor infos: name, shape, element type and data offset, and the size arithmetic that
//! every reader and writer of them must agree on.
//!
//! ```
//! use pupil::gguf::TensorInfo;
//! use pupil::kernels::DType;
//! let t = TensorInfo { name: "blk.0.ffn_up.weight".into(), dims: vec![2048, 8192], dtype: DType::Q4_K, offset: 0 };
//! assert_eq!(t.n_elements(), 2048 * 8192);
//! assert_eq!(t.n_bytes(), 2048 / 256 * 144 * 8192);
//! ```

use std::collections::HashSet;

use pupil_kernels::DType;

use super::GgufError;
use super::cursor::Cursor;

/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;

/// Longest tensor name in bytes: ggml stores names in a 64-byte C buffer with a NUL
/// (`GGML_MAX_NAME`), and llama.cpp rejects longer ones, so such a file is not portable.
pub const MAX_NAME_LEN: u64 = 63;

/// Smallest encoding of one tensor info: name length, n_dims, one dim, type, offset.
pub(crate) const MIN_INFO_SIZE: u64 = 8 + 4 + 8 + 4 + 8;

/// One tensor's entry in the file's tensor table.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape, `ne[0]` (the contiguous row dimension) first; 1 to 4 entries.
    pub dims: Vec<u64>,
    /// Element type.
    pub dtype: DType,
    /// Offset of the data, relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (saturating at `u64::MAX` for a shape that was never validated;
    /// infos from [`Gguf::parse`](super::Gguf::parse) never saturate).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).unwrap_or(u64::MAX)
    }

    /// Bytes of data: `row_bytes(ne[0]) * ne[1] * ne[2] * ne[3]` (saturating at `u64::MAX` for
    /// a shape that was never validated; infos from [`Gguf::parse`](super::Gguf::parse) are
    /// exact).
    pub fn n_bytes(&self) -> u64 {
        byte_size(&self.name, self.dtype, &self.dims).unwrap_or(u64::MAX)
    }
}

/// Checks a shape the way llama.cpp's `gguf.cpp` does (1..=4 dims, each and their product at
/// most `i64::MAX`, whole blocks per row) and returns its size in bytes.
pub(crate) fn byte_size(name: &str, dtype: DType, dims: &[u64]) -> Result<u64, GgufError> {
    let bad_dims =
        || GgufError::BadDims { tensor: name.to_owned(), n_dims: u32::try_from(dims.len()).unwrap_or(u32::MAX) };
    let overflow = || GgufError::Overflow { tensor: name.to_owned() };
    let (&ne0, rest) = dims.split_first().ok_or_else(bad_dims)?;
    if dims.len() > MAX_DIMS {
        return Err(bad_dims());
    }
    for (j, &d) in dims.iter().enumerate() {
        if d > i64::MAX as u64 {
            return Err(GgufError::TooLarge {
                what: format!("dimension {j} of tensor '{name}'"),
                value: d,
                limit: i64::MAX as u64,
            });
        }
    }
    // A zero dimension makes an empty tensor, which llama.cpp accepts; its other dims may then
    // be anything up to i64::MAX, as there.
    let elements = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)?;
    if elements > i64::MAX as u64 {
        return Err(overflow());
    }
    let row = match dtype.row_bytes(ne0) {
        Some(row) => row,
        None if ne0 % dtype.block_size() as u64 != 0 => {
            return Err(GgufError::PartialBlock { tensor: name.to_owned(), dtype, ne0 });
        }
        None => return Err(overflow()),
    };
    rest.iter().try_fold(row, |acc, &d| acc.checked_mul(d)).ok_or_else(overflow)
}

/// Reads tensor info number `index`, rejecting a name already in `seen`.
pub(crate) fn read_info(c: &mut Cursor<'_>, index: u64, seen: &mut HashSet<String>) -> Result<TensorInfo, GgufError> {
    let name = c.string(MAX_NAME_LEN, || format!("name of tensor {index}"))?;
    if !seen.insert(name.clone()) {
        return Err(GgufError::DuplicateTensor { name });
    }
    let n_dims = c.u32(|| format!("dimension count of tensor '{name}'"))?;
    if !(1..=MAX_DIMS as u32).contains(&n_dims) {
        return Err(GgufError::BadDims { tensor: name, n_dims });
    }
    let raw = c.take(u64::from(n_dims) * 8, || format!("dims of tensor '{name}'"))?;
    let dims: Vec<u64> = raw
        .chunks_exact(8)
        .map(|b| {
            let mut a = [0; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
        .collect();
    let id = c.u32(|| format!("type of tensor '{name}'"))?;
    let dtype = DType::from_id(id).ok_or_else(|| GgufError::UnknownType { tensor: name.clone(), id })?;
    byte_size(&name, dtype, &dims)?;
    let offset = c.u64(|| format!("data offset of tensor '{name}'"))?;
    Ok(TensorInfo { name, dims, dtype, offset })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(dtype: DType, dims: &[u64]) -> Result<u64, GgufError> {
        byte_size("t", dtype, dims)
    }

    #[test]
    fn sizes_follow_block_geometry() {
        assert_eq!(size(DType::F32, &[3, 5]).unwrap(), 60);
        assert_eq!(size(DType::Q8_0, &[64, 2, 3]).unwrap(), 68 * 6);
        assert_eq!(size(DType::Q4_K, &[256, 1, 1, 7]).unwrap(), 144 * 7);
    }

    #[test]
    fn zero_sized_tensors_are_accepted_as_in_llama_cpp() {
        assert_eq!(size(DType::F32, &[0]).unwrap(), 0);
        assert_eq!(size(DType::Q4_0, &[32, 0, i64::MAX as u64]).unwrap(), 0);
    }

    #[test]
    fn shape_errors_name_the_problem() {
        assert!(matches!(size(DType::F32, &[]), Err(GgufError::BadDims { n_dims: 0, .. })));
        assert!(matches!(size(DType::F32, &[1; 5]), Err(GgufError::BadDims { n_dims: 5, .. })));
        assert!(matches!(size(DType::Q4_0, &[33]), Err(GgufError::PartialBlock { ne0: 33, dtype: DType::Q4_0, .. })));
        assert!(matches!(size(DType::F32, &[1 << 32, 1 << 31]), Err(GgufError::Overflow { .. })));
        assert!(matches!(size(DType::F32, &[u64::MAX]), Err(GgufError::TooLarge { value: u64::MAX, .. })));
        // Elements fit i64 but bytes do not fit u64.
        assert!(matches!(size(DType::F64, &[1 << 62]), Err(GgufError::Overflow { .. })));
    }

    #[test]
    fn unvalidated_infos_saturate_instead_of_panicking() {
        let t = TensorInfo { name: "t".into(), dims: vec![u64::MAX, 3], dtype: DType::F32, offset: 0 };
        assert_eq!(t.n_elements(), u64::MAX);
        assert_eq!(t.n_bytes(), u64::MAX);
    }
}
