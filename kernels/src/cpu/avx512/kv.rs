//! Attention's `scores` and `mix` on 512-bit vectors, with the AVX2 tier's arithmetic: every
//! output gets the bits the AVX2 tier gives it (checked by `kernels/tests/attention.rs`), in
//! half the instructions.
//!
//! - `scores`: each (head, key row) sum is one 8-lane accumulator over the chunks of 8 in
//!   order, reduced by the AVX2 tier's `hsum_ps`, then the tail in order. Here two key rows
//!   share a vector, one per 256-bit half, against the query chunk in both halves. When the
//!   head size is a multiple of 8 (every model's), the sums of eight rows and up to four heads
//!   are reduced together, by the additions `hsum_ps` makes, done on shuffled vectors rather
//!   than one sum at a time, which had cost more than the products at a head size of 64
//!   (`kernels/examples/prefill_attention.rs`, one thread, AVX-512 EPYC: a 512-token prompt
//!   1.17× faster in Gemma 3 270M's shape, 1.33× in Llama 3.2 1B's; one token at depth 512
//!   1.14× and 1.37×).
//! - streamed `scores` and `mix` (a decode step's, whose cache rows come from memory): the
//!   same sums, each cache row asked for ahead as the AVX2 tier's streamed kernels ask
//!   ([`fetch`]).
//! - `mix`: each output element is its own chain of FMAs over the rows in order, so it makes
//!   no difference to an element how many lanes are computed beside it: 64 (four vectors) at a
//!   time here, then 32 and 16, then the AVX2 tier's 8 and its scalar tail. Each slice is a
//!   pass over the value rows, so wider slices read them in fewer passes of longer runs: a
//!   decode step of eight Gemma 3 270M sequences at depth 512 (head size 256, four query
//!   heads per value head) ran 1.12–1.14× faster with 64 than with 32 (AVX-512 EPYC).

use super::softmax::softmax;
use crate::cpu::KvOps;
use crate::cpu::avx2::hsum_ps;
use crate::cpu::avx2::kv::{Elem as Narrow, ROWS_AHEAD, by_fours, fetch, fetch_rows, mix_rest, multi_head_entries};
use half::f16;
use std::arch::x86_64::*;

/// A cache element, widened to f32 sixteen at a time (eight and one at a time: the AVX2
/// tier's [`Elem`](Narrow)).
trait Elem: Narrow {
    /// Elements `at..at + 8` of `a` in the low half, of `b` in the high half.
    ///
    /// # Safety
    /// The caller has AVX-512F and F16C; `a` and `b` hold `at + 8` elements.
    unsafe fn ld8x2(a: &[Self], b: &[Self], at: usize) -> __m512;
    /// Elements `at..at + 16` of `x`.
    ///
    /// # Safety
    /// As [`ld8x2`](Self::ld8x2), `x` holding `at + 16` elements.
    unsafe fn ld16(x: &[Self], at: usize) -> __m512;
}

impl Elem for f16 {
    #[inline(always)]
    unsafe fn ld8x2(a: &[f16], b: &[f16], at: usize) -> __m512 {
        // SAFETY: the caller vouches for the features and the 16 bytes at `at` of each.
        unsafe {
            let lo = _mm256_castsi128_si256(_mm_loadu_si128(a.as_ptr().add(at).cast()));
            _mm512_cvtph_ps(_mm256_inserti128_si256::<1>(lo, _mm_loadu_si128(b.as_ptr().add(at).cast())))
        }
    }
    #[inline(always)]
    unsafe fn ld16(x: &[f16], at: usize) -> __m512 {
        // SAFETY: the caller vouches for the features and the 32 bytes at `at`.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(x.as_ptr().add(at).cast())) }
    }
}

impl Elem for f32 {
    #[inline(always)]
    unsafe fn ld8x2(a: &[f32], b: &[f32], at: usize) -> __m512 {
        // SAFETY: the caller vouches for the features and the 8 floats at `at` of each.
        unsafe {
            let lo = _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_loadu_ps(a.as_ptr().add(at))));
            let hi = _mm256_castps_pd(_mm256_loadu_ps(b.as_ptr().add(at)));
            _mm512_castpd_ps(_mm512_insertf64x4::<1>(lo, hi))
        }
    }
    #[inline(always)]
    unsafe fn ld16(x: &[f32], at: usize) -> __m512 {
        // SAFETY: the caller vouches for the features and the 16 floats at `at`.
        unsafe { _mm512_loadu_ps(x.as_ptr().add(at)) }
    }
}

/// Rows `j..j + 2P` of `k` (row `r` at `k[r * stride..][..hd]`) as `P` pairs, the last live
/// row of `n` standing in for those past it, and how many rows are live.
#[inline(always)]
fn row_pairs<const P: usize, T>(k: &[T], stride: usize, j: usize, n: usize, hd: usize) -> (usize, [[&[T]; 2]; P]) {
    let live = (n - j).min(2 * P);
    let row = |r: usize| &k[(j + r.min(live - 1)) * stride..][..hd];
    (live, arr!([&[][..]; 2]; P, |p| [row(2 * p), row(2 * p + 1)]))
}

/// The 8-lane sums of heads `qs` against row pairs `pairs` over elements `0..full` (a
/// multiple of 8): per chunk of 8, each head's query chunk in both halves, each pair of key
/// rows loaded once for the heads; `acc[g][p]` holds head `g` against `pairs[p][0]` in its
/// low half and `pairs[p][1]` in its high half.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn sums<const G: usize, const P: usize, T: Elem>(
    qs: [&[f32]; G],
    pairs: [[&[T]; 2]; P],
    full: usize,
) -> [[__m512; P]; G] {
    let mut acc = [[_mm512_setzero_ps(); P]; G];
    for c in (0..full).step_by(8) {
        // SAFETY (both blocks): AVX-512F and F16C are this function's features; `c + 8 <=
        // full` elements are in each query and row.
        let x = arr!(_mm512_setzero_ps(); G, |g| unsafe {
            _mm512_castpd_ps(_mm512_broadcast_f64x4(_mm256_castps_pd(_mm256_loadu_ps(qs[g].as_ptr().add(c)))))
        });
        for p in 0..P {
            let kv = unsafe { T::ld8x2(pairs[p][0], pairs[p][1], c) };
            for g in 0..G {
                acc[g][p] = _mm512_fmadd_ps(x[g], kv, acc[g][p]);
            }
        }
    }
    acc
}

/// Rows `j..j + 2P` (the last live row standing in for those past `n`) for heads `g0..g0 +
/// G`, with `FETCH` asking for the rows [`ROWS_AHEAD`] further on: the [`sums`] of the whole
/// chunks, each reduced by `hsum_ps`, then the tail in order.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
fn scores_block<const G: usize, const P: usize, const FETCH: bool, T: Elem>(
    qs: [&[f32]; G],
    k: &[T],
    (stride, reach): (usize, usize),
    j: usize,
    n: usize,
    scale: f32,
    out: &mut [f32],
    g0: usize,
) {
    if FETCH {
        fetch_rows(k, (stride, reach), j + ROWS_AHEAD..j + 2 * P + ROWS_AHEAD, n);
    }
    let hd = qs[0].len();
    let full = hd / 8 * 8;
    let (live, pairs) = row_pairs::<P, T>(k, stride, j, n, hd);
    let acc = sums::<G, P, T>(qs, pairs, full);
    for g in 0..G {
        for r in 0..live {
            let (a, row) = (acc[g][r / 2], pairs[r / 2][r % 2]);
            let half = if r % 2 == 0 {
                _mm512_castps512_ps256(a)
            } else {
                _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)))
            };
            let mut s = hsum_ps(half);
            for i in full..hd {
                s += qs[g][i] * row[i].f();
            }
            out[(g0 + g) * n + j + r] = s * scale;
        }
    }
}

/// Rows `j..j + 8` (the last live row standing in for those past `n`) for heads `g0..g0 + G`
/// of a head size that is a multiple of 8 (with `FETCH`, asking for the rows [`ROWS_AHEAD`]
/// further on): [`scores_block`]'s sums (its accumulators with `P = 4`), with the sixteen
/// `hsum_ps` of a head reduced together. Each step adds what
/// `hsum_ps` adds, a lane and the one four (then two, then one) places up, for many sums at
/// once: 128-bit lanes of two accumulators shuffled into one vector against another, so that
/// the products come out in the bits `hsum_ps` gives, a head's eight in two 128-bit lanes of a
/// vector holding two heads, permuted into place and stored as two runs of eight.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
fn scores_block8<const G: usize, const FETCH: bool, T: Elem>(
    qs: [&[f32]; G],
    k: &[T],
    (stride, reach): (usize, usize),
    j: usize,
    n: usize,
    scale: f32,
    out: &mut [f32],
    g0: usize,
) {
    if FETCH {
        fetch_rows(k, (stride, reach), j + ROWS_AHEAD..j + 8 + ROWS_AHEAD, n);
    }
    const P: usize = 4;
    let hd = qs[0].len();
    let (live, pairs) = row_pairs::<P, T>(k, stride, j, n, hd);
    let acc = sums::<G, P, T>(qs, pairs, hd);
    // `acc[g][p]`'s 128-bit lanes: rows 2p (lanes 0-3, 4-7) and 2p + 1 (the same). Lane `l`
    // plus lane `l + 4`: row `r` of `half[g][h]` in 128-bit lane `r - 4h`.
    let half = arr!([_mm512_setzero_ps(); 2]; G, |g| arr!(_mm512_setzero_ps(); 2, |h| {
        let (a, b) = (acc[g][2 * h], acc[g][2 * h + 1]);
        _mm512_add_ps(_mm512_shuffle_f32x4::<0x88>(a, b), _mm512_shuffle_f32x4::<0xdd>(a, b))
    }));
    // Lanes 0 + 2 and 1 + 3: 128-bit lane `i` holds those of row `i`, then of row `i + 4`.
    let pair = arr!(_mm512_setzero_ps(); G, |g| {
        let [a, b] = half[g];
        _mm512_add_ps(_mm512_shuffle_ps::<0x44>(a, b), _mm512_shuffle_ps::<0xee>(a, b))
    });
    // Rows `i`, `i + 4` of head `g`, then of head `g + 1`, in 128-bit lane `i`: into order.
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let mask = ((1u32 << live) - 1) as u8;
    for g in (0..G).step_by(2) {
        let (a, b) = (pair[g], pair[(g + 1).min(G - 1)]);
        let sum = _mm512_add_ps(_mm512_shuffle_ps::<0x88>(a, b), _mm512_shuffle_ps::<0xdd>(a, b));
        let s = _mm512_permutexvar_ps(order, _mm512_mul_ps(sum, _mm512_set1_ps(scale)));
        let o = &mut out[(g0 + g) * n + j..][..live];
        // SAFETY: `o` holds the `live` floats the mask writes.
        unsafe { _mm256_mask_storeu_ps(o.as_mut_ptr(), mask, _mm512_castps512_ps256(s)) };
        if g + 1 < G {
            let o = &mut out[(g0 + g + 1) * n + j..][..live];
            let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
            // SAFETY: as above.
            unsafe { _mm256_mask_storeu_ps(o.as_mut_ptr(), mask, hi) };
        }
    }
}

/// Heads `g0..g0 + G` of `scores`, `2P` rows at a time (eight with [`scores_block8`] when the
/// head size is a multiple of 8).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scores_heads<const G: usize, const P: usize, const FETCH: bool, T: Elem>(
    q: &[f32],
    k: &[T],
    (stride, reach): (usize, usize),
    n: usize,
    scale: f32,
    out: &mut [f32],
    g0: usize,
) {
    let hd = q.len() / (out.len() / n);
    let qs: [&[f32]; G] = arr!(&[][..]; G, |g| &q[(g0 + g) * hd..][..hd]);
    if FETCH {
        fetch_rows(k, (stride, reach), 0..ROWS_AHEAD, n);
    }
    if hd.is_multiple_of(8) {
        for j in (0..n).step_by(8) {
            scores_block8::<G, FETCH, T>(qs, k, (stride, reach), j, n, scale, out, g0);
        }
        return;
    }
    for j in (0..n).step_by(2 * P) {
        scores_block::<G, P, FETCH, T>(qs, k, (stride, reach), j, n, scale, out, g0);
    }
}

/// `kv_reference::scores`, heads four at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn scores<const FETCH: bool, T: Elem>(q: &[f32], k: &[T], rows: (usize, usize), n: usize, scale: f32, out: &mut [f32]) {
    if n == 0 || out.is_empty() {
        return;
    }
    by_fours!(out.len() / n, |g0, G| scores_heads::<G, { [6, 4, 3, 3][G - 1] }, FETCH, T>(
        q, k, rows, n, scale, out, g0
    ));
}

/// Heads `g0..g0 + G` of `mix`: per slice of `W` vectors of 16 output elements, every head's
/// slice in registers while the rows go by; each element summed over the rows in order,
/// starting from 0, or from `out`'s value with `ACC`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn mix_slice<const G: usize, const W: usize, const ACC: bool, const FETCH: bool, T: Elem>(
    ps: [&[f32]; G],
    v: &[T],
    (stride, reach): (usize, usize),
    (hd, c): (usize, usize),
    out: &mut [f32],
    g0: usize,
) {
    let n = ps[0].len();
    let mut acc = [[_mm512_setzero_ps(); W]; G];
    if ACC {
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: `out` holds head `g0 + g`'s `c + 16 W` floats; `loadu` needs no alignment.
            *a = arr!(_mm512_setzero_ps(); W, |w| unsafe { _mm512_loadu_ps(out.as_ptr().add((g0 + g) * hd + c + 16 * w)) });
        }
    }
    // Every slice asks for its rows' `reach`, though those after the first find the lines in
    // L2: asking in the first slice only was slower (eight Gemma-shaped sequences at depth 512,
    // `prefill_attention`: 53–54 µs per sequence and layer against 44–48).
    if FETCH {
        fetch_rows(v, (stride, reach), 0..ROWS_AHEAD, n);
    }
    for j in 0..n {
        if FETCH {
            fetch(v, (stride, reach), j + ROWS_AHEAD, n);
        }
        let row = &v[j * stride..][..hd];
        // SAFETY: AVX-512F and F16C are this function's features; the row holds `c + 16 W`.
        let x = arr!(_mm512_setzero_ps(); W, |w| unsafe { T::ld16(row, c + 16 * w) });
        for g in 0..G {
            let pj = _mm512_set1_ps(ps[g][j]);
            for w in 0..W {
                acc[g][w] = _mm512_fmadd_ps(pj, x[w], acc[g][w]);
            }
        }
    }
    for (g, a) in acc.iter().enumerate() {
        for (w, a) in a.iter().enumerate() {
            let o = &mut out[(g0 + g) * hd + c + 16 * w..][..16];
            // SAFETY: `o` is 16 writable floats; `storeu` needs no alignment.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), *a) };
        }
    }
}

/// Heads `g0..g0 + G` of `mix`: slices of 64, 32 and 16 elements on 512-bit vectors, then the
/// AVX2 tier's slice of 8 and scalar tail.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn mix_heads<const G: usize, const ACC: bool, const FETCH: bool, T: Elem>(
    p: &[f32],
    v: &[T],
    (stride, reach): (usize, usize),
    n: usize,
    out: &mut [f32],
    g0: usize,
) {
    let hd = out.len() / (p.len() / n);
    let full = hd / 8 * 8;
    let ps: [&[f32]; G] = arr!(&[][..]; G, |g| &p[(g0 + g) * n..][..n]);
    let mut c = 0;
    while c + 64 <= full {
        mix_slice::<G, 4, ACC, FETCH, T>(ps, v, (stride, reach), (hd, c), out, g0);
        c += 64;
    }
    if c + 32 <= full {
        mix_slice::<G, 2, ACC, FETCH, T>(ps, v, (stride, reach), (hd, c), out, g0);
        c += 32;
    }
    if c + 16 <= full {
        mix_slice::<G, 1, ACC, FETCH, T>(ps, v, (stride, reach), (hd, c), out, g0);
        c += 16;
    }
    mix_rest::<G, ACC, T>(ps, v, stride, (hd, c), out, g0);
}

/// `kv_reference::mix` (`kv_reference::mix_acc` with `ACC`), heads four at a time.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn mix<const ACC: bool, const FETCH: bool, T: Elem>(
    p: &[f32],
    v: &[T],
    rows: (usize, usize),
    n: usize,
    out: &mut [f32],
) {
    if n == 0 || p.is_empty() {
        if !ACC {
            out.fill(0.0);
        }
        return;
    }
    by_fours!(p.len() / n, |g0, G| mix_heads::<G, ACC, FETCH, T>(p, v, rows, n, out, g0));
}

/// Replaces `ops`' `scores`, `mix` (plain and streamed) and `softmax` kernels with this
/// tier's (the rest stays the AVX2 tier's).
///
/// # Safety
/// The entries written call AVX-512 code: the host must satisfy [`super::supported`] and the
/// AVX2 tier's `supported`.
pub(in crate::cpu) unsafe fn patch(ops: &mut KvOps) {
    multi_head_entries!(ops, "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c");
    fn e_softmax(x: &mut [f32]) {
        #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
        fn inner(x: &mut [f32]) {
            softmax(x)
        }
        // SAFETY: reachable only through a table built for a detected tier (see `patch`).
        unsafe { inner(x) }
    }
    ops.softmax = e_softmax;
}
