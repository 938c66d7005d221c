//! The tiled GEMM of float weights (`F32`, `F16`, `BF16`, each against activations of its own
//! type) for prompts: every output bit for bit the tier's `dot` (the AVX2 tier's four 8-lane
//! accumulators over groups of 32 columns, see `avx2::float`).
//!
//! Both operands are widened to f32 once per call (exactly: f16 and bf16 are subsets of f32):
//! the activations, and the weights a panel of rows at a time, into per-thread buffers, so the
//! inner loop is FMAs on loads alone. A tile is [`R`] weight rows by [`T`] tokens; each
//! (row, token) keeps its four 8-lane accumulators as two 16-lane vectors (columns `0..16` and
//! `16..32` of each group), lane for lane the `dot`'s. The columns past the last whole group
//! and the final sums are then formed as the `dot` forms them.

use super::super::avx2::hsum_ps;
use half::{bf16, f16};
use std::arch::x86_64::*;

/// Weight rows per tile.
const R: usize = 4;
/// Tokens per tile: `R · T` pairs of accumulators, with the weight vectors, fill the 32
/// registers.
const T: usize = 3;
/// Weight rows widened at a time (a multiple of `R`).
const PANEL: usize = 32;

thread_local! {
    /// Per thread: the activations and one panel of weights, widened.
    static WIDE: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// An element type the GEMM widens.
pub(super) trait Widen: Copy {
    /// The exact f32.
    fn wide(self) -> f32;
}

impl Widen for f32 {
    #[inline(always)]
    fn wide(self) -> f32 {
        self
    }
}

impl Widen for f16 {
    #[inline(always)]
    fn wide(self) -> f32 {
        self.to_f32()
    }
}

impl Widen for bf16 {
    #[inline(always)]
    fn wide(self) -> f32 {
        // The top half of an f32 (NaN payloads kept, as the `dot` keeps them).
        f32::from_bits(u32::from(self.to_bits()) << 16)
    }
}

/// `dst = src` widened, then zeros to `dst`'s end.
fn widen_into<X: Widen>(src: &[X], dst: &mut [f32]) {
    let (head, rest) = dst.split_at_mut(src.len());
    for (d, &s) in head.iter_mut().zip(src) {
        *d = s.wide();
    }
    rest.fill(0.0);
}

/// One tile: for each of `R` rows and `T` tokens, the two 16-lane accumulators over the
/// `groups` whole groups of 32 columns.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn tile(w: [&[f32]; R], a: [&[f32]; T], groups: usize) -> [[[__m512; 2]; T]; R] {
    let mut acc = [[[_mm512_setzero_ps(); 2]; T]; R];
    for g in 0..groups {
        for h in 0..2 {
            let at = 32 * g + 16 * h;
            // SAFETY: every row holds at least `32 * groups` floats; `loadu` needs no alignment.
            let wv: [__m512; R] = std::array::from_fn(|r| unsafe { _mm512_loadu_ps(w[r][at..].as_ptr()) });
            for t in 0..T {
                // SAFETY: as above.
                let av = unsafe { _mm512_loadu_ps(a[t][at..].as_ptr()) };
                for r in 0..R {
                    acc[r][t][h] = _mm512_fmadd_ps(wv[r], av, acc[r][t][h]);
                }
            }
        }
    }
    acc
}

/// The `dot` of rows `w` and `a` from their accumulators over the whole groups: the columns
/// after them in 8-lane chunks into the first accumulator, the last few one at a time, then
/// the lanes summed as the `dot` sums them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn finish(acc: [__m512; 2], w: &[f32], a: &[f32], from: usize) -> f32 {
    let half = |v: __m512, hi: bool| {
        let d = _mm512_castps_pd(v);
        _mm256_castpd_ps(if hi { _mm512_extractf64x4_pd::<1>(d) } else { _mm512_castpd512_pd256(d) })
    };
    let (mut a0, a1, a2, a3) = (half(acc[0], false), half(acc[0], true), half(acc[1], false), half(acc[1], true));
    let (wc, wt) = w[from..].as_chunks::<8>();
    let (ac, at) = a[from..].as_chunks::<8>();
    for (x, y) in wc.iter().zip(ac) {
        // SAFETY: 8 readable floats each; `loadu` needs no alignment.
        a0 = _mm256_fmadd_ps(unsafe { _mm256_loadu_ps(x.as_ptr()) }, unsafe { _mm256_loadu_ps(y.as_ptr()) }, a0);
    }
    let mut tail = 0f32;
    for (&x, &y) in wt.iter().zip(at) {
        tail += x * y;
    }
    hsum_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3))) + tail
}

/// `out[t * ldo + r] = dot(w row r, a row t)` for the `w.len() / cols` rows of `w` and the
/// `n` rows of `a` (`cols = a.len() / n`), bit for bit the tier's `dot`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn gemm_float<X: Widen>(w: &[X], a: &[X], n: usize, out: &mut [f32], ldo: usize) {
    let cols = a.len() / n;
    let rows = w.len() / cols;
    let groups = cols / 32;
    let n_pad = n.div_ceil(T) * T;
    WIDE.with_borrow_mut(|(aw, ww)| {
        // Grow to the largest call once (never shrunk, so a smaller call zeroes nothing);
        // no allocation after that. Padding rows are zeros.
        for (v, len) in [(&mut *aw, n_pad * cols), (&mut *ww, PANEL * cols)] {
            if v.len() < len {
                v.resize(len, 0.0);
            }
        }
        let (aw, ww) = (&mut aw[..n_pad * cols], &mut ww[..PANEL * cols]);
        for t in 0..n_pad {
            let src = if t < n { &a[t * cols..][..cols] } else { &[][..] };
            widen_into(src, &mut aw[t * cols..][..cols]);
        }
        for p0 in (0..rows).step_by(PANEL) {
            let live = PANEL.min(rows - p0);
            for r in 0..PANEL {
                let src = if r < live { &w[(p0 + r) * cols..][..cols] } else { &[][..] };
                widen_into(src, &mut ww[r * cols..][..cols]);
            }
            for t0 in (0..n).step_by(T) {
                let ar: [&[f32]; T] = std::array::from_fn(|t| &aw[(t0 + t) * cols..][..cols]);
                for r0 in (0..live).step_by(R) {
                    let wr: [&[f32]; R] = std::array::from_fn(|r| &ww[(r0 + r) * cols..][..cols]);
                    let acc = tile(wr, ar, groups);
                    for (r, accs) in acc.iter().enumerate().take(live - r0) {
                        for (t, &pair) in accs.iter().enumerate().take(n - t0) {
                            out[(t0 + t) * ldo + p0 + r0 + r] = finish(pair, wr[r], ar[t], 32 * groups);
                        }
                    }
                }
            }
        }
    });
}
