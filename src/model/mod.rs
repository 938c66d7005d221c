//! Transformer architectures over GGUF tensors: load a model, run batches of tokens through
//! it, get logits that match llama.cpp's.
//!
//! - [`Model`] owns the memory-mapped file, its [`Config`] (hyperparameters parsed once) and
//!   the located weights (zero-copy views into the mapping). It is `Send + Sync`: share it
//!   with an `Arc` across threads, each with its own [`KvCache`] and [`Scratch`].
//! - [`Arch`] / [`ArchSpec`]: one tensor table and a few switches per architecture (`llama`,
//!   `qwen2`, `qwen3`, `gemma2`, `gemma3`, `phi3`); every tensor is checked against it at load.
//! - [`Batch`]: tokens of several sequences, each with its position, sequence and a flag
//!   saying whether its logits are wanted. [`Model::forward`] runs one.
//! - [`Context`]: what running sequences needs besides the weights — a [`KvCache`] with a
//!   table of sequence [`Slot`]s (acquire, release, truncate, copy a prefix), [`Scratch`]
//!   buffers, the pending batch, the logits — and the [`Threads`] it runs on. Allocated
//!   once: the forward pass allocates nothing. Sliding-window layers keep only their
//!   window (and a batch) of rows per slot.
//! - [`KvCache`] (f16 or f32, one slot per sequence) and [`Scratch`] can also be used alone,
//!   with [`Model::forward`] on the caller's rayon pool.
//! - [`synth`] writes random-weight models of every architecture, for tests and benchmarks.
//!
//! ```no_run
//! use pupil::model::{self, Batch, KvType};
//! # fn main() -> Result<(), pupil::model::ModelError> {
//! let m = model::load("models/gemma-3-270m-q4_k_m.gguf")?;
//! let mut cache = m.new_cache(Some(1024), 1, KvType::F16);
//! let mut scratch = m.new_scratch(64, &cache);
//! let mut logits = vec![0.0; m.config().n_vocab];
//!
//! let mut batch = Batch::new();
//! batch.push_sequence(&[2, 651, 6037, 529], 0, 0, false); // prompt, last logits only
//! m.forward(&batch, &mut cache, &mut scratch, &mut logits)?;
//! let next = (0..logits.len()).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
//!
//! batch.clear();
//! batch.push(next as u32, 4, 0, true); // one decode step
//! m.forward(&batch, &mut cache, &mut scratch, &mut logits)?;
//! # Ok(()) }
//! ```

mod arch;
mod batch;
mod block;
mod config;
mod context;
mod cpu;
mod error;
mod forward;
mod gpu;
mod kv_cache;
mod probe;
mod rope;
mod scratch;
pub mod synth;
mod threads;
mod weights;

#[cfg(test)]
mod context_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

pub use arch::{Arch, ArchSpec, AttnScale, Dim, FfnAct, Kind, Need, Role, SwaRule, TensorDef};
pub use batch::Batch;
pub use config::Config;
pub use context::{Context, ContextParams, Logits, Slot};
pub use error::ModelError;
pub use kv_cache::{KvCache, KvType};
pub use probe::ProbeFn;
pub use scratch::Scratch;
pub use threads::Threads;

use crate::gguf::GgufFile;
use rope::Ropes;
use weights::Weights;

/// A loaded model: the mapped file, its hyperparameters and its checked weights.
#[derive(Debug)]
pub struct Model {
    file: GgufFile,
    config: Config,
    weights: Weights,
    /// RoPE of global and sliding-window layers, chosen by the cache's context size.
    ropes: Ropes,
    /// The blocks (and head) offloaded to a GPU, with their weights there.
    #[cfg(feature = "cuda")]
    gpu: Option<gpu::GpuModel>,
}

/// Opens the GGUF file at `path` and loads the model in it.
pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
    Model::open(path)
}

/// How a model is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Repack the matrices the kernel tier has a packed layout for, once, at load (see the
    /// `weights` module); off, every matrix is read from the memory map as stored (the path
    /// to compare against). Default: on, unless `PUPIL_NO_REPACK` is set to something other
    /// than `0` or nothing.
    pub repack: bool,
    /// Layers to run on the GPU, llama.cpp's `-ngl`: the last `gpu_layers` blocks, the
    /// output head counting as one more. Default 0, all on the CPU. A build without the
    /// `cuda` feature, or a machine without a GPU, refuses more than 0 with the reason.
    pub gpu_layers: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        let repack = std::env::var_os("PUPIL_NO_REPACK").is_none_or(|v| v.is_empty() || v == "0");
        LoadOptions { repack, gpu_layers: 0 }
    }
}

/// The GPU a model's offloaded blocks run on ([`Model::gpu_device`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GpuDevice {
    /// The product name (`NVIDIA H200`).
    pub name: String,
    /// Compute capability as `XY` of `sm_XY`.
    pub sm: u32,
    /// Device memory, bytes.
    pub memory: usize,
    /// Theoretical memory bandwidth, bytes per second.
    pub bandwidth: f64,
    /// The first block on the GPU.
    pub first_layer: usize,
    /// Whether the output head is there too.
    pub head: bool,
}

impl LoadOptions {
    /// Checks what can be checked before a file is read: that the GPU layers asked for can be
    /// had. [`Model::open_with`] does this first; commands that load through another path
    /// (`pupil compare`) call it themselves.
    pub fn check(&self) -> Result<(), ModelError> {
        gpu::check(self.gpu_layers)
    }
}

impl Model {
    /// Opens the GGUF file at `path` and loads the model in it (see [`GgufFile::open`] for
    /// the memory map's caveats).
    pub fn open(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        Model::open_with(path, &LoadOptions::default())
    }

    /// [`Model::open`] with `opts`.
    pub fn open_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Model, ModelError> {
        Model::from_file_with(GgufFile::open(path)?, opts)
    }

    /// Loads the model in an open file: parses the config and checks every tensor of the
    /// architecture's table (presence, shape, type).
    pub fn from_file(file: GgufFile) -> Result<Model, ModelError> {
        Model::from_file_with(file, &LoadOptions::default())
    }

    /// [`Model::from_file`] with `opts`.
    pub fn from_file_with(file: GgufFile, opts: &LoadOptions) -> Result<Model, ModelError> {
        opts.check()?;
        let config = Config::from_gguf(&file)?;
        let weights = Weights::load(&file, &config, opts)?;
        let ropes = Ropes::new(&config, &weights.model);
        #[cfg(feature = "cuda")]
        let gpu = gpu::load(&file, &config, &weights, opts.gpu_layers)?;
        Ok(Model {
            file,
            config,
            weights,
            ropes,
            #[cfg(feature = "cuda")]
            gpu,
        })
    }

    /// The GPU the offloaded blocks run on, if any are (`LoadOptions::gpu_layers`).
    pub fn gpu_device(&self) -> Option<GpuDevice> {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu {
            let info = g.gpu.info();
            return Some(GpuDevice {
                name: info.name.clone(),
                sm: info.sm(),
                memory: info.memory,
                bandwidth: info.bandwidth,
                first_layer: g.offload.first,
                head: g.offload.head,
            });
        }
        None
    }

    /// The hyperparameters.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The underlying file (metadata, tokenizer, tensors).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// A KV cache for `n_seq` sequences of up to `n_ctx` positions each: the model's training
    /// context length, capped by `n_ctx` if given.
    pub fn new_cache(&self, n_ctx: Option<usize>, n_seq: usize, kv_type: KvType) -> KvCache {
        let n = n_ctx.map_or(self.config.n_ctx_train, |c| c.min(self.config.n_ctx_train));
        KvCache::new(&self.config, n, n_seq, kv_type)
    }

    /// Scratch buffers for batches of up to `max_batch` tokens over `cache`.
    pub fn new_scratch(&self, max_batch: usize, cache: &KvCache) -> Scratch {
        Scratch::new(&self.config, max_batch, cache)
    }
}
