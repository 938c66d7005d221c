//! The reference kernels of attention over a KV cache (the scalar tier of
//! [`crate::cpu::KvOps`]): plain loops, summed in order.
//!
//! ```
//! use pupil_kernels::ops::kv_reference;
//! assert_eq!(kv_reference::dot(&[1.0, 2.0], &[3.0f32, 4.0]), 11.0);
//! ```

use super::KvScalar;

/// `Σ q[i] · k[i]` over the common length.
pub fn dot<T: KvScalar>(q: &[f32], k: &[T]) -> f32 {
    q.iter().zip(k).map(|(a, b)| a * b.to_f32()).sum()
}

/// `o[i] += p · v[i]` over the common length.
pub fn axpy<T: KvScalar>(o: &mut [f32], p: f32, v: &[T]) {
    for (o, x) in o.iter_mut().zip(v) {
        *o += p * x.to_f32();
    }
}
