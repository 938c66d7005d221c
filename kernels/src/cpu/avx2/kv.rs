//! Attention over an f16 or f32 KV cache: `q · k` and `o += p · v` with the cache rows widened
//! to f32 on the fly (F16C `vcvtph2ps`), four 8-lane FMA accumulators for the dot product.
//!
//! The reference ([`crate::ops::kv_reference`]) sums the dot product in order, one element at a
//! time, and rounds `p · v` before adding it; these sum over 32 lanes and fuse the
//! multiply-add, so results differ from it by float rounding only.
//!
//! `scores` and `mix` take several query heads of one KV head at once (grouped-query
//! attention), so each cache row is widened once for all of them; `mix` keeps a slice of every
//! head's output in registers across all the rows. Each head's numbers are formed the same way
//! whatever the number of heads alongside it (the same operations in the same order), so a
//! token gets the same bits however the heads are grouped.
//!
//! Their streamed versions (a decode step's, whose cache rows come from memory) do the same
//! sums, each cache row asked for into L2 [`ROWS_AHEAD`] rows before it is summed
//! ([`fetch`]); the AVX-512 tier's take the hints from here.

use super::{fp16, hsum_ps};
use crate::cpu::KvOps;
use half::f16;
use std::arch::x86_64::*;

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f32(x: &[f32; 8]) -> __m256 {
    // SAFETY: `x` is 8 readable floats; `loadu` needs no alignment.
    unsafe { _mm256_loadu_ps(x.as_ptr()) }
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn ld_f16(x: &[f16; 8]) -> __m256 {
    // SAFETY: `x` is 16 readable bytes; `loadu` needs no alignment.
    _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
}

/// `Σ q[i] · k[i]` over the common length, `$ld` widening 8 cache elements.
macro_rules! dot {
    ($q:expr, $k:expr, $ld:ident, $scalar:expr) => {{
        let n = $q.len().min($k.len());
        let (qc, qt) = $q[..n].as_chunks::<8>();
        let (kc, kt) = $k[..n].as_chunks::<8>();
        let mut acc = [_mm256_setzero_ps(); 4];
        let (q4, q1) = qc.as_chunks::<4>();
        let (k4, k1) = kc.as_chunks::<4>();
        for (x, y) in q4.iter().zip(k4) {
            for i in 0..4 {
                acc[i] = _mm256_fmadd_ps(ld_f32(&x[i]), $ld(&y[i]), acc[i]);
            }
        }
        for (x, y) in q1.iter().zip(k1) {
            acc[0] = _mm256_fmadd_ps(ld_f32(x), $ld(y), acc[0]);
        }
        let mut tail = 0f32;
        for (&x, &y) in qt.iter().zip(kt) {
            tail += x * $scalar(y);
        }
        hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail
    }};
}

/// `o[i] += p · v[i]` over the common length.
macro_rules! axpy {
    ($o:expr, $p:expr, $v:expr, $ld:ident, $scalar:expr) => {{
        let n = $o.len().min($v.len());
        let (oc, ot) = $o[..n].as_chunks_mut::<8>();
        let (vc, vt) = $v[..n].as_chunks::<8>();
        let pv = _mm256_set1_ps($p);
        for (x, y) in oc.iter_mut().zip(vc) {
            // SAFETY: `x` is 8 writable floats; `loadu`/`storeu` need no alignment.
            unsafe { _mm256_storeu_ps(x.as_mut_ptr(), _mm256_fmadd_ps(pv, $ld(y), ld_f32(x))) };
        }
        for (x, &y) in ot.iter_mut().zip(vt) {
            *x += $p * $scalar(y);
        }
    }};
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
    dot!(q, k, ld_f16, fp16)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f32(q: &[f32], k: &[f32]) -> f32 {
    dot!(q, k, ld_f32, |x: f32| x)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f16(o: &mut [f32], p: f32, v: &[f16]) {
    axpy!(o, p, v, ld_f16, fp16)
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn axpy_f32(o: &mut [f32], p: f32, v: &[f32]) {
    axpy!(o, p, v, ld_f32, |x: f32| x)
}

/// A cache element: eight of them widened to f32.
pub(in crate::cpu) trait Elem: Copy {
    /// Elements `at..at + 8` of `x`, widened.
    ///
    /// # Safety
    /// The caller has AVX2 and F16C; `x` holds `at + 8` elements.
    unsafe fn ld8(x: &[Self], at: usize) -> __m256;
    /// One element, widened.
    fn f(self) -> f32;
}

impl Elem for f16 {
    #[inline(always)]
    unsafe fn ld8(x: &[f16], at: usize) -> __m256 {
        // SAFETY: the caller vouches for the features and the 16 bytes at `at`.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(x.as_ptr().add(at).cast())) }
    }
    fn f(self) -> f32 {
        self.to_f32()
    }
}

impl Elem for f32 {
    #[inline(always)]
    unsafe fn ld8(x: &[f32], at: usize) -> __m256 {
        // SAFETY: the caller vouches for the features and the 8 floats at `at`.
        unsafe { _mm256_loadu_ps(x.as_ptr().add(at)) }
    }
    fn f(self) -> f32 {
        self
    }
}

/// How many rows ahead of the one being summed the streamed kernels ask for a cache row
/// ([`fetch`]).
pub(in crate::cpu) const ROWS_AHEAD: usize = 64;

/// Asks for the `reach` elements from row `j` of `x` (row `r` at `x[r * stride..]`) into L2,
/// if that row is one of the `n`: the streamed kernels ask for the row [`ROWS_AHEAD`] rows
/// past the one they sum, and for the first ones before they start.
///
/// A decode step's cache rows come from memory, and without the hints they came slowly: a
/// head's slice is a line or two in every row of `stride` elements (a row holds every KV
/// head), a pattern the hardware prefetchers follow poorly, and even contiguous rows streamed
/// at a third of what a matmul reads. The caller's `reach` runs from the head's slice to the
/// end of the last KV head it takes next on this thread, whose slices then wait in L2 (and
/// not into another thread's heads, which that thread asks for). A decode step of eight
/// sequences at depth 512 over sixteen layers' caches (`prefill_attention`, one thread,
/// AVX-512 EPYC, the AVX-512 tier), per sequence and layer: Llama 3.2 1B's shape (8 KV heads
/// of 64) 194–230 µs without hints, 165–172 with the head's slice, 121–138 with the rest of
/// the row; Gemma 3 270M's (one KV head of 256) 79–90 µs without, 41–53 with. One token at
/// depth 2048 on two threads (each taking four KV heads): Llama's shape 427–441 µs per layer
/// without hints, 340–365 with the whole row from each head on, 243–295 with `reach`. Rows
/// already cached pay for the hints (in L2, one Llama-shaped token at depth 512 took 56–58 µs
/// without them, 77–80 with), so the prompt's tiles, which hold their rows in L1, use the
/// plain kernels.
#[inline(always)]
pub(in crate::cpu) fn fetch<T>(x: &[T], (stride, reach): (usize, usize), j: usize, n: usize) {
    if j >= n {
        return;
    }
    let row = x.as_ptr().wrapping_add(j * stride).cast::<u8>();
    for b in (0..reach * size_of::<T>()).step_by(64) {
        // SAFETY: a prefetch never faults, whatever the address (`wrapping_add` makes none
        // out of bounds in Rust's sense either); SSE is in every x86-64.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(b).cast()) };
    }
}

/// [`fetch`] of rows `range`: a block's rows [`ROWS_AHEAD`] on, or before a kernel starts,
/// the first ones it sums.
#[inline(always)]
pub(in crate::cpu) fn fetch_rows<T>(x: &[T], rows: (usize, usize), range: std::ops::Range<usize>, n: usize) {
    (range.start..range.end.min(n)).for_each(|j| fetch(x, rows, j, n));
}

/// Heads `g0..g0 + G` of [`scores`], `R` rows at a time (`G · R` accumulators, so that
/// enough independent FMA chains are in flight however few heads there are), the last
/// `n % R` rows one at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scores_heads<const G: usize, const R: usize, const FETCH: bool, T: Elem>(
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
    let mut j = 0;
    while j + R <= n {
        scores_block::<G, R, FETCH, T>(qs, k, (stride, reach), j, n, scale, out, g0);
        j += R;
    }
    for j in j..n {
        scores_block::<G, 1, FETCH, T>(qs, k, (stride, reach), j, n, scale, out, g0);
    }
}

/// Rows `j..j + R` for heads `g0..g0 + G` (queries `qs`), with `FETCH` asking for the rows
/// [`ROWS_AHEAD`] further on: per chunk of 8 the heads' query
/// values are loaded once for the `R` rows and each key once for the `G` heads. Each (head,
/// row) sum is one 8-lane accumulator over the chunks in order, then the tail in order,
/// whatever `G` and `R` are.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
fn scores_block<const G: usize, const R: usize, const FETCH: bool, T: Elem>(
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
        fetch_rows(k, (stride, reach), j + ROWS_AHEAD..j + R + ROWS_AHEAD, n);
    }
    let hd = qs[0].len();
    let full = hd / 8 * 8;
    let rows: [&[T]; R] = arr!(&[][..]; R, |r| &k[(j + r) * stride..][..hd]);
    let mut acc = [[_mm256_setzero_ps(); R]; G];
    for c in (0..full).step_by(8) {
        let x = arr!(_mm256_setzero_ps(); G, |g| ld_f32(qs[g][c..][..8].try_into().unwrap()));
        for r in 0..R {
            // SAFETY: AVX2 and F16C are this function's features; `c + 8 <= hd` elements.
            let kv = unsafe { T::ld8(rows[r], c) };
            for g in 0..G {
                acc[g][r] = _mm256_fmadd_ps(x[g], kv, acc[g][r]);
            }
        }
    }
    if full == hd && G * R <= 8 {
        // No tail: the sums reduced together, the (head, row) sum `i = g R + r` in lane
        // `i / 2` (even `i`) or `4 + i / 2` (odd).
        let flat = arr!(_mm256_setzero_ps(); 8, |i| if i < G * R { acc[i / R][i % R] } else { _mm256_setzero_ps() });
        let mut sums = [0f32; 8];
        // SAFETY: `sums` is 8 writable floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(sums.as_mut_ptr(), _mm256_mul_ps(hsum8(flat), _mm256_set1_ps(scale))) };
        for i in 0..G * R {
            out[(g0 + i / R) * n + j + i % R] = sums[i / 2 + 4 * (i % 2)];
        }
        return;
    }
    for g in 0..G {
        for r in 0..R {
            let mut s = hsum_ps(acc[g][r]);
            for i in full..hd {
                s += qs[g][i] * rows[r][i].f();
            }
            out[(g0 + g) * n + j + r] = s * scale;
        }
    }
}

/// [`hsum_ps`] of eight vectors at once, by the same additions (a lane and the one four
/// places up, then two, then one) on shuffled vectors: `hsum_ps(a[i])` in lane `i / 2` for an
/// even `i`, `4 + i / 2` for an odd one. One sum at a time, the reductions cost as much as
/// the products at a head size of 64.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8(a: [__m256; 8]) -> __m256 {
    // Vector `i`: the four sums of `a[2i]` in the low half, of `a[2i + 1]` in the high.
    let z = arr!(_mm256_setzero_ps(); 4, |i| {
        let (x, y) = (a[2 * i], a[2 * i + 1]);
        _mm256_add_ps(_mm256_permute2f128_ps::<0x20>(x, y), _mm256_permute2f128_ps::<0x31>(x, y))
    });
    // Two sums each: `a[4i]`, `a[4i + 2]` in the low half, `a[4i + 1]`, `a[4i + 3]` in the high.
    let w = arr!(_mm256_setzero_ps(); 2, |i| {
        let (x, y) = (z[2 * i], z[2 * i + 1]);
        _mm256_add_ps(_mm256_shuffle_ps::<0x44>(x, y), _mm256_shuffle_ps::<0xee>(x, y))
    });
    _mm256_add_ps(_mm256_shuffle_ps::<0x88>(w[0], w[1]), _mm256_shuffle_ps::<0xdd>(w[0], w[1]))
}

/// Heads `g0..g0 + G` of [`mix`]: per slice of 16 (then 8) output elements, every head's
/// slice in registers while the rows go by, each element summed over the rows in order,
/// starting from 0, or from `out`'s value with `ACC`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
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
    while c + 16 <= full {
        let mut acc = [[_mm256_setzero_ps(); 2]; G];
        if ACC {
            for (g, a) in acc.iter_mut().enumerate() {
                let o = &out[(g0 + g) * hd + c..];
                *a = [ld_f32(o[..8].try_into().unwrap()), ld_f32(o[8..16].try_into().unwrap())];
            }
        }
        // Each slice asks for its rows' `reach`: those after the first find the lines in L2.
        if FETCH {
            fetch_rows(v, (stride, reach), 0..ROWS_AHEAD, n);
        }
        for j in 0..n {
            if FETCH {
                fetch(v, (stride, reach), j + ROWS_AHEAD, n);
            }
            let row = &v[j * stride..][..hd];
            // SAFETY: AVX2 and F16C are the callers' features; `c + 16` elements are in the row.
            let (v0, v1) = unsafe { (T::ld8(row, c), T::ld8(row, c + 8)) };
            for g in 0..G {
                let pj = _mm256_set1_ps(ps[g][j]);
                acc[g][0] = _mm256_fmadd_ps(pj, v0, acc[g][0]);
                acc[g][1] = _mm256_fmadd_ps(pj, v1, acc[g][1]);
            }
        }
        for g in 0..G {
            let o = &mut out[(g0 + g) * hd + c..];
            // SAFETY: `o` holds `c + 16` floats; `storeu` needs no alignment.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr(), acc[g][0]);
                _mm256_storeu_ps(o.as_mut_ptr().add(8), acc[g][1]);
            }
        }
        c += 16;
    }
    mix_rest::<G, ACC, T>(ps, v, stride, (hd, c), out, g0);
}

/// The end of [`mix_heads`] from element `c` (a multiple of 8) of each head: one slice of 8
/// if whole ones remain, then the last `hd % 8` elements one at a time (a multiply, then an
/// add). Shared with the AVX-512 tier, whose wider slices stop at the same place.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(in crate::cpu) fn mix_rest<const G: usize, const ACC: bool, T: Elem>(
    ps: [&[f32]; G],
    v: &[T],
    stride: usize,
    (hd, c): (usize, usize),
    out: &mut [f32],
    g0: usize,
) {
    let (n, full) = (ps[0].len(), hd / 8 * 8);
    if c < full {
        let mut acc = [_mm256_setzero_ps(); G];
        if ACC {
            for (g, a) in acc.iter_mut().enumerate() {
                *a = ld_f32(out[(g0 + g) * hd + c..][..8].try_into().unwrap());
            }
        }
        for j in 0..n {
            // SAFETY: AVX2 and F16C are this function's features; the row holds `c + 8`.
            let x = unsafe { T::ld8(&v[j * stride..][..hd], c) };
            for g in 0..G {
                acc[g] = _mm256_fmadd_ps(_mm256_set1_ps(ps[g][j]), x, acc[g]);
            }
        }
        for (g, a) in acc.iter().enumerate() {
            // SAFETY: `out` holds head `g0 + g`'s `c + 8` floats; `storeu` needs no alignment.
            unsafe { _mm256_storeu_ps(out[(g0 + g) * hd + c..][..8].as_mut_ptr(), *a) };
        }
    }
    for g in 0..G {
        for i in full..hd {
            let mut s = if ACC { out[(g0 + g) * hd + i] } else { 0f32 };
            for j in 0..n {
                s += ps[g][j] * v[j * stride + i].f();
            }
            out[(g0 + g) * hd + i] = s;
        }
    }
}

/// Runs `$body` for heads four at a time: `$g0` the first head of the group, `$G` (a
/// constant) its size, 1 to 4.
macro_rules! by_fours {
    ($gp:expr, |$g0:ident, $G:ident| $body:expr) => {
        let gp: usize = $gp;
        for $g0 in (0..gp).step_by(4) {
            match gp - $g0 {
                1 => {
                    const $G: usize = 1;
                    $body
                }
                2 => {
                    const $G: usize = 2;
                    $body
                }
                3 => {
                    const $G: usize = 3;
                    $body
                }
                _ => {
                    const $G: usize = 4;
                    $body
                }
            }
        }
    };
}
pub(in crate::cpu) use by_fours;

/// `kv_reference::scores`, heads four at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn scores<const FETCH: bool, T: Elem>(q: &[f32], k: &[T], rows: (usize, usize), n: usize, scale: f32, out: &mut [f32]) {
    if n == 0 || out.is_empty() {
        return;
    }
    // Rows per block by heads: enough FMA chains in flight for one head, registers for four.
    by_fours!(out.len() / n, |g0, G| scores_heads::<G, { [8, 4, 2, 2][G - 1] }, FETCH, T>(
        q, k, rows, n, scale, out, g0
    ));
}

/// `kv_reference::mix` (`kv_reference::mix_acc` with `ACC`), heads four at a time.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
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

/// Each value rounded to f16 and back (`vcvtps2ph` to nearest even, as `f16::from_f32`).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn round_f16(x: &mut [f32]) {
    let (chunks, tail) = x.as_chunks_mut::<8>();
    for c in chunks {
        let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(ld_f32(c));
        // SAFETY: `c` is 8 writable floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(c.as_mut_ptr(), _mm256_cvtph_ps(h)) };
    }
    for v in tail {
        *v = f16::from_f32(*v).to_f32();
    }
}

/// Each element widened to f32 (`vcvtph2ps`, exact).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn widen_f16(x: &[f16], out: &mut [f32]) {
    let n = x.len().min(out.len());
    let (xc, xt) = x[..n].as_chunks::<8>();
    let (oc, ot) = out[..n].as_chunks_mut::<8>();
    for (x, o) in xc.iter().zip(oc) {
        // SAFETY: `o` is 8 writable floats; `storeu` needs no alignment.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), ld_f16(x)) };
    }
    for (x, o) in xt.iter().zip(ot) {
        *o = fp16(*x);
    }
}

/// Replaces `ops`' functions with this tier's.
///
/// # Safety
/// The entries written call AVX2/FMA/F16C code: the host must satisfy [`super::supported`].
pub(in crate::cpu) unsafe fn patch(ops: &mut KvOps) {
    // The entries are defined here so they can be reached only through the table.
    fn e_dot_f16(q: &[f32], k: &[f16]) -> f32 {
        // SAFETY: reachable only through a table built for a detected tier (see `patch`).
        unsafe { dot_f16(q, k) }
    }
    fn e_dot_f32(q: &[f32], k: &[f32]) -> f32 {
        // SAFETY: as above.
        unsafe { dot_f32(q, k) }
    }
    fn e_axpy_f16(o: &mut [f32], p: f32, v: &[f16]) {
        // SAFETY: as above.
        unsafe { axpy_f16(o, p, v) }
    }
    fn e_axpy_f32(o: &mut [f32], p: f32, v: &[f32]) {
        // SAFETY: as above.
        unsafe { axpy_f32(o, p, v) }
    }
    fn e_widen_f16(x: &[f16], out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { widen_f16(x, out) }
    }
    fn e_round_f16(x: &mut [f32]) {
        // SAFETY: as above.
        unsafe { round_f16(x) }
    }
    fn e_softmax(x: &mut [f32]) {
        // SAFETY: as above.
        unsafe { super::softmax::softmax(x) }
    }
    (ops.dot_f16, ops.dot_f32, ops.axpy_f16, ops.axpy_f32) = (e_dot_f16, e_dot_f32, e_axpy_f16, e_axpy_f32);
    (ops.widen_f16, ops.round_f16, ops.softmax) = (e_widen_f16, e_round_f16, e_softmax);
    multi_head_entries!(ops, "avx2,fma,f16c");
}

/// Points `$ops`' multi-head entries (`scores`, `mix` and `mix_acc`, plain and streamed, over
/// f16 and f32) at the `scores` and `mix` of the module that invokes it, each called inside a
/// function compiled for `$feat`. Shared by the AVX2 and AVX-512 tiers' `patch`, whose safety
/// contract (the host has `$feat`) covers the entries' calls.
macro_rules! multi_head_entries {
    ($ops:ident, $feat:literal) => {
        multi_head_entries!(@one $ops, $feat, scores_f16(q: &[f32], k: &[f16], stride: usize, n: usize, scale: f32, out: &mut [f32])
            = scores::<false, _>(q, k, (stride, 0), n, scale, out));
        multi_head_entries!(@one $ops, $feat, scores_f32(q: &[f32], k: &[f32], stride: usize, n: usize, scale: f32, out: &mut [f32])
            = scores::<false, _>(q, k, (stride, 0), n, scale, out));
        multi_head_entries!(@one $ops, $feat, scores_streamed_f16(q: &[f32], k: &[f16], stride: usize, n: usize, scale: f32, out: &mut [f32], reach: usize)
            = scores::<true, _>(q, k, (stride, reach), n, scale, out));
        multi_head_entries!(@one $ops, $feat, scores_streamed_f32(q: &[f32], k: &[f32], stride: usize, n: usize, scale: f32, out: &mut [f32], reach: usize)
            = scores::<true, _>(q, k, (stride, reach), n, scale, out));
        multi_head_entries!(@one $ops, $feat, mix_f16(p: &[f32], v: &[f16], stride: usize, n: usize, out: &mut [f32])
            = mix::<false, false, _>(p, v, (stride, 0), n, out));
        multi_head_entries!(@one $ops, $feat, mix_f32(p: &[f32], v: &[f32], stride: usize, n: usize, out: &mut [f32])
            = mix::<false, false, _>(p, v, (stride, 0), n, out));
        multi_head_entries!(@one $ops, $feat, mix_streamed_f16(p: &[f32], v: &[f16], stride: usize, n: usize, out: &mut [f32], reach: usize)
            = mix::<false, true, _>(p, v, (stride, reach), n, out));
        multi_head_entries!(@one $ops, $feat, mix_streamed_f32(p: &[f32], v: &[f32], stride: usize, n: usize, out: &mut [f32], reach: usize)
            = mix::<false, true, _>(p, v, (stride, reach), n, out));
        multi_head_entries!(@one $ops, $feat, mix_acc_f16(p: &[f32], v: &[f16], stride: usize, n: usize, out: &mut [f32])
            = mix::<true, false, _>(p, v, (stride, 0), n, out));
        multi_head_entries!(@one $ops, $feat, mix_acc_f32(p: &[f32], v: &[f32], stride: usize, n: usize, out: &mut [f32])
            = mix::<true, false, _>(p, v, (stride, 0), n, out));
    };
    (@one $ops:ident, $feat:literal, $field:ident($($arg:ident: $ty:ty),*) = $call:expr) => {{
        // Defined here so that it is reachable only through the table.
        fn entry($($arg: $ty),*) {
            #[target_feature(enable = $feat)]
            fn inner($($arg: $ty),*) {
                $call
            }
            // SAFETY: reachable only through a table built for a detected tier (see the
            // caller's `patch`).
            unsafe { inner($($arg),*) }
        }
        $ops.$field = entry;
    }};
}
pub(in crate::cpu) use multi_head_entries;
