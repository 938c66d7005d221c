//! Matrix products of quantized weights with f32 activations, and embedding row lookup.
//!
//! As in ggml, the activations are first converted to the type the weight's dot product pairs
//! with (`Q8_0`, `Q8_1`, `Q8_K`, or the float type itself) — once per matmul, and once for
//! several matmuls that share an input (Q, K and V) — then every output is one `dot` (or, for
//! a prefill batch, one output of the tier's register-tiled `gemm`). Both go through
//! [`cpu::ops`], the fastest tier of kernels the host supports, and give an output the same
//! bits: a token's results do not depend on the batch it runs in (see [`EXACT_BATCH_TOKENS`]).

use crate::cpu;
use crate::quant::Ops;
use crate::{DType, KernelError};
use rayon::prelude::*;
use std::ops::Range;

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
    /// The same matrix packed once for the chosen tier's GEMM ([`PackedWeight`]), which
    /// [`matmul`] reads instead of `data` where that tier has the kernels (same bits).
    pub packed: Option<&'a PackedWeight>,
}

/// A weight matrix repacked once (at load) into the layout the chosen tier's kernels read:
/// on AVX-512, `Q4_0`, `Q5_0`, `Q8_0`, `Q4_K` and `Q6_K` in panels of 16 rows whose stored quant
/// bytes are interleaved by row in groups of four, so that one vector holds the same columns
/// of sixteen rows (`cpu::nibble`). The copy is the size of the stored matrix (3% more for
/// `Q4_K`) and every batch size and row lookup reads it
/// ([`PackedWeight::replaces_stored`]), so the stored bytes can be released. Every output is
/// the bits the unpacked matrix gives.
#[derive(Debug)]
pub struct PackedWeight {
    dtype: DType,
    rows: usize,
    cols: usize,
    tier: cpu::Tier,
    panel_rows: usize,
    words: Vec<u32>,
}

impl PackedWeight {
    /// `w` packed for the chosen tier, or `None` where it has no packed kernels for
    /// `w.dtype`.
    pub fn new(w: &WeightRef<'_>) -> Result<Option<PackedWeight>, KernelError> {
        PackedWeight::new_on(cpu::tier(), w)
    }

    /// `w` packed for `tier` rather than the chosen one, for [`matmul_on`] with that tier
    /// (tests and benches comparing tiers): `None` where the host lacks the tier or the tier
    /// has no packed kernels for `w.dtype`.
    pub fn new_on(tier: cpu::Tier, w: &WeightRef<'_>) -> Result<Option<PackedWeight>, KernelError> {
        let Some(ops) = cpu::ops_for(tier, w.dtype) else { return Ok(None) };
        let (Some(pack), Some(_)) = (ops.pack, ops.gemm_packed) else { return Ok(None) };
        w.check()?;
        let words = pack(w.data, w.cols)?;
        Ok(Some(PackedWeight { dtype: w.dtype, rows: w.rows, cols: w.cols, tier, panel_rows: ops.panel_rows, words }))
    }

    /// The packed words, as the tier's [`Ops::gemm_packed`] takes them (benchmarks).
    pub fn words(&self) -> &[u32] {
        &self.words
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.words.len() * 4
    }

    /// Whether this copy is all the chosen tier reads of the matrix (every batch size, and
    /// row lookups): then the stored bytes it was made from can be released.
    pub fn replaces_stored(&self) -> bool {
        cpu::ops_for(self.tier, self.dtype).is_some_and(|o| o.packed_decode && o.packed_row.is_some())
    }

    /// The row unpacker of `ops` (the tier's), if it reads this copy of `w`.
    fn row_kernel(&self, ops: &Ops, w: &WeightRef<'_>) -> Option<crate::quant::PackedRow> {
        ops.packed_row.filter(|_| self.kernel(ops, w).is_some())
    }

    /// The packed matmul of `ops`, if these are `w`'s weights packed for `ops`' tier.
    fn kernel(&self, ops: &Ops, w: &WeightRef<'_>) -> Option<crate::quant::GemmPacked> {
        let same = (self.dtype, self.rows, self.cols) == (w.dtype, w.rows, w.cols)
            && cpu::ops_for(self.tier, self.dtype).is_some_and(|o| std::ptr::eq(o, ops));
        ops.gemm_packed.filter(|_| same)
    }
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
            return Err(KernelError::Length {
                what: "weight bytes",
                expected: expected.unwrap_or(0),
                found: self.data.len(),
            });
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
        let row_bytes = dtype.row_bytes(cols as u64).ok_or(KernelError::Length {
            what: "activation row (whole blocks)",
            expected: cols.next_multiple_of(dtype.block_size()),
            found: cols,
        })? as usize;
        let q = cpu::ops(dtype).and_then(|o| o.activate).ok_or(KernelError::Unsupported { op: "quantize", dtype })?;
        self.data.resize(n * row_bytes, 0);
        if n >= PARALLEL_QUANTIZE_ROWS {
            // A prefill batch: the rows are independent, and done one by one they would be a
            // serial stretch between parallel matmuls.
            self.data
                .par_chunks_exact_mut(row_bytes)
                .zip(x.par_chunks_exact(cols))
                .try_for_each(|(dst, src)| q(src, dst))?;
        } else {
            for (dst, src) in self.data.chunks_exact_mut(row_bytes).zip(x.chunks_exact(cols)) {
                q(src, dst)?;
            }
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

/// [`matmul`] of each `(weight, out)` pair with the same activations (Q, K and V, or gate and
/// up). For one token the products run as one parallel pass, so that the threads meet once
/// rather than once per weight (the matrices of a small model's decode step are each a few
/// tens of microseconds of work); for a batch, one after another. Every output is what
/// [`matmul`] gives.
pub fn matmul_many(jobs: &mut [(WeightRef<'_>, &mut [f32])], a: &Activations) -> Result<(), KernelError> {
    if a.n == 1 && jobs.len() > 1 {
        jobs.par_iter_mut().try_for_each(|(w, out)| matmul(w, a, out))
    } else {
        jobs.iter_mut().try_for_each(|(w, out)| matmul(w, a, out))
    }
}

/// `out[t][r] = dot(w.row(r), a.row(t))`: `out` is `[a.len(), w.rows]`. `a` must have been
/// converted to the weight's activation type (`quant::ops(w.dtype).act`) with `w.cols` columns.
pub fn matmul(w: &WeightRef<'_>, a: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
    matmul_with(w.ops()?, w, a, out)
}

/// [`matmul`] through the kernels of `tier` rather than the chosen one (for tests and benches
/// comparing tiers): `Unsupported` if the host lacks the tier or pupil has no kernels for the
/// weight type.
pub fn matmul_on(tier: cpu::Tier, w: &WeightRef<'_>, a: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
    let ops = cpu::ops_for(tier, w.dtype).ok_or(KernelError::Unsupported { op: "matmul", dtype: w.dtype })?;
    matmul_with(ops, w, a, out)
}

fn matmul_with(ops: &Ops, w: &WeightRef<'_>, a: &Activations, out: &mut [f32]) -> Result<(), KernelError> {
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
    let threads = rayon::current_num_threads();
    let packed = w.packed.filter(|_| a.n >= 2 || ops.packed_decode);
    if let Some((p, gemm_packed)) = packed.and_then(|p| p.kernel(ops, w).map(|k| (p, k))) {
        // Packed weights and a batch: the GEMM straight from the packed panels, no decoding.
        // One token reads them too where they stream as fast as the stored ones
        // (`packed_decode`: the nibble panels); otherwise it stays on `dot_rows` over the
        // mapped weights (Q8_0's byte panels, 89 MB, 2 threads: 1.7 ms against 2.4 ms packed;
        // from two tokens on, the packed GEMM wins: 2.6 ms against 3.5 for two, 4.8 against
        // 11.3 for eight).
        let words = p.words.len() / p.rows.div_ceil(p.panel_rows);
        if a.n < ROW_SPLIT_BELOW {
            return split_rows(w.rows, p.panel_rows, a.n, out, threads, |rows, part| {
                let panels = rows.start / p.panel_rows..rows.end.div_ceil(p.panel_rows);
                gemm_packed(
                    &p.words[panels.start * words..panels.end * words],
                    rows.len(),
                    w.cols,
                    &a.data,
                    a.n,
                    part,
                    rows.len(),
                )
            });
        }
        let per = a.n.div_ceil(threads);
        let act_bytes = a.data.len() / a.n;
        return out.par_chunks_mut(w.rows * per).enumerate().try_for_each(|(c, o)| {
            let n = o.len() / w.rows;
            gemm_packed(&p.words, w.rows, w.cols, &a.data[c * per * act_bytes..][..n * act_bytes], n, o, w.rows)
        });
    }
    // Decoding (one token): split the weight rows across threads, in large runs so each
    // thread streams its own part of the matrix, one `dot_rows` call per run. Prefill of at
    // least `gemm_from` tokens: one run of tokens per thread through the tier's tiled GEMM.
    // Smaller batches: one run of tokens per thread and, within a run, each weight row once
    // per block of tokens (`dot_x4`, four at a time, where the tier has it), so the matrix is
    // read from memory once per thread instead of once per token. All three give every
    // output the tier's `dot` bit for bit (see `EXACT_BATCH_TOKENS`).
    if a.n == 1 {
        let act = a.row(0);
        let rb = w.row_bytes();
        let chunk = w.rows.div_ceil(threads * 4).max(16);
        out.par_chunks_mut(chunk).enumerate().try_for_each(|(c, o)| {
            let r0 = c * chunk;
            if let Some(dot_rows) = ops.dot_rows {
                // One call for the whole run of rows: no per-row dispatch.
                return dot_rows(&w.data[r0 * rb..(r0 + o.len()) * rb], act, o);
            }
            for (i, y) in o.iter_mut().enumerate() {
                *y = (ops.dot)(w.row(r0 + i), act)?;
            }
            Ok(())
        })
    } else if let Some(gemm) = ops.gemm.filter(|_| a.n >= ops.gemm_from && a.n < ROW_SPLIT_BELOW) {
        // A decode step of several sequences: too few tokens to give each thread its own, so
        // the threads split the weight rows and each runs the GEMM over all the tokens: each
        // weight row is read from memory once per step and decoded once for all its tokens.
        let rb = w.row_bytes();
        split_rows(w.rows, 16, a.n, out, threads, |rows, part| {
            gemm(&w.data[rows.start * rb..rows.end * rb], &a.data, a.n, part, rows.len())
        })
    } else if let Some(gemm) = ops.gemm.filter(|_| a.n >= ops.gemm_from) {
        // Prefill of a batch worth tiling: each thread takes a run of tokens against every
        // weight row, the tier's register-tiled GEMM.
        let per = a.n.div_ceil(threads);
        let act_bytes = a.data.len() / a.n;
        out.par_chunks_mut(w.rows * per).enumerate().try_for_each(|(c, o)| {
            let n = o.len() / w.rows;
            gemm(w.data, &a.data[c * per * act_bytes..][..n * act_bytes], n, o, w.rows)
        })
    } else {
        let per = a.n.div_ceil(threads);
        let act_bytes = a.data.len() / a.n;
        // Cache blocking: a block of weight rows (kept in L2) against a block of the run's
        // tokens (kept in L1), so each activation row is reused across the whole row block
        // before it leaves L1. The token block is a multiple of four for `dot_x4`.
        let token_block = (ACT_BLOCK_BYTES / act_bytes.max(1)).max(4) / 4 * 4;
        let row_block = (WEIGHT_BLOCK_BYTES / w.row_bytes().max(1)).max(1);
        let rb = w.row_bytes();
        out.par_chunks_mut(w.rows * per).enumerate().try_for_each(|(c, o)| {
            let t0 = c * per;
            let n = o.len() / w.rows;
            if let (None, Some(dot_rows)) = (ops.dot_x4, ops.dot_rows) {
                // Without `dot_x4` (the types whose dots keep the GEMM's order): the tier's
                // multi-row kernel per token over a row block, which stays in L2 for the
                // tokens after the first.
                for r0 in (0..w.rows).step_by(row_block) {
                    let r1 = (r0 + row_block).min(w.rows);
                    for t in 0..n {
                        dot_rows(&w.data[r0 * rb..r1 * rb], a.row(t0 + t), &mut o[t * w.rows + r0..t * w.rows + r1])?;
                    }
                }
                return Ok(());
            }
            let mut four = [0f32; 4];
            for r0 in (0..w.rows).step_by(row_block) {
                for tb in (0..n).step_by(token_block) {
                    let t_end = (tb + token_block).min(n);
                    for r in r0..(r0 + row_block).min(w.rows) {
                        let wr = w.row(r);
                        // Four tokens per weight-row pass; the row stays in registers and L1.
                        let mut t = tb;
                        while let Some(dot_x4) = ops.dot_x4.filter(|_| t + 4 <= t_end) {
                            let acts = [a.row(t0 + t), a.row(t0 + t + 1), a.row(t0 + t + 2), a.row(t0 + t + 3)];
                            dot_x4(wr, acts, &mut four)?;
                            for (i, &y) in four.iter().enumerate() {
                                o[(t + i) * w.rows + r] = y;
                            }
                            t += 4;
                        }
                        for t in t..t_end {
                            o[t * w.rows + r] = (ops.dot)(wr, a.row(t0 + t))?;
                        }
                    }
                }
            }
            Ok(())
        })
    }
}

/// A matmul of a batch of fewer than [`ROW_SPLIT_BELOW`] tokens through a GEMM, `out` being
/// `[n, rows]`: too few tokens to give each thread its own, so the threads split the weight
/// rows, in runs that are a multiple of `align` (a panel) and about four per thread, and each
/// runs `gemm(rows, part)` over all the tokens into its thread's scratch (`part`: `[n, run]`),
/// then copies it to its columns of `out`. Each weight row is read once per call and decoded
/// once for all its tokens; the GEMM forms each output in the canonical order whatever rows
/// and tokens it is given, so this changes no bit.
fn split_rows(
    rows: usize,
    align: usize,
    n: usize,
    out: &mut [f32],
    threads: usize,
    gemm: impl Fn(Range<usize>, &mut [f32]) -> Result<(), KernelError> + Sync,
) -> Result<(), KernelError> {
    let run = rows.div_ceil(threads * 4).next_multiple_of(align.max(16));
    let dst = SendPtr(out.as_mut_ptr());
    (0..rows.div_ceil(run)).into_par_iter().try_for_each(|c| {
        let (r0, r1) = (c * run, ((c + 1) * run).min(rows));
        let m = r1 - r0;
        SPLIT_SCRATCH.with_borrow_mut(|buf| {
            // Grows to the largest run once; no allocation after that.
            if buf.len() < n * m {
                buf.resize(n * m, 0.0);
            }
            let part = &mut buf[..n * m];
            gemm(r0..r1, part)?;
            for (t, src) in part.chunks_exact(m).enumerate() {
                // SAFETY: `out` is `[n, rows]` (checked by the caller) and stays borrowed for
                // this whole parallel loop, in which only these copies touch it; each run
                // writes columns `r0..r1` of each token's row, and runs do not overlap, so no
                // two threads write the same element and no reference to `out` is made here.
                unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst.get().add(t * rows + r0), m) };
            }
            Ok(())
        })
    })
}

/// A pointer that the threads of [`split_rows`] share to write disjoint parts of one
/// output.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the pointer is only written through at elements no other thread writes (see
// `split_rows`), while the buffer it points into outlives the parallel loop.
unsafe impl Send for SendPtr {}
// SAFETY: as for `Send`: shared, it is only used for those disjoint writes.
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// The pointer (a method, so that closures capture the `Sync` wrapper, not the field).
    fn get(self) -> *mut f32 {
        self.0
    }
}

thread_local! {
    /// Per thread: one run's outputs in [`split_rows`].
    static SPLIT_SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Batches of fewer tokens than this go through [`split_rows`] (when the type has a
/// GEMM and the batch is worth it, [`Ops::gemm_from`]); larger ones give each thread a run
/// of tokens, enough for whole tiles.
const ROW_SPLIT_BELOW: usize = 32;

/// Batches from this many rows on are quantized in parallel.
const PARALLEL_QUANTIZE_ROWS: usize = 16;
/// The largest batch in which every token's outputs are bit for bit those it gets alone (one
/// token, the decode path): every batch, now that all paths share one float order per (row,
/// token) (checked for every type and tier by `kernels/tests/batch_invariance.rs`). Kept so
/// that callers that capped batches for exactness (speculative decoding's verification) need
/// no cap.
pub const EXACT_BATCH_TOKENS: usize = usize::MAX;
/// Prefill cache blocking: the activation rows of a token block fill about this much (L1).
const ACT_BLOCK_BYTES: usize = 16 << 10;
/// Prefill cache blocking: the weight rows of a row block fill about this much (L2).
const WEIGHT_BLOCK_BYTES: usize = 128 << 10;

/// Row `r` of `w` as floats (an embedding lookup); `out` has `w.cols` elements.
pub fn get_row(w: &WeightRef<'_>, r: usize, out: &mut [f32]) -> Result<(), KernelError> {
    let ops = w.ops()?;
    w.check()?;
    if r >= w.rows {
        return Err(KernelError::Length { what: "row index (rows)", expected: w.rows, found: r });
    }
    if let Some((p, unpack)) = w.packed.and_then(|p| p.row_kernel(ops, w).map(|k| (p, k))) {
        // The row from the packed copy, a few blocks at a time through a buffer on the stack
        // (aligned for any block type): no allocation on the decode path.
        if out.len() != w.cols {
            return Err(KernelError::Length { what: "row output (columns)", expected: w.cols, found: out.len() });
        }
        let mut buf = [0u64; 128];
        let (size, bytes) = (w.dtype.block_size(), w.dtype.type_size());
        let per = (buf.len() * 8 / bytes).max(1);
        let nb = w.cols / size;
        for first in (0..nb).step_by(per) {
            let k = per.min(nb - first);
            let chunk = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..k * bytes];
            unpack(&p.words, w.cols, r, first, chunk)?;
            (ops.dequantize)(chunk, &mut out[first * size..][..k * size])?;
        }
        return Ok(());
    }
    (ops.dequantize)(w.row(r), out)
}
