//! GPU offload (`--gpu-layers N`), in llama.cpp's meaning: the last `N` blocks run on the GPU,
//! and `N > n_layer` adds the output head (so `n_layer + 1` offloads everything but the token
//! embeddings, which stay on the host).
//!
//! The blocks on the GPU are the same [`super::block`] as on the CPU, carried out by a second
//! [`Device`](super::block::Device): [`pass`]. Weights are uploaded once at load
//! ([`GpuModel::load`]); each KV cache and scratch gets its device part at its first forward
//! pass ([`state`]), so the decode loop allocates nothing after it. At the host/device
//! boundary only the residual stream crosses (and the logits, from a GPU head). The device
//! cache holds f16 whatever the host cache's type.
//!
//! Without the `cuda` feature, or on a machine without a GPU, asking for GPU layers is a
//! load error saying what is missing: never a silent run on the CPU.

#[cfg(feature = "cuda")]
mod load;
#[cfg(feature = "cuda")]
pub(crate) mod pass;
#[cfg(feature = "cuda")]
pub(crate) mod state;

#[cfg(feature = "cuda")]
pub(crate) use load::GpuModel;

#[cfg(feature = "cuda")]
use super::Config;
use super::ModelError;

/// Which part of the model runs on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Offload {
    /// The first block on the GPU (`n_layer`: none).
    pub first: usize,
    /// Whether the output norm and head run there too.
    pub head: bool,
}

impl Offload {
    /// llama.cpp's split for `-ngl layers` of a model with `n_layer` blocks.
    pub fn new(layers: usize, n_layer: usize) -> Offload {
        Offload { first: n_layer - layers.min(n_layer), head: layers > n_layer }
    }
}

/// The GPU part of a model with `gpu_layers` asked for: `None` for 0; else the weights
/// uploaded, or why they cannot be.
#[cfg(feature = "cuda")]
pub(super) fn load(
    file: &crate::gguf::GgufFile,
    cfg: &Config,
    weights: &super::weights::Weights,
    layers: usize,
) -> Result<Option<GpuModel>, ModelError> {
    if layers == 0 {
        return Ok(None);
    }
    GpuModel::load(file, cfg, weights, Offload::new(layers, cfg.n_layer))
        .map(Some)
        .map_err(|reason| ModelError::Gpu { layers, reason })
}

/// Checks that `layers` GPU layers can be had before anything is read: `0` always can; a
/// build without CUDA never can; otherwise there must be a driver and a device (found
/// without compiling or uploading anything).
pub(super) fn check(layers: usize) -> Result<(), ModelError> {
    if layers == 0 {
        return Ok(());
    }
    #[cfg(feature = "cuda")]
    let found = pupil_kernels::cuda::probe(0).map(|_| ()).map_err(|e| e.to_string());
    #[cfg(not(feature = "cuda"))]
    let found = Err("this pupil was built without CUDA (rebuild with `cargo build --release --features cuda`)".into());
    found.map_err(|reason| ModelError::Gpu { layers, reason })
}

#[cfg(test)]
mod tests {
    use super::Offload;

    #[test]
    fn offload_follows_llama_cpp() {
        assert_eq!(Offload::new(0, 16), Offload { first: 16, head: false });
        assert_eq!(Offload::new(1, 16), Offload { first: 15, head: false });
        assert_eq!(Offload::new(16, 16), Offload { first: 0, head: false });
        assert_eq!(Offload::new(17, 16), Offload { first: 0, head: true });
        assert_eq!(Offload::new(999, 16), Offload { first: 0, head: true });
    }

    /// Without a GPU (every CI machine), asking for one fails at load, saying why.
    #[test]
    fn gpu_layers_without_a_gpu_say_why() {
        #[cfg(feature = "cuda")]
        if pupil_kernels::cuda::probe(0).is_ok() {
            return;
        }
        use crate::model::synth::{Synth, SynthModel};
        use crate::model::{Arch, LoadOptions, Model};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        let spec = Synth { n_vocab: 300, ..Synth::new(Arch::Llama, pupil_kernels::DType::Q8_0) };
        SynthModel::build(&spec, None).unwrap().write(&path).unwrap();
        let opts = LoadOptions { gpu_layers: 3, ..Default::default() };
        let e = Model::open_with(&path, &opts).unwrap_err().to_string();
        assert!(e.starts_with("--gpu-layers 3: "), "{e}");
        assert!(e.contains("without CUDA") || e.contains("libcuda") || e.contains("no CUDA device"), "{e}");
    }
}
