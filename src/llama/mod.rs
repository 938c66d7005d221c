//! llama.cpp, through `llama-cpp-2` (feature `llama`): every call pupil makes into it lives
//! in this module (the kernels' ggml oracle in `pupil-kernels` aside, which tests block
//! formats and never runs a model).
//!
//! llama.cpp is pupil's oracle, its benchmark baseline and an alternative engine for a
//! teacher whose architecture pupil lacks:
//! - [`LlamaModel`]: a model file loaded by llama.cpp (memory-mapped, as pupil maps it), or
//!   only its vocabulary ([`LlamaModel::load_vocab`]);
//! - [`LlamaRunner`]: a llama.cpp context as a [`crate::runner::Runner`], so `bench`,
//!   `compare` and the tests drive it exactly as they drive pupil;
//! - [`LlamaVocab`]: its tokenizer, for the tokenizer oracle;
//! - [`quantize`]: `llama_model_quantize`, llama-quantize's library call, for the quantizer
//!   oracle;
//! - [`native_check`]: whether the ggml linked in was compiled for this CPU;
//! - [`Tracer`]: every named tensor of a forward pass, to compare with pupil's op by op.
//!
//! The backend is initialised once per process ([`backend`]) with llama.cpp's logging
//! silenced. Errors are [`LlamaError`]s carrying llama.cpp's (or its binding's) message.
//!
//! ```no_run
//! use pupil::llama::LlamaModel;
//! use pupil::runner::{Attention, Runner, RunnerOptions};
//! # fn main() -> Result<(), pupil::runner::RunnerError> {
//! let model = LlamaModel::load("models/distill/teacher-f16.gguf".as_ref())?;
//! let tokens = model.tokenize("In the beginning", true)?;
//! let opts = RunnerOptions { attention: Attention::Exact, threads: Some(1), ..RunnerOptions::new(64, 64) };
//! let mut r = model.runner(&opts)?;
//! let mut logits = vec![0.0; tokens.len() * r.n_vocab()];
//! r.forward(&tokens, 0, 0..tokens.len(), &mut logits)?;
//! # Ok(()) }
//! ```

mod runner;
mod sys;
mod system;
mod trace;
mod vocab;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;

pub use runner::LlamaRunner;
pub use sys::{QuantizeParams, quantize};
pub use system::{NativeCheck, native_check};
pub use trace::{Probe, Tracer};
pub use vocab::LlamaVocab;

use crate::runner::{RunnerError, RunnerOptions};

/// Why a llama.cpp call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlamaError {
    /// llama.cpp could not load a model file (its own reasons go to its log, which is
    /// silenced).
    #[error("llama.cpp cannot load {}: {message}", path.display())]
    Load {
        /// The file.
        path: PathBuf,
        /// The binding's message.
        message: String,
    },
    /// A call failed.
    #[error("llama.cpp: {what}: {message}")]
    Call {
        /// What was being done.
        what: &'static str,
        /// llama.cpp's (or its binding's) message.
        message: String,
    },
}

impl LlamaError {
    fn call(what: &'static str, e: impl std::fmt::Display) -> LlamaError {
        LlamaError::Call { what, message: e.to_string() }
    }
}

/// llama.cpp's backend, initialised once per process with its logging silenced.
pub fn backend() -> Result<&'static LlamaBackend, LlamaError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    // llama.cpp refuses a second initialisation: threads that race here take turns, and all
    // but the first find it done.
    static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let _turn = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let mut b = LlamaBackend::init().map_err(|e| LlamaError::call("initialising the backend", e))?;
    b.void_logs();
    Ok(BACKEND.get_or_init(|| b))
}

/// A model file loaded by llama.cpp.
pub struct LlamaModel {
    inner: llama_cpp_2::model::LlamaModel,
    path: PathBuf,
}

impl std::fmt::Debug for LlamaModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaModel").field("path", &self.path).finish_non_exhaustive()
    }
}

impl LlamaModel {
    /// Loads the model at `path` (memory-mapped, llama.cpp's defaults).
    pub fn load(path: &Path) -> Result<LlamaModel, LlamaError> {
        LlamaModel::load_with(path, &LlamaModelParams::default())
    }

    /// Loads only the vocabulary of the file at `path` (no weights: any file with a
    /// tokenizer, such as llama.cpp's `ggml-vocab-*.gguf`).
    pub fn load_vocab(path: &Path) -> Result<LlamaModel, LlamaError> {
        LlamaModel::load_with(path, &LlamaModelParams::default().with_vocab_only(true))
    }

    fn load_with(path: &Path, params: &LlamaModelParams) -> Result<LlamaModel, LlamaError> {
        let load_err = |message: String| LlamaError::Load { path: path.to_path_buf(), message };
        // The binding only debug-asserts that the file exists; say so plainly.
        if !path.is_file() {
            return Err(load_err("no such file".to_owned()));
        }
        let inner = llama_cpp_2::model::LlamaModel::load_from_file(backend()?, path, params)
            .map_err(|e| load_err(e.to_string()))?;
        Ok(LlamaModel { inner, path: path.to_path_buf() })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logits per position.
    pub fn n_vocab(&self) -> usize {
        usize::try_from(self.inner.n_vocab()).unwrap_or(0)
    }

    /// The context the model was trained for.
    pub fn n_ctx_train(&self) -> usize {
        self.inner.n_ctx_train() as usize
    }

    /// Elements in all tensors.
    pub fn n_params(&self) -> u64 {
        self.inner.n_params()
    }

    /// Bytes of all tensors.
    pub fn size(&self) -> u64 {
        self.inner.size()
    }

    /// Every metadata key llama.cpp read from the file, in its order, with the value as
    /// llama.cpp renders it to a string (`None` where it does not).
    pub fn metadata(&self) -> Result<Vec<(String, Option<String>)>, LlamaError> {
        (0..self.inner.meta_count())
            .map(|i| {
                let key = self.inner.meta_key_by_index(i).map_err(|e| LlamaError::call("reading metadata", e))?;
                let value = self.inner.meta_val_str(&key).ok();
                Ok((key, value))
            })
            .collect()
    }

    /// The vocabulary.
    pub fn vocab(&self) -> LlamaVocab<'_> {
        LlamaVocab::new(self.inner.vocab())
    }

    /// `text` as llama.cpp tokenizes it, with BOS if `add_special` and the vocabulary adds
    /// it; special tokens are not parsed.
    pub fn tokenize(&self, text: &str, add_special: bool) -> Result<Vec<u32>, LlamaError> {
        self.vocab().tokenize(text.as_bytes(), add_special, false)
    }

    /// A runner over a new context sized by `opts`.
    pub fn runner(&self, opts: &RunnerOptions) -> Result<LlamaRunner<'_>, RunnerError> {
        LlamaRunner::new(self, opts)
    }
}
