//! Batch invariance: a row's result does not depend on what else is in the batch.
//!
//! The server's promise (issue 12, "Determinism"; issue 13, "Batch invariance is kept") is
//! that a request's output is byte for byte the same alone or among others, in any slot,
//! however its prompt was chunked. That holds only if every kernel gives a (weight row,
//! token) pair, or a query token's attention, the same bits whatever the batch. Here:
//!
//! - `matmul`, for every weight type and every tier this host supports (and each tier's copy
//!   packed at load, where it packs the type): each token of a batch of 1 to 64 tokens, at
//!   several positions in it, against the same token alone (`n = 1`, the decode path), on
//!   random and adversarial weights and activations;
//! - `attend_batch`, for f16 and f32 caches and several head shapes: each query token of a
//!   batch of 1 to 64 tokens from two sequences, at random positions, against `attend` of that
//!   token alone, through every tier (the attention kernels follow the process's tier, so each
//!   tier runs in a child process of this test binary with `PUPIL_FORCE_TIER`).
//!
//! Comparisons are on the bits (`to_bits`), NaN included.

mod common;

use common::rng;
use half::f16;
use pupil_kernels::cpu::{self, Tier};
use pupil_kernels::ops::{self, Activations, KvScalar, PackedWeight, WeightRef, matmul_on};
use pupil_kernels::{DType, quant};
use rand::Rng;
use std::ops::Range;

/// Weight rows: odd, so the GEMM's last panel of rows is partial.
const ROWS: usize = 37;
/// The largest batch checked.
const MAX_BATCH: usize = 64;

/// The weight types pupil has matmul kernels for.
fn types() -> Vec<DType> {
    DType::ALL
        .iter()
        .copied()
        .filter(|&t| quant::ops(t).is_some_and(|o| o.act != t || is_float(t) || t == DType::Q8_0))
        .collect()
}

/// Bytes aligned for any block type.
fn aligned(bytes: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
    words
}

/// `rows` weight rows of `cols` for type `t`: reference-quantized adversarial and random rows,
/// and rows of random bytes (every quant and packed-scale pattern) with finite f16 scales.
fn weights(t: DType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let q = quant::ops(t).unwrap().quantize.expect("every weight type quantizes");
    let rb = t.row_bytes(cols as u64).unwrap() as usize;
    let adversarial = common::rows(cols, seed);
    let mut r = rng(seed ^ 0x77);
    let mut out = vec![0u8; rows * rb];
    for (k, dst) in out.chunks_exact_mut(rb).enumerate() {
        match k % 4 {
            0 | 1 => q(&adversarial[k % adversarial.len()].x, dst).unwrap(),
            2 => q(&common::uniform(&mut r, cols, 1.0), dst).unwrap(),
            _ => {
                // Random bytes, then a real quantized block's scale bytes written over each
                // block's f16 fields, so that the scales are finite but the quants arbitrary.
                r.fill(dst);
                let mut real = vec![0u8; rb];
                q(&common::uniform(&mut r, cols, 3.0), &mut real).unwrap();
                if !is_float(t) {
                    let bb = t.type_size();
                    for (d, s) in dst.chunks_exact_mut(bb).zip(real.chunks_exact(bb)) {
                        for &(at, len) in scale_fields(t) {
                            d[at..at + len].copy_from_slice(&s[at..at + len]);
                        }
                    }
                } else {
                    dst.copy_from_slice(&real);
                }
            }
        }
    }
    out
}

/// Where a block keeps its f16 scales (byte offset, length), per ggml's struct layouts.
fn scale_fields(t: DType) -> &'static [(usize, usize)] {
    use DType::*;
    match t {
        Q4_0 | Q5_0 | Q8_0 => &[(0, 2)],
        Q4_1 | Q5_1 => &[(0, 4)],
        Q2_K => &[(80, 4)],
        Q3_K => &[(108, 2)],
        Q4_K | Q5_K => &[(0, 4)],
        Q6_K => &[(208, 2)],
        _ => &[],
    }
}

/// `MAX_BATCH` token rows of `cols`: the adversarial rows of `common::rows`, then random ones.
fn tokens(cols: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    let mut x: Vec<f32> = common::rows(cols, seed).into_iter().flat_map(|row| row.x).take(MAX_BATCH * cols).collect();
    while x.len() < MAX_BATCH * cols {
        x.extend(common::uniform(&mut r, cols, 2.0));
    }
    x
}

fn run(tier: Tier, w: &WeightRef<'_>, x: &[f32], n: usize) -> Vec<f32> {
    let act = quant::ops(w.dtype).unwrap().act;
    let mut a = Activations::new();
    a.quantize(act, x, n, w.cols).unwrap();
    let mut out = vec![f32::NAN; n * w.rows];
    matmul_on(tier, w, &a, &mut out).unwrap();
    out
}

/// Every (row, token) output of `matmul`, for every type and tier, in batches of 1 to 64 at
/// several positions, is the bits of that token alone.
#[test]
fn matmul_rows_do_not_depend_on_the_batch() {
    let mut checked = 0usize;
    let mut failures: Vec<String> = Vec::new();
    for t in types() {
        for (ci, cols) in [512usize, 768].into_iter().enumerate() {
            let seed = 0xba7c + 100 * t.id() as u64 + ci as u64;
            let wb = aligned(&weights(t, ROWS, cols, seed));
            let rb = t.row_bytes(cols as u64).unwrap() as usize;
            let w =
                WeightRef { dtype: t, rows: ROWS, cols, data: &bytemuck::cast_slice(&wb)[..ROWS * rb], packed: None };
            let x = tokens(cols, seed + 1);
            // The same weights packed for each tier that packs the type: its batches read the
            // packed copy and must give the bits of the unpacked token alone.
            let packed: Vec<(Tier, PackedWeight)> = cpu::available_tiers()
                .into_iter()
                .filter_map(|tier| PackedWeight::new_on(tier, &w).unwrap().map(|p| (tier, p)))
                .collect();
            // Where the packed copy is all the tier reads (the stored pages are released at
            // load), the stored bytes given beside it are zeros: any read of them would show.
            let zeros = vec![0u64; wb.len()];
            let stored = |p: &PackedWeight| {
                if p.replaces_stored() { &bytemuck::cast_slice(&zeros)[..w.data.len()] } else { w.data }
            };
            let with_packed: Vec<_> = packed
                .iter()
                .map(|(tier, p)| (*tier, WeightRef { packed: Some(p), data: stored(p), ..w }, " packed"))
                .collect();
            // Row lookups go through the chosen tier's kernels.
            if let Some((_, wp, _)) = with_packed
                .iter()
                .find(|(tier, wp, _)| *tier == cpu::tier() && wp.packed.is_some_and(PackedWeight::replaces_stored))
            {
                // Row lookups (embeddings) from the packed copy alone.
                let (mut got, mut want) = (vec![0f32; cols], vec![0f32; cols]);
                for r in 0..ROWS {
                    ops::get_row(&wp, r, &mut got).unwrap();
                    ops::get_row(&w, r, &mut want).unwrap();
                    checked += cols;
                    if got.iter().zip(&want).any(|(a, b)| a.to_bits() != b.to_bits()) {
                        failures.push(format!("{t} {cols} cols: row {r} looked up in the packed copy differs"));
                        break;
                    }
                }
            }
            let plain = cpu::available_tiers().into_iter().map(|tier| (tier, w, ""));
            for (tier, wv, how) in plain.chain(with_packed) {
                let alone: Vec<Vec<f32>> = (0..MAX_BATCH).map(|k| run(tier, &w, &x[k * cols..][..cols], 1)).collect();
                let w = wv;
                let mut bad = None;
                'batches: for n in 1..=MAX_BATCH {
                    // Two arrangements per size: token `pick(p)` at position `p` (7 and 13 are
                    // prime to 64, so the tokens of a batch are distinct and each lands at many
                    // positions over the sizes).
                    for shift in [0usize, 29] {
                        let pick = |p: usize| (p * 7 + shift * 13 + n) % MAX_BATCH;
                        let batch: Vec<f32> =
                            (0..n).flat_map(|p| x[pick(p) * cols..][..cols].iter().copied()).collect();
                        let out = run(tier, &w, &batch, n);
                        for p in 0..n {
                            for r in 0..ROWS {
                                let (got, want) = (out[p * ROWS + r], alone[pick(p)][r]);
                                checked += 1;
                                if got.to_bits() != want.to_bits() {
                                    bad = Some(format!(
                                        "{tier}{how} {t} {cols} cols: token {} at position {p} of {n}, row {r}: {got:e} ({:#x}), alone {want:e} ({:#x})",
                                        pick(p),
                                        got.to_bits(),
                                        want.to_bits()
                                    ));
                                    break 'batches;
                                }
                            }
                        }
                    }
                }
                failures.extend(bad);
            }
        }
    }
    eprintln!("{checked} matmul outputs checked");
    assert!(failures.is_empty(), "{} type/tier pairs depend on the batch:\n{}", failures.len(), failures.join("\n"));
}

/// A prompt's matmul over a matrix of many panels: the tiled GEMM runs each tile of tokens
/// against a group of panels at a time, so the rows here span several groups, the last
/// partial and ending in a partial panel. Every output, through every tier (and the packed
/// copy), is the bits of its token alone.
#[test]
fn prompt_matmul_spans_groups_of_panels() {
    // 16 panels of 16 rows make the largest group; 2 of them, then 9 rows.
    const MANY: usize = 2 * 16 * 16 + 9;
    let (cols, n) = (256usize, 40usize);
    let mut checked = 0usize;
    for t in types() {
        let seed = 0x9a0e + t.id() as u64;
        let wb = aligned(&weights(t, MANY, cols, seed));
        let rb = t.row_bytes(cols as u64).unwrap() as usize;
        let w = WeightRef { dtype: t, rows: MANY, cols, data: &bytemuck::cast_slice(&wb)[..MANY * rb], packed: None };
        let x = tokens(cols, seed + 1);
        let packed: Vec<(Tier, PackedWeight)> = cpu::available_tiers()
            .into_iter()
            .filter_map(|tier| PackedWeight::new_on(tier, &w).unwrap().map(|p| (tier, p)))
            .collect();
        let plain = cpu::available_tiers().into_iter().map(|tier| (tier, w, ""));
        let with_packed = packed.iter().map(|(tier, p)| (*tier, WeightRef { packed: Some(p), ..w }, " packed"));
        for (tier, wv, how) in plain.chain(with_packed) {
            let out = run(tier, &wv, &x[..n * cols], n);
            for tok in [0, 1, 17, n - 1] {
                let alone = run(tier, &w, &x[tok * cols..][..cols], 1);
                for (r, want) in alone.iter().enumerate() {
                    let got = out[tok * MANY + r];
                    assert_eq!(got.to_bits(), want.to_bits(), "{tier}{how} {t}: token {tok} of {n}, row {r} of {MANY}");
                    checked += 1;
                }
            }
        }
    }
    eprintln!("{checked} outputs checked");
}

/// Set in the child processes of [`attention_is_invariant_through_every_tier`].
const CHILD_VAR: &str = "PUPIL_BATCH_INVARIANCE_CHILD";

/// Random `len` values in [-2, 2) as the cache type.
fn cache<T: KvScalar>(r: &mut rand::rngs::SmallRng, len: usize) -> Vec<T> {
    (0..len).map(|_| T::from_f32(r.random_range(-2.0..2.0))).collect()
}

/// For batches of 1 to 64 query tokens drawn from two sequences (random positions, some with
/// a sliding window, one with no rows), each token's `attend_batch` output against `attend`
/// of it alone; returns the first difference.
fn attention_case<T: KvScalar>(nh: usize, nkv: usize, hd: usize, cap: Option<f32>, seed: u64) -> Option<String> {
    let n_ctx = 160;
    let (kvd, qd) = (nkv * hd, nh * hd);
    let mut r = rng(seed);
    let k: Vec<T> = cache(&mut r, 2 * n_ctx * kvd);
    let v: Vec<T> = cache(&mut r, 2 * n_ctx * kvd);
    // The pool: query `i` is a token of sequence `i % 2` at a random position, causal, every
    // third one with a window; adversarial queries (large, equal) among them.
    let pool: Vec<(Vec<f32>, Range<usize>)> = (0..MAX_BATCH)
        .map(|i| {
            let seq = i % 2;
            let pos = r.random_range(0..n_ctx);
            let start = if i % 3 == 0 { (pos + 1).saturating_sub(r.random_range(1..40)) } else { 0 };
            let span = if i == 5 { seq * n_ctx..seq * n_ctx } else { seq * n_ctx + start..seq * n_ctx + pos + 1 };
            let q: Vec<f32> = match i % 7 {
                3 => vec![40.0; qd],
                4 => (0..qd).map(|j| if j % 2 == 0 { 60.0 } else { -60.0 }).collect(),
                _ => (0..qd).map(|_| r.random_range(-2.0..2.0)).collect(),
            };
            (q, span)
        })
        .collect();
    let scale = 1.0 / (hd as f32).sqrt();
    let scores = &mut vec![0.0; 8 * n_ctx];
    let alone: Vec<Vec<f32>> = pool
        .iter()
        .map(|(q, span)| {
            let mut one = vec![f32::NAN; qd];
            let rows = span.start * kvd..span.end * kvd;
            ops::attend(q, &k[rows.clone()], &v[rows], nh, nkv, hd, scale, cap, &mut one, scores);
            one
        })
        .collect();
    for n in 1..=MAX_BATCH {
        for shift in [0usize, 17] {
            let pick = |p: usize| (p * 13 + shift * 5 + n) % MAX_BATCH;
            let q: Vec<f32> = (0..n).flat_map(|p| pool[pick(p)].0.iter().copied()).collect();
            let spans: Vec<Range<usize>> = (0..n).map(|p| pool[pick(p)].1.clone()).collect();
            let mut out = vec![f32::NAN; n * qd];
            ops::attend_batch(&q, &k, &v, &spans, nh, nkv, hd, scale, cap, &mut out, scores);
            for p in 0..n {
                let want = &alone[pick(p)];
                let got = &out[p * qd..][..qd];
                if let Some(i) = (0..qd).find(|&i| got[i].to_bits() != want[i].to_bits()) {
                    return Some(format!(
                        "{} nh={nh} nkv={nkv} hd={hd} cap={cap:?}: token {} at position {p} of {n}, [{i}]: {} vs {} alone",
                        std::any::type_name::<T>(),
                        pick(p),
                        got[i],
                        want[i]
                    ));
                }
            }
        }
    }
    None
}

/// In a child process (see [`attention_is_invariant_through_every_tier`]): runs the attention
/// cases on this process's tier and prints what differs. Run directly, checks the best tier.
#[test]
fn child_attention() {
    let mut failures = Vec::new();
    for (nh, nkv, hd) in [(4, 1, 256), (8, 2, 64), (3, 3, 20)] {
        for cap in [None, Some(20.0)] {
            let seed = (nh * 100 + hd) as u64;
            failures.extend(attention_case::<f16>(nh, nkv, hd, cap, seed));
            failures.extend(attention_case::<f32>(nh, nkv, hd, cap, seed));
        }
    }
    if std::env::var_os(CHILD_VAR).is_some() {
        println!("\nTIER {}", cpu::tier());
        for f in &failures {
            println!("FAIL {f}");
        }
        return;
    }
    assert!(failures.is_empty(), "attention depends on the batch ({}):\n{}", cpu::tier(), failures.join("\n"));
}

/// [`child_attention`] through every tier this host supports.
#[test]
fn attention_is_invariant_through_every_tier() {
    let mut failures = Vec::new();
    for tier in cpu::available_tiers() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_attention", "--nocapture", "--test-threads=1"])
            .env(CHILD_VAR, "1")
            .env(cpu::FORCE_TIER_VAR, tier.name())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child {tier} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let reported = stdout.lines().find_map(|l| l.strip_prefix("TIER ")).expect("child printed its tier");
        assert_eq!(reported, tier.name());
        failures.extend(stdout.lines().filter_map(|l| l.strip_prefix("FAIL ")).map(|f| format!("{tier}: {f}")));
    }
    assert!(failures.is_empty(), "attention depends on the batch:\n{}", failures.join("\n"));
}

fn is_float(t: DType) -> bool {
    matches!(t, DType::F32 | DType::F16 | DType::BF16)
}
