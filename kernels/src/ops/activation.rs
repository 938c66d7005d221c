//! Element-wise functions: activations, soft-capping, softmax.

/// GELU with the tanh approximation (`gelu_pytorch_tanh`, Gemma's FFN activation), in place.
pub fn gelu_tanh(x: &mut [f32]) {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const COEF_A: f32 = 0.044_715;
    for v in x {
        let u = *v;
        *v = 0.5 * u * (1.0 + (SQRT_2_OVER_PI * u * (1.0 + COEF_A * u * u)).tanh());
    }
}

/// SiLU (`x * sigmoid(x)`, the Llama/Qwen FFN activation), in place.
pub fn silu(x: &mut [f32]) {
    for v in x {
        *v /= 1.0 + (-*v).exp();
    }
}

/// Soft-capping `cap * tanh(x / cap)` (Gemma 2 attention and final logits), in place.
pub fn softcap(x: &mut [f32], cap: f32) {
    for v in x {
        *v = cap * (*v / cap).tanh();
    }
}

/// Softmax over the whole slice, in place; `-inf` entries get probability 0.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        x.fill(0.0);
        return;
    }
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += f64::from(*v);
    }
    let inv = (1.0 / sum) as f32;
    for v in x {
        *v *= inv;
    }
}

/// `x *= s`.
pub fn scale(x: &mut [f32], s: f32) {
    for v in x {
        *v *= s;
    }
}

/// `x += y`, element-wise.
pub fn add_assign(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (a, b) in x.iter_mut().zip(y) {
        *a += b;
    }
}

/// `x *= y`, element-wise.
pub fn mul_assign(x: &mut [f32], y: &[f32]) {
    debug_assert_eq!(x.len(), y.len());
    for (a, b) in x.iter_mut().zip(y) {
        *a *= b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        let mut g = [0.0f32, 1.0, -1.0, 3.0];
        gelu_tanh(&mut g);
        let want = [0.0f32, 0.841_192, -0.158_808, 2.996_363];
        for (a, b) in g.iter().zip(want) {
            assert!((a - b).abs() < 1e-5, "{g:?}");
        }
        let mut s = [0.0f32, 2.0];
        silu(&mut s);
        assert!((s[1] - 1.761_594).abs() < 1e-5);
        let mut p = [1.0f32, 2.0, f32::NEG_INFINITY];
        softmax(&mut p);
        assert!((p[0] + p[1] - 1.0).abs() < 1e-6 && p[2] == 0.0 && p[1] > p[0]);
        let mut c = [1000.0f32, -1000.0, 0.5];
        softcap(&mut c, 30.0);
        assert!((c[0] - 30.0).abs() < 1e-3 && (c[1] + 30.0).abs() < 1e-3 && (c[2] - 0.5).abs() < 1e-3);
    }
}
