//! [`Tracer`]: llama.cpp's intermediate tensors, as its graph names them (`attn_norm-3`,
//! `ffn_out-3`, `l_out-3`, `result_output`), for comparing a forward pass op by op with
//! pupil's ([`crate::model::Model::forward_probed`]).
//!
//! `llama-cpp-2` does not reach the scheduler's evaluation callback, so this context is made
//! through the raw bindings; with [`sys.rs`](super::sys), the only `unsafe` of the llama.cpp
//! module.

use std::ffi::{CStr, CString, c_void};
use std::path::Path;

use llama_cpp_sys_2 as sys;

use super::{LlamaError, backend};

/// One tensor of a llama.cpp graph, copied out after it was computed.
#[derive(Clone, Debug)]
pub struct Probe {
    /// The graph's name for it: `NAME-LAYER` inside blocks.
    pub name: String,
    /// ggml's shape, innermost first (`[n_embd, n_tokens, 1, 1]` for a hidden state).
    pub ne: [usize; 4],
    /// The values, contiguous, in ggml's order.
    pub data: Vec<f32>,
}

/// What the callback collects into: every contiguous f32 tensor with a name.
struct Collector {
    probes: Vec<Probe>,
}

/// A llama.cpp model and a single-sequence context whose decode calls record every named f32
/// tensor the graph computes.
pub struct Tracer {
    model: *mut sys::llama_model,
    ctx: *mut sys::llama_context,
    collector: Box<Collector>,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

/// The scheduler's evaluation callback: asked about each node (`ask`), it wants the named
/// contiguous f32 ones; told one was computed, it copies it out. Always lets the graph go on.
unsafe extern "C" fn collect(t: *mut sys::ggml_tensor, ask: bool, user: *mut c_void) -> bool {
    // SAFETY: ggml passes a live tensor for the duration of the call; `name` is a
    // NUL-terminated array inside it.
    let (tensor, name) = unsafe { (&*t, CStr::from_ptr((*t).name.as_ptr())) };
    // SAFETY: as above.
    let wanted = tensor.type_ == sys::GGML_TYPE_F32 && !name.is_empty() && unsafe { sys::ggml_is_contiguous(t) };
    if ask || !wanted {
        return wanted || !ask;
    }
    let ne = tensor.ne.map(|n| usize::try_from(n).unwrap_or(0));
    let mut data = vec![0.0f32; ne.iter().product()];
    // SAFETY: `user` is the `Collector` the context was made with, boxed by the `Tracer`
    // that owns the context, and only the decoding thread (inside `llama_decode`, which
    // `Tracer::decode` holds `&mut self` across) calls back. The tensor is contiguous f32
    // with `data.len()` elements, so `ggml_nbytes` is `data.len() * 4`: the copy fits.
    unsafe {
        let c = &mut *user.cast::<Collector>();
        sys::ggml_backend_tensor_get(t, data.as_mut_ptr().cast(), 0, sys::ggml_nbytes(t).min(data.len() * 4));
        c.probes.push(Probe { name: name.to_string_lossy().into_owned(), ne, data });
    }
    true
}

impl Tracer {
    /// Loads `path` into a context of `n_ctx` positions (batches of up to `n_ctx`), f16
    /// cache, on `threads` threads, with flash attention or llama.cpp's plain attention graph.
    pub fn new(path: &Path, n_ctx: usize, threads: usize, flash_attention: bool) -> Result<Tracer, LlamaError> {
        backend()?;
        let err = |message: String| LlamaError::Call { what: "tracing", message };
        let cpath = CString::new(path.to_str().ok_or_else(|| err("the path is not UTF-8".into()))?)
            .map_err(|e| err(e.to_string()))?;
        // SAFETY: plain structs returned by value.
        let (mp, mut cp) = unsafe { (sys::llama_model_default_params(), sys::llama_context_default_params()) };
        // SAFETY: a NUL-terminated path and default parameters, read during the call only.
        let model = unsafe { sys::llama_model_load_from_file(cpath.as_ptr(), mp) };
        if model.is_null() {
            return Err(LlamaError::Load {
                path: path.to_path_buf(),
                message: "llama_model_load_from_file failed".into(),
            });
        }
        let mut collector = Box::new(Collector { probes: Vec::new() });
        let n = u32::try_from(n_ctx).unwrap_or(u32::MAX);
        (cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max) = (n, n, n, 1);
        let threads = i32::try_from(threads.max(1)).unwrap_or(1);
        (cp.n_threads, cp.n_threads_batch) = (threads, threads);
        cp.flash_attn_type =
            if flash_attention { sys::LLAMA_FLASH_ATTN_TYPE_ENABLED } else { sys::LLAMA_FLASH_ATTN_TYPE_DISABLED };
        cp.cb_eval = Some(collect);
        cp.cb_eval_user_data = std::ptr::from_mut::<Collector>(&mut collector).cast();
        // SAFETY: `model` is a live model; the callback's user data is the boxed collector,
        // which the returned Tracer owns and keeps at one address until after `llama_free`.
        let ctx = unsafe { sys::llama_init_from_model(model, cp) };
        if ctx.is_null() {
            // SAFETY: loaded above, used by nothing else.
            unsafe { sys::llama_model_free(model) };
            return Err(err("llama_init_from_model failed".into()));
        }
        Ok(Tracer { model, ctx, collector })
    }

    /// Decodes `tokens` after what the context holds (one batch, logits for the last) and
    /// returns every tensor the graph computed on the way, in the order they were computed.
    pub fn decode(&mut self, tokens: &[u32]) -> Result<Vec<Probe>, LlamaError> {
        let mut ids: Vec<i32> = tokens.iter().map(|&t| i32::try_from(t).unwrap_or(i32::MAX)).collect();
        let n = i32::try_from(ids.len())
            .map_err(|_| LlamaError::Call { what: "tracing", message: "batch too long".into() })?;
        self.collector.probes.clear();
        // SAFETY: `ids` outlives the call and holds `n` tokens; the batch only points at it.
        // The context is live, and `&mut self` keeps the collector to this thread.
        let rc = unsafe { sys::llama_decode(self.ctx, sys::llama_batch_get_one(ids.as_mut_ptr(), n)) };
        if rc != 0 {
            return Err(LlamaError::Call { what: "tracing", message: format!("llama_decode returned {rc}") });
        }
        Ok(std::mem::take(&mut self.collector.probes))
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        // SAFETY: both made in `new` and freed once, the context (which calls back into the
        // collector, still alive here) before its model.
        unsafe {
            sys::llama_free(self.ctx);
            sys::llama_model_free(self.model);
        }
    }
}
