//! Text generation: a loaded model with its tokenizer and chat template ([`Engine`], shared
//! across threads), and one [`Session`] per conversation with its own KV cache.
//!
//! A session keeps the tokens its cache holds. Asking it to continue from a new token list
//! reuses the longest common prefix (a chat turn re-evaluates only the new messages), checks
//! the context, and runs the rest as prompt batches; generation then samples one token at a
//! time and streams text through a callback, holding back text that may begin a stop string
//! and UTF-8 split across tokens.
//!
//! ```no_run
//! use pupil::generate::{Engine, GenerateParams, SessionOptions};
//! use std::sync::Arc;
//! # fn main() -> Result<(), pupil::generate::GenerateError> {
//! let engine = Arc::new(Engine::load("models/gemma-3-270m-q4_k_m.gguf")?);
//! let mut session = engine.session(SessionOptions::default());
//! let prompt = engine.tokenizer().encode("The capital of France is", true, false);
//! let done = session.generate(&prompt, &GenerateParams::greedy(16), |piece| {
//!     print!("{piece}");
//!     true // keep going
//! })?;
//! eprintln!("\n{:.1} tok/s", done.timings.gen_tok_s());
//! # Ok(()) }
//! ```

mod speculative;
pub mod speedup;

use std::sync::Arc;

pub use crate::engine::{Engine, EngineError};
use crate::model::{Context, ContextParams, KvType, Logits, ModelError, Slot};
pub use crate::request::{Completion, GenerateParams, StopMatcher, StopReason, StopScan, Timings};
use crate::error::ErrorKind;
use crate::request::Request;
use crate::sample::{Sampler, SamplerError};
pub use speculative::{SpeculativeCompletion, SpeculativeError, SpeculativeSession, SpeculativeStats, Verdict, verify_draft};

/// Why generation could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    /// Running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The engine could not load, or could not render the conversation.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The prompt does not fit the context.
    #[error("the prompt is {n_prompt} tokens, {} more than the context of {n_ctx}", n_prompt - n_ctx)]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// An empty prompt gives nothing to continue from.
    #[error("the prompt is empty (and the model adds no BOS token)")]
    EmptyPrompt,
    /// A sampling setting is out of range.
    #[error(transparent)]
    Sampler(#[from] SamplerError),
}

impl GenerateError {
    /// Whose fault it is (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            GenerateError::Model(e) => e.kind(),
            GenerateError::Engine(e) => e.kind(),
            GenerateError::EmptyPrompt | GenerateError::Sampler(_) => ErrorKind::BadInput,
            GenerateError::PromptTooLong { .. } => ErrorKind::TooLong,
        }
    }
}

impl Engine {
    /// A new conversation.
    pub fn session(self: &Arc<Self>, opts: SessionOptions) -> Session {
        Session::new(Arc::clone(self), opts)
    }
}

/// How a session's buffers are sized.
#[derive(Clone, Debug)]
pub struct SessionOptions {
    /// Context length: the model's training context capped by this (`None`: the model's).
    pub n_ctx: Option<usize>,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Most prompt tokens run in one forward pass.
    pub n_batch: usize,
}

impl Default for SessionOptions {
    /// 4096 positions of f16 cache (llama.cpp's defaults), prompts in batches of 512.
    fn default() -> Self {
        Self { n_ctx: Some(4096), kv_type: KvType::F16, n_batch: 512 }
    }
}

/// One conversation: a KV cache slot and the tokens in it.
#[derive(Debug)]
pub struct Session {
    engine: Arc<Engine>,
    /// One slot, on the engine's threads.
    ctx: Context<Arc<Engine>>,
    slot: Slot,
    n_batch: usize,
    /// Logits after the last evaluated token, `[n_vocab]`.
    logits: Vec<f32>,
    /// The tokens whose keys and values the cache holds, in order.
    tokens: Vec<u32>,
}

impl Session {
    /// A new, empty conversation over `engine`.
    pub fn new(engine: Arc<Engine>, opts: SessionOptions) -> Session {
        let logits = vec![0.0; engine.model().config().n_vocab];
        let n_batch = opts.n_batch.max(1);
        let params = ContextParams { n_ctx: opts.n_ctx, n_slots: 1, max_batch: n_batch, max_logits: 0, kv_type: opts.kv_type };
        // One slot and a batch of at least one token: the sizes a context refuses cannot occur.
        let mut ctx = Context::new(Arc::clone(&engine), &params, engine.threads().clone()).expect("one slot, a batch of 1+");
        let slot = ctx.acquire().expect("a new context has a free slot");
        let n_batch = ctx.max_batch();
        Session { engine, ctx, slot, n_batch, logits, tokens: Vec::new() }
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Context length in tokens.
    pub fn n_ctx(&self) -> usize {
        self.ctx.n_ctx()
    }

    /// The tokens the cache holds.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The logits after the last evaluated token, `[n_vocab]` (what the next token is sampled
    /// from).
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// Forget everything.
    pub fn reset(&mut self) {
        // Truncating the session's own slot to 0 always succeeds.
        let _ = self.ctx.truncate(self.slot, 0);
        self.tokens.clear();
    }

    /// Make the cache hold exactly `tokens`, reusing the longest common prefix, and return
    /// the logits after the last one. Returns the number of tokens evaluated.
    pub fn set_tokens(&mut self, tokens: &[u32]) -> Result<usize, GenerateError> {
        if tokens.is_empty() {
            return Err(GenerateError::EmptyPrompt);
        }
        if tokens.len() > self.n_ctx() {
            return Err(GenerateError::PromptTooLong { n_prompt: tokens.len(), n_ctx: self.n_ctx() });
        }
        // Keep the common prefix, but always evaluate at least the last token for its logits.
        let mut common = self.tokens.iter().zip(tokens).take_while(|(a, b)| a == b).count().min(tokens.len() - 1);
        if common < self.ctx.min_prefix(self.slot)? {
            // The sliding-window layers no longer hold the window of the first new token.
            common = 0;
        }
        self.ctx.truncate(self.slot, common)?;
        self.tokens.truncate(common);
        let rest = &tokens[common..];
        for chunk in rest.chunks(self.n_batch) {
            self.eval(chunk)?;
        }
        Ok(rest.len())
    }

    /// Run `tokens` after what the cache holds; keep the logits of the last.
    fn eval(&mut self, tokens: &[u32]) -> Result<(), GenerateError> {
        self.ctx.push(self.slot, tokens, Logits::Last)?;
        self.ctx.forward_into(&mut self.logits)?;
        self.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// Continue from `prompt` (the whole conversation's tokens: a shared prefix with what the
    /// cache holds is reused), generating and streaming text to `on_text` until a stop
    /// condition. `on_text` returns `false` to stop early.
    pub fn generate(&mut self, prompt: &[u32], params: &GenerateParams, on_text: impl FnMut(&str) -> bool) -> Result<Completion, GenerateError> {
        params.sampler.validate()?;
        let engine = Arc::clone(&self.engine);
        let mut out = Streamed::new(Request::new(engine.tokenizer(), params), on_text);
        out.req.prompt_done(self.set_tokens(prompt)?);
        let mut sampler = Sampler::new(params.sampler.clone(), self.logits.len());
        for &t in prompt {
            sampler.accept(t);
        }
        let reason = loop {
            if let Some(r) = out.req.limit_reached() {
                break r;
            }
            let t = sampler.sample(&self.logits);
            sampler.accept(t);
            if let Some(r) = out.push(t) {
                break r;
            }
            if self.tokens.len() >= self.n_ctx() {
                break StopReason::ContextFull;
            }
            self.eval(&[t])?;
        };
        Ok(out.finish(reason))
    }
}

/// A [`Request`] whose released text goes to a callback: the blocking API of
/// [`Session::generate`] and speculative decoding.
struct Streamed<'t, F> {
    req: Request<'t>,
    on_text: F,
    /// Text released by the last token, `[bytes]`, reused.
    text: String,
}

impl<'t, F: FnMut(&str) -> bool> Streamed<'t, F> {
    fn new(req: Request<'t>, on_text: F) -> Self {
        Streamed { req, on_text, text: String::new() }
    }

    /// Takes one generated token; `Some` if generation ends with it, or if the callback
    /// refused its text ([`StopReason::Cancelled`]).
    fn push(&mut self, token: u32) -> Option<StopReason> {
        self.text.clear();
        let stop = self.req.push(token, &mut self.text);
        let go = self.text.is_empty() || (self.on_text)(&self.text);
        stop.or((!go).then_some(StopReason::Cancelled))
    }

    fn finish(mut self, reason: StopReason) -> Completion {
        self.text.clear();
        let done = self.req.finish(reason, &mut self.text);
        if !self.text.is_empty() {
            (self.on_text)(&self.text);
        }
        done
    }
}
