//! Attention: every tier's `q · k` / `p · v` kernels against the reference loops, and
//! `attend` / `attend_batch` against a plain f64 attention with the same rounding of the query
//! and probabilities to the cache type, on random data with causal spans, sliding windows,
//! grouped-query shapes, f16 and f32 caches, and head sizes with SIMD tails.

mod common;

use common::rng;
use half::f16;
use pupil_kernels::cpu::{self, Tier};
use pupil_kernels::ops::{self, KvScalar, kv_reference};
use rand::Rng;
use std::ops::Range;

fn close(what: &str, ours: f32, want: f64, scale: f64) {
    let tol = 1e-5 * scale.max(1.0);
    assert!((f64::from(ours) - want).abs() <= tol, "{what}: {ours} vs {want} (tolerance {tol})");
}

#[test]
fn kv_kernels_match_reference_on_every_tier() {
    let mut r = rng(7);
    for tier in cpu::available_tiers() {
        let k = cpu::kv_ops_for(tier).unwrap();
        for n in [0usize, 1, 7, 8, 31, 32, 33, 64, 100, 256] {
            let q: Vec<f32> = (0..n).map(|_| r.random_range(-4.0..4.0)).collect();
            let x: Vec<f32> = (0..n).map(|_| r.random_range(-4.0..4.0)).collect();
            let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
            let scale: f64 = q.iter().zip(&x).map(|(a, b)| f64::from((a * b).abs())).sum();
            let what = format!("{tier} n={n}");
            close(&format!("dot f32 {what}"), (k.dot_f32)(&q, &x), f64::from(kv_reference::dot(&q, &x)), scale);
            close(&format!("dot f16 {what}"), (k.dot_f16)(&q, &xh), f64::from(kv_reference::dot(&q, &xh)), scale);
            let p = r.random_range(-1.0f32..1.0);
            let (mut a, mut b) = (q.clone(), q.clone());
            (k.axpy_f32)(&mut a, p, &x);
            kv_reference::axpy(&mut b, p, &x);
            let (mut c, mut d) = (q.clone(), q.clone());
            (k.axpy_f16)(&mut c, p, &xh);
            kv_reference::axpy(&mut d, p, &xh);
            for i in 0..n {
                close(&format!("axpy f32 {what} [{i}]"), a[i], f64::from(b[i]), 8.0);
                close(&format!("axpy f16 {what} [{i}]"), c[i], f64::from(d[i]), 8.0);
            }
        }
    }
    assert!(cpu::kv_ops_for(Tier::Scalar).is_some());
}

/// The multi-head kernels (`scores`, `mix`) of every tier against the reference loops, for
/// 1 to 5 heads, head sizes with and without SIMD tails, strided rows; each head's numbers
/// bit for bit the same whether it is computed alone or with others (a token must get the
/// same bits decoded alone, where the heads are split across threads, as in a batch);
/// `mix_acc` over the rows in two runs bit for bit `mix` over all of them (the tiled batch
/// path sums a value tile at a time); the streamed `scores` and `mix` bit for bit the plain
/// ones; `widen_f16` exact; and `round_f16` bit for bit
/// `f16::from_f32`.
#[test]
fn multi_head_kv_kernels_match_reference() {
    let mut r = rng(11);
    for tier in cpu::available_tiers() {
        let k = cpu::kv_ops_for(tier).unwrap();
        for hd in [1usize, 8, 20, 33, 64, 256] {
            for n in [1usize, 2, 7, 40, 100] {
                let stride = hd * 2 + 3;
                let cache: Vec<f32> = (0..n * stride).map(|_| r.random_range(-2.0..2.0)).collect();
                let cache_h: Vec<f16> = cache.iter().map(|&v| f16::from_f32(v)).collect();
                for gp in 1..=5usize {
                    let q: Vec<f32> = (0..gp * hd).map(|_| r.random_range(-2.0..2.0)).collect();
                    let p: Vec<f32> = (0..gp * n).map(|_| r.random_range(0.0..1.0)).collect();
                    let what = format!("{tier} hd={hd} n={n} heads={gp}");
                    let mut ours = vec![0f32; gp * n];
                    let mut want = vec![0f32; gp * n];
                    (k.scores_f16)(&q, &cache_h, stride, n, 0.5, &mut ours);
                    kv_reference::scores(&q, &cache_h, stride, n, 0.5, &mut want);
                    let (mut ours32, mut want32) = (vec![0f32; gp * n], vec![0f32; gp * n]);
                    (k.scores_f32)(&q, &cache, stride, n, 0.5, &mut ours32);
                    kv_reference::scores(&q, &cache, stride, n, 0.5, &mut want32);
                    for i in 0..gp * n {
                        close(&format!("scores f16 {what} [{i}]"), ours[i], f64::from(want[i]), 4.0 * hd as f64);
                        close(&format!("scores f32 {what} [{i}]"), ours32[i], f64::from(want32[i]), 4.0 * hd as f64);
                    }
                    // The streamed kernels (a decode step's, which ask for the rows ahead): the
                    // same bits.
                    let mut streamed = vec![0f32; gp * n];
                    (k.scores_streamed_f16)(&q, &cache_h, stride, n, 0.5, &mut streamed, stride);
                    assert_eq!(streamed, ours, "scores_streamed f16 {what}");
                    (k.scores_streamed_f32)(&q, &cache, stride, n, 0.5, &mut streamed, hd);
                    assert_eq!(streamed, ours32, "scores_streamed f32 {what}");
                    // Head by head alone: the same bits.
                    for g in 0..gp {
                        let mut one = vec![0f32; n];
                        (k.scores_f16)(&q[g * hd..][..hd], &cache_h, stride, n, 0.5, &mut one);
                        assert_eq!(&one[..], &ours[g * n..][..n], "scores {what}: head {g} alone");
                    }
                    let (mut ours, mut want) = (vec![9f32; gp * hd], vec![0f32; gp * hd]);
                    let (mut ours32, mut want32) = (vec![9f32; gp * hd], vec![0f32; gp * hd]);
                    (k.mix_f16)(&p, &cache_h, stride, n, &mut ours);
                    kv_reference::mix(&p, &cache_h, stride, n, &mut want);
                    (k.mix_f32)(&p, &cache, stride, n, &mut ours32);
                    kv_reference::mix(&p, &cache, stride, n, &mut want32);
                    for i in 0..gp * hd {
                        close(&format!("mix f16 {what} [{i}]"), ours[i], f64::from(want[i]), 2.0 * n as f64);
                        close(&format!("mix f32 {what} [{i}]"), ours32[i], f64::from(want32[i]), 2.0 * n as f64);
                    }
                    let mut streamed = vec![9f32; gp * hd];
                    (k.mix_streamed_f16)(&p, &cache_h, stride, n, &mut streamed, hd);
                    assert_eq!(streamed, ours, "mix_streamed f16 {what}");
                    (k.mix_streamed_f32)(&p, &cache, stride, n, &mut streamed, stride);
                    assert_eq!(streamed, ours32, "mix_streamed f32 {what}");
                    for g in 0..gp {
                        let mut one = vec![0f32; hd];
                        (k.mix_f16)(&p[g * n..][..n], &cache_h, stride, n, &mut one);
                        assert_eq!(&one[..], &ours[g * hd..][..hd], "mix {what}: head {g} alone");
                    }
                    // Rows `0..a` then `a..n` added up: the same bits as all at once.
                    let a = n / 3;
                    let (mut acc, mut acc32) = (vec![0f32; gp * hd], vec![0f32; gp * hd]);
                    for (rows, at) in [(0..a, 0), (a..n, a * stride)] {
                        let pr: Vec<f32> = p.chunks_exact(n).flat_map(|pg| pg[rows.clone()].to_vec()).collect();
                        (k.mix_acc_f16)(&pr, &cache_h[at..], stride, rows.len(), &mut acc);
                        (k.mix_acc_f32)(&pr, &cache[at..], stride, rows.len(), &mut acc32);
                    }
                    assert_eq!(acc, ours, "mix_acc f16 {what}: in two runs");
                    assert_eq!(acc32, ours32, "mix_acc f32 {what}: in two runs");
                }
            }
        }
        let mut x: Vec<f32> =
            (0..1000).map(|_| r.random_range(-70000.0..70000.0) * r.random::<f32>().powi(8)).collect();
        x.extend([f32::NAN, f32::INFINITY, -0.0, 65504.0, 65520.0, 1e-8, 3e-5]);
        let xh: Vec<f16> = x.iter().map(|&v| f16::from_f32(v)).collect();
        let mut wide = vec![0f32; xh.len()];
        (k.widen_f16)(&xh, &mut wide);
        for (h, w) in xh.iter().zip(&wide) {
            assert!(h.to_f32().to_bits() == w.to_bits() || w.is_nan(), "{tier} widen_f16({h}): {w:e}");
        }
        let mut y = x.clone();
        (k.round_f16)(&mut y);
        for (a, b) in x.iter().zip(&y) {
            let want = f16::from_f32(*a).to_f32();
            assert!(
                want.to_bits() == b.to_bits() || (want.is_nan() && b.is_nan()),
                "{tier} round_f16({a:e}): {b:e} vs {want:e}"
            );
        }
    }
}

/// The AVX-512 tiers' `scores` and `mix` are the AVX2 tier's arithmetic on wider vectors: the
/// same bits, on head sizes with and without tails, rows odd and even, one to five heads, and
/// keys holding infinities and NaN.
#[test]
fn wide_kv_kernels_give_the_avx2_bits() {
    let Some(narrow) = cpu::kv_ops_for(Tier::Avx2) else { return };
    let mut r = rng(12);
    for tier in cpu::available_tiers().into_iter().filter(|&t| matches!(t, Tier::Avx512 | Tier::Amx)) {
        let wide = cpu::kv_ops_for(tier).unwrap();
        for hd in [8usize, 20, 40, 64, 72, 256] {
            for n in [1usize, 3, 6, 8, 13, 40] {
                let stride = hd + 5;
                let mut cache: Vec<f32> = (0..n * stride).map(|_| r.random_range(-3.0..3.0)).collect();
                if n > 3 {
                    cache[stride + 1] = f32::INFINITY;
                    cache[2 * stride + hd - 1] = f32::NAN;
                }
                let cache_h: Vec<f16> = cache.iter().map(|&v| f16::from_f32(v)).collect();
                for gp in 1..=5usize {
                    let what = format!("{tier} hd={hd} n={n} heads={gp}");
                    let q: Vec<f32> = (0..gp * hd).map(|_| r.random_range(-2.0..2.0)).collect();
                    let p: Vec<f32> = (0..gp * n).map(|_| r.random_range(0.0..1.0)).collect();
                    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
                    let (mut a, mut b) = (vec![0f32; gp * n], vec![0f32; gp * n]);
                    (wide.scores_f16)(&q, &cache_h, stride, n, 0.3, &mut a);
                    (narrow.scores_f16)(&q, &cache_h, stride, n, 0.3, &mut b);
                    assert!(same(&a, &b), "scores f16 {what}");
                    (wide.scores_f32)(&q, &cache, stride, n, 0.3, &mut a);
                    (narrow.scores_f32)(&q, &cache, stride, n, 0.3, &mut b);
                    assert!(same(&a, &b), "scores f32 {what}");
                    let start: Vec<f32> = (0..gp * hd).map(|_| r.random_range(-1.0..1.0)).collect();
                    let (mut a, mut b) = (start.clone(), start.clone());
                    (wide.mix_f16)(&p, &cache_h, stride, n, &mut a);
                    (narrow.mix_f16)(&p, &cache_h, stride, n, &mut b);
                    assert!(same(&a, &b), "mix f16 {what}");
                    (wide.mix_f32)(&p, &cache, stride, n, &mut a);
                    (narrow.mix_f32)(&p, &cache, stride, n, &mut b);
                    assert!(same(&a, &b), "mix f32 {what}");
                    let (mut a, mut b) = (start.clone(), start.clone());
                    (wide.mix_acc_f16)(&p, &cache_h, stride, n, &mut a);
                    (narrow.mix_acc_f16)(&p, &cache_h, stride, n, &mut b);
                    assert!(same(&a, &b), "mix_acc f16 {what}");
                    let (mut a, mut b) = (start.clone(), start);
                    (wide.mix_acc_f32)(&p, &cache, stride, n, &mut a);
                    (narrow.mix_acc_f32)(&p, &cache, stride, n, &mut b);
                    assert!(same(&a, &b), "mix_acc f32 {what}");
                }
            }
        }
    }
}

/// Plain attention in f64 for one token: `q` `[n_head, hd]`, cache rows `span`.
#[allow(clippy::too_many_arguments)]
fn naive<T: KvScalar>(
    q: &[f32],
    k: &[T],
    v: &[T],
    span: Range<usize>,
    nh: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    cap: Option<f32>,
) -> Vec<f64> {
    let kvd = nkv * hd;
    let mut out = vec![0f64; nh * hd];
    for h in 0..nh {
        let off = h / (nh / nkv) * hd;
        let qh: Vec<f32> = q[h * hd..][..hd].iter().map(|&x| T::from_f32(x).to_f32()).collect();
        let mut s: Vec<f64> = span
            .clone()
            .map(|j| {
                let d: f64 = (0..hd).map(|i| f64::from(qh[i]) * f64::from(k[j * kvd + off + i].to_f32())).sum();
                let d = d * f64::from(scale);
                cap.map_or(d, |c| f64::from(c) * (d / f64::from(c)).tanh())
            })
            .collect();
        let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = s
            .iter_mut()
            .map(|x| {
                *x = (*x - max).exp();
                *x
            })
            .sum();
        for (x, j) in s.iter().zip(span.clone()) {
            let p = f64::from(T::from_f32((x / sum) as f32).to_f32());
            for i in 0..hd {
                out[h * hd + i] += p * f64::from(v[j * kvd + off + i].to_f32());
            }
        }
    }
    out
}

fn check<T: KvScalar>(name: &str, nh: usize, nkv: usize, hd: usize, window: Option<usize>, cap: Option<f32>) {
    let mut r = rng(nh as u64 * 1000 + hd as u64);
    let (n_ctx, n_seq, n) = (40usize, 2usize, 23usize);
    let kvd = nkv * hd;
    let rand_vec = |r: &mut rand::rngs::SmallRng, len: usize| -> Vec<f32> {
        (0..len).map(|_| r.random_range(-2.0..2.0)).collect()
    };
    let k: Vec<T> = rand_vec(&mut r, n_seq * n_ctx * kvd).into_iter().map(T::from_f32).collect();
    let v: Vec<T> = rand_vec(&mut r, n_seq * n_ctx * kvd).into_iter().map(T::from_f32).collect();
    let q = rand_vec(&mut r, n * nh * hd);
    // Tokens of two sequences at increasing positions, some of them at the far end.
    let spans: Vec<Range<usize>> = (0..n)
        .map(|t| {
            let (seq, pos) = (t % 2, (t * 7) % n_ctx);
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            seq * n_ctx + first..seq * n_ctx + pos + 1
        })
        .collect();
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![0f32; n * nh * hd];
    for runs in [1usize, 3, 64] {
        let mut scores = vec![0f32; runs * n_ctx];
        ops::attend_batch(&q, &k, &v, &spans, nh, nkv, hd, scale, cap, &mut out, &mut scores);
        for (t, span) in spans.iter().enumerate() {
            let want = naive(&q[t * nh * hd..][..nh * hd], &k, &v, span.clone(), nh, nkv, hd, scale, cap);
            let mut one = vec![0f32; nh * hd];
            let rows = span.start * kvd..span.end * kvd;
            ops::attend(
                &q[t * nh * hd..][..nh * hd],
                &k[rows.clone()],
                &v[rows],
                nh,
                nkv,
                hd,
                scale,
                cap,
                &mut one,
                &mut vec![0.0; span.len()],
            );
            for i in 0..nh * hd {
                // One f16 ulp of a probability times a value of at most 2, per key.
                let tol = 2e-3 * 2.0 + 1e-4;
                let got = out[t * nh * hd + i];
                assert!(
                    (f64::from(got) - want[i]).abs() <= tol,
                    "{name} runs={runs} token {t} [{i}]: {got} vs {}",
                    want[i]
                );
                assert!(
                    (f64::from(one[i]) - want[i]).abs() <= tol,
                    "{name} attend token {t} [{i}]: {} vs {}",
                    one[i],
                    want[i]
                );
            }
        }
    }
}

#[test]
fn attend_batch_matches_plain_attention() {
    for (nh, nkv, hd) in [(4, 1, 256), (4, 2, 64), (3, 3, 20), (8, 2, 33)] {
        for window in [None, Some(5)] {
            for cap in [None, Some(30.0)] {
                let name = format!("nh={nh} nkv={nkv} hd={hd} window={window:?} cap={cap:?}");
                check::<f16>(&format!("f16 {name}"), nh, nkv, hd, window, cap);
                check::<f32>(&format!("f32 {name}"), nh, nkv, hd, window, cap);
            }
        }
    }
}

/// Random `[rows, width]` values in [-2, 2) as the cache type.
fn cache<T: KvScalar>(r: &mut rand::rngs::SmallRng, len: usize) -> Vec<T> {
    (0..len).map(|_| T::from_f32(r.random_range(-2.0..2.0))).collect()
}

/// `attend_batch` over `spans` (a batch long enough for the tiled path) against the plain f64
/// attention, and bit for bit against `attend` of each token alone.
#[allow(clippy::too_many_arguments)]
fn check_tiled<T: KvScalar>(
    name: &str,
    nh: usize,
    nkv: usize,
    hd: usize,
    rows: usize,
    spans: &[Range<usize>],
    cap: Option<f32>,
    seed: u64,
) {
    let mut r = rng(seed);
    let (kvd, qd, n) = (nkv * hd, nh * hd, spans.len());
    let k: Vec<T> = cache(&mut r, rows * kvd);
    let v: Vec<T> = cache(&mut r, rows * kvd);
    let q: Vec<f32> = (0..n * qd).map(|_| r.random_range(-2.0..2.0)).collect();
    let scale = 1.0 / (hd as f32).sqrt();
    let mut out = vec![f32::NAN; n * qd];
    ops::attend_batch(&q, &k, &v, spans, nh, nkv, hd, scale, cap, &mut out, &mut vec![0.0; 4 * rows]);
    for (t, span) in spans.iter().enumerate() {
        let qt = &q[t * qd..][..qd];
        let want = naive(qt, &k, &v, span.clone(), nh, nkv, hd, scale, cap);
        let mut one = vec![0f32; qd];
        let rows = span.start * kvd..span.end * kvd;
        ops::attend(qt, &k[rows.clone()], &v[rows], nh, nkv, hd, scale, cap, &mut one, &mut vec![0.0; span.len()]);
        for i in 0..qd {
            // One f16 ulp of a probability times a value of at most 2, per key.
            let tol = 2e-3 * 2.0 + 1e-4;
            let got = out[t * qd + i];
            assert!(
                (f64::from(got) - want[i]).abs() <= tol,
                "{name} token {t} span {span:?} [{i}]: {got} vs {}",
                want[i]
            );
            assert_eq!(
                got.to_bits(),
                one[i].to_bits(),
                "{name} token {t} span {span:?} [{i}]: {got} vs {} alone",
                one[i]
            );
        }
    }
}

/// Causal spans of `n` tokens of sequence `seq` (of `n_ctx` rows) from position `first`,
/// each seeing at most `window` rows.
fn causal(seq: usize, n_ctx: usize, first: usize, n: usize, window: Option<usize>) -> Vec<Range<usize>> {
    (first..first + n)
        .map(|pos| seq * n_ctx + window.map_or(0, |w| (pos + 1).saturating_sub(w))..seq * n_ctx + pos + 1)
        .collect()
}

/// Batches of 16 tokens or more take the tiled path: causal
/// prefill blocks at offsets (the first token of a prompt sees one row), sliding windows (of
/// one row, too), tokens of two sequences interleaved, a token with no rows, softcap, in the
/// GQA shapes of Gemma 3 270M, Llama 3.2 1B and odd ones.
#[test]
fn tiled_batches_match_plain_attention() {
    // The cases below are sized around the tiled path's threshold (16 tokens).
    let n_ctx = 192;
    let mut cases: Vec<(String, Vec<Range<usize>>)> = Vec::new();
    for (n, first) in [(16, 0), (37, 5), (100, 60)] {
        cases.push((format!("prefill {n} at {first}"), causal(0, n_ctx, first, n, None)));
    }
    for w in [1, 7, 50] {
        cases.push((format!("window {w}"), causal(0, n_ctx, 30, 40, Some(w))));
    }
    let mut two: Vec<Range<usize>> = causal(0, n_ctx, 100, 12, None)
        .into_iter()
        .zip(causal(1, n_ctx, 3, 12, Some(9)))
        .flat_map(|(a, b)| [a, b])
        .collect();
    two.push(5..5);
    cases.push(("two sequences and an empty span".into(), two));
    cases.push(("no keys at all".into(), vec![7..7; 16]));
    for (nh, nkv, hd) in [(4, 1, 256), (32, 8, 64), (3, 3, 20), (8, 2, 33)] {
        for (c, (what, spans)) in cases.iter().enumerate() {
            for cap in [None, Some(30.0)] {
                let name = format!("nh={nh} nkv={nkv} hd={hd} {what} cap={cap:?}");
                let seed = (nh * 1000 + hd * 10 + c) as u64;
                check_tiled::<f16>(&format!("f16 {name}"), nh, nkv, hd, 2 * n_ctx, spans, cap, seed);
                check_tiled::<f32>(&format!("f32 {name}"), nh, nkv, hd, 2 * n_ctx, spans, cap, seed);
            }
        }
    }
}

/// Batches of up to 15 tokens (decode, speculative verification, which take the one-token
/// path) give each token the bits `attend` gives it alone; longer batches (the
/// tiled path) give each token the same bits however the prompt is cut into them (chunked
/// prefill matches one batch), and a long prefill at a long context (a query tile's scores
/// split across several buffers' worth) still matches `attend`.
#[test]
fn small_batches_are_exact_and_tiled_chunks_agree() {
    let (nh, nkv, hd, n_ctx) = (4usize, 1usize, 256usize, 160usize);
    let (kvd, qd) = (nkv * hd, nh * hd);
    let mut r = rng(99);
    let k: Vec<f16> = cache(&mut r, n_ctx * kvd);
    let v: Vec<f16> = cache(&mut r, n_ctx * kvd);
    let q: Vec<f32> = (0..n_ctx * qd).map(|_| r.random_range(-2.0..2.0)).collect();
    let scale = 1.0 / (hd as f32).sqrt();
    let scores = &mut vec![0.0; 4 * n_ctx];
    for n in 1..=15 {
        let spans = causal(0, n_ctx, 40, n, Some(30));
        let mut out = vec![0f32; n * qd];
        ops::attend_batch(&q[40 * qd..], &k, &v, &spans, nh, nkv, hd, scale, Some(20.0), &mut out, scores);
        for (t, span) in spans.iter().enumerate() {
            let mut one = vec![0f32; qd];
            let rows = span.start * kvd..span.end * kvd;
            let qt = &q[(40 + t) * qd..][..qd];
            ops::attend(qt, &k[rows.clone()], &v[rows], nh, nkv, hd, scale, Some(20.0), &mut one, scores);
            assert!(one.iter().zip(&out[t * qd..]).all(|(a, b)| a.to_bits() == b.to_bits()), "batch of {n}: token {t}");
        }
    }
    let spans = causal(0, n_ctx, 0, n_ctx, None);
    let mut whole = vec![0f32; n_ctx * qd];
    ops::attend_batch(&q, &k, &v, &spans, nh, nkv, hd, scale, None, &mut whole, scores);
    let mut chunked = vec![0f32; n_ctx * qd];
    let mut at = 0;
    for len in [16, 23, 57, 64] {
        let (qs, os) = (&q[at * qd..][..len * qd], &mut chunked[at * qd..][..len * qd]);
        ops::attend_batch(qs, &k, &v, &spans[at..at + len], nh, nkv, hd, scale, None, os, scores);
        at += len;
    }
    assert_eq!(at, n_ctx);
    assert!(
        whole.iter().zip(&chunked).all(|(a, b)| a.to_bits() == b.to_bits()),
        "chunked prefill differs from one batch"
    );
    // 1 KV head of 64, 8 query heads, 48 tokens at 8000 positions: 64,000 scores per token,
    // so a query tile holds 4 of them.
    let long = causal(0, 8100, 8040, 48, None);
    check_tiled::<f16>("long context", 8, 1, 64, 8100, &long, None, 5);
}

/// Every tier's softmax gives the portable function's bits (a NaN for a NaN), on random
/// scores of every length up to 70 and a few longer, with the adversarial ones attention can
/// meet: masked (`-inf`) entries, all of them masked, infinities, NaNs, ties, signed zeros,
/// huge spreads and values past `exp`'s range.
#[test]
fn softmax_gives_the_portable_bits_on_every_tier() {
    let mut r = rng(31);
    let same =
        |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()));
    for tier in cpu::available_tiers() {
        let kv = cpu::kv_ops_for(tier).unwrap();
        for len in (0..=70).chain([127, 128, 257, 1000]) {
            for case in 0..8 {
                let mut x: Vec<f32> = (0..len)
                    .map(|_| match case {
                        0 => r.random_range(-30.0..10.0),
                        1 => r.random_range(-200.0..200.0),
                        2 => r.random_range(-1e-3..1e-3),
                        _ => r.random_range(-12.0..12.0),
                    })
                    .collect();
                for v in x.iter_mut() {
                    let pick = r.random_range(0..100);
                    *v = match (case, pick) {
                        (3, 0..30) => f32::NEG_INFINITY,
                        (4, _) => f32::NEG_INFINITY,
                        (5, 0..3) => f32::NAN,
                        (5, 3..6) => f32::INFINITY,
                        (6, 0..20) => 0.0,
                        (6, 20..40) => -0.0,
                        (7, 0..50) => 7.0,
                        _ => *v,
                    };
                }
                let mut want = x.clone();
                ops::softmax(&mut want);
                let mut got = x.clone();
                (kv.softmax)(&mut got);
                assert!(same(&got, &want), "{tier} softmax, length {len}, case {case}: {got:?} vs {want:?}");
            }
        }
    }
}
