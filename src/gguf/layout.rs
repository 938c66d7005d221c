//! Checks that every tensor's data lies inside the file, aligned, and apart from the others.
//!
//! These are the checks that make zero-copy access safe to hand out: after them, slicing
//! `data_offset + offset .. + n_bytes` out of the file can never go out of bounds. llama.cpp
//! is stricter (it requires tensors packed in table order with minimal padding); pupil accepts
//! any aligned, non-overlapping placement, which the GGUF spec allows.

use super::{GgufError, TensorInfo};

/// Validates the data ranges of `tensors` for a data section at `data_offset` of a file of
/// `file_size` bytes. `tensors` must have passed the shape checks (exact `n_bytes`).
pub(crate) fn check(tensors: &[TensorInfo], data_offset: u64, alignment: u64, file_size: u64) -> Result<(), GgufError> {
    // (start, end, index) of every tensor that occupies bytes; empty tensors overlap nothing.
    let mut ranges = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        if t.offset % alignment != 0 {
            return Err(GgufError::Misaligned { tensor: t.name.clone(), offset: t.offset, alignment });
        }
        let overflow = || GgufError::Overflow { tensor: t.name.clone() };
        let start = data_offset.checked_add(t.offset).ok_or_else(overflow)?;
        let end = start.checked_add(t.n_bytes()).ok_or_else(overflow)?;
        if end > file_size {
            return Err(GgufError::OutOfBounds { tensor: t.name.clone(), start, end, file_size });
        }
        if end > start {
            ranges.push((start, end, i));
        }
    }
    ranges.sort_unstable();
    // Sorted by start, a range overlaps an earlier one iff it starts before the furthest end
    // seen so far; remember which tensor reached that end to name it.
    let mut furthest: Option<(u64, usize)> = None;
    for (start, end, i) in ranges {
        match furthest {
            Some((far_end, j)) if start < far_end => {
                return Err(GgufError::Overlap { first: tensors[j].name.clone(), second: tensors[i].name.clone() });
            }
            Some((far_end, _)) if far_end >= end => {}
            _ => furthest = Some((end, i)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pupil_kernels::DType;

    fn t(name: &str, n: u64, offset: u64) -> TensorInfo {
        TensorInfo { name: name.into(), dims: vec![n], dtype: DType::I8, offset }
    }

    #[test]
    fn accepts_gaps_any_order_and_empty_tensors_anywhere_inside() {
        let ts = [t("b", 32, 64), t("a", 32, 0), t("empty", 0, 32), t("empty2", 0, 96)];
        check(&ts, 32, 32, 128).unwrap();
    }

    #[test]
    fn overlap_names_both_tensors() {
        let ts = [t("a", 64, 0), t("b", 32, 32)];
        let err = check(&ts, 0, 32, 1000).unwrap_err();
        assert_eq!(err.to_string(), "tensors 'a' and 'b' have overlapping data");
        // A range nested inside an earlier long one, after a short one, is still caught.
        let ts = [t("long", 256, 0), t("short", 32, 32), t("nested", 32, 128)];
        assert!(
            matches!(check(&ts, 0, 32, 1000), Err(GgufError::Overlap { first, second }) if first == "long" && second == "short")
        );
        let ts = [t("long", 256, 0), t("nested", 32, 128)];
        assert!(matches!(check(&ts, 0, 32, 1000), Err(GgufError::Overlap { .. })));
    }

    #[test]
    fn bounds_and_alignment() {
        let err = check(&[t("x", 64, 32)], 32, 32, 100).unwrap_err();
        assert_eq!(err.to_string(), "tensor 'x': data 64..128 extends past end of file (100 bytes)");
        assert!(matches!(check(&[t("x", 0, 96)], 32, 32, 100), Err(GgufError::OutOfBounds { .. })));
        assert!(matches!(check(&[t("x", 1, 16)], 32, 32, 100), Err(GgufError::Misaligned { offset: 16, .. })));
        assert!(matches!(check(&[t("x", 1, u64::MAX - 31)], 64, 32, 100), Err(GgufError::Overflow { .. })));
    }
}
