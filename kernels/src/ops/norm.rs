//! RMS normalisation.

/// `out = x / sqrt(mean(x²) + eps) * w` over one row; `x`, `w`, `out` have the same length.
///
/// The sum of squares is accumulated in f64, as ggml's `rms_norm` does, so long rows of large
/// activations (Gemma's residual stream reaches 1e4) keep their precision; in eight partial
/// sums (then added in a fixed order), so that the loop vectorizes instead of waiting on one
/// f64 add per element.
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    debug_assert!(x.len() == w.len() && x.len() == out.len());
    let (chunks, tail) = x.as_chunks::<8>();
    let mut part = [0f64; 8];
    for c in chunks {
        for (p, &v) in part.iter_mut().zip(c) {
            *p += f64::from(v * v);
        }
    }
    let sum = part.iter().sum::<f64>() + tail.iter().map(|&v| f64::from(v * v)).sum::<f64>();
    let mean = (sum / x.len() as f64) as f32;
    let s = 1.0 / (mean + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(w) {
        *o = v * s * g;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_rms_after_norm() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 1.5).collect();
        let mut y = vec![0.0; 64];
        super::rms_norm(&x, &vec![1.0; 64], 1e-6, &mut y);
        let rms = (y.iter().map(|v| v * v).sum::<f32>() / 64.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-4, "{rms}");
    }
}
