//! The float and legacy block types against ggml itself: quantize and dequantize bit for bit,
//! dot products within float rounding, the activation pairing, and the type-erased table.
//!
//! Every check runs on ggml-quantized rows (the blocks real files hold) and on blocks of random
//! bytes (every quant bit pattern, scales from subnormal to 65504 of either sign): a nibble
//! read from the wrong half or a fifth bit from the wrong end of `qh` fails both.
#![cfg(feature = "ggml")]

mod common;

use common::{
    assert_bits_eq, assert_bytes_eq, assert_dot_close, block_bytes, ours_activations, ours_dequantize, ours_dot,
    ours_quantize, random_blocks, rng, rows, to_blocks,
};
use half::{bf16, f16};
use pupil_kernels::quant::{self, Block, BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, BlockQ8_1, Quantize};
use pupil_kernels::{DType, KernelError, ggml};

/// Row lengths: one block, a typical small row, a typical hidden size.
const LENGTHS: [usize; 3] = [32, 256, 4096];
/// Blocks of random bytes per type in the dequantize check.
const RANDOM_BLOCKS: usize = 8192;

/// What the tests need to know about a type beyond [`Block`].
trait Oracle: Quantize {
    /// Byte offsets of the f16 scale fields in a block (all of it for F16).
    const F16_AT: &'static [usize];

    /// Σ |m · s| over blocks: the offset terms a `_1` dot product adds to the products of
    /// quants, which can cancel against them, so they count towards the rounding tolerance.
    fn offset_terms(_w: &[Self], _a: &[Self::Act]) -> f64 {
        0.0
    }

    /// The block with its offset `m` zeroed, so that dequantizing it gives `d * q` alone.
    fn without_offset(self) -> Self {
        self
    }
}

impl Oracle for f32 {
    const F16_AT: &'static [usize] = &[];
}
impl Oracle for f16 {
    const F16_AT: &'static [usize] = &[0];
}
impl Oracle for bf16 {
    const F16_AT: &'static [usize] = &[];
}
impl Oracle for BlockQ4_0 {
    const F16_AT: &'static [usize] = &[0];
}
impl Oracle for BlockQ5_0 {
    const F16_AT: &'static [usize] = &[0];
}
impl Oracle for BlockQ8_0 {
    const F16_AT: &'static [usize] = &[0];
}
impl Oracle for BlockQ8_1 {
    const F16_AT: &'static [usize] = &[0, 2];
}
impl Oracle for BlockQ4_1 {
    const F16_AT: &'static [usize] = &[0, 2];
    fn offset_terms(w: &[Self], a: &[BlockQ8_1]) -> f64 {
        w.iter().zip(a).map(|(w, a)| (f64::from(w.m.to_f32()) * f64::from(a.s.to_f32())).abs()).sum()
    }
    fn without_offset(self) -> Self {
        BlockQ4_1 { m: f16::ZERO, ..self }
    }
}
impl Oracle for BlockQ5_1 {
    const F16_AT: &'static [usize] = &[0, 2];
    fn offset_terms(w: &[Self], a: &[BlockQ8_1]) -> f64 {
        w.iter().zip(a).map(|(w, a)| (f64::from(w.m.to_f32()) * f64::from(a.s.to_f32())).abs()).sum()
    }
    fn without_offset(self) -> Self {
        BlockQ5_1 { m: f16::ZERO, ..self }
    }
}

/// ggml's quantizer for `t`: `ggml_quantize_chunk`, what llama-quantize runs, except for Q8_1,
/// which it does not take (it aborts), so there the reference `quantize_row_q8_1_ref`.
fn ggml_quantize(t: DType, x: &[f32]) -> Vec<u8> {
    match t {
        DType::Q8_1 => ggml::quantize_ref(t, x),
        _ => ggml::quantize(t, x),
    }
    .unwrap()
}

/// ggml's `to_float` for `t`. ggml has none for F32 (the bytes are the values) nor for Q8_1 (an
/// activation type only); a Q8_1 block means `d * q` as a Q8_0 block does, so its `d` and `qs`
/// go through ggml's Q8_0 dequantizer.
fn ggml_dequantize(t: DType, bytes: &[u8]) -> Vec<f32> {
    match t {
        DType::F32 => to_blocks::<f32>(bytes),
        DType::Q8_1 => {
            let q8_0: Vec<u8> = bytes.chunks_exact(36).flat_map(|b| b[..2].iter().chain(&b[4..]).copied()).collect();
            ggml::dequantize(DType::Q8_0, &q8_0).unwrap()
        }
        _ => ggml::dequantize(t, bytes).unwrap(),
    }
}

/// Random blocks of `B`: quant bits arbitrary, f16 scales finite; F32 and BF16 values finite.
fn random_row<B: Oracle>(seed: u64, n_blocks: usize) -> Vec<u8> {
    let mut r = rng(seed);
    match B::DTYPE {
        DType::F32 => {
            let x: Vec<f32> = (0..n_blocks).map(|_| f32::from(common::finite_f16(&mut r)) * 1e-3).collect();
            bytemuck::cast_slice(&x).to_vec()
        }
        DType::BF16 => {
            let x: Vec<bf16> = (0..n_blocks).map(|_| bf16::from_f32(f32::from(common::finite_f16(&mut r)))).collect();
            bytemuck::cast_slice(&x).to_vec()
        }
        _ => random_blocks(&mut r, n_blocks, block_bytes::<B>(), B::F16_AT),
    }
}

/// Our quantizer equals ggml's byte for byte on every row, for both of ggml's entry points
/// (`ggml_quantize_chunk` and the `_ref` row quantizer) where a type has them.
fn check_quantize<B: Oracle>() -> usize {
    let t = B::DTYPE;
    let mut blocks = 0;
    for n in LENGTHS {
        for row in rows(n, 0x9e37 + n as u64) {
            let ours = ours_quantize::<B>(&row.x);
            let what = format!("{t} quantize, n={n}, row {}", row.name);
            assert_bytes_eq(&what, &ours, &ggml_quantize(t, &row.x), block_bytes::<B>());
            if let Ok(reference) = ggml::quantize_ref(t, &row.x) {
                assert_bytes_eq(&format!("{what} (_ref)"), &ours, &reference, block_bytes::<B>());
            }
            blocks += n / B::SIZE;
        }
    }
    blocks
}

/// Our dequantizer equals ggml's bit for bit, on ggml-quantized rows and on random blocks.
fn check_dequantize<B: Oracle>() -> usize {
    let t = B::DTYPE;
    let mut blocks = 0;
    for n in LENGTHS {
        for row in rows(n, 0x51ed + n as u64) {
            let q = ggml_quantize(t, &row.x);
            assert_bits_eq(
                &format!("{t} dequantize, n={n}, row {}", row.name),
                &ours_dequantize::<B>(&q),
                &ggml_dequantize(t, &q),
            );
            blocks += n / B::SIZE;
        }
    }
    let q = random_row::<B>(0xb10c, RANDOM_BLOCKS);
    assert_bits_eq(&format!("{t} dequantize, random blocks"), &ours_dequantize::<B>(&q), &ggml_dequantize(t, &q));
    blocks + RANDOM_BLOCKS
}

/// The tolerance scale for a dot product: the sum of the magnitudes of the terms ggml adds,
/// from our dequantized values (checked against ggml by the dequantize tests).
fn dot_scale<B: Oracle>(w: &[u8], a: &[u8]) -> f64 {
    let (w, a) = (to_blocks::<B>(w), to_blocks::<B::Act>(a));
    let bare: Vec<B> = w.iter().map(|&b| b.without_offset()).collect();
    let (mut wf, mut af) = (vec![0.0; w.len() * B::SIZE], vec![0.0; a.len() * B::SIZE]);
    B::dequantize(&bare, &mut wf);
    <B::Act as Block>::dequantize(&a, &mut af);
    let products: f64 = wf.iter().zip(&af).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum();
    products + B::offset_terms(&w, &a)
}

/// Our dot product against ggml's `vec_dot`, weights from ggml's quantizer and from random
/// bytes, activations from ggml's CPU activation quantizer. Returns (rows, rows where ours and
/// ggml's are the same float); Q8_1, which ggml has no product for, is checked against the sum
/// in f64 and counts as never equal.
fn check_dot<B: Oracle>() -> (usize, usize) {
    let (t, act) = (B::DTYPE, <B::Act as Block>::DTYPE);
    let (mut checked, mut exact) = (0, 0);
    for n in LENGTHS {
        let weights = rows(n, 0xd07 + n as u64);
        let activations = rows(n, 0xac7 + n as u64);
        let mut cases: Vec<(String, Vec<u8>, &[f32])> = Vec::new();
        for (i, w) in weights.iter().enumerate() {
            // Pair each weight row with a different kind of activation row.
            let a = &activations[(i + 7) % activations.len()];
            cases.push((format!("weights {} x activations {}", w.name, a.name), ggml_quantize(t, &w.x), &a.x));
        }
        for (k, a) in activations.iter().enumerate() {
            cases.push((
                format!("random weights #{k} x activations {}", a.name),
                random_row::<B>(0x5eed + k as u64, n / B::SIZE),
                &a.x,
            ));
        }
        for (what, w, x) in cases {
            let a = ggml::quantize_activations(act, x).unwrap();
            let ours = ours_dot::<B>(&w, &a);
            let what = format!("{t} dot, n={n}, {what}");
            if !(ggml_dequantize(t, &w).iter().chain(&ggml_dequantize(act, &a)).all(|v| v.is_finite())) {
                // An infinite scale (a row beyond f16 range) makes every term ±inf or, times a
                // zero, NaN; which one survives depends on how the sum is split into lanes.
                let theirs = ggml::vec_dot(t, &w, &a).unwrap_or(f32::NAN);
                assert!(!ours.is_finite() && !theirs.is_finite(), "{what}: pupil {ours}, ggml {theirs}");
                checked += 1;
                continue;
            }
            match ggml::vec_dot(t, &w, &a) {
                Ok(theirs) => {
                    assert_dot_close(&what, ours, theirs, dot_scale::<B>(&w, &a), n);
                    exact += usize::from(ours.to_bits() == theirs.to_bits());
                }
                // ggml has no Q8_1 x Q8_1 product; check ours against the exact sum instead.
                Err(ggml::OracleError::Missing { .. }) if t == DType::Q8_1 => {
                    let (wf, af) = (ggml_dequantize(t, &w), ggml_dequantize(act, &a));
                    let exact_sum: f64 = wf.iter().zip(&af).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
                    assert_dot_close(&what, ours, exact_sum as f32, dot_scale::<B>(&w, &a), n);
                }
                Err(e) => panic!("{what}: {e}"),
            }
            checked += 1;
        }
    }
    (checked, exact)
}

/// ggml's CPU backend pairs the type with the activation type we do.
fn check_pairing<B: Block>() {
    assert_eq!(Some(<B::Act as Block>::DTYPE), ggml::vec_dot_type(B::DTYPE), "{}", B::DTYPE);
}

/// Aligned scratch bytes, so that `[1..]` is certainly misaligned for every block type.
fn aligned_copy(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8) + 1];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// The type-erased table gives the typed results, and errors (not panics) on bad buffers.
fn check_erased<B: Oracle>() {
    let t = B::DTYPE;
    let ops = quant::ops(t).unwrap_or_else(|| panic!("no ops for {t}"));
    assert_eq!((ops.dtype, ops.act), (t, <B::Act as Block>::DTYPE));
    let n = 256;
    let x = &rows(n, 0xe4a5).swap_remove(0).x;
    let a_x = &rows(n, 0xe4a6).swap_remove(1).x;
    let quantize = ops.quantize.expect("a reference quantizer");

    // Same results as the typed calls.
    let w = ours_quantize::<B>(x);
    let mut erased = vec![0u8; w.len()];
    quantize(x, &mut erased).unwrap();
    assert_eq!(erased, w, "{t}: erased quantize");
    let mut y = vec![0.0; n];
    (ops.dequantize)(&w, &mut y).unwrap();
    assert_bits_eq(&format!("{t}: erased dequantize"), &y, &ours_dequantize::<B>(&w));
    let a = ggml::quantize_activations(ops.act, a_x).unwrap();
    assert_eq!((ops.dot)(&w, &a).unwrap().to_bits(), ours_dot::<B>(&w, &a).to_bits(), "{t}: erased dot");

    // Errors name the buffer.
    let bb = block_bytes::<B>();
    let bad = |len| KernelError::BadBuffer { dtype: t, len, block_bytes: bb };
    let ab = std::mem::size_of::<B::Act>();
    let bad_act = |len| KernelError::BadBuffer { dtype: ops.act, len, block_bytes: ab };
    let (w_words, a_words) = (aligned_copy(&w), aligned_copy(&a));
    let w_shifted = &bytemuck::cast_slice::<u64, u8>(&w_words)[1..=w.len()];
    let a_shifted = &bytemuck::cast_slice::<u64, u8>(&a_words)[1..=a.len()];

    assert_eq!((ops.dequantize)(w_shifted, &mut y), Err(bad(w.len())), "{t}: misaligned dequantize");
    assert_eq!((ops.dequantize)(&w[..w.len() - 1], &mut y), Err(bad(w.len() - 1)), "{t}: partial block");
    assert_eq!(
        (ops.dequantize)(&w, &mut y[..n - 1]),
        Err(KernelError::Length { what: "dequantize output", expected: n, found: n - 1 }),
        "{t}: short output"
    );
    assert_eq!((ops.dot)(w_shifted, &a), Err(bad(w.len())), "{t}: misaligned weights");
    assert_eq!((ops.dot)(&w, a_shifted), Err(bad_act(a.len())), "{t}: misaligned activations");
    assert_eq!((ops.dot)(&w, &a[..a.len() - 1]), Err(bad_act(a.len() - 1)), "{t}: partial activation block");
    let blocks = n / B::SIZE;
    assert_eq!(
        (ops.dot)(&w, &a[..a.len() - ab]),
        Err(KernelError::Length { what: "activation blocks", expected: blocks, found: blocks - 1 }),
        "{t}: activations one block short"
    );
    let mut out_words = aligned_copy(&w);
    let out_shifted = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut out_words)[1..=w.len()];
    assert_eq!(quantize(x, out_shifted), Err(bad(w.len())), "{t}: misaligned quantize output");
    assert_eq!(
        quantize(&x[..n - B::SIZE], &mut erased),
        Err(KernelError::Length { what: "quantize input", expected: n, found: n - B::SIZE }),
        "{t}: short quantize input"
    );
}

/// Our activation quantizer against ggml's CPU-backend one (`quantize_activations`): byte for
/// byte on x86-64, whose AVX quantizers for Q8_0 and Q8_1 (`ggml-cpu/arch/x86/quants.c`) ours
/// reproduce, departures from the `_ref` quantizers included (`127 / amax`, halves to even,
/// saturation of what the subnormal rows' overflowing multiplier turns into `i32::MIN`).
/// Elsewhere ggml runs other SIMD code, and differences are only counted.
/// Returns (blocks checked, blocks where ggml's activations differ from ours).
fn check_activation_quantizer<A: Oracle>() -> (usize, usize) {
    let t = A::DTYPE;
    let (mut blocks, mut differ) = (0, 0);
    for n in LENGTHS {
        for row in rows(n, 0xac71 + n as u64) {
            let (ours, theirs) = (ours_activations::<A>(&row.x), ggml::quantize_activations(t, &row.x).unwrap());
            let what = format!("{t} activations, n={n}, row {}", row.name);
            blocks += n / A::SIZE;
            if cfg!(target_arch = "x86_64") {
                assert_bytes_eq(&what, &ours, &theirs, block_bytes::<A>());
            }
            differ +=
                ours.chunks(block_bytes::<A>()).zip(theirs.chunks(block_bytes::<A>())).filter(|(a, b)| a != b).count();
        }
    }
    (blocks, differ)
}

macro_rules! activation_tests {
    ($($name:ident => $a:ty;)*) => {$(
        #[test]
        fn $name() {
            let (blocks, differ) = check_activation_quantizer::<$a>();
            eprintln!("{} activations: {blocks} blocks, {differ} differ from the reference", <$a as Block>::DTYPE);
        }
    )*};
}

activation_tests! {
    activations_f32_match_ggml_cpu => f32;
    activations_f16_match_ggml_cpu => f16;
    activations_bf16_match_ggml_cpu => bf16;
    activations_q8_0_match_ggml_cpu => BlockQ8_0;
    activations_q8_1_match_ggml_cpu => BlockQ8_1;
}

macro_rules! oracle_tests {
    ($($name:ident => $b:ty;)*) => {$(
        mod $name {
            use super::*;

            #[test]
            fn quantize_matches_ggml_bytes() {
                let blocks = check_quantize::<$b>();
                eprintln!("{}: {blocks} blocks quantized byte-exact", <$b as Block>::DTYPE);
            }

            #[test]
            fn dequantize_matches_ggml_bits() {
                let blocks = check_dequantize::<$b>();
                eprintln!("{}: {blocks} blocks dequantized bit-exact", <$b as Block>::DTYPE);
            }

            #[test]
            fn dot_matches_ggml_vec_dot() {
                let (rows, exact) = check_dot::<$b>();
                eprintln!("{}: {rows} dot products close, {exact} bit-equal to ggml", <$b as Block>::DTYPE);
            }

            #[test]
            fn activation_type_is_ggmls() {
                check_pairing::<$b>();
            }

            #[test]
            fn erased_table_matches_typed_and_rejects_bad_buffers() {
                check_erased::<$b>();
            }
        }
    )*};
}

oracle_tests! {
    float32 => f32;
    float16 => f16;
    bfloat16 => bf16;
    q4_0 => BlockQ4_0;
    q4_1 => BlockQ4_1;
    q5_0 => BlockQ5_0;
    q5_1 => BlockQ5_1;
    q8_0 => BlockQ8_0;
    q8_1 => BlockQ8_1;
}

fn all_16_bit_patterns() -> Vec<u8> {
    (0..=u16::MAX).flat_map(u16::to_le_bytes).collect()
}

/// Every f16 bit pattern, NaNs and infinities included, converts as ggml's does.
#[test]
fn every_f16_pattern_dequantizes_as_ggml() {
    let all = all_16_bit_patterns();
    assert_bits_eq("F16, all patterns", &ours_dequantize::<f16>(&all), &ggml_dequantize(DType::F16, &all));
}

/// Every bf16 pattern, NaNs included, converts as ggml's plain shift does (a signalling NaN
/// stays signalling: `half::bf16::to_f32` would quiet it, so `quant/float.rs` shifts itself).
#[test]
fn every_bf16_pattern_dequantizes_as_ggml_bit_for_bit() {
    let all = all_16_bit_patterns();
    assert_bits_eq("BF16, all patterns", &ours_dequantize::<bf16>(&all), &ggml_dequantize(DType::BF16, &all));
}

/// The gaps in ggml that the tests above work around; if ggml fills one, test it directly.
#[test]
fn ggml_has_no_f32_or_q8_1_to_float_and_no_q8_1_vec_dot() {
    let missing = |e: ggml::OracleError| matches!(e, ggml::OracleError::Missing { .. });
    assert!(ggml::dequantize(DType::F32, &[0; 4]).is_err_and(missing));
    assert!(ggml::dequantize(DType::Q8_1, &[0; 36]).is_err_and(missing));
    assert!(ggml::vec_dot(DType::Q8_1, &[0; 36], &[0; 36]).is_err_and(missing));
    assert_eq!(ggml::vec_dot_type(DType::Q8_1), Some(DType::Q8_1));
}

#[test]
fn types_without_kernels_have_no_ops() {
    assert!(quant::ops(DType::IQ2_XXS).is_none());
    assert!(!DType::IQ4_NL.has_kernels());
}
