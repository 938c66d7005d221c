//! Every SIMD tier the host supports against the reference tier (`quant::ops`), for every
//! block type: activation quantizers byte for byte, dequantizers bit for bit, dot products
//! within float-summation rounding ([`common::assert_dot_close`]).
//!
//! Dot products run on reference-quantized rows, on blocks of random bytes (every bit pattern
//! of quants and packed scales, f16 scales from subnormal to 65504, Q8_K `bsums` that need not
//! match the quants: the reference reads them as given), on saturated weight bytes, and on
//! activations at the extremes: all -128, all +127, all -127, alternating +127/-128. Those
//! catch the classic SIMD integer bugs: the sign trick (`maddubs(|x|, sign(y, x))` turns
//! -128 · -128 into -16384), `maddubs` saturating at i16, `hadd` of sums wrapping. Row lengths
//! are one block, a few (odd) blocks, and many (odd and even).
//!
//! The last tests check the dispatch itself: `PUPIL_FORCE_TIER` (parsed directly, and end to
//! end in a child process of this test binary), and `ops::matmul` giving the same outputs
//! whichever tier the process runs.

mod common;

use common::{assert_bytes_eq, assert_dot_close, finite_f16, random_blocks, rng, rows};
use half::{bf16, f16};
use pupil_kernels::cpu::{self, Tier};
use pupil_kernels::ops::{Activations, WeightRef, matmul};
use pupil_kernels::{DType, quant};
use rand::Rng;
use rand::rngs::SmallRng;

/// A byte buffer aligned for any block type (the erased kernels reject misaligned rows).
struct Buf {
    words: Vec<u64>,
    len: usize,
}

impl Buf {
    fn new(bytes: &[u8]) -> Buf {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Buf { words, len: bytes.len() }
    }
    fn zeroed(len: usize) -> Buf {
        Buf { words: vec![0; len.div_ceil(8)], len }
    }
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }
}

/// The tiers to check: every supported one but the reference itself.
fn simd_tiers() -> Vec<Tier> {
    cpu::available_tiers().into_iter().filter(|&t| t != Tier::Scalar).collect()
}

/// The types with kernels, as the reference table lists them.
fn types() -> Vec<DType> {
    DType::ALL.iter().copied().filter(|&t| quant::ops(t).is_some()).collect()
}

/// Row lengths in blocks: one, a few (odd), many (even and odd).
const BLOCK_COUNTS: [usize; 4] = [1, 3, 16, 33];

fn reference(t: DType) -> &'static quant::Ops {
    quant::ops(t).unwrap()
}

fn quantize_ref(t: DType, x: &[f32]) -> Buf {
    let mut out = Buf::zeroed(t.row_bytes(x.len() as u64).unwrap() as usize);
    (reference(t).quantize.unwrap())(x, out.bytes_mut()).unwrap();
    out
}

fn dequantize_ref(t: DType, w: &[u8]) -> Vec<f32> {
    let mut y = vec![0.0; w.len() / t.type_size() * t.block_size()];
    (reference(t).dequantize)(w, &mut y).unwrap();
    y
}

/// Byte offsets of a block's f16 fields, and of the `(d, min)` pair for types whose dot has
/// a separate min term.
fn layout(t: DType) -> (&'static [usize], Option<(usize, usize)>) {
    match t {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 | DType::Q3_K => (if t == DType::Q3_K { &[108] } else { &[0] }, None),
        DType::Q4_1 | DType::Q5_1 => (&[0, 2], Some((0, 2))),
        DType::Q8_1 => (&[0, 2], None),
        DType::Q2_K => (&[80, 82], Some((80, 82))),
        DType::Q4_K | DType::Q5_K => (&[0, 2], Some((0, 2))),
        DType::Q6_K => (&[208], None),
        DType::F16 => (&[0], None),
        _ => (&[], None),
    }
}

/// `n_blocks` blocks of random bytes with finite scales (any finite value for the floats).
fn random_row(t: DType, r: &mut SmallRng, n_blocks: usize) -> Buf {
    let bytes = match t {
        DType::F32 => (0..n_blocks).flat_map(|_| r.random_range(-100f32..100.0).to_le_bytes()).collect(),
        DType::BF16 => (0..n_blocks).flat_map(|_| bf16::from_f32(f32::from(finite_f16(r))).to_le_bytes()).collect(),
        DType::Q8_K => {
            let mut b = random_blocks(r, n_blocks, t.type_size(), &[]);
            for block in b.chunks_exact_mut(t.type_size()) {
                block[..4].copy_from_slice(&f32::from(finite_f16(r)).to_le_bytes());
            }
            b
        }
        _ => random_blocks(r, n_blocks, t.type_size(), layout(t).0),
    };
    Buf::new(&bytes)
}

/// Blocks whose bytes are all one pattern, scales 1: every quant and packed scale at its
/// maximum (0xff), minimum (0x00), and the patterns between.
fn saturated_row(t: DType, n_blocks: usize, pattern: u8) -> Buf {
    let mut bytes = vec![pattern; n_blocks * t.type_size()];
    for block in bytes.chunks_exact_mut(t.type_size()) {
        match t {
            DType::F32 | DType::F16 | DType::BF16 => {}
            DType::Q8_K => block[..4].copy_from_slice(&1f32.to_le_bytes()),
            _ => {
                for &at in layout(t).0 {
                    block[at..at + 2].copy_from_slice(&f16::ONE.to_le_bytes());
                }
            }
        }
    }
    Buf::new(&bytes)
}

/// Activation blocks with every quant from `pattern` (cycled), scale 1, and consistent sums.
fn extreme_activations(act: DType, n_blocks: usize, pattern: &[i8]) -> Buf {
    let size = act.block_size();
    let q: Vec<i8> = (0..n_blocks * size).map(|i| pattern[i % pattern.len()]).collect();
    let mut bytes = Vec::new();
    for q in q.chunks_exact(size) {
        let sum: i32 = q.iter().map(|&v| i32::from(v)).sum();
        match act {
            DType::Q8_0 => bytes.extend(f16::ONE.to_le_bytes()),
            DType::Q8_1 => {
                bytes.extend(f16::ONE.to_le_bytes());
                bytes.extend(f16::from_f32(sum as f32).to_le_bytes());
            }
            DType::Q8_K => bytes.extend(1f32.to_le_bytes()),
            _ => unreachable!("{act} is not an integer activation type"),
        }
        bytes.extend(q.iter().map(|&v| v as u8));
        if act == DType::Q8_K {
            for s in q.chunks_exact(16) {
                bytes.extend(s.iter().map(|&v| i16::from(v)).sum::<i16>().to_le_bytes());
            }
        }
    }
    Buf::new(&bytes)
}

/// Σ |terms| the dot product adds, from the reference's dequantized values: `|w_i * a_i|` for
/// the `d * q` parts, plus, for the types with mins, the min term counted as the reference
/// computes it (from `s` or `bsums`, which random activations need not make consistent).
fn dot_scale(t: DType, w: &[u8], a: &[u8]) -> f64 {
    let act = reference(t).act;
    let af = dequantize_ref(act, a);
    let abs_products = |wf: &[f32]| wf.iter().zip(&af).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum::<f64>();
    let Some((d_at, m_at)) = layout(t).1 else {
        return abs_products(&dequantize_ref(t, w));
    };
    let zero_field = |at: usize| {
        let mut b = w.to_vec();
        for block in b.chunks_exact_mut(t.type_size()) {
            block[at..at + 2].fill(0);
        }
        dequantize_ref(t, Buf::new(&b).bytes())
    };
    let products = abs_products(&zero_field(m_at));
    // With `d` zeroed a weight is its min term alone: constant per sub-block.
    let mins = zero_field(d_at);
    let mut min_terms = 0f64;
    for (b, ab) in a.chunks_exact(act.type_size()).enumerate() {
        let m = |i: usize| f64::from(mins[b * act.block_size() + i]).abs();
        min_terms += match act {
            DType::Q8_1 => m(0) * f64::from(f16::from_le_bytes([ab[2], ab[3]])).abs(),
            _ => {
                let d = f64::from(f32::from_le_bytes(ab[..4].try_into().unwrap())).abs();
                (0..16)
                    .map(|j| m(16 * j) * d * f64::from(i16::from_le_bytes([ab[260 + 2 * j], ab[261 + 2 * j]])).abs())
                    .sum::<f64>()
            }
        };
    }
    products + min_terms
}

/// One tier's dot against the reference's, with the scale-aware tolerance; terms beyond f32
/// range (infinite scales from overflowing rows) may overflow differently, so there only
/// finite results are compared, loosely.
fn check_dot(tier: Tier, t: DType, w: &Buf, a: &Buf, what: &str) {
    let ours = (cpu::ops_for(tier, t).unwrap().dot)(w.bytes(), a.bytes()).unwrap();
    let theirs = (reference(t).dot)(w.bytes(), a.bytes()).unwrap();
    let n = w.len / t.type_size() * t.block_size();
    check_close(&format!("{tier} {t} dot, {what}"), ours, theirs, dot_scale(t, w.bytes(), a.bytes()), n);
}

/// A kernel's result `ours` against the reference's `theirs` for a dot product of `n` terms
/// whose magnitudes sum to `scale`, as [`check_dot`] compares them.
fn check_close(what: &str, ours: f32, theirs: f32, scale: f64, n: usize) {
    if scale < f64::from(f32::MAX) {
        assert_dot_close(what, ours, theirs, scale, n);
    } else if ours.is_finite() && theirs.is_finite() {
        let diff = (f64::from(ours) - f64::from(theirs)).abs();
        assert!(diff <= 1e-4 * f64::from(ours.abs().max(theirs.abs())), "{what}: {ours:e} vs {theirs:e}");
    }
}

#[test]
fn dot_matches_reference() {
    let tiers = simd_tiers();
    let mut checked = 0;
    for t in types() {
        let act = reference(t).act;
        for (i, &nb) in BLOCK_COUNTS.iter().enumerate() {
            let n = nb * t.block_size();
            let mut r = rng(0xd07 + i as u64);
            let mut weights: Vec<(String, Buf)> = Vec::new();
            if reference(t).quantize.is_some() {
                for row in rows(n, i as u64).into_iter().step_by(3) {
                    weights.push((format!("quantized {}", row.name), quantize_ref(t, &row.x)));
                }
            }
            for k in 0..6 {
                weights.push((format!("random #{k}"), random_row(t, &mut r, nb)));
            }
            for p in [0xff, 0x00, 0x80, 0x7f, 0xaa, 0x55] {
                weights.push((format!("saturated {p:#04x}"), saturated_row(t, nb, p)));
            }
            let mut acts: Vec<(String, Buf)> = Vec::new();
            for row in rows(n, 100 + i as u64).into_iter().step_by(4) {
                acts.push((format!("quantized {}", row.name), quantize_ref(act, &row.x)));
            }
            for k in 0..3 {
                acts.push((format!("random #{k}"), random_row(act, &mut r, nb)));
            }
            if matches!(act, DType::Q8_0 | DType::Q8_1 | DType::Q8_K) {
                for (name, p) in [
                    ("all -128", &[-128i8][..]),
                    ("all +127", &[127]),
                    ("all -127", &[-127]),
                    ("+127/-128", &[127, -128]),
                ] {
                    acts.push((name.into(), extreme_activations(act, nb, p)));
                }
            }
            for tier in &tiers {
                for (wi, (wname, w)) in weights.iter().enumerate() {
                    // Every weight row meets the extremes and a couple of the others.
                    let extremes = acts.len().saturating_sub(4)..acts.len();
                    for ai in extremes.chain([wi % acts.len(), (wi * 7 + 3) % acts.len()]) {
                        let (aname, a) = &acts[ai];
                        check_dot(*tier, t, w, a, &format!("{nb} blocks, weights {wname} x activations {aname}"));
                        checked += 1;
                    }
                    // The four-row kernel: each of its outputs is that row's `dot`.
                    let four: Vec<&Buf> = (0..4).map(|k| &acts[(wi + 5 * k + 1) % acts.len()].1).collect();
                    let mut got = [0f32; 4];
                    let ops = cpu::ops_for(*tier, t).unwrap();
                    let Some(dot_x4) = ops.dot_x4 else { continue };
                    dot_x4(w.bytes(), [four[0].bytes(), four[1].bytes(), four[2].bytes(), four[3].bytes()], &mut got)
                        .unwrap();
                    // Bit for bit the tier's `dot`: a token must get the same logits in a
                    // batch as alone (`model::tests::decoding_token_by_token_equals_one_batch`).
                    for (k, a) in four.iter().enumerate() {
                        let one = (ops.dot)(w.bytes(), a.bytes()).unwrap();
                        assert_eq!(
                            got[k].to_bits(),
                            one.to_bits(),
                            "{tier} {t} dot_x4 [{k}], {nb} blocks, weights {wname}: {} vs {one}",
                            got[k]
                        );
                    }
                }
            }
        }
    }
    eprintln!("{checked} dot products checked across tiers {tiers:?}");
}

/// Rows beyond `common::rows` that the activation quantizers must get exactly right: exact
/// halves after scaling (round-to-even for `Q8_0`/`Q8_1`, ties to even through the bit trick for `Q8_K`), ties for the largest magnitude (whose
/// sign sets `d`), NaN and infinities mixed in.
fn special_rows(n: usize) -> Vec<(String, Vec<f32>)> {
    let halves: Vec<f32> = (0..n).map(|i| if i % 32 == 0 { 127.0 } else { (i % 32) as f32 - 15.5 }).collect();
    let k_halves: Vec<f32> =
        (0..n).map(|i| if i % 256 == 7 { -127.0 } else { ((i % 255) as f32 - 127.0) / 2.0 }).collect();
    let ties: Vec<f32> = (0..n).map(|i| [2.0, -2.0, 1.0, -1.0][i % 4]).collect();
    let neg_first: Vec<f32> = (0..n).map(|i| [-2.0, 2.0, 0.5][i % 3]).collect();
    let nan: Vec<f32> = (0..n).map(|i| if i % 5 == 0 { f32::NAN } else { i as f32 * 0.01 - 1.0 }).collect();
    let all_nan = vec![f32::NAN; n];
    let inf: Vec<f32> = (0..n).map(|i| if i % 41 == 3 { f32::INFINITY } else { -(i as f32) }).collect();
    let neg_inf: Vec<f32> = (0..n).map(|i| if i % 37 == 1 { f32::NEG_INFINITY } else { 0.25 }).collect();
    let max: Vec<f32> = (0..n).map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX / 3.0 }).collect();
    let min_sub: Vec<f32> =
        (0..n).map(|i| f32::from_bits(i as u32 % 3) * if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    [
        ("halves", halves),
        ("k halves", k_halves),
        ("ties", ties),
        ("negative first", neg_first),
        ("some NaN", nan),
        ("all NaN", all_nan),
    ]
    .into_iter()
    .chain([("+inf", inf), ("-inf", neg_inf), ("f32::MAX", max), ("smallest subnormals", min_sub)])
    .map(|(name, x)| (name.to_string(), x))
    .collect()
}

/// Each tier's activation quantizer (`activate`, what a matmul's input goes through) gives the
/// reference's bytes.
#[test]
fn activations_match_reference_bytes() {
    let tiers = simd_tiers();
    let mut checked = 0;
    for t in types() {
        let Some(reference_q) = reference(t).activate else { continue };
        // The activation types on every length; the weight types' quantizers (reference in
        // every tier so far) on one.
        let counts: &[usize] = if matches!(t, DType::Q8_0 | DType::Q8_1 | DType::Q8_K) { &BLOCK_COUNTS } else { &[3] };
        for &nb in counts {
            let n = nb * t.block_size();
            let inputs = rows(n, nb as u64).into_iter().map(|r| (r.name, r.x)).chain(special_rows(n));
            for (name, x) in inputs {
                let mut theirs = Buf::zeroed(t.row_bytes(n as u64).unwrap() as usize);
                reference_q(&x, theirs.bytes_mut()).unwrap();
                for tier in &tiers {
                    let mut ours = Buf::zeroed(theirs.len);
                    ours.bytes_mut().fill(0xa5); // no byte may be left unwritten
                    (cpu::ops_for(*tier, t).unwrap().activate.unwrap())(&x, ours.bytes_mut()).unwrap();
                    assert_bytes_eq(
                        &format!("{tier} {t} activations, {nb} blocks, row {name}"),
                        ours.bytes(),
                        theirs.bytes(),
                        t.type_size(),
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} activation rows byte-exact across tiers {tiers:?}");
}

#[test]
fn dequantize_matches_reference_bits() {
    for t in types() {
        let mut r = rng(0xdec);
        for nb in BLOCK_COUNTS {
            let w = random_row(t, &mut r, nb);
            let theirs = dequantize_ref(t, w.bytes());
            for tier in simd_tiers() {
                let mut ours = vec![f32::NAN; theirs.len()];
                (cpu::ops_for(tier, t).unwrap().dequantize)(w.bytes(), &mut ours).unwrap();
                common::assert_bits_eq(&format!("{tier} {t} dequantize, {nb} blocks"), &ours, &theirs);
            }
        }
    }
}

/// The entries check their buffers as the reference's do.
#[test]
fn entries_reject_bad_buffers() {
    for tier in cpu::available_tiers() {
        for t in types() {
            let ops = cpu::ops_for(tier, t).unwrap();
            let one = Buf::zeroed(t.type_size());
            let a_one = Buf::zeroed(ops.act.type_size());
            let a_two = Buf::zeroed(2 * ops.act.type_size());
            assert!((ops.dot)(one.bytes(), a_two.bytes()).is_err(), "{tier} {t}: dot of 1 block with 2");
            assert_eq!(
                (ops.dot)(Buf::zeroed(0).bytes(), Buf::zeroed(0).bytes()).unwrap(),
                0.0,
                "{tier} {t}: empty dot"
            );
            assert!((ops.dot)(one.bytes(), a_one.bytes()).is_ok());
            if t.type_size() > 1 {
                assert!((ops.dot)(&one.bytes()[1..], a_one.bytes()).is_err(), "{tier} {t}: partial block");
            }
            for q in [ops.quantize, ops.activate].into_iter().flatten() {
                let mut out = Buf::zeroed(t.type_size());
                assert!(q(&vec![0.0; t.block_size() + 1], out.bytes_mut()).is_err(), "{tier} {t}: quantize length");
            }
        }
    }
}

/// `dot_rows` (the decode matvec kernel): each output bit for bit the tier's `dot` of that
/// row, for one row, a few (odd counts) and many, at every row length; wrong lengths are
/// rejected. Every tier with a quantized `dot` of its own has one.
#[test]
fn dot_rows_is_dot_bit_for_bit() {
    let mut checked = 0;
    for t in types() {
        let act = reference(t).act;
        for (i, &nb) in BLOCK_COUNTS.iter().enumerate() {
            let mut r = rng(0x5005 + i as u64);
            let n = nb * t.block_size();
            let mut weights: Vec<u8> = Vec::new();
            let n_rows = 13;
            for k in 0..n_rows {
                let row = if k % 4 == 3 {
                    saturated_row(t, nb, [0xff, 0x00, 0x80, 0x55][k / 4 % 4])
                } else {
                    random_row(t, &mut r, nb)
                };
                weights.extend_from_slice(row.bytes());
            }
            let weights = Buf::new(&weights);
            let rb = weights.len / n_rows;
            let mut acts = vec![random_row(act, &mut r, nb)];
            if reference(t).quantize.is_some() {
                acts.push(quantize_ref(act, &rows(n, 7 + i as u64)[0].x));
            }
            for tier in cpu::available_tiers() {
                let ops = cpu::ops_for(tier, t).unwrap();
                let Some(dot_rows) = ops.dot_rows else { continue };
                for a in &acts {
                    for (start, count) in [(0, 1), (2, 3), (1, 7), (0, n_rows), (5, 0)] {
                        let w = &weights.bytes()[start * rb..(start + count) * rb];
                        let mut got = vec![f32::NAN; count];
                        dot_rows(w, a.bytes(), &mut got).unwrap();
                        for (k, y) in got.iter().enumerate() {
                            let one = (ops.dot)(&w[k * rb..(k + 1) * rb], a.bytes()).unwrap();
                            assert_eq!(
                                y.to_bits(),
                                one.to_bits(),
                                "{tier} {t} dot_rows [{k}] of {count}, {nb} blocks: {y} vs {one}"
                            );
                            checked += 1;
                        }
                    }
                    // A weight buffer that is not `out.len()` whole rows is an error.
                    let mut two = [0f32; 2];
                    assert!(dot_rows(&weights.bytes()[..3 * rb], a.bytes(), &mut two).is_err(), "{tier} {t}");
                }
            }
        }
    }
    for tier in simd_tiers() {
        for t in [DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q6_K] {
            assert!(cpu::ops_for(tier, t).unwrap().dot_rows.is_some(), "{tier} has no {t} dot_rows");
        }
        for t in [DType::F32, DType::F16, DType::BF16] {
            assert!(cpu::ops_for(tier, t).unwrap().dot_rows.is_some(), "{tier} has no {t} dot_rows");
        }
    }
    eprintln!("{checked} dot_rows outputs checked");
}

/// `gemm` (the tiled prefill kernel): every output within rounding of the reference `dot`
/// of its row and token, on random, saturated and reference-quantized weight rows against
/// random, quantized and extreme activation rows (-128 everywhere, +127/-128), for row and
/// token counts below, at and past the tiles (1, odd, 16, 17, 33); the output between rows
/// (`ldo` > rows) and past the last token is left alone. Every type the GEMM covers has one
/// in every SIMD tier.
#[test]
fn gemm_matches_reference() {
    const GUARD: f32 = -7.25e30;
    let mut checked = 0;
    for t in types() {
        let act = reference(t).act;
        // Float rows (one element a block) also long enough for whole chunks of 16 and 32
        // columns with partial chunks, 8-column chunks and single columns after them.
        let counts: &[usize] = if t.block_size() == 1 { &[1, 3, 20, 75, 141] } else { &[1, 3, 20] };
        for (i, &nb) in counts.iter().enumerate() {
            let mut r = rng(0x6e44 + i as u64);
            let n = nb * t.block_size();
            let n_rows = 33;
            let mut weights: Vec<u8> = Vec::new();
            let quantized = rows(n, 40 + i as u64);
            for k in 0..n_rows {
                let row = match k % 5 {
                    0 if reference(t).quantize.is_some() => quantize_ref(t, &quantized[k % quantized.len()].x),
                    3 => saturated_row(t, nb, [0xff, 0x00, 0x80, 0x55, 0xaa][k / 5 % 5]),
                    _ => random_row(t, &mut r, nb),
                };
                weights.extend_from_slice(row.bytes());
            }
            let weights = Buf::new(&weights);
            let rb = weights.len / n_rows;
            let n_tok = 33;
            let mut acts: Vec<u8> = Vec::new();
            let quantized = rows(n, 140 + i as u64);
            for k in 0..n_tok {
                let row = match k % 4 {
                    0 => quantize_ref(act, &quantized[k % quantized.len()].x),
                    1 if matches!(act, DType::Q8_0 | DType::Q8_K) => {
                        extreme_activations(act, nb, [&[-128i8][..], &[127, -128], &[127]][k / 4 % 3])
                    }
                    _ => random_row(act, &mut r, nb),
                };
                acts.extend_from_slice(row.bytes());
            }
            let acts = Buf::new(&acts);
            let ab = acts.len / n_tok;
            for tier in simd_tiers() {
                let ops = cpu::ops_for(tier, t).unwrap();
                let Some(gemm) = ops.gemm else { continue };
                for (w0, rows_n) in [(0, 1), (1, 5), (0, 16), (3, 17), (0, n_rows)] {
                    for (a0, n_t) in [(0, 1), (2, 3), (1, 16), (0, 17), (0, n_tok)] {
                        let w = &weights.bytes()[w0 * rb..(w0 + rows_n) * rb];
                        let a = &acts.bytes()[a0 * ab..(a0 + n_t) * ab];
                        let ldo = rows_n + 2;
                        let mut out = vec![GUARD; n_t * ldo + 3];
                        gemm(w, a, n_t, &mut out, ldo).unwrap();
                        for tok in 0..n_t {
                            for row in 0..ldo {
                                let got = out[tok * ldo + row];
                                let what = format!(
                                    "{tier} {t} gemm {rows_n}x{n_t}, {nb} blocks, row {} x token {}",
                                    w0 + row,
                                    a0 + tok
                                );
                                if row >= rows_n {
                                    assert_eq!(got, GUARD, "{what}: wrote past the rows");
                                    continue;
                                }
                                let (wr, ar) = (&w[row * rb..][..rb], &a[tok * ab..][..ab]);
                                let theirs = (reference(t).dot)(wr, ar).unwrap();
                                check_close(&what, got, theirs, dot_scale(t, wr, ar), n);
                                checked += 1;
                            }
                        }
                        assert!(
                            out[n_t * ldo..].iter().all(|&v| v == GUARD),
                            "{tier} {t} gemm wrote past the last token"
                        );
                        // A token's outputs are the same bits alone (in a tile of its own) as
                        // anywhere in a batch: decoding and prefill agree.
                        for tok in [0, n_t / 2, n_t - 1] {
                            let mut one = vec![GUARD; rows_n];
                            gemm(w, &a[tok * ab..][..ab], 1, &mut one, rows_n).unwrap();
                            for (row, y) in one.iter().enumerate() {
                                let got = out[tok * ldo + row];
                                assert_eq!(
                                    y.to_bits(),
                                    got.to_bits(),
                                    "{tier} {t} gemm {rows_n}x{n_t}, {nb} blocks, row {row} x token {tok}: alone {y} vs {got}"
                                );
                            }
                        }
                    }
                }
                // Shapes that do not fit are errors, not panics.
                let mut out = vec![0f32; 64];
                assert!(gemm(&weights.bytes()[..rb + 1], &acts.bytes()[..ab], 1, &mut out, 2).is_err(), "{tier} {t}");
                assert!(
                    gemm(&weights.bytes()[..2 * rb], &acts.bytes()[..2 * ab], 2, &mut out, 1).is_err(),
                    "{tier} {t}"
                );
                assert!(
                    gemm(&weights.bytes()[..2 * rb], &acts.bytes()[..2 * ab], 2, &mut out[..2], 2).is_err(),
                    "{tier} {t}"
                );
            }
        }
    }
    for tier in simd_tiers() {
        for t in [DType::Q4_0, DType::Q5_0, DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            assert!(cpu::ops_for(tier, t).unwrap().gemm.is_some(), "{tier} has no {t} gemm");
        }
    }
    eprintln!("{checked} gemm outputs checked");
}

/// Each SIMD tier replaces the functions it has kernels for (a lost `patch` line would
/// otherwise fall back to the tier below and pass every other test).
#[test]
fn tiers_have_their_kernels() {
    use DType::*;
    let fns = |tier: Tier, t: DType| {
        let o = cpu::ops_for(tier, t).unwrap();
        (o.dot as usize, o.activate.map(|q| q as usize))
    };
    let cases: [(Tier, Tier, &[DType], &[DType]); 2] = [
        (
            Tier::Avx2,
            Tier::Scalar,
            &[F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K],
            &[Q8_0, Q8_1, Q8_K],
        ),
        // The quantized types the GEMM covers keep the AVX2 tier's dots in the GEMM's
        // canonical order (batch invariance); the floats have one 16-lane order of the
        // tier's own for `dot`, `dot_rows` and `gemm`.
        (Tier::Avx512, Tier::Avx2, &[Q4_1, Q5_1, F32, F16, BF16], &[Q8_0, Q8_K]),
    ];
    for (tier, below, dots, quantizers) in cases {
        if !cpu::available_tiers().contains(&tier) {
            continue;
        }
        for &t in dots {
            assert_ne!(fns(tier, t).0, fns(below, t).0, "{tier} has no {t} dot of its own");
        }
        for &t in quantizers {
            assert_ne!(fns(tier, t).1, fns(below, t).1, "{tier} has no {t} quantizer of its own");
        }
    }
    // The AMX tier is the AVX-512 tier with GEMMs of its own.
    if cpu::available_tiers().contains(&Tier::Amx) {
        let gemms = |tier: Tier, t: DType| {
            let o = cpu::ops_for(tier, t).unwrap();
            (o.dot as usize, o.gemm.map(|g| g as usize), o.gemm_packed.map(|g| g as usize))
        };
        for t in [Q4_0, Q5_0, Q8_0, Q4_K, Q5_K, Q6_K] {
            let (amx, avx512) = (gemms(Tier::Amx, t), gemms(Tier::Avx512, t));
            assert_eq!(amx.0, avx512.0, "amx has the avx512 {t} dot");
            assert_ne!(amx.1, avx512.1, "amx has no {t} gemm of its own");
            if t != Q5_K {
                assert_ne!(amx.2, avx512.2, "amx has no packed {t} gemm of its own");
            }
        }
    }
}

#[test]
fn detected_tiers_follow_cpu_features() {
    let tiers = cpu::available_tiers();
    assert_eq!(tiers[0], Tier::Scalar);
    assert!(!tiers.contains(&Tier::Neon), "NEON is reserved");
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 =
            is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c");
        assert_eq!(tiers.contains(&Tier::Avx2), avx2);
        let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx512vnni"].iter().all(|f| match *f {
            "avx512f" => is_x86_feature_detected!("avx512f"),
            "avx512bw" => is_x86_feature_detected!("avx512bw"),
            "avx512vl" => is_x86_feature_detected!("avx512vl"),
            _ => is_x86_feature_detected!("avx512vnni"),
        });
        assert_eq!(tiers.contains(&Tier::Avx512), avx2 && avx512);
        // AMX also needs the OS's permission, which only the tier's own probe asks for.
        assert!(!tiers.contains(&Tier::Amx) || tiers.contains(&Tier::Avx512), "amx without avx512");
    }
    for t in Tier::ALL {
        assert_eq!(cpu::ops_for(t, DType::Q4_K).is_some(), tiers.contains(&t), "{t}");
    }
    if std::env::var_os(cpu::FORCE_TIER_VAR).is_none() {
        assert_eq!(cpu::tier(), *tiers.last().unwrap());
    }
}

#[test]
fn force_tier_parsing_and_clamping() {
    use Tier::*;
    let all = [Scalar, Avx2, Avx512];
    assert_eq!(cpu::choose_tier(None, &all), (Avx512, None));
    assert_eq!(cpu::choose_tier(Some(""), &all), (Avx512, None));
    assert_eq!(cpu::choose_tier(Some("avx2"), &all), (Avx2, None));
    assert_eq!(cpu::choose_tier(Some("SCALAR"), &all), (Scalar, None));
    assert_eq!(cpu::choose_tier(Some("reference"), &all), (Scalar, None));
    let (t, warning) = cpu::choose_tier(Some("sse9"), &all);
    assert_eq!(t, Avx512);
    assert!(warning.unwrap().contains("not a tier"));
    #[cfg(target_arch = "x86_64")]
    {
        // A tier the host lacks clamps down, with a warning.
        let (t, warning) = cpu::choose_tier(Some("avx512"), &[Scalar, Avx2]);
        assert_eq!(t, Avx2);
        assert!(warning.unwrap().contains("lacks"));
        assert_eq!(cpu::choose_tier(Some("avx512"), &[Scalar]).0, Scalar);
        assert_eq!(cpu::choose_tier(Some("avx2"), &[Scalar]).0, Scalar);
        let (t, warning) = cpu::choose_tier(Some("neon"), &[Scalar, Avx2]);
        assert_eq!(t, Avx2);
        assert!(warning.unwrap().contains("architecture"));
    }
}

// ---- matmul through every tier, in child processes ----

/// Set in a child process: run [`child_matmul`]'s body and print its results.
const CHILD_VAR: &str = "PUPIL_TIERS_TEST_CHILD";
const MATMUL_TYPES: [DType; 8] =
    [DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q4_K, DType::Q6_K, DType::Q5_K, DType::Q4_1, DType::F16];
const ROWS: usize = 19;
const COLS: usize = 512;
const TOKENS: usize = 3;

/// The same weights and inputs in every process.
fn matmul_case(t: DType) -> (Buf, Vec<f32>) {
    let mut r = rng(0x3a7 + t.id() as u64);
    let w: Vec<f32> = (0..ROWS * COLS).map(|_| r.random_range(-1f32..1.0)).collect();
    let x: Vec<f32> =
        (0..TOKENS * COLS).map(|i| (i as f32 * 0.731).sin() + if i % 50 == 0 { 8.0 } else { 0.0 }).collect();
    (quantize_ref(t, &w), x)
}

fn run_matmul(t: DType, w: &Buf, x: &[f32]) -> Vec<f32> {
    let w = WeightRef { dtype: t, rows: ROWS, cols: COLS, data: w.bytes(), packed: None };
    let mut a = Activations::new();
    a.quantize(cpu::ops(t).unwrap().act, x, TOKENS, COLS).unwrap();
    let mut out = vec![0.0; TOKENS * ROWS];
    matmul(&w, &a, &mut out).unwrap();
    out
}

/// In a child process (see [`matmul_is_the_same_through_every_tier`]): prints the tier and the
/// matmul outputs. Otherwise checks that matmul uses this process's tier.
#[test]
fn child_matmul() {
    if std::env::var_os(CHILD_VAR).is_none() {
        for t in MATMUL_TYPES {
            let (w, x) = matmul_case(t);
            let out = run_matmul(t, &w, &x);
            let ops = cpu::ops(t).unwrap();
            let mut a = Buf::zeroed(ops.act.row_bytes(COLS as u64).unwrap() as usize);
            (cpu::ops(ops.act).unwrap().activate.unwrap())(&x[..COLS], a.bytes_mut()).unwrap();
            let rb = t.row_bytes(COLS as u64).unwrap() as usize;
            let direct = (ops.dot)(&w.bytes()[rb..2 * rb], a.bytes()).unwrap();
            assert_eq!(out[1].to_bits(), direct.to_bits(), "{t}: matmul is not the tier's dot");
        }
        return;
    }
    // A fresh line: the harness has printed "test child_matmul ... " without one.
    println!("\nTIER {}", cpu::tier());
    for t in MATMUL_TYPES {
        let (w, x) = matmul_case(t);
        let out: Vec<String> = run_matmul(t, &w, &x).iter().map(|v| format!("{:08x}", v.to_bits())).collect();
        println!("OUT {} {}", t, out.join(" "));
    }
}

/// Runs [`child_matmul`] in this test binary with `PUPIL_FORCE_TIER=force`: (the tier it
/// reported, its outputs per type, its stderr).
fn child(force: &str) -> (String, Vec<(String, Vec<f32>)>, String) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_matmul", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, "1")
        .env(cpu::FORCE_TIER_VAR, force)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child {force} failed:\n{stdout}\n{stderr}");
    let tier = stdout.lines().find_map(|l| l.strip_prefix("TIER ")).expect("child printed its tier").to_string();
    let outs = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("OUT "))
        .map(|l| {
            let mut it = l.split(' ');
            let t = it.next().unwrap().to_string();
            (t, it.map(|h| f32::from_bits(u32::from_str_radix(h, 16).unwrap())).collect())
        })
        .collect();
    (tier, outs, stderr)
}

#[test]
fn matmul_is_the_same_through_every_tier() {
    let tiers = cpu::available_tiers();
    let best = *tiers.last().unwrap();
    let (_, scalar, _) = child("scalar");
    assert_eq!(scalar.len(), MATMUL_TYPES.len());
    for tier in &tiers {
        let (reported, outs, stderr) = child(tier.name());
        assert_eq!(reported, tier.name(), "PUPIL_FORCE_TIER={tier}");
        assert!(!stderr.contains("warning"), "{tier}: {stderr}");
        for ((t, ours), (_, theirs)) in outs.iter().zip(&scalar) {
            let dtype = *MATMUL_TYPES.iter().find(|d| d.name() == t).unwrap();
            let act = reference(dtype).act;
            let (w, x) = matmul_case(dtype);
            let rb = dtype.row_bytes(COLS as u64).unwrap() as usize;
            for (k, (&o, &s)) in ours.iter().zip(theirs).enumerate() {
                let (tok, row) = (k / ROWS, k % ROWS);
                let a = quantize_ref(act, &x[tok * COLS..(tok + 1) * COLS]);
                let scale = dot_scale(dtype, &w.bytes()[row * rb..(row + 1) * rb], a.bytes());
                assert_dot_close(&format!("{tier} {t} matmul output {k}"), o, s, scale, COLS);
            }
        }
    }
    // An unknown value runs the best tier, and says so.
    let (reported, _, stderr) = child("warp-drive");
    assert_eq!(reported, best.name());
    assert!(stderr.contains("warning") && stderr.contains("warp-drive"), "{stderr}");
}
