//! The scale searches behind ggml's k-quant reference quantizers: `nearest_int`,
//! `make_qx_quants`, `make_q3_quants` and `make_qkx2_quants` in `ggml/src/ggml-quants.c`.
//!
//! Each is a small deterministic least-squares search for the scale (and min) of one
//! sub-block. The quantized bytes depend on every rounding inside them, so they are written
//! operation for operation as ggml computes them: f32 throughout, the same left-to-right
//! evaluation (`w * x * l` is `(w * x) * l`, an integer `l` converted to f32 at each use), the
//! same strict comparisons and the same sequential sums. ggml-base is built without FMA
//! contraction (`-march=x86-64`), and Rust never contracts, so the results agree to the bit.
//! Rewriting an expression here "equivalently" changes quantized files; rerun the oracle tests
//! (`tests/oracle_k_quants.rs`) after any edit.
//!
//! Only the variants the `_ref` quantizers call are kept: `make_qx_quants` with
//! `rmse_type == 1` and no importance weights (Q6_K), `make_q3_quants` with `do_rmse` (Q3_K).

/// Sub-blocks whose largest magnitude is below this quantize to zero (`GROUP_MAX_EPS`).
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// ggml's `nearest_int`: round to nearest, ties to even.
///
/// Adding 1.5 * 2^23 leaves the rounded integer in the low mantissa bits; for |v| < 2^22
/// this equals `v.round_ties_even() as i32` (tested below). ggml only asserts that range in
/// debug builds; outside it (and for inf or NaN, which overflowing rows do produce) the bit
/// trick yields a deterministic out-of-range value that the callers' clamps and narrowing
/// casts then see, so we reproduce the trick itself rather than `round_ties_even`.
pub(crate) fn nearest_int(v: f32) -> i32 {
    ((v + 12_582_912.0).to_bits() as i32 & 0x007f_ffff) - 0x0040_0000
}

/// The largest magnitude in `x` and the signed value that has it (the first, on ties).
pub(crate) fn signed_absmax(x: &[f32]) -> (f32, f32) {
    let (mut amax, mut max) = (0f32, 0f32);
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    (amax, max)
}

/// Symmetric quants in `-nmax..nmax` (stored offset by `nmax`) with a scale chosen to
/// minimise the error weighted by `x²`, trying 18 scales around `nmax / max`
/// (`make_qx_quants` with `rmse_type = 1`, `qw = NULL`). Returns the scale; `x ≈ scale * (L - nmax)`.
pub(crate) fn make_qx_quants(nmax: i32, x: &[f32], out: &mut [i8]) -> f32 {
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let quant = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-nmax, nmax - 1);
    // The weighted sums Σ w·x·l and Σ w·l² for one trial scale, w = x².
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0f32, 0f32);
        for &v in x {
            let l = quant(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let store = |iscale: f32, out: &mut [i8]| {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (quant(iscale, v) + nmax) as i8;
        }
    };

    let iscale = -(nmax as f32) / max;
    store(iscale, out);
    let (sumlx, suml2) = sums(iscale);
    // C's `suml2 ? a : b` takes NaN as true, like `!= 0.0`.
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = -(nmax as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            store(iscale, out);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// Symmetric quants in `-nmax..nmax` (stored offset by `nmax`), starting from `nmax / max`
/// and then moving single quants while that lowers the `x²`-weighted error, for at most five
/// sweeps (`make_q3_quants` with `do_rmse = true`). Returns the least-squares scale.
pub(crate) fn make_q3_quants(nmax: i32, x: &[f32], out: &mut [i8]) -> f32 {
    let (amax, max) = signed_absmax(x);
    if amax < GROUP_MAX_EPS {
        out.fill(0);
        return 0.0;
    }
    let iscale = -(nmax as f32) / max;
    let (mut sumlx, mut suml2) = (0f32, 0f32);
    for (o, &v) in out.iter_mut().zip(x) {
        let l = nearest_int(iscale * v).clamp(-nmax, nmax - 1);
        *o = l as i8;
        let w = v * v;
        sumlx += w * v * l as f32;
        suml2 += w * l as f32 * l as f32;
    }
    for _ in 0..5 {
        let mut changed = false;
        for (o, &v) in out.iter_mut().zip(x) {
            let w = v * v;
            let old = f32::from(*o);
            let mut slx = sumlx - w * v * old;
            if slx > 0.0 {
                let mut sl2 = suml2 - w * old * old;
                let new_l = nearest_int(v * sl2 / slx).clamp(-nmax, nmax - 1);
                if new_l != i32::from(*o) {
                    slx += w * v * new_l as f32;
                    sl2 += w * new_l as f32 * new_l as f32;
                    // Keep the move if it raises (Σwxl)² / Σwl², i.e. lowers the error.
                    if sl2 > 0.0 && slx * slx * suml2 > sumlx * sumlx * sl2 {
                        *o = new_l as i8;
                        sumlx = slx;
                        suml2 = sl2;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    for o in out.iter_mut() {
        *o += nmax as i8;
    }
    if suml2 > 0.0 { sumlx / suml2 } else { 0.0 }
}

/// Asymmetric quants in `0..=nmax` with a scale and a min (`x ≈ scale * L - min`), searched
/// over `nstep + 1` trial scales `(nmax + rmin + rdelta * is) / (max - min)`, each refined by a
/// weighted least-squares fit of scale and min (`make_qkx2_quants`). The error is weighted by
/// `weights`, absolute if `use_mad`, squared otherwise.
///
/// Returns `(scale, min)` with `min >= 0` (ggml's `the_min`; it can be `-0.0`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32],
    weights: &[f32],
    out: &mut [u8],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
    use_mad: bool,
) -> (f32, f32) {
    let n = x.len();
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..n {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        out.fill(0);
        return (0.0, -min);
    }
    let error = |diff: f32| if use_mad { diff.abs() } else { diff * diff };

    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0f32;
    for i in 0..n {
        let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        out[i] = l as u8;
        best_error += weights[i] * error(scale * l as f32 + min - x[i]);
    }
    if nstep < 1 {
        return (scale, -min);
    }

    let mut laux = [0u8; 32];
    let laux = &mut laux[..n];
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0f32, 0f32, 0f32);
        for i in 0..n {
            let l = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = l as u8;
            let (w, l) = (weights[i], l as f32);
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0f32;
            for i in 0..n {
                cur_error += weights[i] * error(this_scale * f32::from(laux[i]) + this_min - x[i]);
            }
            if cur_error < best_error {
                out.copy_from_slice(laux);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_int_is_round_ties_even_in_range() {
        for v in [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999997, 4194302.5, -4194303.0, 7.0, -0.0] {
            assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v}");
        }
        // A sweep over the whole domain ggml asserts (|v| <= 4194303), strided by a prime
        // number of ulps so every exponent and many fraction patterns are hit.
        let limit = 4_194_303.0f32.to_bits();
        for bits in (0..=limit).step_by(997) {
            for v in [f32::from_bits(bits), -f32::from_bits(bits)] {
                assert_eq!(nearest_int(v), v.round_ties_even() as i32, "{v:e}");
            }
        }
    }

    #[test]
    fn nearest_int_out_of_range_is_ggmls_garbage() {
        // What the bit trick gives, and therefore what ggml's clamps see.
        assert_eq!(nearest_int(f32::INFINITY), -0x40_0000);
        assert_eq!(nearest_int(f32::NEG_INFINITY), -0x40_0000);
        assert_eq!(nearest_int(f32::NAN), 0);
    }

    #[test]
    fn make_qx_quants_recovers_exact_grid() {
        // Values on an integer grid of step 0.25 come back exactly.
        let x: Vec<f32> = (0..16).map(|i| 0.25 * (i as f32 - 8.0)).collect();
        let mut l = [0i8; 16];
        let scale = make_qx_quants(32, &x, &mut l);
        for (v, q) in x.iter().zip(l) {
            assert_eq!(scale * (q as f32 - 32.0), *v);
        }
    }

    #[test]
    fn make_qkx2_quants_all_equal_positive_is_zero_quants_zero_min() {
        let x = [3.0f32; 16];
        let mut l = [9u8; 16];
        // max == 3, min clipped to 0: the search runs; every quant is nmax.
        let (scale, min) = make_qkx2_quants(3, &x, &[1.0; 16], &mut l, -0.5, 0.1, 15, true);
        assert_eq!(min.to_bits(), (-0.0f32).to_bits());
        assert!(l.iter().all(|&q| q == 3));
        assert_eq!(scale * 3.0, 3.0);
        // An all-zero row takes the early exit.
        let (scale, min) = make_qkx2_quants(3, &[0.0; 16], &[0.0; 16], &mut l, -0.5, 0.1, 15, true);
        assert_eq!((scale.to_bits(), min.to_bits()), (0, (-0.0f32).to_bits()));
        assert!(l.iter().all(|&q| q == 0));
    }
}
