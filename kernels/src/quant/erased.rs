//! The reference kernels behind a type-erased table, for callers that learn the type at run
//! time and hold raw bytes (a tensor in a memory-mapped GGUF file).

use super::*;
use crate::{DType, KernelError};
use half::{bf16, f16};

/// The kernels for one weight type, over raw little-endian block bytes.
#[derive(Clone, Copy, Debug)]
pub struct Ops {
    /// The weight type.
    pub dtype: DType,
    /// The activation type `dot` expects on its right-hand side.
    pub act: DType,
    /// Expand a row of blocks (bytes) to floats.
    pub dequantize: fn(&[u8], &mut [f32]) -> Result<(), KernelError>,
    /// Quantize floats into a row of blocks, where a reference quantizer exists: ggml's
    /// `quantize_row_*_ref`, as llama-quantize writes weights.
    pub quantize: Option<Quantizer>,
    /// Quantize a row of activations into this type before a matmul, as ggml's CPU backend
    /// does on x86-64 ([`Quantize::quantize_activations`]): `quantize` but for `Q8_0` and
    /// `Q8_1`. `None` where `quantize` is.
    pub activate: Option<Quantizer>,
    /// Dot product of a weight row with an activation row of type `act`.
    pub dot: fn(&[u8], &[u8]) -> Result<f32, KernelError>,
    /// One weight row against four activation rows: `out[i] = dot(w, a[i])`, decoding the
    /// weight row once for the four. `None` where a tier has no such kernel: callers then
    /// loop over `dot` (which is the reference's definition of it).
    pub dot_x4: Option<fn(&[u8], [&[u8]; 4], &mut [f32; 4]) -> Result<(), KernelError>>,
    /// Several weight rows against one activation row (the decode matvec):
    /// `dot_rows(w, a, out)` takes `out.len()` rows back to back in `w`, each as long as `a`,
    /// and sets `out[r] = dot(row r, a)`, bit for bit that tier's `dot`. `None` where a tier has
    /// no such kernel: callers then loop over `dot` (which is the reference's definition of it).
    pub dot_rows: Option<fn(&[u8], &[u8], &mut [f32]) -> Result<(), KernelError>>,
    /// Many weight rows against many activation rows (the prefill matmul), register-tiled:
    /// `gemm(w, a, n, out, ldo)` takes the rows back to back in `w` and `n` rows of type `act`
    /// back to back in `a` (all of one length), and sets `out[t * ldo + r] = dot(row r, a[t])`
    /// for every row `r` and token `t < n`, leaving the rest of `out` alone. Unlike `dot_x4`
    /// it agrees with `dot` within float rounding, not bit for bit (its float sums come in
    /// another order). `None` where a tier has none: callers use `dot_x4` and `dot`.
    pub gemm: Option<Gemm>,
    /// The weights repacked once into the layout the tier's GEMM micro-kernels read
    /// (`pack(w, cols)`: whole rows of `cols` elements in `w`), for [`Ops::gemm_packed`].
    /// `None` where a tier has no packed kernels for the type.
    pub pack: Option<Pack>,
    /// [`Ops::gemm`] over weights from [`Ops::pack`]: `gemm_packed(p, rows, cols, a, n, out,
    /// ldo)`, every output bit for bit what `gemm` (and `dot`) gives it.
    pub gemm_packed: Option<GemmPacked>,
    /// Rows per panel of [`Ops::pack`]'s layout (0 without): a run of rows that starts at a
    /// multiple of it is a run of whole panels.
    pub panel_rows: usize,
    /// Whether [`Ops::gemm_packed`] is also the faster way to decode one token (its layout
    /// streams as fast as the stored one); otherwise one token reads the stored weights
    /// through [`Ops::dot_rows`].
    pub packed_decode: bool,
    /// Stored bytes of row `r` back from [`Ops::pack`]'s layout: `packed_row(p, cols, r,
    /// first, out)` fills `out` with the row's blocks from `first` on (an embedding lookup in
    /// a matrix whose map was released for its packed copy).
    /// `None` where the layout is not the only copy the tier reads.
    pub packed_row: Option<PackedRow>,
    /// Batches of at least this many tokens go through [`Ops::gemm`] rather than a
    /// [`Ops::dot_rows`] per token: where the GEMM's panel decoding (once per call) starts to
    /// pay for the tier. Both form every output in the same canonical order, so the switch
    /// changes speed, not bits.
    pub gemm_from: usize,
}

/// [`Ops::gemm_from`] of a tier whose GEMM decodes its panels with the portable code
/// (`cpu::gemm::unpack_transpose`): measured (`small_batch` bench, Zen 4) at 8 tokens for the
/// k-quants and past 15 for the other types.
pub(crate) const fn portable_gemm_from(dtype: DType) -> usize {
    match dtype {
        DType::Q4_K | DType::Q5_K | DType::Q6_K => 8,
        _ => 16,
    }
}

/// The signature of [`Ops::quantize`] and [`Ops::activate`]: `(x, out)`.
pub type Quantizer = fn(&[f32], &mut [u8]) -> Result<(), KernelError>;

/// The signature of [`Ops::packed_row`]: `(packed, cols, row, first block, out)`.
pub type PackedRow = fn(&[u32], usize, usize, usize, &mut [u8]) -> Result<(), KernelError>;

/// The signature of [`Ops::gemm`]: `(w, a, n, out, ldo)`.
pub type Gemm = fn(&[u8], &[u8], usize, &mut [f32], usize) -> Result<(), KernelError>;
/// The signature of [`Ops::pack`]: `(w, cols)`.
pub type Pack = fn(&[u8], usize) -> Result<Vec<u32>, KernelError>;
/// The signature of [`Ops::gemm_packed`]: `(packed, rows, cols, a, n, out, ldo)`.
pub type GemmPacked = fn(&[u32], usize, usize, &[u8], usize, &mut [f32], usize) -> Result<(), KernelError>;

/// The reference kernels for `dtype`, or `None` if pupil has none for it.
pub fn ops(dtype: DType) -> Option<&'static Ops> {
    macro_rules! table {
        ($($d:ident => $b:ty;)*) => {
            match dtype {
                $(DType::$d => {
                    static OPS: Ops = Ops {
                        dtype: DType::$d,
                        act: <<$b as Block>::Act as Block>::DTYPE,
                        dequantize: dequantize_bytes::<$b>,
                        quantize: Some(quantize_bytes::<$b>),
                        activate: Some(activate_bytes::<$b>),
                        dot: dot_bytes::<$b>,
                        dot_x4: None,
                        dot_rows: None,
                        gemm: None,
                        pack: None,
                        gemm_packed: None,
                        panel_rows: 0,
                        packed_decode: false,
                        packed_row: None,
                        gemm_from: portable_gemm_from(DType::$d),
                    };
                    Some(&OPS)
                })*
                _ => None,
            }
        };
    }
    table! {
        F32 => f32;
        F16 => f16;
        BF16 => bf16;
        Q4_0 => BlockQ4_0;
        Q4_1 => BlockQ4_1;
        Q5_0 => BlockQ5_0;
        Q5_1 => BlockQ5_1;
        Q8_0 => BlockQ8_0;
        Q8_1 => BlockQ8_1;
        Q2_K => BlockQ2_K;
        Q3_K => BlockQ3_K;
        Q4_K => BlockQ4_K;
        Q5_K => BlockQ5_K;
        Q6_K => BlockQ6_K;
        Q8_K => BlockQ8_K;
    }
}

fn blocks<B: Block>(bytes: &[u8]) -> Result<&[B], KernelError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| bad_buffer::<B>(bytes.len()))
}

fn blocks_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], KernelError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| bad_buffer::<B>(len))
}

fn bad_buffer<B: Block>(len: usize) -> KernelError {
    KernelError::BadBuffer { dtype: B::DTYPE, len, block_bytes: std::mem::size_of::<B>() }
}

fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), KernelError> {
    if expected == found { Ok(()) } else { Err(KernelError::Length { what, expected, found }) }
}

fn dequantize_bytes<B: Block>(bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let w = blocks::<B>(bytes)?;
    check_len("dequantize output", w.len() * B::SIZE, out.len())?;
    B::dequantize(w, out);
    Ok(())
}

fn quantize_bytes<B: Quantize>(x: &[f32], bytes: &mut [u8]) -> Result<(), KernelError> {
    let out = blocks_mut::<B>(bytes)?;
    check_len("quantize input", out.len() * B::SIZE, x.len())?;
    B::quantize(x, out);
    Ok(())
}

fn activate_bytes<B: Quantize>(x: &[f32], bytes: &mut [u8]) -> Result<(), KernelError> {
    let out = blocks_mut::<B>(bytes)?;
    check_len("quantize input", out.len() * B::SIZE, x.len())?;
    B::quantize_activations(x, out);
    Ok(())
}

fn dot_bytes<B: Block>(w: &[u8], a: &[u8]) -> Result<f32, KernelError> {
    let w = blocks::<B>(w)?;
    let a = blocks::<B::Act>(a)?;
    check_len("activation blocks", w.len(), a.len())?;
    Ok(B::dot(w, a))
}
