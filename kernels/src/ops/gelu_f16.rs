//! GELU as ggml's CPU backend evaluates it, for bit-level agreement with llama.cpp.
//!
//! ggml builds with `GGML_GELU_FP16`: `ggml_vec_gelu_f32` and `ggml_vec_geglu_f32`
//! (`ggml-cpu/vec.h`) round the input to f16, look the result up in a 65536-entry table of
//! f16 values filled with `ggml_gelu_f32` (`ggml-cpu/ggml-cpu.c`, `ggml_table_gelu_f16`), and
//! pass inputs beyond ±10 through as `x` and 0. The table's rounding (about 1e-3 relative)
//! is visible downstream once activations are quantized to Q8, so a model that must match
//! llama.cpp uses this version, with the same table (built on first use).

use half::f16;
use half::slice::HalfFloatSliceExt;
use rayon::prelude::*;
use std::sync::OnceLock;

/// `f16(gelu(x))` as f32 for every f16 `x`, indexed by its bits.
fn table() -> &'static [f32] {
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|b| f16::from_f32(gelu_f32(f16::from_bits(b).to_f32())).to_f32()).collect())
}

/// The tanh-approximated GELU of one f32, as `ggml_gelu_f32` computes it.
fn gelu_f32(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * (1.0 + COEF_A * x * x)).tanh())
}

/// GELU (tanh approximation) in place, with ggml's f16 table semantics: `x <= -10` gives 0,
/// `x >= 10` gives `x`, anything else `f16(gelu(f16(x)))`.
///
/// The inputs are rounded to f16 a chunk at a time (`half`'s slice conversion, F16C where the
/// CPU has it, the same rounding as one at a time), and a prefill-sized slice is split across
/// the threads.
pub fn gelu_tanh_f16(x: &mut [f32]) {
    if x.len() >= PARALLEL_MIN {
        x.par_chunks_mut(PARALLEL_MIN / 4).for_each(gelu_chunk);
    } else {
        gelu_chunk(x);
    }
}

/// Slices from this long on are split across threads (a decode step's FFN is far below).
const PARALLEL_MIN: usize = 1 << 16;

fn gelu_chunk(x: &mut [f32]) {
    let table = table();
    let mut h = [f16::ZERO; 64];
    for c in x.chunks_mut(64) {
        let h = &mut h[..c.len()];
        h.convert_from_f32_slice(c);
        for (v, h) in c.iter_mut().zip(h.iter()) {
            *v = if *v <= -10.0 {
                0.0
            } else if *v >= 10.0 {
                *v
            } else {
                table[usize::from(h.to_bits())]
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_to_exact_gelu_and_on_the_f16_grid() {
        let xs: Vec<f32> = (-1200..1200).map(|i| i as f32 * 0.01).collect();
        let mut y = xs.clone();
        gelu_tanh_f16(&mut y);
        let mut exact = xs.clone();
        super::super::gelu_tanh(&mut exact);
        for ((&x, &a), &b) in xs.iter().zip(&y).zip(&exact) {
            if x.abs() < 10.0 {
                assert_eq!(f16::from_f32(a).to_f32(), a, "result is an f16 value");
                // Off by at most the input's f16 rounding (half an ulp, 2^-11 relative) times
                // GELU's steepest slope (1.13), plus the output's f16 rounding.
                let bound = 1.2 * x.abs() * 2f32.powi(-11) + 1e-3 * b.abs();
                assert!((a - b).abs() <= bound, "gelu({x}) = {a}, exact {b}");
            } else {
                assert_eq!(a, if x > 0.0 { x } else { 0.0 });
            }
        }
        // Inputs equal after rounding to f16 give equal outputs, as a table lookup would.
        let mut pair = [1.0001f32, 1.0002];
        gelu_tanh_f16(&mut pair);
        assert_eq!(pair[0], pair[1]);
    }

    /// The chunked, parallel path gives each value what one-at-a-time rounding and lookup
    /// give (f32 inputs between f16 values, halfway cases, the ±10 edges, NaN).
    #[test]
    fn chunked_path_is_the_scalar_lookup() {
        let mut seed = 0x9e37_79b9u32;
        let mut xs: Vec<f32> = (0..(1 << 17) + 37)
            .map(|_| {
                seed = seed.wrapping_mul(1664525).wrapping_add(1013904223);
                (seed >> 8) as f32 / (1u32 << 24) as f32 * 24.0 - 12.0
            })
            .collect();
        xs.extend([10.0, -10.0, 9.999, -9.999, 1.0 + 2f32.powi(-11), f32::NAN, 0.0, -0.0]);
        let mut ours = xs.clone();
        gelu_tanh_f16(&mut ours);
        for (&x, &y) in xs.iter().zip(&ours) {
            let want = if x <= -10.0 {
                0.0
            } else if x >= 10.0 {
                x
            } else {
                table()[usize::from(f16::from_f32(x).to_bits())]
            };
            assert!(want.to_bits() == y.to_bits() || (want.is_nan() && y.is_nan()), "gelu({x}): {y} vs {want}");
        }
    }

    #[test]
    fn table_equals_computing_each_entry() {
        for b in 0..=u16::MAX {
            let x = f16::from_bits(b).to_f32();
            if x.abs() < 10.0 {
                let mut y = [x];
                gelu_tanh_f16(&mut y);
                assert_eq!(y[0].to_bits(), f16::from_f32(gelu_f32(x)).to_f32().to_bits(), "{x}");
            }
        }
    }
}
