//! Rotary position embeddings, as ggml's `rope` computes them (`ggml-cpu/ops.cpp`).

/// A rotary embedding's parameters.
///
/// Rotation frequencies are `theta_i = pos * freq_scale * base^(-2i/n_dims) / freq_factors[i]`
/// for pair `i`; the power is built by repeated multiplication in f32, as ggml builds it, so
/// angles at long positions round the same way. The rotation is scaled by `mscale`: ggml's
/// `rope_yarn` multiplies cos and sin by it (without YaRN's ramp, which pupil does not run).
#[derive(Clone, Debug, PartialEq)]
pub struct Rope {
    /// Dimensions rotated per head (the first `n_dims` of `head_dim`; usually all of them).
    pub n_dims: usize,
    /// Frequency base (`rope.freq_base`).
    pub base: f32,
    /// Linear position scaling (`1 / rope.scaling.factor`, 1.0 for none).
    pub freq_scale: f32,
    /// Per-pair frequency divisors (Llama 3's `rope_freqs.weight`, or the long or short
    /// factors of LongRoPE), `n_dims / 2` of them.
    pub freq_factors: Option<Vec<f32>>,
    /// Multiplier of cos and sin (llama.cpp's `attn_factor`; 1.0 for none). LongRoPE sets it
    /// above 1 to make up for the attention entropy lost at long contexts.
    pub mscale: f32,
    /// NeoX layout: pair `i` is `(x[i], x[i + n_dims/2])` (Gemma, Qwen); otherwise adjacent
    /// elements `(x[2i], x[2i+1])` are paired (Llama).
    pub neox: bool,
}

impl Rope {
    /// Fill `cache` (`n_dims` floats: `cos, sin` per pair) for position `pos`.
    pub fn angles(&self, pos: i32, cache: &mut [f32]) {
        debug_assert_eq!(cache.len(), self.n_dims);
        let theta_scale = self.base.powf(-2.0 / self.n_dims as f32);
        let mut theta = pos as f32;
        for (i, cs) in cache.chunks_exact_mut(2).enumerate() {
            let ff = self.freq_factors.as_ref().map_or(1.0, |f| f[i]);
            let t = self.freq_scale * (theta / ff);
            cs[0] = t.cos() * self.mscale;
            cs[1] = t.sin() * self.mscale;
            theta *= theta_scale;
        }
    }

    /// Rotate every head of `x` (`[n_heads, head_dim]`, flattened) by the angles in `cache`.
    pub fn apply(&self, cache: &[f32], x: &mut [f32], head_dim: usize) {
        let half = self.n_dims / 2;
        for head in x.chunks_exact_mut(head_dim) {
            for i in 0..half {
                let (cos, sin) = (cache[2 * i], cache[2 * i + 1]);
                let (a, b) = if self.neox { (i, i + half) } else { (2 * i, 2 * i + 1) };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos - x1 * sin;
                head[b] = x0 * sin + x1 * cos;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_preserves_norm_and_position_zero_is_identity() {
        for neox in [false, true] {
            let rope = Rope { n_dims: 8, base: 10000.0, freq_scale: 1.0, freq_factors: None, mscale: 1.0, neox };
            let x: Vec<f32> = (0..16).map(|i| i as f32 * 0.3 - 2.0).collect();
            let mut cache = vec![0.0; 8];
            rope.angles(0, &mut cache);
            let mut y = x.clone();
            rope.apply(&cache, &mut y, 8);
            assert_eq!(x, y);
            rope.angles(1234, &mut cache);
            rope.apply(&cache, &mut y, 8);
            let n = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
            assert!((n(&x) - n(&y)).abs() < 1e-3 && x != y);
        }
    }

    #[test]
    fn first_pair_turns_by_the_position() {
        let rope = Rope { n_dims: 4, base: 10000.0, freq_scale: 1.0, freq_factors: None, mscale: 1.0, neox: false };
        let mut cache = vec![0.0; 4];
        rope.angles(2, &mut cache);
        let mut x = vec![1.0, 0.0, 1.0, 0.0];
        rope.apply(&cache, &mut x, 4);
        assert!((x[0] - 2f32.cos()).abs() < 1e-6 && (x[1] - 2f32.sin()).abs() < 1e-6);
        assert!((x[2] - 0.02f32.cos()).abs() < 1e-6, "second pair turns at base^(-1/2)");
    }

    #[test]
    fn factors_divide_the_frequencies_and_mscale_scales_the_rotation() {
        let plain = Rope { n_dims: 4, base: 10000.0, freq_scale: 1.0, freq_factors: None, mscale: 1.0, neox: true };
        let long = Rope { freq_factors: Some(vec![1.0, 4.0]), mscale: 1.25, ..plain.clone() };
        let (mut a, mut b) = (vec![0.0; 4], vec![0.0; 4]);
        plain.angles(8, &mut a);
        long.angles(8, &mut b);
        assert!((b[0] - 1.25 * a[0]).abs() < 1e-6 && (b[1] - 1.25 * a[1]).abs() < 1e-6, "factor 1 keeps the angle");
        assert!((b[2] - 1.25 * 0.02f32.cos()).abs() < 1e-6 && (b[3] - 1.25 * 0.02f32.sin()).abs() < 1e-6, "8 * 0.01 / 4");
        let mut x = vec![1.0, 0.0, 0.0, 0.0];
        long.apply(&b, &mut x, 4);
        let norm = x.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.25).abs() < 1e-6, "the rotation is scaled by mscale: {norm}");
    }
}
