//! F32, F16 and BF16: one element per "block"; the dot product pairs each with itself, as ggml does.

use super::{Block, Quantize};
use crate::DType;
use half::{bf16, f16};

impl Block for f32 {
    const DTYPE: DType = DType::F32;
    const SIZE: usize = 1;
    type Act = f32;

    fn dequantize(blocks: &[f32], out: &mut [f32]) {
        out.copy_from_slice(blocks);
    }

    fn dot(w: &[f32], a: &[f32]) -> f32 {
        // ggml accumulates float dot products in double (`ggml_float`) in its scalar path.
        w.iter().zip(a).map(|(&x, &y)| f64::from(x * y)).sum::<f64>() as f32
    }
}

impl Quantize for f32 {
    fn quantize(x: &[f32], out: &mut [f32]) {
        out.copy_from_slice(x);
    }
}

impl Block for f16 {
    const DTYPE: DType = DType::F16;
    const SIZE: usize = 1;
    type Act = f16;

    fn dequantize(blocks: &[f16], out: &mut [f32]) {
        for (o, x) in out.iter_mut().zip(blocks) {
            *o = x.to_f32();
        }
    }

    fn dot(w: &[f16], a: &[f16]) -> f32 {
        w.iter().zip(a).map(|(x, y)| f64::from(x.to_f32() * y.to_f32())).sum::<f64>() as f32
    }
}

impl Quantize for f16 {
    fn quantize(x: &[f32], out: &mut [f16]) {
        // Round to nearest even, as ggml's `GGML_FP32_TO_FP16` (F16C or its software fallback).
        for (o, &v) in out.iter_mut().zip(x) {
            *o = f16::from_f32(v);
        }
    }
}

impl Block for bf16 {
    const DTYPE: DType = DType::BF16;
    const SIZE: usize = 1;
    type Act = bf16;

    fn dequantize(blocks: &[bf16], out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(blocks) {
            *o = bf16_to_f32(x);
        }
    }

    fn dot(w: &[bf16], a: &[bf16]) -> f32 {
        w.iter().zip(a).map(|(&x, &y)| f64::from(bf16_to_f32(x) * bf16_to_f32(y))).sum::<f64>() as f32
    }
}

impl Quantize for bf16 {
    fn quantize(x: &[f32], out: &mut [bf16]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = bf16_from_f32_ggml(v);
        }
    }
}

/// bf16 is the top half of an f32: widen by shifting, keeping NaN payloads as they are
/// (`half::bf16::to_f32` quiets signalling NaNs; ggml does not).
fn bf16_to_f32(x: bf16) -> f32 {
    f32::from_bits(u32::from(x.to_bits()) << 16)
}

/// ggml's `ggml_compute_fp32_to_bf16`: NaNs are quieted, everything else rounds to nearest
/// even on the upper 16 bits (no special case for overflow into infinity).
fn bf16_from_f32_ggml(v: f32) -> bf16 {
    let u = v.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return bf16::from_bits(((u >> 16) | 64) as u16);
    }
    bf16::from_bits(((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16)
}
