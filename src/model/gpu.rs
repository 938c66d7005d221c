//! GPU offload (`--gpu-layers N`), in llama.cpp's meaning: the last `N` layers, with the
//! output head counted as one more (so `n_layer + 1` offloads everything but the token
//! embeddings, which stay on the host).
//!
//! What exists: the CUDA kernels, their compilation and their op tests
//! (`pupil_kernels::cuda`). What does not, yet: the forward pass on the device (the weights'
//! upload, a device KV cache, the layer loop behind the kernel seam). Until it does, asking for
//! GPU layers is refused at load with the reason, never silently run on the CPU: on a machine
//! with no GPU (or a build without the `cuda` feature) the error says what is missing.

use super::ModelError;

/// Checks that `layers` GPU layers can be had; `0` always can.
pub(super) fn check(layers: usize) -> Result<(), ModelError> {
    if layers == 0 {
        return Ok(());
    }
    let reason = unavailable();
    Err(ModelError::Gpu { layers, reason })
}

#[cfg(not(feature = "cuda"))]
fn unavailable() -> String {
    "this pupil was built without CUDA (rebuild with `cargo build --release --features cuda`)".into()
}

#[cfg(feature = "cuda")]
fn unavailable() -> String {
    match pupil_kernels::cuda::probe(0) {
        Err(e) => e.to_string(),
        Ok(info) => format!(
            "found {} (sm_{}), but pupil's forward pass does not run on a GPU yet: only its CUDA kernels do",
            info.name,
            info.sm()
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zero_layers_is_the_cpu() {
        assert!(super::check(0).is_ok());
    }

    /// No test machine has a GPU, so asking for one fails, saying why.
    #[test]
    fn gpu_layers_without_a_gpu_say_why() {
        let e = super::check(3).unwrap_err().to_string();
        assert!(e.starts_with("--gpu-layers 3: "), "{e}");
        assert!(e.contains("without CUDA") || e.contains("libcuda") || e.contains("no CUDA device"), "{e}");
    }
}
