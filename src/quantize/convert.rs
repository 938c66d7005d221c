//! One tensor from its input type to its output type: dequantize (or read F32), check, and
//! quantize with the reference quantizers, a slab of rows at a time so memory stays bounded
//! whatever the tensor's size.
//!
//! Rows are independent (every type's blocks lie within a row), so slabs are split across
//! rayon's threads and the bytes do not depend on the thread count, as in llama.cpp, whose
//! `ggml_quantize_chunk` without an importance matrix runs the same `quantize_row_*_ref`.

use pupil_kernels::{DType, quant};
use rayon::prelude::*;

use super::{QuantizeError, TensorPlan};

/// Floats per slab (16 MiB of f32): big enough to keep every core busy, small enough not to
/// matter beside the model.
const SLAB_ELEMS: usize = 1 << 22;

/// Elements per parallel task, as llama.cpp's `min_chunk_size`: enough to amortise the
/// scheduling of rows as short as 256.
const TASK_ELEMS: usize = 32 * 512;

/// Reusable buffers for [`convert`].
#[derive(Default)]
pub(crate) struct Buffers {
    floats: Vec<f32>,
    /// Output blocks; `u64` so that every block type's alignment holds.
    out: Vec<u64>,
}

/// Converts `src` (the tensor's input bytes) to `t.to`, handing the output to `sink` one slab
/// at a time.
pub(crate) fn convert(
    t: &TensorPlan,
    src: &[u8],
    bufs: &mut Buffers,
    mut sink: impl FnMut(&[u8]) -> Result<(), QuantizeError>,
) -> Result<(), QuantizeError> {
    let no_kernel = |op, dtype| QuantizeError::NoKernel { tensor: t.name.clone(), op, dtype };
    let dequantize = quant::ops(t.from).ok_or_else(|| no_kernel("dequantize", t.from))?.dequantize;
    let quantize = quant::ops(t.to).and_then(|o| o.quantize).ok_or_else(|| no_kernel("quantize", t.to))?;
    let cols = t.dims[0] as usize;
    let (in_rb, out_rb) = (row_bytes(t.from, cols), row_bytes(t.to, cols));
    let rows = (t.n_elements() as usize).checked_div(cols).unwrap_or(0);
    let slab_rows = (SLAB_ELEMS / cols.max(1)).max(1);
    let task_rows = (TASK_ELEMS / cols.max(1)).max(1);

    for r0 in (0..rows).step_by(slab_rows) {
        let n = slab_rows.min(rows - r0);
        let input = &src[r0 * in_rb..(r0 + n) * in_rb];

        let floats: &[f32] = match (t.from, bytemuck::try_cast_slice::<u8, f32>(input)) {
            (DType::F32, Ok(x)) => x,
            _ => {
                bufs.floats.resize(n * cols, 0.0);
                let out = &mut bufs.floats[..n * cols];
                out.par_chunks_mut(task_rows * cols)
                    .zip(input.par_chunks(task_rows * in_rb))
                    .try_for_each(|(dst, src)| dequantize(src, dst))?;
                out
            }
        };
        if let Some(row) = floats.par_chunks(cols).position_first(|r| r.iter().any(|v| !v.is_finite())) {
            return Err(QuantizeError::NonFinite { tensor: t.name.clone(), row: (r0 + row) as u64, dtype: t.from });
        }

        bufs.out.resize((n * out_rb).div_ceil(8), 0);
        let out = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut bufs.out)[..n * out_rb];
        out.par_chunks_mut(task_rows * out_rb)
            .zip(floats.par_chunks(task_rows * cols))
            .try_for_each(|(dst, src)| quantize(src, dst))?;
        // Finite floats can still overflow a 16-bit float; llama.cpp's `ggml_validate_row_data`
        // rejects the result.
        if let Some(row) = overflowed(t.to, out, out_rb) {
            return Err(QuantizeError::NonFinite { tensor: t.name.clone(), row: (r0 + row) as u64, dtype: t.to });
        }
        sink(out)?;
    }
    Ok(())
}

fn row_bytes(t: DType, cols: usize) -> usize {
    t.row_bytes(cols as u64).unwrap_or(0) as usize
}

/// The first row of 16-bit floats holding an infinity or NaN.
fn overflowed(t: DType, out: &[u8], row_bytes: usize) -> Option<usize> {
    let exponent: u16 = match t {
        DType::F16 => 0x7C00,
        DType::BF16 => 0x7F80,
        _ => return None,
    };
    out.par_chunks(row_bytes)
        .position_first(|row| row.chunks_exact(2).any(|b| u16::from_le_bytes([b[0], b[1]]) & exponent == exponent))
}
