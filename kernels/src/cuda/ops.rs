//! The forward pass's operations on the GPU, one launcher per kernel. Each checks its device
//! buffers against the shapes it is given before queueing anything, so a kernel never reads
//! or writes past a buffer. Buffers are row-major `[rows, cols]` of f32 unless noted.

use std::ffi::c_void;

use cudarc::cublas::sys as blas;
use cudarc::driver::CudaSlice;

use super::GpuError;
use super::device::{Gpu, check};
use crate::DType;
use crate::ops::WeightRef;

/// Most tokens the mat-vec kernels take in one launch (their per-token accumulators live in
/// registers); larger batches go through the dequantize + cuBLAS GEMM.
pub const MAX_MATVEC_TOKENS: usize = 8;

/// Rows of one part of a span in [`Gpu::attend`] (`ATTEND_CHUNK` in attention.cu).
pub const ATTENTION_CHUNK: usize = 256;

/// Bytes of one q8_1 block (32 activations: f16 scale, f16 scaled sum, 32 × i8).
pub const Q8_1_BYTES: usize = 36;

/// Threads per block of the grid-stride kernels.
const THREADS: u32 = 256;

/// `launch!(gpu, kernel, grid, block, shared, [args...])`: each argument is a value of the
/// kernel's C parameter type (`u64` pointer, `i32`, `f32`), kept alive for the call.
macro_rules! launch {
    ($gpu:expr, $f:ident, $grid:expr, $block:expr, $shared:expr, [$($a:expr),* $(,)?]) => {
        $gpu.launch(&$gpu.k.$f, $grid, $block, $shared, &mut [$((&$a) as *const _ as *mut c_void),*])
    };
}

/// `x` as a kernel's `int`, or a shape error if it does not fit.
fn int(op: &'static str, what: &'static str, x: usize) -> Result<i32, GpuError> {
    i32::try_from(x).map_err(|_| GpuError::Shape { op, what, expected: i32::MAX as usize, found: x })
}

/// Blocks for a grid-stride kernel over `count` items.
fn stride_grid(count: usize) -> (u32, u32, u32) {
    (count.div_ceil(THREADS as usize).min(1 << 16) as u32, 1, 1)
}

/// A weight matrix on the device, in its GGUF blocks as stored in the file.
#[derive(Debug)]
pub struct GpuWeight {
    /// Element type.
    pub dtype: DType,
    /// Output rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
    data: CudaSlice<u8>,
}

impl GpuWeight {
    /// Device bytes.
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// Whether the GPU has a mat-vec (and a dequantize for the GEMM) for `dtype`.
pub fn supports(dtype: DType) -> bool {
    use DType::*;
    matches!(dtype, Q4_0 | Q5_0 | Q8_0 | Q4_K | Q5_K | Q6_K | F16 | BF16 | F32)
}

/// Scratch of [`Gpu::matmul`], sized once for the largest call.
#[derive(Debug)]
pub struct MatmulScratch {
    q8: CudaSlice<u8>,    // [n, cols / 32] q8_1 blocks
    wf16: CudaSlice<u16>, // [rows, cols] f16, the dequantized weight of a GEMM
    xf16: CudaSlice<u16>, // [n, cols] f16
}

impl Gpu {
    /// Uploads a weight matrix (its bytes as stored).
    pub fn upload_weight(&self, w: &WeightRef<'_>) -> Result<GpuWeight, GpuError> {
        if !supports(w.dtype) {
            return Err(GpuError::Unsupported { op: "matmul", dtype: w.dtype });
        }
        check("upload_weight", "weight bytes", w.rows * w.row_bytes(), w.data.len())?;
        Ok(GpuWeight { dtype: w.dtype, rows: w.rows, cols: w.cols, data: self.upload(w.data)? })
    }

    /// Scratch for [`Self::matmul`] on up to `max_n` tokens of up to `max_cols` columns,
    /// and weights of up to `max_weight` elements.
    pub fn matmul_scratch(&self, max_n: usize, max_cols: usize, max_weight: usize) -> Result<MatmulScratch, GpuError> {
        let gemm = max_n > MAX_MATVEC_TOKENS && self.gemm_prompts;
        Ok(MatmulScratch {
            q8: self.zeros(max_n.min(MAX_MATVEC_TOKENS) * max_cols.div_ceil(32) * Q8_1_BYTES)?,
            wf16: self.zeros(if gemm { max_weight } else { 0 })?,
            xf16: self.zeros(if gemm { max_n * max_cols } else { 0 })?,
        })
    }

    /// `out[t] = w · x[t]` for `n` tokens: `x` is `[n, w.cols]`, `out` `[n, w.rows]`.
    ///
    /// By default every token goes through the mat-vec kernels (q8_1 activations for the
    /// quantized types, as llama.cpp's MMVQ), [`MAX_MATVEC_TOKENS`] at a time, each token's
    /// sum in the same order whatever else is in the batch: a row's result does not depend on
    /// its batch, which the server's identical answers under load rest on. With
    /// `PUPIL_GPU_GEMM=1` a batch of more tokens dequantizes `w` to f16 for one cuBLAS GEMM
    /// instead (faster prompts, batch-dependent bits).
    pub fn matmul(
        &self,
        w: &GpuWeight,
        x: &CudaSlice<f32>,
        n: usize,
        out: &mut CudaSlice<f32>,
        s: &mut MatmulScratch,
    ) -> Result<(), GpuError> {
        self.matmul_many(x, n, &mut [(w, out)], s)
    }

    /// [`Self::matmul`] of several weights of one input (Q, K and V; gate and up): on the
    /// mat-vec path the input is quantized to q8_1 once per group of tokens for every
    /// quantized weight of its width, not once per weight.
    pub fn matmul_many(
        &self,
        x: &CudaSlice<f32>,
        n: usize,
        jobs: &mut [(&GpuWeight, &mut CudaSlice<f32>)],
        s: &mut MatmulScratch,
    ) -> Result<(), GpuError> {
        for (w, out) in jobs.iter() {
            check("matmul", "x", n * w.cols, x.len())?;
            check("matmul", "out", n * w.rows, out.len())?;
        }
        if n > MAX_MATVEC_TOKENS && self.gemm_prompts {
            return jobs.iter_mut().try_for_each(|(w, out)| self.gemm(w, x, n, out, s));
        }
        for first in (0..n).step_by(MAX_MATVEC_TOKENS) {
            let group = (first, (n - first).min(MAX_MATVEC_TOKENS));
            // The width of the q8_1 copy of this group in `s.q8`, once made.
            let mut quantized = None;
            for (w, out) in jobs.iter_mut() {
                self.matvec(w, x, group, out, s, &mut quantized)?;
            }
        }
        Ok(())
    }

    /// [`Self::matmul`] of tokens `first..first + n` (`n <= MAX_MATVEC_TOKENS`) through the
    /// mat-vec kernels; the caller checked the buffers for all of them. `quantized` is the
    /// width of the group's q8_1 copy already in `s.q8` (`None`: none yet).
    fn matvec(
        &self,
        w: &GpuWeight,
        x: &CudaSlice<f32>,
        (first, n): (usize, usize),
        out: &mut CudaSlice<f32>,
        s: &mut MatmulScratch,
        quantized: &mut Option<usize>,
    ) -> Result<(), GpuError> {
        let (rows, cols, nn) = (int("matmul", "rows", w.rows)?, int("matmul", "cols", w.cols)?, n as i32);
        let f32s = std::mem::size_of::<f32>() as u64;
        let px = self.ptr(x) + (first * w.cols) as u64 * f32s;
        let (pw, po) = (self.ptr(&w.data), self.ptr(out) + (first * w.rows) as u64 * f32s);
        let grid = (w.rows.div_ceil(4) as u32, 1, 1);
        let block = (32, 4, 1);
        // Warps per row for the q8 kernels: one pass of a warp covers 512 values of a row
        // (16 blocks of 32, or 2 of 256), so longer rows get 2 or 4 warps to read them.
        let split: i32 = match w.cols {
            ..=512 => 1,
            513..=1024 => 2,
            _ => 4,
        };
        let q8_grid = (w.rows.div_ceil(4 / split as usize) as u32, 1, 1);
        macro_rules! q8 {
            ($f:ident) => {{
                if *quantized != Some(w.cols) {
                    self.quantize_rows(px, n, w.cols, &mut s.q8)?;
                    *quantized = Some(w.cols);
                }
                let pq = self.ptr(&s.q8);
                launch!(self, $f, q8_grid, block, 0, [pw, pq, po, rows, cols, nn, split])
            }};
        }
        match w.dtype {
            DType::Q4_0 => q8!(mmvq_q4_0),
            DType::Q5_0 => q8!(mmvq_q5_0),
            DType::Q8_0 => q8!(mmvq_q8_0),
            DType::Q4_K => q8!(mmvq_q4_k),
            DType::Q5_K => q8!(mmvq_q5_k),
            DType::Q6_K => q8!(mmvq_q6_k),
            DType::F16 => launch!(self, mv_f16, grid, block, 0, [pw, px, po, rows, cols, nn]),
            DType::BF16 => launch!(self, mv_bf16, grid, block, 0, [pw, px, po, rows, cols, nn]),
            DType::F32 => launch!(self, mv_f32, grid, block, 0, [pw, px, po, rows, cols, nn]),
            dtype => Err(GpuError::Unsupported { op: "matmul", dtype }),
        }
    }

    /// `y = q8_1(x)`: `x` is `[n, cols]` with `cols % 32 == 0`; `y` holds `n · cols/32` blocks.
    pub fn quantize_q8_1(
        &self,
        x: &CudaSlice<f32>,
        n: usize,
        cols: usize,
        y: &mut CudaSlice<u8>,
    ) -> Result<(), GpuError> {
        check("quantize_q8_1", "x", n * cols, x.len())?;
        self.quantize_rows(self.ptr(x), n, cols, y)
    }

    /// [`Self::quantize_q8_1`] of the `n` rows at device address `px` (checked by the caller).
    fn quantize_rows(&self, px: u64, n: usize, cols: usize, y: &mut CudaSlice<u8>) -> Result<(), GpuError> {
        if !cols.is_multiple_of(32) {
            return Err(GpuError::Shape {
                op: "quantize_q8_1",
                what: "columns (a multiple of 32)",
                expected: cols.next_multiple_of(32),
                found: cols,
            });
        }
        check("quantize_q8_1", "y", n * cols / 32 * Q8_1_BYTES, y.len())?;
        let py = self.ptr(y);
        let (c, nn) = (int("quantize_q8_1", "cols", cols)?, int("quantize_q8_1", "n", n)?);
        launch!(self, quantize_q8_1, ((cols / 32) as u32, n as u32, 1), (32, 1, 1), 0, [px, py, c, nn])
    }

    /// The prompt path: `w` dequantized to f16, `x` rounded to f16, one cuBLAS GEMM with f32
    /// accumulation and output.
    fn gemm(
        &self,
        w: &GpuWeight,
        x: &CudaSlice<f32>,
        n: usize,
        out: &mut CudaSlice<f32>,
        s: &mut MatmulScratch,
    ) -> Result<(), GpuError> {
        check("matmul", "f16 weight scratch", w.rows * w.cols, s.wf16.len())?;
        check("matmul", "f16 input scratch", n * w.cols, s.xf16.len())?;
        let (rows, cols) = (int("matmul", "rows", w.rows)?, int("matmul", "cols", w.cols)?);
        let (pw, pd) = (self.ptr(&w.data), self.ptr(&s.wf16));
        // The quantized dequantizers write 8 values per thread, the float ones 1.
        let per_thread = if matches!(w.dtype, DType::BF16 | DType::F32) { 1 } else { 8 };
        let grid = stride_grid(w.rows * w.cols / per_thread);
        let block = (THREADS, 1, 1);
        let a = match w.dtype {
            DType::F16 => pw,
            DType::Q4_0 => launch!(self, dequant_q4_0_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::Q5_0 => launch!(self, dequant_q5_0_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::Q8_0 => launch!(self, dequant_q8_0_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::Q4_K => launch!(self, dequant_q4_k_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::Q5_K => launch!(self, dequant_q5_k_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::Q6_K => launch!(self, dequant_q6_k_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::BF16 => launch!(self, dequant_bf16_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            DType::F32 => launch!(self, dequant_f32_f16, grid, block, 0, [pw, pd, rows, cols]).map(|()| pd)?,
            dtype => return Err(GpuError::Unsupported { op: "matmul", dtype }),
        };
        let (px, pxh) = (self.ptr(x), self.ptr(&s.xf16));
        let count = int("matmul", "x elements", n * w.cols)?;
        launch!(self, convert_f32_f16, stride_grid(n * w.cols), block, 0, [px, pxh, count])?;
        // Row-major out[n, rows] = x[n, cols] · w[rows, cols]ᵀ is, in cuBLAS's column-major
        // terms, C (rows × n) = Aᵀ · B with A = w as a (cols × rows) matrix and B = x as
        // (cols × n).
        let (alpha, beta) = (1f32, 0f32);
        let po = self.ptr(out);
        // SAFETY: A has rows·cols f16 (the scratch or the weight, checked above), B n·cols f16
        // (checked), C n·rows f32 (checked in `matmul`); the leading dimensions match those
        // shapes, and the scalars are f32 as CUBLAS_COMPUTE_32F requires.
        let status = unsafe {
            blas::cublasGemmEx(
                *self.blas.handle(),
                blas::cublasOperation_t::CUBLAS_OP_T,
                blas::cublasOperation_t::CUBLAS_OP_N,
                rows,
                n as i32,
                cols,
                (&alpha as *const f32).cast(),
                a as *const c_void,
                blas::cudaDataType::CUDA_R_16F,
                cols,
                pxh as *const c_void,
                blas::cudaDataType::CUDA_R_16F,
                cols,
                (&beta as *const f32).cast(),
                po as *mut c_void,
                blas::cudaDataType::CUDA_R_32F,
                rows,
                blas::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                blas::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        };
        status.result().map_err(|e| GpuError::Cublas(format!("{e:?}")))
    }

    /// `out[r] = x[r] / rms(x[r]) * w` for `rows` rows of `w.len()` columns; `out` may be `x`
    /// itself (pass the same buffer as both through [`Self::rms_norm_in_place`]).
    pub fn rms_norm(
        &self,
        x: &CudaSlice<f32>,
        w: &CudaSlice<f32>,
        cols: usize,
        rows: usize,
        eps: f32,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        check("rms_norm", "x", rows * cols, x.len())?;
        check("rms_norm", "out", rows * cols, out.len())?;
        check("rms_norm", "weight", cols, w.len())?;
        let (px, pw, po, c) = (self.ptr(x), self.ptr(w), self.ptr(out), int("rms_norm", "cols", cols)?);
        launch!(self, rms_norm, (rows as u32, 1, 1), (THREADS, 1, 1), 0, [px, pw, po, c, eps])
    }

    /// [`Self::rms_norm`] writing over `x`.
    pub fn rms_norm_in_place(
        &self,
        x: &mut CudaSlice<f32>,
        w: &CudaSlice<f32>,
        cols: usize,
        rows: usize,
        eps: f32,
    ) -> Result<(), GpuError> {
        check("rms_norm", "x", rows * cols, x.len())?;
        check("rms_norm", "weight", cols, w.len())?;
        let (px, pw, c) = (self.ptr(x), self.ptr(w), int("rms_norm", "cols", cols)?);
        launch!(self, rms_norm, (rows as u32, 1, 1), (THREADS, 1, 1), 0, [px, pw, px, c, eps])
    }

    /// RoPE in place: `x` is `[n, heads, head_dim]`, `angles` `[n, n_dims]` (cos, sin pairs,
    /// as [`crate::ops::Rope::angles`] fills them); pairs `(i, i + n_dims/2)` if `neox`, else
    /// `(2i, 2i + 1)`.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        angles: &CudaSlice<f32>,
        n: usize,
        heads: usize,
        head_dim: usize,
        n_dims: usize,
        neox: bool,
    ) -> Result<(), GpuError> {
        check("rope", "x", n * heads * head_dim, x.len())?;
        check("rope", "angles", n * n_dims, angles.len())?;
        check("rope", "head_dim", n_dims, head_dim)?;
        let (px, pa) = (self.ptr(x), self.ptr(angles));
        let args = (
            int("rope", "n", n)?,
            int("rope", "heads", heads)?,
            int("rope", "head_dim", head_dim)?,
            n_dims as i32,
            i32::from(neox),
        );
        launch!(
            self,
            rope,
            stride_grid(n * heads * n_dims / 2),
            (THREADS, 1, 1),
            0,
            [px, pa, args.0, args.1, args.2, args.3, args.4]
        )
    }

    /// `x = silu(x)` over the first `count` elements.
    pub fn silu(&self, x: &mut CudaSlice<f32>, count: usize) -> Result<(), GpuError> {
        check("silu", "x", count, x.len())?;
        let (px, c) = (self.ptr(x), int("silu", "count", count)?);
        launch!(self, silu, stride_grid(count), (THREADS, 1, 1), 0, [px, c])
    }

    /// `x = gelu(x)` (tanh form, with ggml's f16 rounding) over the first `count` elements.
    pub fn gelu_tanh(&self, x: &mut CudaSlice<f32>, count: usize) -> Result<(), GpuError> {
        check("gelu_tanh", "x", count, x.len())?;
        let (px, c) = (self.ptr(x), int("gelu_tanh", "count", count)?);
        launch!(self, gelu_tanh, stride_grid(count), (THREADS, 1, 1), 0, [px, c])
    }

    /// `x *= y` over the first `count` elements.
    pub fn mul(&self, x: &mut CudaSlice<f32>, y: &CudaSlice<f32>, count: usize) -> Result<(), GpuError> {
        check("mul", "x", count, x.len())?;
        check("mul", "y", count, y.len())?;
        let (px, py, c) = (self.ptr(x), self.ptr(y), int("mul", "count", count)?);
        launch!(self, mul, stride_grid(count), (THREADS, 1, 1), 0, [px, py, c])
    }

    /// `x += y` over the first `count` elements.
    pub fn add(&self, x: &mut CudaSlice<f32>, y: &CudaSlice<f32>, count: usize) -> Result<(), GpuError> {
        check("add", "x", count, x.len())?;
        check("add", "y", count, y.len())?;
        let (px, py, c) = (self.ptr(x), self.ptr(y), int("add", "count", count)?);
        launch!(self, add, stride_grid(count), (THREADS, 1, 1), 0, [px, py, c])
    }

    /// `x *= s` over the first `count` elements.
    pub fn scale(&self, x: &mut CudaSlice<f32>, s: f32, count: usize) -> Result<(), GpuError> {
        check("scale", "x", count, x.len())?;
        let (px, c) = (self.ptr(x), int("scale", "count", count)?);
        launch!(self, scale, stride_grid(count), (THREADS, 1, 1), 0, [px, s, c])
    }

    /// `x = cap · tanh(x / cap)` over the first `count` elements.
    pub fn softcap(&self, x: &mut CudaSlice<f32>, cap: f32, count: usize) -> Result<(), GpuError> {
        check("softcap", "x", count, x.len())?;
        let (px, c) = (self.ptr(x), int("softcap", "count", count)?);
        launch!(self, softcap, stride_grid(count), (THREADS, 1, 1), 0, [px, cap, c])
    }

    /// `x[t] += b` for the `n` rows of `x` (`[n, b.len()]`).
    pub fn add_bias(&self, x: &mut CudaSlice<f32>, b: &CudaSlice<f32>, rows: usize, n: usize) -> Result<(), GpuError> {
        check("add_bias", "x", rows * n, x.len())?;
        check("add_bias", "bias", rows, b.len())?;
        let (px, pb, r, nn) = (self.ptr(x), self.ptr(b), int("add_bias", "rows", rows)?, int("add_bias", "n", n)?);
        launch!(self, add_bias, stride_grid(rows * n), (THREADS, 1, 1), 0, [px, pb, r, nn])
    }

    /// Writes the `n` tokens' keys and values (`[n, kv_dim]`) as f16 into cache rows `rows[t]`
    /// of `k_cache` and `v_cache` (`[cache_rows, kv_dim]`); `rows` must be below `cache_rows`
    /// (checked by the caller, which computed them: the kernel trusts them).
    #[allow(clippy::too_many_arguments)]
    pub fn kv_write(
        &self,
        k: &CudaSlice<f32>,
        v: &CudaSlice<f32>,
        rows: &CudaSlice<i32>,
        n: usize,
        kv_dim: usize,
        k_cache: &mut CudaSlice<u16>,
        v_cache: &mut CudaSlice<u16>,
    ) -> Result<(), GpuError> {
        check("kv_write", "k", n * kv_dim, k.len())?;
        check("kv_write", "v", n * kv_dim, v.len())?;
        check("kv_write", "rows", n, rows.len())?;
        check("kv_write", "v cache", k_cache.len(), v_cache.len())?;
        let (pk, pv, pr, pkc, pvc) = (self.ptr(k), self.ptr(v), self.ptr(rows), self.ptr(k_cache), self.ptr(v_cache));
        let (d, nn) = (int("kv_write", "kv_dim", kv_dim)?, int("kv_write", "n", n)?);
        launch!(self, kv_write, stride_grid(n * kv_dim), (THREADS, 1, 1), 0, [pk, pv, pkc, pvc, pr, d, nn])
    }

    /// Parts of [`ATTENTION_CHUNK`] rows [`Self::attend`] launches per token when the
    /// longest span is `longest` rows.
    pub fn attention_split(longest: usize) -> usize {
        longest.div_ceil(ATTENTION_CHUNK).max(1)
    }

    /// Floats of the partial-results scratch [`Self::attend`] needs for up to `max_n` tokens
    /// whose spans are at most `max_span` rows.
    pub fn attention_scratch_len(max_n: usize, heads: usize, head_dim: usize, max_span: usize) -> usize {
        max_n * heads * Self::attention_split(max_span) * (head_dim + 2)
    }

    /// Attention of `n` tokens over an f16 cache: token `t`'s query heads (`q`, `[n, heads,
    /// head_dim]`) attend to cache rows `spans[2t]..spans[2t+1]` of `k_cache`/`v_cache`
    /// (`[rows, kv_heads, head_dim]`), scores scaled by `scale` and soft-capped by `softcap`
    /// (0: none); the result goes to `out` (`[n, heads, head_dim]`). Spans must lie inside
    /// the cache (the caller computed them), and `longest` must be the longest of them.
    /// Split-K: each span is cut into parts of [`ATTENTION_CHUNK`] rows reduced in a second
    /// kernel; the parts depend on the token's own span only, so its result does not depend
    /// on the batch.
    #[allow(clippy::too_many_arguments)]
    pub fn attend(
        &self,
        q: &CudaSlice<f32>,
        k_cache: &CudaSlice<u16>,
        v_cache: &CudaSlice<u16>,
        spans: &CudaSlice<i32>,
        longest: usize,
        n: usize,
        (heads, kv_heads, head_dim): (usize, usize, usize),
        (scale, softcap): (f32, f32),
        partial: &mut CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
    ) -> Result<(), GpuError> {
        if head_dim > 256 || !head_dim.is_multiple_of(32) || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(GpuError::Shape {
                op: "attend",
                what: "head_dim (≤ 256, a multiple of 32) or heads",
                expected: 256,
                found: head_dim,
            });
        }
        let split = Self::attention_split(longest);
        check("attend", "q", n * heads * head_dim, q.len())?;
        check("attend", "out", n * heads * head_dim, out.len())?;
        check("attend", "spans", 2 * n, spans.len())?;
        check("attend", "v cache", k_cache.len(), v_cache.len())?;
        check("attend", "partial", n * heads * split * (head_dim + 2), partial.len())?;
        let (pq, pk, pv, ps, pp, po) =
            (self.ptr(q), self.ptr(k_cache), self.ptr(v_cache), self.ptr(spans), self.ptr(partial), self.ptr(out));
        let (h, hk, hd, sp) = (heads as i32, kv_heads as i32, head_dim as i32, split as i32);
        let blocks = int("attend", "n × heads", n * heads)? as u32;
        launch!(
            self,
            attend_split,
            (blocks, split as u32, 1),
            (128, 1, 1),
            0,
            [pq, pk, pv, ps, pp, h, hk, hd, scale, softcap, sp]
        )?;
        launch!(self, attend_merge, (blocks, 1, 1), (head_dim as u32, 1, 1), 0, [pp, po, h, hd, sp])
    }

    /// `out[r]` = the index of the largest of row `r` of `x` (`[rows, cols]`), the first of
    /// equal maxima, as the CPU's greedy sampler picks.
    pub fn argmax(
        &self,
        x: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        out: &mut CudaSlice<i32>,
    ) -> Result<(), GpuError> {
        check("argmax", "x", rows * cols, x.len())?;
        check("argmax", "out", rows, out.len())?;
        let (px, po, c) = (self.ptr(x), self.ptr(out), int("argmax", "cols", cols)?);
        launch!(self, argmax, (rows as u32, 1, 1), (THREADS, 1, 1), 0, [px, c, po])
    }
}
