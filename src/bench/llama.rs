//! [`LlamaRunner`]: llama.cpp (through `llama-cpp-2`) under the same two tests, configured
//! for speed as `llama-bench` configures it, and [`native_check`]: whether that llama.cpp was
//! compiled for this CPU.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::token::LlamaToken;
use serde::Serialize;

use super::{BenchError, Runner};

fn llama_err(what: &'static str, e: impl std::fmt::Display) -> BenchError {
    BenchError::Llama { what, message: e.to_string() }
}

/// llama.cpp's backend, initialised once per process with its logging silenced.
pub fn backend() -> Result<&'static LlamaBackend, BenchError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    let mut b = LlamaBackend::init().map_err(|e| llama_err("initialising the backend", e))?;
    b.void_logs();
    Ok(BACKEND.get_or_init(|| b))
}

/// Loads `path` with llama.cpp (memory-mapped, as pupil maps it).
pub fn load(path: &Path) -> Result<LlamaModel, BenchError> {
    LlamaModel::load_from_file(backend()?, path, &LlamaModelParams::default())
        .map_err(|e| llama_err("loading the model", e))
}

/// A context for one sequence of up to `n_ctx` positions, run in batches of up to `n_batch`
/// tokens as one micro-batch (`n_ubatch = n_batch`), on `threads` threads for batches and
/// single tokens alike; the rest at llama.cpp's defaults.
pub fn context_params(n_ctx: u32, n_batch: u32, threads: i32) -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch(n_batch)
        .with_n_ubatch(n_batch)
        .with_n_seq_max(1)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
}

/// A llama.cpp context and batch sized once for the tests.
pub struct LlamaRunner<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
}

impl std::fmt::Debug for LlamaRunner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlamaRunner").finish_non_exhaustive()
    }
}

impl<'m> LlamaRunner<'m> {
    /// A context for prompts of up to `n_prompt` tokens and `n_gen` decode steps on `threads`
    /// threads. As `llama-bench`: the whole prompt in one micro-batch (`n_batch = n_ubatch >=
    /// n_prompt`), `n_threads = n_threads_batch = threads`, f16 KV cache, flash attention at
    /// llama.cpp's default (automatic).
    pub fn new(
        model: &'m LlamaModel,
        threads: usize,
        n_prompt: usize,
        n_gen: usize,
    ) -> Result<LlamaRunner<'m>, BenchError> {
        let n_batch = n_prompt.max(1);
        let n_ctx = (n_prompt + n_gen).max(1);
        let to_u32 = |n: usize| {
            u32::try_from(n).map_err(|_| BenchError::ContextTooLong { tokens: n, n_ctx_train: u32::MAX as usize })
        };
        let threads = i32::try_from(threads).unwrap_or(i32::MAX);
        let params = context_params(to_u32(n_ctx)?, to_u32(n_batch)?, threads);
        let ctx = model.new_context(backend()?, params).map_err(|e| llama_err("creating a context", e))?;
        Ok(LlamaRunner { ctx, batch: LlamaBatch::new(n_batch, 1) })
    }

    fn decode(&mut self) -> Result<(), BenchError> {
        self.ctx.decode(&mut self.batch).map_err(|e| llama_err("decoding", e))?;
        // The CPU backend computes in `decode`; a device backend may still be running.
        self.ctx.synchronize();
        Ok(())
    }
}

fn token(t: u32) -> LlamaToken {
    LlamaToken::new(t as i32)
}

impl Runner for LlamaRunner<'_> {
    fn name(&self) -> &'static str {
        "llama.cpp"
    }

    fn prompt(&mut self, tokens: &[u32]) -> Result<Duration, BenchError> {
        self.ctx.clear_kv_cache();
        self.batch.clear();
        for (i, &t) in tokens.iter().enumerate() {
            self.batch
                .add(token(t), i as i32, &[0], i + 1 == tokens.len())
                .map_err(|e| llama_err("filling a batch", e))?;
        }
        let start = Instant::now();
        self.decode()?;
        Ok(start.elapsed())
    }

    fn generate(&mut self, tokens: &[u32]) -> Result<Duration, BenchError> {
        self.ctx.clear_kv_cache();
        let start = Instant::now();
        for (pos, &t) in tokens.iter().enumerate() {
            self.batch.clear();
            self.batch.add(token(t), pos as i32, &[0], true).map_err(|e| llama_err("filling a batch", e))?;
            self.decode()?;
        }
        Ok(start.elapsed())
    }
}

/// Whether the llama.cpp linked in was compiled for the best vector ISA of this CPU.
///
/// `llama-cpp-sys-2` compiles ggml for the target features rustc is given: a default build
/// gets x86-64's baseline (SSE2), and only `-C target-cpu=native` (or explicit
/// `target-feature`s) gets AVX2 or AVX-512. ggml picks its kernels at compile time, so such a
/// build runs far below what the CPU can do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NativeCheck {
    /// Whether ggml has the host's best ISA among AVX2 and AVX-512 (`true` off x86-64, where
    /// this is not checked).
    pub native: bool,
    /// The host's best ISA: `AVX512`, `AVX2` or `none`.
    pub host_best: &'static str,
    /// The best of them ggml was compiled with.
    pub ggml_best: &'static str,
    /// `llama_print_system_info()` as llama.cpp prints it.
    pub system_info: String,
}

/// `llama_print_system_info()`, after the CPU backend is registered.
fn system_info() -> Result<String, BenchError> {
    backend()?; // registers the CPU backend, whose features the string lists
    Ok(pupil_kernels::ggml::system_info())
}

/// Whether `flag` (`AVX2`, `AVX512`) is listed as `= 1` in a system-info string.
fn has_flag(info: &str, flag: &str) -> bool {
    info.split('|').filter_map(|kv| kv.split_once('=')).any(|(k, v)| {
        let k = k.rsplit(':').next().unwrap_or(k).trim();
        k == flag && v.trim() == "1"
    })
}

fn host_best() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some("AVX512");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some("AVX2");
        }
        Some("none")
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Compares the ISA ggml was compiled with against the host's.
pub fn native_check() -> Result<NativeCheck, BenchError> {
    let system_info = system_info()?;
    let ggml_best = ["AVX512", "AVX2"].into_iter().find(|f| has_flag(&system_info, f)).unwrap_or("none");
    let (native, host_best) = match host_best() {
        Some(h) => (h == "none" || has_flag(&system_info, h), h),
        None => (true, "unknown"),
    };
    Ok(NativeCheck { native, host_best, ggml_best, system_info })
}

#[cfg(test)]
mod tests {
    use super::has_flag;

    #[test]
    fn flags_are_matched_whole() {
        let info = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_VNNI = 1 | AVX512 = 0 | LLAMAFILE = 1 | ";
        assert!(has_flag(info, "AVX2"));
        assert!(!has_flag(info, "AVX512"));
        assert!(has_flag(info, "SSE3"));
    }
}
