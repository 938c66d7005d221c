//! Float rows (`F32`, `F16`, `BF16`, each against activations of its own type): the tier's
//! `dot`, `dot_rows` and tiled prompt GEMM, all in one order, so that a token's outputs have
//! the same bits alone and in any batch (as the AVX-512 tier's `float`, in 8 lanes).
//!
//! The order: one 8-lane f32 accumulator per (row, token); column chunk `c` (columns
//! `8c..8c + 8`, the last chunk zero-filled past the row's end) is added by one FMA of the
//! widened chunks, chunks in order; then the 8 lanes are summed by [`hsum_ps`]'s fixed tree.
//! The reference sums in f64 (as ggml's scalar path does); this sums in f32, so long rows
//! differ from it by float rounding.
//!
//! Both GEMM operands are widened to f32 once per call (exactly: f16 and bf16 are subsets of
//! f32), the activations and the weights a panel of rows at a time, into per-thread buffers
//! whose rows are padded with zeros to whole chunks: the tile is FMAs on plain loads alone,
//! and its last chunk sees the zeros the `dot`'s tail chunk gives it.

use super::hsum_ps;
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Columns per chunk: one `__m256` of f32.
const LANES: usize = 8;
/// Weight rows per GEMM tile.
const R: usize = 3;
/// Tokens per GEMM tile: `R · T` accumulators, the `R` weight vectors and one activation
/// vector fill the 16 registers.
const T: usize = 4;
/// Weight rows widened at a time.
const PANEL: usize = 24;
const _: () = assert!(PANEL.is_multiple_of(R), "a panel is whole tiles of rows");
/// Rows `dot_rows` runs together: independent accumulator chains enough to cover the FMA
/// latency.
const ROWS: usize = 8;

thread_local! {
    /// Per thread: the activations and one panel of weights, widened.
    static WIDE: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// An element type whose rows this module reads: 8 of them widened to f32 lanes.
pub(super) trait Lanes: Copy + Default {
    /// The 8 elements of `x`, exactly as f32.
    ///
    /// # Safety
    /// The host has AVX2, FMA and F16C.
    unsafe fn chunk(x: &[Self; LANES]) -> __m256;
}

impl Lanes for f32 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn chunk(x: &[f32; LANES]) -> __m256 {
        // SAFETY: 8 readable floats; `loadu` needs no alignment.
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }
}

impl Lanes for f16 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn chunk(x: &[f16; LANES]) -> __m256 {
        // SAFETY: 16 readable bytes; `loadu` needs no alignment. The conversion is exact.
        _mm256_cvtph_ps(unsafe { _mm_loadu_si128(x.as_ptr().cast()) })
    }
}

/// bf16 is the top half of an f32: widen and shift (NaN payloads kept, as the reference).
impl Lanes for bf16 {
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn chunk(x: &[bf16; LANES]) -> __m256 {
        // SAFETY: 16 readable bytes; `loadu` needs no alignment.
        let v = unsafe { _mm_loadu_si128(x.as_ptr().cast()) };
        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(v)))
    }
}

/// The first `x.len() < 8` elements of `x` widened, zeros after them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn part<X: Lanes>(x: &[X]) -> __m256 {
    let mut c = [X::default(); LANES];
    c[..x.len()].copy_from_slice(x);
    // SAFETY: this function's features are `chunk`'s. A default element widens to +0.0.
    unsafe { X::chunk(&c) }
}

/// The dot product of two rows of equal length, in this module's order.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot<X: Lanes>(w: &[X], a: &[X]) -> f32 {
    let n = w.len().min(a.len());
    let (wc, wt) = w[..n].as_chunks::<LANES>();
    let (ac, at) = a[..n].as_chunks::<LANES>();
    let mut acc = _mm256_setzero_ps();
    for (x, y) in wc.iter().zip(ac) {
        // SAFETY: this function's features are `chunk`'s.
        acc = _mm256_fmadd_ps(unsafe { X::chunk(x) }, unsafe { X::chunk(y) }, acc);
    }
    if !wt.is_empty() {
        acc = _mm256_fmadd_ps(part(wt), part(at), acc);
    }
    hsum_ps(acc)
}

/// `out[r] = dot(row r of w, a)` for the `out.len()` rows back to back in `w` (each as long
/// as `a`): [`ROWS`] rows at a time, each row its own accumulator in the `dot`'s order, so
/// every output is the `dot` bit for bit.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_rows<X: Lanes>(w: &[X], a: &[X], out: &mut [f32]) {
    let cols = a.len();
    let (ac, at) = a.as_chunks::<LANES>();
    let done = out.len() / ROWS * ROWS;
    let mut groups = out.chunks_exact_mut(ROWS);
    for (g, o) in (&mut groups).enumerate() {
        let rows: [(&[[X; LANES]], &[X]); ROWS] =
            arr!((&[][..], &[][..]); ROWS, |r| w[(g * ROWS + r) * cols..][..cols].as_chunks::<LANES>());
        let mut acc = [_mm256_setzero_ps(); ROWS];
        for (c, y) in ac.iter().enumerate() {
            // SAFETY: this function's features are `chunk`'s.
            let av = unsafe { X::chunk(y) };
            for (acc, row) in acc.iter_mut().zip(&rows) {
                // SAFETY: as above.
                *acc = _mm256_fmadd_ps(unsafe { X::chunk(&row.0[c]) }, av, *acc);
            }
        }
        if !at.is_empty() {
            let av = part(at);
            for (acc, row) in acc.iter_mut().zip(&rows) {
                *acc = _mm256_fmadd_ps(part(row.1), av, *acc);
            }
        }
        for (y, acc) in o.iter_mut().zip(acc) {
            *y = hsum_ps(acc);
        }
    }
    for (r, y) in groups.into_remainder().iter_mut().enumerate() {
        // SAFETY: this function's features are `dot`'s.
        *y = unsafe { dot(&w[(done + r) * cols..][..cols], a) };
    }
}

/// `dst` = the rows of `src` (each `cols` long) widened, each padded with zeros to `stride`
/// (a multiple of 8), then zero rows to `dst`'s end.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn widen_rows<X: Lanes>(src: &[X], cols: usize, stride: usize, dst: &mut [f32]) {
    let rows = src.len() / cols;
    let (full, pad) = dst.split_at_mut(rows * stride);
    for (s, d) in src.chunks_exact(cols).zip(full.chunks_exact_mut(stride)) {
        let (sc, st) = s.as_chunks::<LANES>();
        let (dc, dt) = d.as_chunks_mut::<LANES>();
        for (x, y) in sc.iter().zip(dc.iter_mut()) {
            // SAFETY: this function's features are `chunk`'s; `y` is 8 writable floats.
            unsafe { _mm256_storeu_ps(y.as_mut_ptr(), X::chunk(x)) };
        }
        for (i, y) in dc.iter_mut().enumerate().skip(sc.len()) {
            // The chunk with the tail (zeros past it), then zero chunks.
            let v = if i == sc.len() { part(st) } else { _mm256_setzero_ps() };
            // SAFETY: `y` is 8 writable floats.
            unsafe { _mm256_storeu_ps(y.as_mut_ptr(), v) };
        }
        debug_assert!(dt.is_empty(), "stride {stride} is whole chunks");
    }
    pad.fill(0.0);
}

/// One tile: `R` widened weight rows against `T` widened token rows over `chunks` chunks,
/// each output its own accumulator.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn tile(w: &[f32], a: &[f32], stride: usize, chunks: usize) -> [[__m256; T]; R] {
    assert!(w.len() >= R * stride && a.len() >= T * stride && chunks * LANES <= stride);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); T]; R];
    for c in 0..chunks {
        let at = c * LANES;
        // SAFETY: row `r < R` of `w` and `t < T` of `a` hold `stride >= at + 8` floats (the
        // assertion); `loadu` needs no alignment.
        let wv = arr!(_mm256_setzero_ps(); R, |r| unsafe { _mm256_loadu_ps(wp.add(r * stride + at)) });
        for t in 0..T {
            // SAFETY: as above.
            let av = unsafe { _mm256_loadu_ps(ap.add(t * stride + at)) };
            for r in 0..R {
                acc[r][t] = _mm256_fmadd_ps(wv[r], av, acc[r][t]);
            }
        }
    }
    acc
}

/// `out[t * ldo + r] = dot(w row r, a row t)` for the `w.len() / cols` rows of `w` and the
/// `n` rows of `a` (`cols = a.len() / n`), bit for bit the tier's `dot`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn gemm_float<X: Lanes>(w: &[X], a: &[X], n: usize, out: &mut [f32], ldo: usize) {
    let cols = a.len() / n;
    let rows = w.len() / cols;
    let stride = cols.next_multiple_of(LANES);
    let chunks = stride / LANES;
    let n_pad = n.next_multiple_of(T);
    WIDE.with_borrow_mut(|(aw, ww)| {
        // Grow to the largest call once (never shrunk); no allocation after that.
        for (v, len) in [(&mut *aw, n_pad * stride), (&mut *ww, PANEL * stride)] {
            if v.len() < len {
                v.resize(len, 0.0);
            }
        }
        let (aw, ww) = (&mut aw[..n_pad * stride], &mut ww[..PANEL * stride]);
        widen_rows(a, cols, stride, aw);
        for p0 in (0..rows).step_by(PANEL) {
            let live = PANEL.min(rows - p0);
            widen_rows(&w[p0 * cols..(p0 + live) * cols], cols, stride, ww);
            for t0 in (0..n).step_by(T) {
                let ar = &aw[t0 * stride..];
                for r0 in (0..live).step_by(R) {
                    let acc = tile(&ww[r0 * stride..], ar, stride, chunks);
                    for (r, accs) in acc.iter().enumerate().take(live - r0) {
                        for (t, &v) in accs.iter().enumerate().take(n - t0) {
                            out[(t0 + t) * ldo + p0 + r0 + r] = hsum_ps(v);
                        }
                    }
                }
            }
        }
    });
}
