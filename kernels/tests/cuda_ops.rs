//! The CUDA kernels against the CPU reference, in the manner of llama.cpp's `test-backend-ops`:
//! every op on random and adversarial inputs, its output compared by NMSE
//! (Σ(gpu − cpu)² / Σcpu²) under a bound per op, and every device buffer followed by guard
//! elements that must come back as they went (a write past the end shows there; a read past
//! the end meets NaN and shows in the result).
//!
//! Where the GPU computes something other than the CPU by design (q8_1 activations in the
//! quantized mat-vec, f16 operands in the prompt GEMM), the reference is a model of the GPU's
//! arithmetic built from the crate's own reference quantizers, so that the bound stays tight;
//! the true product is checked as well, against a bound calibrated on the CPU's own error.
//!
//! Without a GPU (no driver, or no device) every GPU test prints `skipped: <why>` and passes;
//! with `PUPIL_REQUIRE_GPU=1` that is a failure instead, so that a GPU machine whose driver
//! was not found cannot pass. A GPU that is found but does not open fails every test. The
//! tests take turns on the one `Gpu`, so that a kernel fault is reported by the test that
//! caused it; each test lists all its failures at the end, not only the first.

mod common;

use std::ops::Range;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cudarc::driver::DeviceRepr;
use half::f16;
use pupil_kernels::cuda::{self, CudaSlice, Gpu, GpuError, GpuWeight, MAX_MATVEC_TOKENS, Q8_1_BYTES};
use pupil_kernels::ops::{self, Activations, Rope, WeightRef};
use pupil_kernels::{DType, quant};

/// The quantized mat-vec (n ≤ MAX_MATVEC_TOKENS) per token against its model: the dequantized
/// weight times the activations through the CPU's q8_1 quantizer, summed in f64. The GPU does
/// the same integer products and only sums floats in another order (~1e-12); one activation
/// quant off by one costs 2e-7 to 7e-7 here, so this admits one or two and no more.
const MATVEC_Q8_NMSE: f64 = 1e-6;
/// The float mat-vec (F16, BF16, F32 weights) per token against the exact product with the
/// f32 activations. f32 accumulation gives ~1e-12; rounding the activations to the weight's
/// type as the CPU does (bf16: ~1.3e-6) would still pass; anything structural would not.
const MATVEC_FLOAT_NMSE: f64 = 1e-5;
/// The prompt GEMM (n > MAX_MATVEC_TOKENS) per token against its model: weights dequantized
/// and rounded to f16, activations rounded to f16, products summed in f64. cuBLAS sums in f32
/// (~1e-12); even every weight rounded one f16 ulp the other way would stay under 2.5e-7.
const GEMM_NMSE: f64 = 1e-6;
/// Every matmul against the true product, whole output: no worse than 4× the CPU's own error
/// through its activation types (Q8_0, Q8_K, f16, bf16), or this floor (q8 activations of
/// uniform inputs cost ~1.5e-5).
const TRUE_PRODUCT_FLOOR: f64 = 1e-4;
/// rms_norm, rope, mul, add, scale, add_bias: the same correctly rounded f32 operations as
/// the CPU (only rms_norm's f64 sum runs in another order), so agreement to a few ulps.
const ARITH_NMSE: f64 = 1e-10;
/// silu and softcap: the GPU's expf and tanhf are within 2 ulp of libm's (~1e-13); this is
/// test-backend-ops' default bound, and fails an approximate tanh (5e-4 relative).
const TRANSCENDENTAL_NMSE: f64 = 1e-7;
/// GELU through ggml's f16 rounding: an f32 tanh differing by an ulp can round a value to the
/// neighbouring f16 (2^-11 relative), which a few elements may do.
const GELU_NMSE: f64 = 1e-6;
/// Attention over an f16 cache. The CPU rounds the query and the probabilities to f16 as
/// ggml does, the GPU keeps them in f32: ~1e-7 apart on these inputs.
const ATTEND_NMSE: f64 = 1e-5;

/// Guard elements after every device buffer.
const GUARD_LEN: usize = 64;

// ---------------------------------------------------------------------------------------------
// The device, buffers with guards, and the report.

/// Why there is no GPU to test: none found, or one found that does not open.
enum Unavailable {
    Absent(String),
    Broken(String),
}

/// The GPU and this test's turn on it, or `None` where there is no GPU.
fn gpu() -> Option<(&'static Gpu, MutexGuard<'static, ()>)> {
    static GPU: OnceLock<Result<Gpu, Unavailable>> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::new(());
    let required = std::env::var_os("PUPIL_REQUIRE_GPU").is_some_and(|v| !v.is_empty() && v != "0");
    let opened = GPU.get_or_init(|| match cuda::probe(0) {
        Err(e) => {
            if !required {
                eprintln!("skipped: {e}");
            }
            Err(Unavailable::Absent(e.to_string()))
        }
        Ok(_) => Gpu::open(0).map_err(|e| Unavailable::Broken(e.to_string())),
    });
    match opened {
        Ok(gpu) => Some((gpu, TURN.lock().unwrap_or_else(PoisonError::into_inner))),
        Err(Unavailable::Absent(e)) if required => panic!("PUPIL_REQUIRE_GPU is set: {e}"),
        Err(Unavailable::Absent(_)) => None,
        Err(Unavailable::Broken(e)) => panic!("a GPU is present but does not open: {e}"),
    }
}

/// Element types of device buffers, with the value their guard elements hold.
trait Guarded: DeviceRepr + bytemuck::Pod + std::fmt::Debug {
    const GUARD: Self;
}
impl Guarded for f32 {
    const GUARD: f32 = f32::from_bits(0x7fc0_dead); // a NaN the GPU never writes (its NaN is 0x7fffffff)
}
impl Guarded for u16 {
    const GUARD: u16 = 0x7dea; // an f16 NaN that f32_to_f16 never writes
}
impl Guarded for i32 {
    const GUARD: i32 = -12345;
}
impl Guarded for u8 {
    const GUARD: u8 = 0xa5;
}

/// A device copy of `data`, followed by `GUARD_LEN` guard elements.
fn upload<T: Guarded>(gpu: &Gpu, data: &[T]) -> CudaSlice<T> {
    let padded: Vec<T> = data.iter().copied().chain(std::iter::repeat_n(T::GUARD, GUARD_LEN)).collect();
    gpu.upload(&padded).expect("upload")
}

/// An output buffer of `len` guard values (an element the op forgets to write stays NaN).
fn output<T: Guarded>(gpu: &Gpu, len: usize) -> CudaSlice<T> {
    upload(gpu, &vec![T::GUARD; len])
}

/// `dev` without its guard, after checking the guard is as [`upload`] left it.
fn download<T: Guarded>(gpu: &Gpu, dev: &CudaSlice<T>, what: &str, report: &mut Report) -> Vec<T> {
    let mut host = vec![T::GUARD; dev.len()];
    gpu.read(dev, &mut host).unwrap_or_else(|e| panic!("{what}: {e}"));
    let body = host.len() - GUARD_LEN;
    if let Some(i) = (body..host.len()).find(|&i| bytemuck::bytes_of(&host[i]) != bytemuck::bytes_of(&T::GUARD)) {
        report.fail(format!("{what}: wrote past the end: guard element {} is {:?}", i - body, host[i]));
    }
    host.truncate(body);
    host
}

/// Σ(got − want)² / Σwant², in f64. Exact agreement is 0 even where `want` is all zeros;
/// any other difference from zeros is infinite, and a NaN stays NaN (both fail any bound).
fn nmse(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0.0, 0.0);
    for (&g, &w) in got.iter().zip(want) {
        num += (f64::from(g) - f64::from(w)).powi(2);
        den += f64::from(w).powi(2);
    }
    if num == 0.0 { 0.0 } else { num / den }
}

/// The failures of one test, reported together so that one GPU run shows them all.
#[derive(Default)]
struct Report {
    checks: usize,
    failures: Vec<String>,
}

impl Report {
    fn fail(&mut self, message: String) {
        self.failures.push(message);
    }

    fn ok(&mut self, pass: bool, message: impl FnOnce() -> String) {
        self.checks += 1;
        if !pass {
            self.fail(message());
        }
    }

    fn nmse(&mut self, what: &str, got: &[f32], want: &[f32], bound: f64) {
        let e = nmse(got, want);
        self.ok(e <= bound, || {
            let gap = |i: usize| (f64::from(got[i]) - f64::from(want[i])).abs();
            let i = (0..got.len()).max_by(|&a, &b| gap(a).total_cmp(&gap(b))).unwrap_or(0);
            format!("{what}: NMSE {e:.3e} > {bound:.0e}; worst [{i}]: gpu {:e}, cpu {:e}", got[i], want[i])
        });
    }

    /// `got` (or the op's error) against `want`, in runs of `len` (tokens, rows, segments).
    fn runs(
        &mut self,
        what: &str,
        got: Result<&[f32], &GpuError>,
        want: &[f32],
        len: usize,
        bound: f64,
        names: &[&str],
    ) {
        match got {
            Err(e) => self.fail(format!("{what}: {e}")),
            Ok(got) => {
                for (i, (g, w)) in got.chunks(len).zip(want.chunks(len)).enumerate() {
                    self.nmse(&format!("{what} [{i}] {}", names.get(i).unwrap_or(&"")), g, w, bound);
                }
            }
        }
    }

    /// `gpu_op` on a device copy of `x` against `cpu_op` on a host copy, by [`segments`].
    fn pointwise(
        &mut self,
        gpu: &Gpu,
        what: &str,
        x: &[f32],
        bound: f64,
        cpu_op: impl FnOnce(&mut [f32]),
        gpu_op: impl FnOnce(&mut CudaSlice<f32>) -> Result<(), GpuError>,
    ) -> Option<Vec<f32>> {
        let mut want = x.to_vec();
        cpu_op(&mut want);
        let mut xd = upload(gpu, x);
        let got = gpu_op(&mut xd).map(|()| download(gpu, &xd, what, self));
        self.runs(what, got.as_deref(), &want, SEG, bound, &SEGMENTS);
        got.ok()
    }

    fn finish(self, test: &str) {
        eprintln!("{test}: {} checks, {} failed", self.checks, self.failures.len());
        let shown: Vec<&str> = self.failures.iter().take(60).map(String::as_str).collect();
        assert!(self.failures.is_empty(), "{test}: {} failures:\n{}", self.failures.len(), shown.join("\n"));
    }
}

// ---------------------------------------------------------------------------------------------
// Matmul.

const WEIGHT_TYPES: [DType; 9] = {
    use DType::*;
    [Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32]
};
/// `(rows, cols)`: 97 rows leave a partial group of four for the mat-vec's blocks; 768
/// columns are three k-quant super-blocks, an odd count for its two-blocks-a-step loop.
const MATMUL_SHAPES: [(usize, usize); 3] = [(96, 256), (97, 768), (256, 512)];
/// The mat-vec path up to MAX_MATVEC_TOKENS (8), the GEMM past it.
const MATMUL_TOKENS: [usize; 5] = [1, 3, 8, 17, 64];
/// What token `t % 8` of [`activations`] is.
const TOKENS: [&str; 8] =
    ["uniform", "one huge value", "zeros", "a block of ±65504", "tiny", "negative zeros", "uniform", "uniform"];

/// Weight values `[rows, cols]`: uniform in ±1, with adversarial rows among them.
fn weight_values(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut r = common::rng(seed);
    let mut out = Vec::with_capacity(rows * cols);
    for row in 0..rows {
        let u = common::uniform(&mut r, cols, 1.0);
        out.extend(match row % 16 {
            1 => u.iter().enumerate().map(|(i, v)| if i % 32 == 7 { 100.0 } else { 0.1 * v }).collect(),
            2 => vec![0.0; cols],
            3 => vec![-0.0; cols],
            4 => u.iter().map(|v| v * 1e-6).collect(), // f16 block scales are subnormal
            5 => u.iter().map(|v| v * 1000.0).collect(),
            _ => u,
        });
    }
    out
}

/// `n` activation rows of `cols`, token `t` as `TOKENS[t % 8]` says.
fn activations(n: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut r = common::rng(seed);
    let mut out = Vec::with_capacity(n * cols);
    for t in 0..n {
        let mut u = common::uniform(&mut r, cols, 1.0);
        match t % 8 {
            1 => u[5] = 1000.0,
            2 => u.fill(0.0),
            3 => (32..64).for_each(|i| u[i] = if i % 2 == 0 { 65504.0 } else { -65504.0 }),
            // |x| in [5e-4, 1e-3]: normal f16 values (the GEMM's operands), subnormal q8_1 scales.
            4 => u.iter_mut().for_each(|v| *v = (0.5 + 0.5 * v.abs()).copysign(*v) * 1e-3),
            5 => u.fill(-0.0),
            _ => {}
        }
        out.extend(u);
    }
    out
}

/// `x` in `dtype`'s blocks by the crate's reference quantizer, in words (aligned for any block).
fn quantize(dtype: DType, x: &[f32]) -> Vec<u64> {
    let len = dtype.row_bytes(x.len() as u64).expect("whole blocks") as usize;
    let mut words = vec![0u64; len.div_ceil(8)];
    let q = quant::ops(dtype).and_then(|o| o.quantize).expect("a reference quantizer");
    q(x, &mut bytemuck::cast_slice_mut(&mut words)[..len]).expect("quantize");
    words
}

/// The first `n` values of `dtype` blocks in `words`, as f32.
fn dequantize(dtype: DType, words: &[u64], n: usize) -> Vec<f32> {
    let len = dtype.row_bytes(n as u64).expect("whole blocks") as usize;
    let mut out = vec![0.0; n];
    (quant::ops(dtype).expect("kernels").dequantize)(&bytemuck::cast_slice(words)[..len], &mut out)
        .expect("dequantize");
    out
}

fn to_f16(x: &[f32]) -> Vec<f32> {
    x.iter().map(|&v| f16::from_f32(v).to_f32()).collect()
}

/// `out[t, r] = Σ_c w[r, c] · x[t, c]`, summed in f64: `w` is `[rows, cols]`, `x` `[n, cols]`.
fn product(w: &[f32], x: &[f32], cols: usize) -> Vec<f32> {
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&p, &q)| f64::from(p) * f64::from(q)).sum::<f64>() as f32;
    x.chunks_exact(cols).flat_map(|xt| w.chunks_exact(cols).map(move |wr| dot(wr, xt))).collect()
}

/// A weight matrix quantized by the crate's reference quantizer, and its dequantized values.
struct Weight {
    dtype: DType,
    rows: usize,
    cols: usize,
    words: Vec<u64>,
    deq: Vec<f32>, // [rows, cols]
}

impl Weight {
    fn new(dtype: DType, rows: usize, cols: usize, values: &[f32]) -> Weight {
        let words = quantize(dtype, values);
        let deq = dequantize(dtype, &words, rows * cols);
        Weight { dtype, rows, cols, words, deq }
    }

    fn wref(&self) -> WeightRef<'_> {
        let len = self.rows * self.dtype.row_bytes(self.cols as u64).expect("whole blocks") as usize;
        let data = &bytemuck::cast_slice(&self.words)[..len];
        WeightRef { dtype: self.dtype, rows: self.rows, cols: self.cols, data, packed: None }
    }
}

/// The CPU's matmul, through its own activation type.
fn cpu_matmul(w: &Weight, x: &[f32], n: usize) -> Vec<f32> {
    let mut a = Activations::new();
    a.quantize(quant::ops(w.dtype).expect("kernels").act, x, n, w.cols).expect("activations");
    let mut out = vec![0.0; n * w.rows];
    ops::matmul(&w.wref(), &a, &mut out).expect("CPU matmul");
    out
}

/// What the GPU computes for `n` tokens, modelled on the CPU, and the NMSE allowed against it:
/// more than [`MAX_MATVEC_TOKENS`] go through the f16 GEMM only with `gemm` (`PUPIL_GPU_GEMM`),
/// else every token through the mat-vec.
fn gpu_model(w: &Weight, x: &[f32], n: usize, gemm: bool) -> (Vec<f32>, f64) {
    if n > MAX_MATVEC_TOKENS && gemm {
        (product(&to_f16(&w.deq), &to_f16(x), w.cols), GEMM_NMSE)
    } else if matches!(w.dtype, DType::F16 | DType::BF16 | DType::F32) {
        (product(&w.deq, x, w.cols), MATVEC_FLOAT_NMSE)
    } else {
        let xq = dequantize(DType::Q8_1, &quantize(DType::Q8_1, x), x.len());
        (product(&w.deq, &xq, w.cols), MATVEC_Q8_NMSE)
    }
}

fn gpu_matmul(gpu: &Gpu, w: &GpuWeight, x: &[f32], n: usize, what: &str, report: &mut Report) -> Option<Vec<f32>> {
    let xd = upload(gpu, x);
    let mut out = output::<f32>(gpu, n * w.rows);
    let mut scratch = gpu.matmul_scratch(n, w.cols, w.rows * w.cols).expect("matmul scratch");
    match gpu.matmul(w, &xd, n, &mut out, &mut scratch) {
        Ok(()) => Some(download(gpu, &out, what, report)),
        Err(e) => {
            report.fail(format!("{what}: {e}"));
            None
        }
    }
}

#[test]
fn matmul_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    for (si, (rows, cols)) in MATMUL_SHAPES.into_iter().enumerate() {
        let values = weight_values(rows, cols, 10 + si as u64);
        for dtype in WEIGHT_TYPES {
            let w = Weight::new(dtype, rows, cols, &values);
            let gw = gpu.upload_weight(&w.wref()).expect("upload_weight");
            for n in MATMUL_TOKENS {
                let what = format!("matmul {dtype} [{rows}, {cols}] n={n}");
                let x = activations(n, cols, 20 + n as u64);
                let Some(got) = gpu_matmul(gpu, &gw, &x, n, &what, &mut report) else { continue };
                let (model, bound) = gpu_model(&w, &x, n, gpu.gemm_prompts());
                let names: Vec<&str> = (0..n).map(|t| TOKENS[t % 8]).collect();
                report.runs(&format!("{what} token"), Ok(&got), &model, rows, bound, &names);
                let truth = product(&w.deq, &x, cols);
                let allowed = (4.0 * nmse(&cpu_matmul(&w, &x, n), &truth)).max(TRUE_PRODUCT_FLOOR);
                report.nmse(&format!("{what} vs the true product"), &got, &truth, allowed);
            }
        }
    }
    report.finish("matmul");
}

/// The models `matmul_matches_cpu` holds the GPU to, against the CPU kernels where those do
/// the same arithmetic: Q8_0 activations have q8_1's scales and quants, and the CPU's F16
/// matmul rounds its activations to f16 as the GEMM does. Needs no GPU.
#[test]
fn gpu_models_agree_with_cpu_kernels() {
    let (rows, cols) = (97, 768);
    let values = weight_values(rows, cols, 3);
    for (dtype, n) in [(DType::Q4_0, 8), (DType::Q5_0, 3), (DType::Q8_0, 8), (DType::F16, 17), (DType::F32, 6)] {
        let w = Weight::new(dtype, rows, cols, &values);
        let x = activations(n, cols, 4);
        let (cpu, (model, _)) = (cpu_matmul(&w, &x, n), gpu_model(&w, &x, n, true));
        for t in 0..n {
            let e = nmse(&model[t * rows..][..rows], &cpu[t * rows..][..rows]);
            assert!(e <= 1e-9, "{dtype} n={n} token {t} ({}): model vs CPU NMSE {e:e}", TOKENS[t % 8]);
        }
    }
}

#[test]
fn quantize_q8_1_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let named = common::rows(256, 5);
    let mut r = common::rng(6);
    let cases =
        [(256, named.iter().flat_map(|row| row.x.clone()).collect()), (4096, common::uniform(&mut r, 3 * 4096, 3.0))];
    for (cols, x) in cases {
        let n = x.len() / cols;
        let (xd, mut y) = (upload(gpu, &x), output::<u8>(gpu, n * cols / 32 * Q8_1_BYTES));
        let what = format!("quantize_q8_1 cols={cols}");
        if let Err(e) = gpu.quantize_q8_1(&xd, n, cols, &mut y) {
            report.fail(format!("{what}: {e}"));
            continue;
        }
        let got = download(gpu, &y, &what, &mut report);
        let words = quantize(DType::Q8_1, &x);
        let want = &bytemuck::cast_slice::<u64, u8>(&words)[..got.len()];
        // Block: d (f16), s (f16), 32 quants. d and the quants come from the same IEEE f32
        // operations on both sides (x · (1 / d), roundf): exact. s is never read by a kernel:
        // one f16 ulp is allowed.
        for (b, (g, w)) in got.chunks_exact(Q8_1_BYTES).zip(want.chunks_exact(Q8_1_BYTES)).enumerate() {
            let row = b / (cols / 32);
            let name = if cols == 256 { named[row].name.as_str() } else { "uniform" };
            let s = |c: &[u8]| i32::from(u16::from_le_bytes([c[2], c[3]]));
            report.ok(g[..2] == w[..2] && g[4..] == w[4..] && (s(g) - s(w)).abs() <= 1, || {
                format!("{what} {name} block {b}:\n gpu {g:?}\n cpu {w:?}")
            });
        }
    }
    report.finish("quantize_q8_1");
}

// ---------------------------------------------------------------------------------------------
// Norm, RoPE, pointwise ops.

const NORM_ROWS: [&str; 6] =
    ["uniform", "residual-sized (±1e4)", "zeros", "one outlier", "tiny (±1e-20)", "negative zeros"];

#[test]
fn rms_norm_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    for (cols, eps) in [(64, 1e-6f32), (1000, 1e-5), (4096, 1e-6)] {
        let mut r = common::rng(cols as u64);
        let mut x = common::uniform(&mut r, cols, 1.0);
        x.extend(common::uniform(&mut r, cols, 1e4));
        x.extend(vec![0.0; cols]);
        x.extend((0..cols).map(|i| if i == cols / 2 { 1e6 } else { (i % 7) as f32 - 3.0 }));
        x.extend(common::uniform(&mut r, cols, 1e-20));
        x.extend(vec![-0.0; cols]);
        let rows = x.len() / cols;
        let w = common::uniform(&mut r, cols, 2.0);
        let mut want = vec![0.0; x.len()];
        for (xr, o) in x.chunks_exact(cols).zip(want.chunks_exact_mut(cols)) {
            ops::rms_norm(xr, &w, eps, o);
        }
        let (xd, wd, mut out) = (upload(gpu, &x), upload(gpu, &w), output::<f32>(gpu, x.len()));
        let what = format!("rms_norm cols={cols} row");
        let got = gpu.rms_norm(&xd, &wd, cols, rows, eps, &mut out).map(|()| download(gpu, &out, &what, &mut report));
        report.runs(&what, got.as_deref(), &want, cols, ARITH_NMSE, &NORM_ROWS);
        let mut xi = upload(gpu, &x);
        let what = format!("rms_norm_in_place cols={cols} row");
        let got = gpu.rms_norm_in_place(&mut xi, &wd, cols, rows, eps).map(|()| download(gpu, &xi, &what, &mut report));
        report.runs(&what, got.as_deref(), &want, cols, ARITH_NMSE, &NORM_ROWS);
    }
    report.finish("rms_norm");
}

#[test]
fn rope_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let positions = [0, 1, 7, 1000, 32767];
    let (n, heads) = (positions.len(), 3);
    let configs = [(false, 64, 64, 1e4), (true, 128, 128, 1e6), (true, 128, 64, 1e4), (false, 256, 32, 5e5)];
    for (ci, (neox, head_dim, n_dims, base)) in configs.into_iter().enumerate() {
        let rope = Rope { n_dims, base, freq_scale: 1.0, freq_factors: None, mscale: 1.0, neox };
        let mut angles = vec![0.0; n * n_dims];
        for (&p, a) in positions.iter().zip(angles.chunks_exact_mut(n_dims)) {
            rope.angles(p, a);
        }
        let x = common::uniform(&mut common::rng(30 + ci as u64), n * heads * head_dim, 3.0);
        let mut want = x.clone();
        for (a, xt) in angles.chunks_exact(n_dims).zip(want.chunks_exact_mut(heads * head_dim)) {
            rope.apply(a, xt, head_dim);
        }
        let (mut xd, ad) = (upload(gpu, &x), upload(gpu, &angles));
        let what = format!("rope neox={neox} head_dim={head_dim} n_dims={n_dims} token");
        let got =
            gpu.rope(&mut xd, &ad, n, heads, head_dim, n_dims, neox).map(|()| download(gpu, &xd, &what, &mut report));
        report.runs(&what, got.as_deref(), &want, heads * head_dim, ARITH_NMSE, &[]);
    }
    report.finish("rope");
}

/// Elements per segment of [`segments`]: not a multiple of the 256-thread blocks.
const SEG: usize = 1000;
const SEGMENTS: [&str; 7] =
    ["uniform ±4", "uniform ±30", "zeros", "negative zeros", "±65504", "±1e30 and tiny", "ramp ±12 through ±10"];

/// Inputs of the pointwise ops, `SEGMENTS.len()` segments of `SEG`, each checked on its own.
fn segments(seed: u64) -> Vec<f32> {
    let mut r = common::rng(seed);
    let mut x = common::uniform(&mut r, SEG, 4.0);
    x.extend(common::uniform(&mut r, SEG, 30.0));
    x.extend([0.0; SEG]);
    x.extend([-0.0; SEG]);
    x.extend((0..SEG).map(|i| if i % 2 == 0 { 65504.0 } else { -65504.0 }));
    x.extend((0..SEG).map(|i| [1e30, -1e30, 1e-30, -3e-39][i % 4]));
    let ramp = x.len();
    x.extend((0..SEG).map(|i| -12.0 + 24.0 * i as f32 / (SEG - 1) as f32));
    x[ramp..ramp + 6].copy_from_slice(&[-10.0, 10.0, -9.999, 9.999, 10.001, -10.001]);
    x
}

#[test]
fn activations_match_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let x = segments(40);
    let n = x.len();
    report.pointwise(gpu, "silu", &x, TRANSCENDENTAL_NMSE, ops::silu, |d| gpu.silu(d, n));
    let gelu = report.pointwise(gpu, "gelu_tanh", &x, GELU_NMSE, ops::gelu_tanh_f16, |d| gpu.gelu_tanh(d, n));
    for (i, (&v, &y)) in x.iter().zip(gelu.unwrap_or_default().iter()).enumerate() {
        if v.abs() < 10.0 && f16::from_f32(y).to_f32() != y {
            report.fail(format!("gelu_tanh({v:e}) [{i}] = {y:e}: not an f16 value, as ggml's table gives"));
        }
    }
    for cap in [30.0, 50.0] {
        let what = format!("softcap {cap}");
        report.pointwise(gpu, &what, &x, TRANSCENDENTAL_NMSE, |v| ops::softcap(v, cap), |d| gpu.softcap(d, cap, n));
    }
    report.finish("activations");
}

#[test]
fn arithmetic_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let x = segments(41);
    let n = x.len();
    let mut r = common::rng(42);
    let (y, b) = (common::uniform(&mut r, n, 2.0), common::uniform(&mut r, SEG, 2.0));
    let (yd, bd) = (upload(gpu, &y), upload(gpu, &b));
    report.pointwise(gpu, "mul", &x, ARITH_NMSE, |v| ops::mul_assign(v, &y), |d| gpu.mul(d, &yd, n));
    report.pointwise(gpu, "add", &x, ARITH_NMSE, |v| ops::add_assign(v, &y), |d| gpu.add(d, &yd, n));
    for s in [0.125, -3.0] {
        let what = format!("scale {s}");
        report.pointwise(gpu, &what, &x, ARITH_NMSE, |v| ops::scale(v, s), |d| gpu.scale(d, s, n));
    }
    let cpu_bias = |v: &mut [f32]| v.chunks_exact_mut(SEG).for_each(|row| ops::add_assign(row, &b));
    report.pointwise(gpu, "add_bias", &x, ARITH_NMSE, cpu_bias, |d| gpu.add_bias(d, &bd, SEG, n / SEG));
    report.finish("arithmetic");
}

// ---------------------------------------------------------------------------------------------
// KV cache, attention, argmax.

fn f16_bits(x: &[f32]) -> Vec<u16> {
    x.iter().map(|&v| f16::from_f32(v).to_bits()).collect()
}

/// Writes `k`, `v` (`[rows.len(), kv_dim]`) into cache rows `rows` on the GPU and into the
/// host copies `kh`, `vh` as the CPU rounds them (round to nearest even, overflow to
/// infinity); then the whole device caches must equal the host's, bit for bit.
fn kv_write_both(
    gpu: &Gpu,
    report: &mut Report,
    what: &str,
    (k, v, rows, kv_dim): (&[f32], &[f32], &[i32], usize),
    (kc, vc): (&mut CudaSlice<u16>, &mut CudaSlice<u16>),
    (kh, vh): (&mut [u16], &mut [u16]),
) {
    let (kd, vd, rd) = (upload(gpu, k), upload(gpu, v), upload(gpu, rows));
    if let Err(e) = gpu.kv_write(&kd, &vd, &rd, rows.len(), kv_dim, kc, vc) {
        return report.fail(format!("{what}: {e}"));
    }
    for (t, &row) in rows.iter().enumerate() {
        kh[row as usize * kv_dim..][..kv_dim].copy_from_slice(&f16_bits(&k[t * kv_dim..][..kv_dim]));
        vh[row as usize * kv_dim..][..kv_dim].copy_from_slice(&f16_bits(&v[t * kv_dim..][..kv_dim]));
    }
    for (name, dev, host) in [("k", &*kc, &*kh), ("v", &*vc, &*vh)] {
        let got = download(gpu, dev, &format!("{what} {name} cache"), report);
        let first = got.iter().zip(host).position(|(a, b)| a != b);
        report.ok(first.is_none(), || {
            let i = first.unwrap_or(0);
            format!("{what}: {name} cache [{i}] (row {}) is {:#06x}, CPU {:#06x}", i / kv_dim, got[i], host[i])
        });
    }
}

#[test]
fn kv_write_rounds_as_the_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let (cache_rows, kv_dim) = (16, 64);
    let mut r = common::rng(50);
    let mut kh = f16_bits(&common::uniform(&mut r, cache_rows * kv_dim, 1.0));
    let mut vh = f16_bits(&common::uniform(&mut r, cache_rows * kv_dim, 1.0));
    let (mut kc, mut vc) = (upload(gpu, &kh), upload(gpu, &vh));
    // f16's edges: its largest value, values rounding to it and past it to infinity, zeros,
    // subnormals and the ties between them, a tie at 1 + 2^-11 (to even: 1).
    let mut edges = vec![65504.0, -65504.0, 65519.0, 65520.0, -7e4, 1e30, 0.0, -0.0, 1e-8, 6.1e-5, 1.0 / 3.0, -2.5];
    edges.extend([1.0, 2.0, 3.0, 4.0].map(|m| m * 2f32.powi(-25))); // 2^-24 is f16's least subnormal
    edges.push(1.0 + 2f32.powi(-11));
    let rows = [15, 0, 7];
    let mut k = common::uniform(&mut r, rows.len() * kv_dim, 2.0);
    let mut v = common::uniform(&mut r, rows.len() * kv_dim, 2.0);
    k[kv_dim..][..edges.len()].copy_from_slice(&edges);
    v[2 * kv_dim + 5..][..edges.len()].copy_from_slice(&edges);
    kv_write_both(gpu, &mut report, "kv_write", (&k, &v, &rows, kv_dim), (&mut kc, &mut vc), (&mut kh, &mut vh));
    report.finish("kv_write");
}

#[test]
fn attend_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    const CACHE_ROWS: usize = 720;
    let new_rows: Vec<i32> = (700..706).collect();
    // (first, end) rows per token: one long span (many split-K parts), one row, a mix with an
    // empty span (gives zeros on both sides), and a causal prefill of 20.
    let cases: [(&str, Vec<(usize, usize)>); 4] = [
        ("decode over 701 rows", vec![(0, 701)]),
        ("decode over one row", vec![(705, 706)]),
        ("mixed spans", vec![(700, 701), (1, 702), (670, 703), (447, 704), (100, 164), (0, 2), (5, 5)]),
        ("prefill of 20", (0..20).map(|t| (0, 686 + t)).collect()),
    ];
    for (ci, (heads, kv_heads, head_dim)) in [(8, 2, 64), (8, 2, 128), (2, 2, 256)].into_iter().enumerate() {
        let kv_dim = kv_heads * head_dim;
        let mut r = common::rng(60 + ci as u64);
        let mut kh = f16_bits(&common::uniform(&mut r, CACHE_ROWS * kv_dim, 1.0));
        let mut vh = f16_bits(&common::uniform(&mut r, CACHE_ROWS * kv_dim, 1.0));
        let (mut kc, mut vc) = (upload(gpu, &kh), upload(gpu, &vh));
        // The newest rows come in through kv_write, as in the forward pass.
        let (k, v) = (common::uniform(&mut r, 6 * kv_dim, 1.0), common::uniform(&mut r, 6 * kv_dim, 1.0));
        let what = format!("kv_write heads {heads}/{kv_heads} dim {head_dim}");
        kv_write_both(gpu, &mut report, &what, (&k, &v, &new_rows, kv_dim), (&mut kc, &mut vc), (&mut kh, &mut vh));
        let (kf, vf): (&[f16], &[f16]) = (bytemuck::cast_slice(&kh), bytemuck::cast_slice(&vh));
        for (name, spans) in &cases {
            for softcap in [0.0f32, 50.0] {
                let n = spans.len();
                let longest = spans.iter().map(|&(a, b)| b - a).max().unwrap_or(0);
                let q = common::uniform(&mut r, n * heads * head_dim, 1.0);
                let scale = 1.0 / (head_dim as f32).sqrt();
                let ranges: Vec<Range<usize>> = spans.iter().map(|&(a, b)| a..b).collect();
                let mut want = vec![0.0; n * heads * head_dim];
                let mut scores = vec![0.0; longest.max(1) * 64];
                let cap = (softcap > 0.0).then_some(softcap);
                ops::attend_batch(&q, kf, vf, &ranges, heads, kv_heads, head_dim, scale, cap, &mut want, &mut scores);
                let flat: Vec<i32> = spans.iter().flat_map(|&(a, b)| [a as i32, b as i32]).collect();
                let (qd, sd) = (upload(gpu, &q), upload(gpu, &flat));
                let mut partial = output::<f32>(gpu, Gpu::attention_scratch_len(n, heads, head_dim, longest));
                let mut out = output::<f32>(gpu, want.len());
                let what = format!("attend heads {heads}/{kv_heads} dim {head_dim} softcap {softcap}: {name}, token");
                let shape = (heads, kv_heads, head_dim);
                let got = gpu.attend(&qd, &kc, &vc, &sd, longest, n, shape, (scale, softcap), &mut partial, &mut out);
                let got = got.map(|()| {
                    download(gpu, &partial, &format!("{what} partial"), &mut report);
                    download(gpu, &out, &what, &mut report)
                });
                report.runs(&what, got.as_deref(), &want, heads * head_dim, ATTEND_NMSE, &[]);
            }
        }
    }
    report.finish("attend");
}

/// The first index of the largest value (the greedy sampler's choice); 0 if none beats -inf.
fn first_max(row: &[f32]) -> i32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as i32
}

#[test]
fn argmax_matches_cpu() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let names = ["uniform", "ties", "all -inf", "-inf but the last", "constant", "equal ends", "±0"];
    for cols in [7usize, 256, 1000, 50257] {
        let mut r = common::rng(cols as u64);
        let mut ties = common::uniform(&mut r, cols, 1.0);
        for i in [cols / 3 + 256, cols - 1, cols / 2, cols / 3] {
            ties[i % cols] = 5.0; // in different threads' and warps' shares; the first, cols / 3, wins
        }
        let mut last = vec![f32::NEG_INFINITY; cols];
        last[cols - 1] = -1e30;
        let mut ends = common::uniform(&mut r, cols, 1.0);
        (ends[0], ends[cols - 1]) = (2.0, 2.0);
        let mut zeros = vec![-0.0; cols];
        zeros[cols / 2] = 0.0;
        let rows = [
            common::uniform(&mut r, cols, 10.0),
            ties,
            vec![f32::NEG_INFINITY; cols],
            last,
            vec![1.0; cols],
            ends,
            zeros,
        ];
        let x = rows.concat();
        let (xd, mut out) = (upload(gpu, &x), output::<i32>(gpu, rows.len()));
        let what = format!("argmax cols={cols}");
        match gpu.argmax(&xd, rows.len(), cols, &mut out) {
            Err(e) => report.fail(format!("{what}: {e}")),
            Ok(()) => {
                let got = download(gpu, &out, &what, &mut report);
                for ((row, name), g) in rows.iter().zip(names).zip(got) {
                    let want = first_max(row);
                    report.ok(g == want, || format!("{what} {name}: gpu {g}, cpu {want}"));
                }
            }
        }
    }
    report.finish("argmax");
}

// ---------------------------------------------------------------------------------------------
// The device and the API's checks.

#[test]
fn device_info_is_sane() {
    let Some((gpu, _turn)) = gpu() else { return };
    let info = gpu.info();
    eprintln!("{info:?}");
    assert!(!info.name.trim().is_empty(), "{info:?}");
    assert!(info.bandwidth > 1e9 && info.memory > 0 && info.sms > 0 && info.sm() >= 80, "{info:?}");
    let (free, total) = gpu.memory().expect("memory");
    assert!(0 < free && free <= total, "free {free}, total {total}");
}

/// Buffers smaller than the shapes passed are a `GpuError::Shape`, before anything is queued.
#[test]
fn bad_shapes_are_errors_not_faults() {
    let Some((gpu, _turn)) = gpu() else { return };
    let (rows, cols, n) = (64, 256, 2);
    let w = Weight::new(DType::Q4_0, rows, cols, &weight_values(rows, cols, 70));
    let gw = gpu.upload_weight(&w.wref()).expect("upload_weight");
    let mut scratch = gpu.matmul_scratch(n, cols, rows * cols).expect("scratch");
    // Exact-size buffers here: `upload`'s guard would make them long enough.
    let x = gpu.upload(&vec![1.0f32; 17 * cols]).expect("upload");
    let mut short = gpu.upload(&vec![f32::GUARD; n * rows - 1]).expect("upload");
    let e = gpu.matmul(&gw, &x, n, &mut short, &mut scratch);
    assert!(matches!(e, Err(GpuError::Shape { op: "matmul", what: "out", .. })), "{e:?}");
    let mut back = vec![0.0f32; n * rows - 1];
    gpu.read(&short, &mut back).expect("read");
    assert!(back.iter().all(|v| v.to_bits() == f32::GUARD.to_bits()), "a refused matmul wrote its output");

    let short_x = gpu.upload(&vec![1.0f32; n * cols - 1]).expect("upload");
    let mut out = output::<f32>(gpu, 17 * rows);
    let e = gpu.matmul(&gw, &short_x, n, &mut out, &mut scratch);
    assert!(matches!(e, Err(GpuError::Shape { op: "matmul", what: "x", .. })), "{e:?}");
    // Scratch sized for 2 tokens, a batch of 17 (the GEMM's, or the mat-vec's q8_1 input).
    let e = gpu.matmul(&gw, &x, 17, &mut out, &mut scratch);
    assert!(matches!(e, Err(GpuError::Shape { .. })), "{e:?}");

    let mut y = output::<u8>(gpu, 1024);
    let e = gpu.quantize_q8_1(&x, 1, 48, &mut y);
    assert!(matches!(e, Err(GpuError::Shape { op: "quantize_q8_1", .. })), "{e:?}");
    let cache = output::<u16>(gpu, 64);
    let spans = upload(gpu, &[0i32, 1]);
    let mut partial = output::<f32>(gpu, 1024);
    let e = gpu.attend(&x, &cache, &cache, &spans, 1, 1, (1, 1, 48), (1.0, 0.0), &mut partial, &mut out);
    assert!(matches!(e, Err(GpuError::Shape { op: "attend", .. })), "{e:?}");

    let q4_1 = Weight::new(DType::Q4_1, rows, cols, &weight_values(rows, cols, 71));
    let e = gpu.upload_weight(&q4_1.wref());
    assert!(matches!(e, Err(GpuError::Unsupported { .. })), "{e:?}");
}

/// `Gpu` is `Send + Sync` ("share it with an Arc"): an op queued from a thread that has made
/// no CUDA call before must run.
#[test]
fn ops_run_from_a_fresh_thread() {
    let Some((gpu, _turn)) = gpu() else { return };
    let x = [1.0f32, -2.0, 3.5];
    let mut xd = upload(gpu, &x);
    let queued = std::thread::scope(|s| s.spawn(|| gpu.scale(&mut xd, 2.0, x.len())).join().expect("thread"));
    assert!(queued.is_ok(), "scale from a fresh thread: {queued:?}");
    let mut report = Report::default();
    let got = download(gpu, &xd, "scale", &mut report);
    report.ok(got == [2.0, -4.0, 7.0], || format!("scale from a fresh thread gave {got:?}"));
    report.finish("fresh thread");
}

/// `copy` between buffers and `copy_within` one buffer, overlapping both ways, give what
/// `slice::copy_within` gives, and leave the guards alone.
#[test]
fn copies_match_slice_copy_within() {
    let Some((gpu, _turn)) = gpu() else { return };
    let mut report = Report::default();
    let data: Vec<f32> = (0..1000).map(|i| i as f32).collect();
    for (from, to) in [(100..900, 0), (0..800, 150), (10..20, 500), (300..700, 299), (0..0, 7), (5..400, 5)] {
        let mut dev = upload(gpu, &data);
        gpu.copy_within(&mut dev, from.clone(), to).expect("copy_within");
        let mut want = data.clone();
        want.copy_within(from.clone(), to);
        let got = download(gpu, &dev, &format!("copy_within {from:?} to {to}"), &mut report);
        report.ok(got == want, || format!("copy_within {from:?} to {to}: differs from the slice's"));
    }
    let src = upload(gpu, &data);
    let mut dst = output::<f32>(gpu, 64);
    gpu.copy(&src, 900, &mut dst, 10, 50).expect("copy");
    let got = download(gpu, &dst, "copy", &mut report);
    report.ok(got[10..60] == data[900..950] && got[..10].iter().all(|v| v.to_bits() == f32::GUARD.to_bits()), || {
        "copy: wrong elements moved".into()
    });
    let bad = gpu.copy(&src, data.len() + GUARD_LEN - 10, &mut dst, 0, 20);
    report.ok(bad.is_err(), || "copy past the source's end was accepted".into());
    report.finish("copies_match_slice_copy_within");
}
