//! Float rows (`F32`, `F16`, `BF16`, each against activations of its own type): the tier's
//! `dot`, `dot_rows` and tiled prompt GEMM, all in one order, so that a token's outputs have
//! the same bits alone and in any batch.
//!
//! The order: one 16-lane f32 accumulator per (row, token); column chunk `c` (columns
//! `16c..16c + 16`, the last chunk zero-filled past the row's end) is added by one FMA of the
//! widened chunks, chunks in order; then the 16 lanes are summed by [`hsum16`]'s fixed tree.
//! One accumulator (where the AVX2 tier's `dot` keeps four of 8 lanes) lets a GEMM tile hold
//! [`R`] × [`T`] outputs in registers, and costs the tile one reduction per output.
//!
//! Both GEMM operands are widened to f32 once per call (exactly: f16 and bf16 are subsets of
//! f32), the activations and the weights a panel of rows at a time, into per-thread buffers
//! whose rows are padded with zeros to whole chunks: the tile is FMAs on plain loads alone,
//! and its last chunk sees the zeros the `dot`'s masked loads give it.

use super::super::avx2::hsum_ps;
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Columns per chunk: one `__m512` of f32.
const LANES: usize = 16;
/// Weight rows per GEMM tile.
const R: usize = 4;
/// Tokens per GEMM tile: `R · T` accumulators, the `R` weight vectors and one activation
/// vector fill 29 of the 32 registers.
const T: usize = 6;
/// Weight rows widened at a time (a multiple of `R`).
const PANEL: usize = 24;
/// Rows `dot_rows` runs together: independent accumulator chains enough to cover the FMA
/// latency.
const ROWS: usize = 8;

thread_local! {
    /// Per thread: the activations and one panel of weights, widened.
    static WIDE: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// An element type whose rows this module reads: 16 of them widened to f32 lanes.
pub(super) trait Lanes: Copy {
    /// The 16 elements of `x`, exactly as f32.
    ///
    /// # Safety
    /// The host has AVX-512 F, BW and VL.
    unsafe fn chunk(x: &[Self; LANES]) -> __m512;
    /// The first `x.len() < 16` lanes from `x`, zeros after them.
    ///
    /// # Safety
    /// As [`Lanes::chunk`].
    unsafe fn part(x: &[Self]) -> __m512;
}

/// The mask of the first `n <= 16` lanes.
fn first(n: usize) -> __mmask16 {
    ((1u32 << n) - 1) as __mmask16
}

impl Lanes for f32 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn chunk(x: &[f32; LANES]) -> __m512 {
        // SAFETY: 16 readable floats; `loadu` needs no alignment.
        unsafe { _mm512_loadu_ps(x.as_ptr()) }
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn part(x: &[f32]) -> __m512 {
        // SAFETY: the mask reads only the `x.len()` elements of `x` (masked-off lanes are
        // neither read nor faulted on).
        unsafe { _mm512_maskz_loadu_ps(first(x.len()), x.as_ptr()) }
    }
}

impl Lanes for f16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn chunk(x: &[f16; LANES]) -> __m512 {
        // SAFETY: 32 readable bytes; `loadu` needs no alignment. The conversion is exact.
        _mm512_cvtph_ps(unsafe { _mm256_loadu_si256(x.as_ptr().cast()) })
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn part(x: &[f16]) -> __m512 {
        // SAFETY: the mask reads only the `x.len()` halves of `x`.
        _mm512_cvtph_ps(unsafe { _mm256_maskz_loadu_epi16(first(x.len()), x.as_ptr().cast()) })
    }
}

/// bf16 is the top half of an f32: widen and shift (NaN payloads kept, as the reference).
impl Lanes for bf16 {
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn chunk(x: &[bf16; LANES]) -> __m512 {
        // SAFETY: 32 readable bytes; `loadu` needs no alignment.
        let v = unsafe { _mm256_loadu_si256(x.as_ptr().cast()) };
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
    }
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn part(x: &[bf16]) -> __m512 {
        // SAFETY: the mask reads only the `x.len()` elements of `x`.
        let v = unsafe { _mm256_maskz_loadu_epi16(first(x.len()), x.as_ptr().cast()) };
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(v)))
    }
}

/// The sum of the 16 lanes, in the one tree every kernel here uses: the two halves added
/// lane by lane, then the AVX2 tier's 8-lane tree.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn hsum16(v: __m512) -> f32 {
    let d = _mm512_castps_pd(v);
    let lo = _mm256_castpd_ps(_mm512_castpd512_pd256(d));
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(d));
    hsum_ps(_mm256_add_ps(lo, hi))
}

/// The dot product of two rows of equal length, in this module's order.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot<X: Lanes>(w: &[X], a: &[X]) -> f32 {
    let n = w.len().min(a.len());
    let (wc, wt) = w[..n].as_chunks::<LANES>();
    let (ac, at) = a[..n].as_chunks::<LANES>();
    let mut acc = _mm512_setzero_ps();
    for (x, y) in wc.iter().zip(ac) {
        // SAFETY: this function's features are `chunk`'s.
        acc = _mm512_fmadd_ps(unsafe { X::chunk(x) }, unsafe { X::chunk(y) }, acc);
    }
    if !wt.is_empty() {
        // SAFETY: as above; `wt` and `at` are shorter than a chunk.
        acc = _mm512_fmadd_ps(unsafe { X::part(wt) }, unsafe { X::part(at) }, acc);
    }
    hsum16(acc)
}

/// `out[r] = dot(row r of w, a)` for the `out.len()` rows back to back in `w` (each as long
/// as `a`): [`ROWS`] rows at a time, each row its own accumulator in the `dot`'s order, so
/// every output is the `dot` bit for bit.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot_rows<X: Lanes>(w: &[X], a: &[X], out: &mut [f32]) {
    let cols = a.len();
    let (ac, at) = a.as_chunks::<LANES>();
    let done = out.len() / ROWS * ROWS;
    let mut groups = out.chunks_exact_mut(ROWS);
    for (g, o) in (&mut groups).enumerate() {
        let rows: [(&[[X; LANES]], &[X]); ROWS] =
            arr!((&[][..], &[][..]); ROWS, |r| w[(g * ROWS + r) * cols..][..cols].as_chunks::<LANES>());
        let mut acc = [_mm512_setzero_ps(); ROWS];
        for (c, y) in ac.iter().enumerate() {
            // SAFETY: this function's features are `chunk`'s.
            let av = unsafe { X::chunk(y) };
            for (acc, row) in acc.iter_mut().zip(&rows) {
                // SAFETY: as above.
                *acc = _mm512_fmadd_ps(unsafe { X::chunk(&row.0[c]) }, av, *acc);
            }
        }
        if !at.is_empty() {
            // SAFETY: as above; the tails are shorter than a chunk.
            let av = unsafe { X::part(at) };
            for (acc, row) in acc.iter_mut().zip(&rows) {
                // SAFETY: as above.
                *acc = _mm512_fmadd_ps(unsafe { X::part(row.1) }, av, *acc);
            }
        }
        for (y, acc) in o.iter_mut().zip(acc) {
            *y = hsum16(acc);
        }
    }
    for (r, y) in groups.into_remainder().iter_mut().enumerate() {
        // SAFETY: this function's features are `dot`'s.
        *y = unsafe { dot(&w[(done + r) * cols..][..cols], a) };
    }
}

/// `dst` = the rows of `src` (each `cols` long) widened, each padded with zeros to `stride`
/// (a multiple of 16), then zero rows to `dst`'s end.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn widen_rows<X: Lanes>(src: &[X], cols: usize, stride: usize, dst: &mut [f32]) {
    let rows = src.len() / cols;
    let (full, pad) = dst.split_at_mut(rows * stride);
    for (s, d) in src.chunks_exact(cols).zip(full.chunks_exact_mut(stride)) {
        let (sc, st) = s.as_chunks::<LANES>();
        let (dc, dt) = d.as_chunks_mut::<LANES>();
        for (x, y) in sc.iter().zip(dc.iter_mut()) {
            // SAFETY: this function's features are `chunk`'s; `y` is 16 writable floats.
            unsafe { _mm512_storeu_ps(y.as_mut_ptr(), X::chunk(x)) };
        }
        for (i, y) in dc.iter_mut().enumerate().skip(sc.len()) {
            // The chunk with the tail (zeros past it), then zero chunks.
            // SAFETY: as above (`part` as `chunk`).
            let v = if i == sc.len() { unsafe { X::part(st) } } else { _mm512_setzero_ps() };
            // SAFETY: as above.
            unsafe { _mm512_storeu_ps(y.as_mut_ptr(), v) };
        }
        debug_assert!(dt.is_empty(), "stride {stride} is whole chunks");
    }
    pad.fill(0.0);
}

/// One tile: `R` widened weight rows against `T` widened token rows over `chunks` chunks,
/// each output its own accumulator.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile(w: &[f32], a: &[f32], stride: usize, chunks: usize) -> [[__m512; T]; R] {
    assert!(w.len() >= R * stride && a.len() >= T * stride && chunks * LANES <= stride);
    let (wp, ap) = (w.as_ptr(), a.as_ptr());
    let mut acc = [[_mm512_setzero_ps(); T]; R];
    for c in 0..chunks {
        let at = c * LANES;
        // SAFETY: row `r < R` of `w` and `t < T` of `a` hold `stride >= at + 16` floats (the
        // assertion); `loadu` needs no alignment.
        let wv = arr!(_mm512_setzero_ps(); R, |r| unsafe { _mm512_loadu_ps(wp.add(r * stride + at)) });
        for t in 0..T {
            // SAFETY: as above.
            let av = unsafe { _mm512_loadu_ps(ap.add(t * stride + at)) };
            for r in 0..R {
                acc[r][t] = _mm512_fmadd_ps(wv[r], av, acc[r][t]);
            }
        }
    }
    acc
}

/// `out[t * ldo + r] = dot(w row r, a row t)` for the `w.len() / cols` rows of `w` and the
/// `n` rows of `a` (`cols = a.len() / n`), bit for bit the tier's `dot`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
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
                            out[(t0 + t) * ldo + p0 + r0 + r] = hsum16(v);
                        }
                    }
                }
            }
        }
    });
}
