//! The k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and the activation type Q8_K) against ggml:
//! quantize byte for byte, dequantize bit for bit, dot products within float rounding, the
//! activation pairing, and the type-erased table.
//!
//! Dequantize and dot run on ggml-quantized rows (what files hold) and on blocks of random
//! bytes (every bit of every packed scale, min, high bit and quant; f16 super-scales from
//! subnormal to 65504 of either sign), so a scale bit read from the wrong byte fails even
//! where a quantizer would never set it. The dot also runs on activations whose quants are
//! all ±127 against weights with saturated quants and scales: the largest integer sums the
//! formats allow (the kind of case behind candle's i16 overflow, huggingface/candle#1526).
#![cfg(feature = "ggml")]

mod common;

use common::{assert_bits_eq, assert_bytes_eq, assert_dot_close, block_bytes, ours_dequantize, ours_dot, ours_quantize, random_blocks, rng, rows, to_blocks};
use half::f16;
use pupil_kernels::quant::{self, Block, BlockQ2_K, BlockQ3_K, BlockQ4_K, BlockQ5_K, BlockQ6_K, BlockQ8_K, QK_K, Quantize};
use pupil_kernels::{DType, ggml};
use rand::Rng;

/// Row lengths: one super-block, and a typical hidden size's worth of eight.
const LENGTHS: [usize; 2] = [256, 2048];
/// Seeds for [`rows`]; each gives a fresh set of random rows beside the fixed adversarial ones.
const SEEDS: [u64; 3] = [1, 2, 3];
/// Blocks of random bytes per type in the dequantize check.
const RANDOM_BLOCKS: usize = 4096;

/// What the tests need to know about a k-quant beyond [`Block`].
trait Oracle: Quantize + Block<Act = BlockQ8_K> {
    /// Byte offsets of the f16 super-scales in a block.
    const F16_AT: &'static [usize];

    /// The block with its min super-scale zeroed, so that it dequantizes to `d * sc * q`
    /// alone; `None` for types without mins. The dot's tolerance counts the product and min
    /// terms separately, since they can cancel.
    fn without_min(self) -> Option<Self> {
        None
    }

    /// The block with `d` zeroed: `-dmin * m` alone.
    fn min_only(self) -> Self {
        self
    }
}

impl Oracle for BlockQ2_K {
    const F16_AT: &'static [usize] = &[80, 82];
    fn without_min(self) -> Option<Self> {
        Some(BlockQ2_K { dmin: f16::ZERO, ..self })
    }
    fn min_only(self) -> Self {
        BlockQ2_K { d: f16::ZERO, ..self }
    }
}
impl Oracle for BlockQ3_K {
    const F16_AT: &'static [usize] = &[108];
}
impl Oracle for BlockQ4_K {
    const F16_AT: &'static [usize] = &[0, 2];
    fn without_min(self) -> Option<Self> {
        Some(BlockQ4_K { dmin: f16::ZERO, ..self })
    }
    fn min_only(self) -> Self {
        BlockQ4_K { d: f16::ZERO, ..self }
    }
}
impl Oracle for BlockQ5_K {
    const F16_AT: &'static [usize] = &[0, 2];
    fn without_min(self) -> Option<Self> {
        Some(BlockQ5_K { dmin: f16::ZERO, ..self })
    }
    fn min_only(self) -> Self {
        BlockQ5_K { d: f16::ZERO, ..self }
    }
}
impl Oracle for BlockQ6_K {
    const F16_AT: &'static [usize] = &[208];
}
impl Oracle for BlockQ8_K {
    const F16_AT: &'static [usize] = &[];
}

/// ggml's quantizer: `ggml_quantize_chunk` (llama-quantize's entry point, no importance
/// matrix) for the weight types; Q8_K is an activation type it does not take, so there
/// `quantize_row_q8_K_ref`.
fn ggml_quantize(t: DType, x: &[f32]) -> Vec<u8> {
    match t {
        DType::Q8_K => ggml::quantize_ref(t, x),
        _ => ggml::quantize(t, x),
    }
    .unwrap()
}

/// A finite f32 for a Q8_K scale: arbitrary finite bits, subnormals, or typical scales.
fn finite_f32(r: &mut rand::rngs::SmallRng) -> f32 {
    match r.random_range(0..3) {
        0 => loop {
            let v = f32::from_bits(r.random());
            if v.is_finite() {
                break v;
            }
        },
        1 => f32::from_bits(r.random_range(1..0x80_0000) | (r.random::<u32>() & 0x8000_0000)),
        _ => r.random_range(-0.1f32..0.1),
    }
}

/// `n_blocks` blocks of random bytes with finite super-scales.
fn random_row<B: Oracle>(seed: u64, n_blocks: usize) -> Vec<u8> {
    let mut r = rng(seed);
    let mut bytes = random_blocks(&mut r, n_blocks, block_bytes::<B>(), B::F16_AT);
    if B::DTYPE == DType::Q8_K {
        for block in bytes.chunks_exact_mut(block_bytes::<B>()) {
            block[..4].copy_from_slice(&finite_f32(&mut r).to_le_bytes());
        }
    }
    bytes
}

/// Blocks whose quant bytes are all one pattern, super-scales 1.0: with 0xff every quant and
/// scale is at its maximum (Q3_K: q = 3, scale 31; Q6_K: q = 31, scale -1), with 0x00 at its
/// minimum (Q3_K: q = -4, scale -32; Q6_K: q = -32), and the mixed patterns in between.
fn saturated_row<B: Oracle>(n_blocks: usize) -> Vec<u8> {
    let one = f16::ONE.to_le_bytes();
    let mut bytes = Vec::new();
    for i in 0..n_blocks {
        let mut block = vec![[0xffu8, 0x00, 0x80, 0x7f, 0xaa, 0x55][i % 6]; block_bytes::<B>()];
        for &at in B::F16_AT {
            block[at..at + 2].copy_from_slice(&one);
        }
        if B::DTYPE == DType::Q8_K {
            block[..4].copy_from_slice(&1f32.to_le_bytes());
        }
        bytes.extend(block);
    }
    bytes
}

/// Our quantizer equals ggml's byte for byte on every row. Returns blocks checked.
fn check_quantize<B: Oracle>() -> usize {
    let t = B::DTYPE;
    let mut blocks = 0;
    for n in LENGTHS {
        for seed in SEEDS {
            for row in rows(n, seed) {
                let what = format!("{t} quantize, n={n}, seed {seed}, row {}", row.name);
                assert_bytes_eq(&what, &ours_quantize::<B>(&row.x), &ggml_quantize(t, &row.x), block_bytes::<B>());
                blocks += n / B::SIZE;
            }
        }
    }
    blocks
}

/// Our dequantizer equals ggml's bit for bit, on ggml-quantized rows and on random blocks.
/// Returns blocks checked.
fn check_dequantize<B: Oracle>() -> usize {
    let t = B::DTYPE;
    let mut blocks = 0;
    for n in LENGTHS {
        for seed in SEEDS {
            for row in rows(n, seed) {
                let q = ggml_quantize(t, &row.x);
                let what = format!("{t} dequantize, n={n}, seed {seed}, row {}", row.name);
                assert_bits_eq(&what, &ours_dequantize::<B>(&q), &ggml::dequantize(t, &q).unwrap());
                blocks += n / B::SIZE;
            }
        }
    }
    for seed in SEEDS {
        let q = random_row::<B>(0xb10c + seed, RANDOM_BLOCKS);
        let what = format!("{t} dequantize, random blocks, seed {seed}");
        assert_bits_eq(&what, &ours_dequantize::<B>(&q), &ggml::dequantize(t, &q).unwrap());
        blocks += RANDOM_BLOCKS;
    }
    let q = saturated_row::<B>(12);
    assert_bits_eq(&format!("{t} dequantize, saturated blocks"), &ours_dequantize::<B>(&q), &ggml::dequantize(t, &q).unwrap());
    blocks + 12
}

fn abs_products(w: &[f32], a: &[f32]) -> f64 {
    w.iter().zip(a).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum()
}

/// The tolerance scale for a dot product: Σ |w_i * a_i| over our dequantized values (equal to
/// ggml's, by the dequantize tests), with the `d * sc * q` and `dmin * m` parts of `w_i`
/// counted separately for the types with mins, because ggml sums them separately and they can
/// cancel in `w_i`.
fn dot_scale<B: Oracle>(w: &[u8], a: &[u8]) -> f64 {
    let (w, a) = (to_blocks::<B>(w), to_blocks::<BlockQ8_K>(a));
    let mut af = vec![0.0; a.len() * B::SIZE];
    BlockQ8_K::dequantize(&a, &mut af);
    let mut wf = vec![0.0; w.len() * B::SIZE];
    match w.iter().map(|&b| b.without_min()).collect::<Option<Vec<B>>>() {
        None => {
            B::dequantize(&w, &mut wf);
            abs_products(&wf, &af)
        }
        Some(products) => {
            B::dequantize(&products, &mut wf);
            let p = abs_products(&wf, &af);
            let mins: Vec<B> = w.iter().map(|&b| b.min_only()).collect();
            B::dequantize(&mins, &mut wf);
            p + abs_products(&wf, &af)
        }
    }
}

/// Activations for the dot: ggml's CPU activation quantizer on each row, plus rows whose
/// quants are all -127 (x = 1), all +127 (x = -1) and random ±127 (random ±1).
fn activation_rows(n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut r = rng(seed ^ 0xac7);
    let mut xs: Vec<(String, Vec<f32>)> = rows(n, seed ^ 0xac7).into_iter().map(|row| (row.name, row.x)).collect();
    xs.push(("all -127".into(), vec![1.0; n]));
    xs.push(("all +127".into(), vec![-1.0; n]));
    xs.push(("random ±127".into(), (0..n).map(|_| if r.random::<bool>() { 1.0 } else { -1.0 }).collect()));
    xs.into_iter().map(|(name, x)| (name, ggml::quantize_activations(DType::Q8_K, &x).unwrap())).collect()
}

/// Our dot product against ggml's `vec_dot` (its AVX2 or scalar version, whichever the CPU
/// backend picked), weights from ggml's quantizer, random bytes and saturated bytes.
/// Returns (products checked, of which bit-equal to ggml's, of which beyond f32 range).
fn check_dot<B: Oracle>() -> (usize, usize, usize) {
    let t = B::DTYPE;
    let (mut checked, mut exact, mut overflowed) = (0, 0, 0);
    for n in LENGTHS {
        for seed in SEEDS {
            let acts = activation_rows(n, seed);
            let mut cases: Vec<(String, Vec<u8>)> = rows(n, seed ^ 0xd07)
                .into_iter()
                .map(|w| (format!("weights {}", w.name), ggml_quantize(t, &w.x)))
                .collect();
            for k in 0..acts.len() {
                cases.push((format!("random weights #{k}"), random_row::<B>(seed << 16 | k as u64, n / B::SIZE)));
            }
            cases.push(("saturated weights".into(), saturated_row::<B>(n / B::SIZE)));
            for (i, (wname, w)) in cases.iter().enumerate() {
                // Each weight row meets a different activation row, and the saturated
                // weights meet every ±127 row.
                let pairs: Vec<&(String, Vec<u8>)> =
                    if i + 1 == cases.len() { acts[acts.len() - 3..].iter().collect() } else { vec![&acts[(i + 5) % acts.len()]] };
                for (aname, a) in pairs {
                    let what = format!("{t} dot, n={n}, seed {seed}, {wname} x activations {aname}");
                    let ours = ours_dot::<B>(w, a);
                    let theirs = ggml::vec_dot(t, w, a).unwrap();
                    let scale = dot_scale::<B>(w, a);
                    if scale < f64::from(f32::MAX) {
                        assert_dot_close(&what, ours, theirs, scale, n);
                        exact += usize::from(ours.to_bits() == theirs.to_bits());
                    } else {
                        // Terms beyond f32 range: an infinite super-scale (a row beyond f16
                        // range), or random scales times the `huge` activations. Whether a
                        // partial sum overflows (to ±inf, or NaN where both signs meet)
                        // depends on how the sum is split into lanes, so ggml's AVX2 split and
                        // ours may disagree on it; where both stay finite they must agree.
                        if ours.is_finite() && theirs.is_finite() {
                            let diff = (f64::from(ours) - f64::from(theirs)).abs();
                            assert!(diff <= 1e-4 * f64::from(ours.abs().max(theirs.abs())), "{what}: pupil {ours:e}, ggml {theirs:e}");
                        }
                        overflowed += 1;
                    }
                    checked += 1;
                }
            }
        }
    }
    (checked, exact, overflowed)
}

/// ggml's CPU backend pairs the type with the activation type we do.
fn check_pairing<B: Block>() {
    assert_eq!(ggml::vec_dot_type(B::DTYPE), Some(<B::Act as Block>::DTYPE), "{}", B::DTYPE);
}

/// The type-erased table gives the typed results for the type.
fn check_erased<B: Oracle>() {
    let t = B::DTYPE;
    let ops = quant::ops(t).unwrap_or_else(|| panic!("no ops for {t}"));
    assert_eq!((ops.dtype, ops.act), (t, DType::Q8_K));
    let quantize = ops.quantize.expect("a reference quantizer");
    for row in rows(2048, 7).iter().take(6) {
        let x = &row.x;
        let w = ours_quantize::<B>(x);
        // Aligned byte buffers, as a memory map of a GGUF file gives.
        let mut erased = vec![<B as Block>::zeroed(); w.len() / block_bytes::<B>()];
        quantize(x, bytemuck::cast_slice_mut(&mut erased)).unwrap();
        assert_eq!(bytemuck::cast_slice::<B, u8>(&erased), &w[..], "{t}: erased quantize, {}", row.name);
        let mut y = vec![0.0; x.len()];
        (ops.dequantize)(bytemuck::cast_slice(&erased), &mut y).unwrap();
        assert_bits_eq(&format!("{t}: erased dequantize, {}", row.name), &y, &ours_dequantize::<B>(&w));
        let a = to_blocks::<BlockQ8_K>(&ggml::quantize_activations(DType::Q8_K, x).unwrap());
        let dot = (ops.dot)(bytemuck::cast_slice(&erased), bytemuck::cast_slice(&a)).unwrap();
        assert_eq!(dot.to_bits(), B::dot(&erased, &a).to_bits(), "{t}: erased dot, {}", row.name);
    }
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
                let (checked, exact, overflowed) = check_dot::<$b>();
                eprintln!(
                    "{}: {checked} dot products checked: {exact} bit-equal to ggml, {overflowed} with terms beyond f32 range",
                    <$b as Block>::DTYPE
                );
            }

            #[test]
            fn activation_type_is_ggmls() {
                check_pairing::<$b>();
            }

            #[test]
            fn erased_table_matches_typed() {
                check_erased::<$b>();
            }
        }
    )*};
}

oracle_tests! {
    q2_k => BlockQ2_K;
    q3_k => BlockQ3_K;
    q4_k => BlockQ4_K;
    q5_k => BlockQ5_K;
    q6_k => BlockQ6_K;
}

/// Q8_K, the activation type: quantize and dequantize as the weight types, plus the facts
/// that make it a valid activation quantizer and the dot that ggml lacks.
mod q8_k {
    use super::*;

    #[test]
    fn quantize_matches_ggml_ref_bytes() {
        let blocks = check_quantize::<BlockQ8_K>();
        eprintln!("Q8_K: {blocks} blocks quantized byte-exact");
    }

    #[test]
    fn dequantize_matches_ggml_bits() {
        let blocks = check_dequantize::<BlockQ8_K>();
        eprintln!("Q8_K: {blocks} blocks dequantized bit-exact");
    }

    /// The CPU backend's activation quantizer (`quantize_row_q8_K` in
    /// `ggml-cpu/arch/x86/quants.c`) is the reference one, so ours also equals what ggml
    /// feeds its k-quant dots.
    #[test]
    fn cpu_activation_quantizer_is_the_reference_one() {
        for n in LENGTHS {
            for seed in SEEDS {
                for row in rows(n, seed) {
                    let what = format!("Q8_K activations, n={n}, seed {seed}, row {}", row.name);
                    let cpu = ggml::quantize_activations(DType::Q8_K, &row.x).unwrap();
                    assert_bytes_eq(&what, &ours_quantize::<BlockQ8_K>(&row.x), &cpu, block_bytes::<BlockQ8_K>());
                }
            }
        }
    }

    /// ggml has no Q8_K x anything `vec_dot`: its CPU type-traits entry only has `from_float`,
    /// so `vec_dot_type` reads as the zero id, F32. pupil pairs Q8_K with itself.
    #[test]
    fn ggml_has_no_q8_k_vec_dot() {
        assert_eq!(ggml::vec_dot_type(DType::Q8_K), Some(DType::F32));
        let w = vec![0u8; block_bytes::<BlockQ8_K>()];
        let a = vec![0u8; 256 * 4];
        assert!(matches!(ggml::vec_dot(DType::Q8_K, &w, &a), Err(ggml::OracleError::Missing { what: "vec_dot", .. })));
        assert_eq!(<BlockQ8_K as Block>::Act::DTYPE, DType::Q8_K);
    }

    /// With no ggml dot to match, ours is checked against the exact sum of the dequantized
    /// products, on quantized, random and saturated blocks.
    #[test]
    fn dot_matches_exact_sum() {
        let mut checked = 0;
        for n in LENGTHS {
            for seed in SEEDS {
                let acts = activation_rows(n, seed);
                let mut weights: Vec<(String, Vec<u8>)> =
                    rows(n, seed ^ 0xd07).into_iter().map(|w| (w.name, ggml_quantize(DType::Q8_K, &w.x))).collect();
                weights.push(("random".into(), random_q8_k_in_f16_range(seed, n / QK_K)));
                weights.push(("saturated".into(), saturated_row::<BlockQ8_K>(n / QK_K)));
                for (i, (wname, w)) in weights.iter().enumerate() {
                    let (aname, a) = &acts[(i + 5) % acts.len()];
                    let (wf, af) = (ours_dequantize::<BlockQ8_K>(w), ours_dequantize::<BlockQ8_K>(a));
                    let exact: f64 = wf.iter().zip(&af).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
                    let what = format!("Q8_K dot, n={n}, seed {seed}, weights {wname} x activations {aname}");
                    assert_dot_close(&what, ours_dot::<BlockQ8_K>(w, a), exact as f32, abs_products(&wf, &af), n);
                    checked += 1;
                }
            }
        }
        eprintln!("Q8_K: {checked} dot products close to the exact sum");
    }

    /// Random Q8_K blocks with scales drawn as the weight types' f16 super-scales are: an
    /// arbitrary finite f32 scale would overflow the exact sum used as reference.
    fn random_q8_k_in_f16_range(seed: u64, n_blocks: usize) -> Vec<u8> {
        let mut r = rng(seed ^ 0x8b);
        let mut bytes = random_blocks(&mut r, n_blocks, block_bytes::<BlockQ8_K>(), &[]);
        for block in bytes.chunks_exact_mut(block_bytes::<BlockQ8_K>()) {
            block[..4].copy_from_slice(&f32::from(common::finite_f16(&mut r)).to_le_bytes());
        }
        bytes
    }

    #[test]
    fn erased_table_matches_typed() {
        check_erased::<BlockQ8_K>();
    }
}
