//! Matrix products of quantized weights with f32 activations, and embedding row lookup.
//!
//! As in ggml, the activations are first converted to the type the weight's dot product pairs
//! with (`Q8_0`, `Q8_1`, `Q8_K`, or the float type itself) — once per matmul, and once for
//! several matmuls that share an input (Q, K and V) — then every output is one `dot`.
//! Both go through [`cpu::ops`], the fastest tier of kernels the host supports.

use crate::cpu;
use crate::quant::Ops;
use crate::{DType, KernelError};
use rayon::prelude::*;

/// A weight matrix in its stored form: `rows` rows of `cols` elements of `dtype`, each row
/// `dtype.row_bytes(cols)` bytes, rows back to back (a GGUF tensor with `ne = [cols, rows]`).
#[derive(Clone, Copy, Debug)]
pub struct WeightRef<'a> {
    /// Element type.
    pub dtype: DType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// `rows * row_bytes(cols)` bytes.
    pub data: &'a [u8],
}

impl<'a> WeightRef<'a> {
    /// Bytes per row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_size() * self.dtype.type_size()
    }

    /// The bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }

    fn ops(&self) -> Result<&'static Ops, KernelError> {
        cpu::ops(self.dtype).ok_or(KernelError::Unsupported { op: "matmul", dtype: self.dtype })
    }

    fn check(&self) -> Result<(), KernelError> {
        let expected = self.dtype.row_bytes(self.cols as u64).map(|b| b as usize * self.rows);
        if expected != Some(self.data.len()) {
            return Err(KernelError::Length { what: "weight bytes", expected: expected.unwrap_or(0), found: self.data.len() });
        }
        Ok(())
    }
}

/// A batch of activation rows converted to a dot-product type, in a buffer reused across calls
/// (so the decode loop allocates nothing once it has seen its largest batch).
#[derive(Debug, Default)]
pub struct Activations {
    dtype: Option<DType>,
    n: usize,
    cols: usize,
    data: Vec<u8>,
}

impl Activations {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Convert `x` (`[n, cols]`) into `dtype` rows, replacing what the buffer held.
    pub fn quantize(&mut self, dtype: DType, x: &[f32], n: usize, cols: usize) -> Result<(), KernelError> {
        if x.len() != n * cols {
            return Err(KernelError::Length { what: "activations", expected: n * cols, found: x.len() });
        }
        let row_bytes = dtype
            .row_bytes(cols as u64)
            .ok_or(KernelError::Length { what: "activation row (whole blocks)", expected: cols.next_multiple_of(dtype.block_size()), found: cols })?
            as usize;
        let q = cpu::ops(dtype).and_then(|o| o.quantize).ok_or(KernelError::Unsupported { op: "quantize", dtype })?;
        self.data.resize(n * row_bytes, 0);
        for (dst, src) in self.data.chunks_exact_mut(row_bytes).zip(x.chunks_exact(cols)) {
            q(src, dst)?;
        }
        (self.dtype, self.n, self.cols) = (Some(dtype), n, cols);
        Ok(())
    }

    /// The type the rows were converted to.
    pub fn dtype(&self) -> Option<DType> {
        self.dtype
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether no rows are held.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    fn row(&self, t: usize) -> &[u8] {
        let rb = self.data.len() / self.n.max(1);
        &self.data[t * rb..(t + 1) * rb]
    }
}

/// `out[t][r] = dot(w.row(r), a.row(t))`: `out` is `[a.len(), w.rows]`. `a` must have been
/// converted to the weight's activation type (`quant::ops(w.dtype).act`) with `w.cols` columns.
pub fn matmul(w: &WeightRef<'_>, a: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
    let ops = w.ops()?;
    w.check()?;
    if a.dtype != Some(ops.act) || a.cols != w.cols {
        return Err(KernelError::Length { what: "activation columns", expected: w.cols, found: a.cols });
    }
    if out.len() != a.n * w.rows {
        return Err(KernelError::Length { what: "matmul output", expected: a.n * w.rows, found: out.len() });
    }
    if w.rows == 0 || a.n == 0 {
        return Ok(());
    }
    // Decoding (one token): split the weight rows across threads, in large runs so each
    // thread streams its own part of the matrix. Prefill: split the tokens into one run per
    // thread and, within a run, take each weight row once for all its tokens, so the matrix
    // is read from memory once per thread instead of once per token (the run's activations
    // stay in cache).
    let threads = rayon::current_num_threads();
    if a.n == 1 {
        let act = a.row(0);
        let chunk = w.rows.div_ceil(threads * 4).max(16);
        out.par_chunks_mut(chunk).enumerate().try_for_each(|(c, o)| {
            for (i, y) in o.iter_mut().enumerate() {
                *y = (ops.dot)(w.row(c * chunk + i), act)?;
            }
            Ok(())
        })
    } else {
        let per = a.n.div_ceil(threads);
        out.par_chunks_mut(w.rows * per).enumerate().try_for_each(|(c, o)| {
            let t0 = c * per;
            let n = o.len() / w.rows;
            let mut four = [0f32; 4];
            for r in 0..w.rows {
                let wr = w.row(r);
                // Four tokens per weight-row pass; the row stays in registers and L1.
                let mut t = 0;
                while let Some(dot_x4) = ops.dot_x4.filter(|_| t + 4 <= n) {
                    let acts = [a.row(t0 + t), a.row(t0 + t + 1), a.row(t0 + t + 2), a.row(t0 + t + 3)];
                    dot_x4(wr, acts, &mut four)?;
                    for (i, &y) in four.iter().enumerate() {
                        o[(t + i) * w.rows + r] = y;
                    }
                    t += 4;
                }
                for t in t..n {
                    o[t * w.rows + r] = (ops.dot)(wr, a.row(t0 + t))?;
                }
            }
            Ok(())
        })
    }
}

/// Row `r` of `w` as floats (an embedding lookup); `out` has `w.cols` elements.
pub fn get_row(w: &WeightRef<'_>, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
    let ops = w.ops()?;
    w.check()?;
    if r >= w.rows {
        return Err(KernelError::Length { what: "row index (rows)", expected: w.rows, found: r });
    }
    (ops.dequantize)(w.row(r), out)
}
