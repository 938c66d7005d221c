//! Rows for kernel tests: random ones and the adversarial cases that break quantizers.
#![allow(dead_code)]

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// A named test row.
pub struct Row {
    /// What the row is, for failure messages.
    pub name: String,
    /// The values.
    pub x: Vec<f32>,
}

/// A seeded generator, so a failure names a reproducible row.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `n` values uniform in `[-scale, scale]`.
pub fn uniform(rng: &mut SmallRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-scale..=scale)).collect()
}

/// Random rows and adversarial ones, each of length `n` (a multiple of the block size).
///
/// The adversarial set follows ggml's `test-quantize-fns` (its cosine vector) and the cases
/// that broke other implementations: all zeros, constants, a lone outlier, values whose
/// scale overflows or underflows f16, alternating extremes, one-signed rows, ramps.
pub fn rows(n: usize, seed: u64) -> Vec<Row> {
    let mut r = rng(seed);
    let mut out = Vec::new();
    let mut push = |name: &str, x: Vec<f32>| {
        assert_eq!(x.len(), n);
        out.push(Row { name: name.to_string(), x })
    };
    for (i, scale) in [1.0f32, 1e-3, 30.0, 1e4].into_iter().enumerate() {
        for k in 0..4 {
            push(&format!("uniform(scale={scale}, #{k})"), uniform(&mut r, n, scale));
        }
        let _ = i;
    }
    // Gaussian-like weights, the shape real checkpoints have.
    push(
        "gaussian",
        (0..n)
            .map(|_| {
                let s: f32 = (0..12).map(|_| r.random::<f32>()).sum();
                (s - 6.0) * 0.02
            })
            .collect(),
    );
    push("cosine (test-quantize-fns)", (0..n).map(|i| 0.1 + 2.0 * (i as f32).cos()).collect());
    push("zeros", vec![0.0; n]);
    push("negative zeros", vec![-0.0; n]);
    push("constant", vec![0.75; n]);
    push("negative constant", vec![-3.5; n]);
    push("lone outlier", (0..n).map(|i| if i % 97 == 5 { 1000.0 } else { 0.001 * (i % 7) as f32 }).collect());
    push("negative outlier", (0..n).map(|i| if i % 61 == 3 { -500.0 } else { 0.01 * (i % 5) as f32 }).collect());
    push("alternating extremes", (0..n).map(|i| if i % 2 == 0 { 60000.0 } else { -60000.0 }).collect());
    push("huge (f16 scale overflows)", (0..n).map(|i| 1e30 * ((i % 3) as f32 - 1.0)).collect());
    push("tiny (f16 scale underflows)", (0..n).map(|i| 1e-9 * ((i % 13) as f32 - 6.0)).collect());
    push("subnormal f32", (0..n).map(|i| f32::from_bits(1 + (i as u32 % 100))).collect());
    push("positive only", (0..n).map(|_| r.random_range(0.0..2.0)).collect());
    push("negative only", (0..n).map(|_| r.random_range(-2.0..0.0)).collect());
    push("ramp", (0..n).map(|i| i as f32 / n as f32 - 0.5).collect());
    push("integers", (0..n).map(|i| ((i * 7919) % 33) as f32 - 16.0).collect());
    push("sparse", (0..n).map(|i| if i % 16 == 0 { r.random_range(-1.0..1.0) } else { 0.0 }).collect());
    out
}

/// Bitwise equality of two float slices (NaN equals NaN with the same bits), with the first
/// difference named.
pub fn assert_bits_eq(what: &str, ours: &[f32], theirs: &[f32]) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            a.to_bits() == b.to_bits(),
            "{what}: element {i}: pupil {a:e} ({:#x}), ggml {b:e} ({:#x})",
            a.to_bits(),
            b.to_bits()
        );
    }
}

/// Byte equality with the first differing block named.
pub fn assert_bytes_eq(what: &str, ours: &[u8], theirs: &[u8], block_bytes: usize) {
    assert_eq!(ours.len(), theirs.len(), "{what}: length");
    if let Some(i) = ours.iter().zip(theirs).position(|(a, b)| a != b) {
        let b = i / block_bytes;
        let span = b * block_bytes..(b + 1) * block_bytes;
        panic!(
            "{what}: first difference at byte {i} (block {b})\n pupil: {:?}\n  ggml: {:?}",
            &ours[span.clone()],
            &theirs[span]
        );
    }
}

/// Dot products agree within float rounding: relative to the sum of |terms| the result could
/// have accumulated (passed in as `scale`), allowing for a different summation order.
pub fn assert_dot_close(what: &str, ours: f32, theirs: f32, scale: f64, n: usize) {
    let tol = scale * f32::EPSILON as f64 * (n as f64).sqrt() * 4.0 + 1e-30;
    let diff = (ours as f64 - theirs as f64).abs();
    assert!(
        diff <= tol || (ours.is_nan() && theirs.is_nan()) || ours == theirs,
        "{what}: pupil {ours:e}, ggml {theirs:e}, |diff| {diff:e} > tol {tol:e}"
    );
}

/// A finite f16 for a block scale drawn from random bytes: a quarter each of arbitrary finite
/// bit patterns, subnormals, large values (2^10 and up) and typical weight scales; either sign.
pub fn finite_f16(rng: &mut SmallRng) -> half::f16 {
    let sign = if rng.random::<bool>() { 0x8000 } else { 0 };
    let mantissa = rng.random_range(0..0x400u16);
    let exponent = match rng.random_range(0..4) {
        0 => rng.random_range(0..31u16),
        1 => 0,
        2 => rng.random_range(25..31u16),
        _ => return half::f16::from_f32(rng.random_range(-0.1f32..0.1)),
    };
    half::f16::from_bits(sign | exponent << 10 | mantissa)
}

/// `n_blocks` blocks of `block_bytes` random bytes each, except that the little-endian f16
/// fields at byte offsets `f16_at` within each block hold [`finite_f16`] values. Random quant
/// bits reach patterns a quantizer never writes, so they catch layout errors that a
/// quantize-then-dequantize round trip hides.
pub fn random_blocks(rng: &mut SmallRng, n_blocks: usize, block_bytes: usize, f16_at: &[usize]) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..n_blocks * block_bytes).map(|_| rng.random()).collect();
    for block in bytes.chunks_exact_mut(block_bytes) {
        for &at in f16_at {
            block[at..at + 2].copy_from_slice(&finite_f16(rng).to_le_bytes());
        }
    }
    bytes
}

/// Bytes per block of `B`.
pub fn block_bytes<B: pupil_kernels::quant::Block>() -> usize {
    std::mem::size_of::<B>()
}

/// Blocks from bytes, copied so that any byte buffer is aligned.
pub fn to_blocks<B: pupil_kernels::quant::Block>(bytes: &[u8]) -> Vec<B> {
    let mut blocks = vec![<B as pupil_kernels::quant::Block>::zeroed(); bytes.len() / block_bytes::<B>()];
    bytemuck::cast_slice_mut::<B, u8>(&mut blocks).copy_from_slice(bytes);
    blocks
}

/// pupil's typed reference quantizer, as bytes.
pub fn ours_quantize<B: pupil_kernels::quant::Quantize>(x: &[f32]) -> Vec<u8> {
    let mut out = vec![<B as pupil_kernels::quant::Block>::zeroed(); x.len() / B::SIZE];
    B::quantize(x, &mut out);
    bytemuck::cast_slice(&out).to_vec()
}

/// pupil's typed reference activation quantizer (what a matmul's input goes through) as bytes.
pub fn ours_activations<B: pupil_kernels::quant::Quantize>(x: &[f32]) -> Vec<u8> {
    let mut out = vec![<B as pupil_kernels::quant::Block>::zeroed(); x.len() / B::SIZE];
    B::quantize_activations(x, &mut out);
    bytemuck::cast_slice(&out).to_vec()
}

/// pupil's typed reference dequantizer over block bytes.
pub fn ours_dequantize<B: pupil_kernels::quant::Block>(bytes: &[u8]) -> Vec<f32> {
    let blocks = to_blocks::<B>(bytes);
    let mut out = vec![0.0; blocks.len() * B::SIZE];
    B::dequantize(&blocks, &mut out);
    out
}

/// pupil's typed reference dot product over weight and activation block bytes.
pub fn ours_dot<B: pupil_kernels::quant::Block>(w: &[u8], a: &[u8]) -> f32 {
    B::dot(&to_blocks::<B>(w), &to_blocks::<B::Act>(a))
}
