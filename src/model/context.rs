//! [`Context`]: the execution state of a model (KV cache with slots, scratch, batch, logits,
//! threads); its documentation is on the type.

use std::borrow::Borrow;
use std::ops::Range;
use std::sync::Arc;

use super::{Batch, KvCache, KvType, Model, ModelError, Scratch, Threads};

/// How a [`Context`] is sized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextParams {
    /// Positions per slot: the model's training context, capped by this if given.
    pub n_ctx: Option<usize>,
    /// Sequence slots.
    pub n_slots: usize,
    /// Most tokens in one forward pass (all slots together). Sliding-window layers keep
    /// `window + max_batch` rows per slot (rounded up to 64).
    pub max_batch: usize,
    /// Most logits rows one forward pass returns in the context's own buffer (`[max_logits,
    /// n_vocab]` floats; [`Context::forward_into`] writes to the caller's instead).
    pub max_logits: usize,
    /// KV cache element type.
    pub kv_type: KvType,
}

impl Default for ContextParams {
    /// One slot of 4096 positions of f16 cache, batches of 512, one row of logits
    /// (llama.cpp's defaults).
    fn default() -> Self {
        ContextParams { n_ctx: Some(4096), n_slots: 1, max_batch: 512, max_logits: 1, kv_type: KvType::F16 }
    }
}

/// A sequence slot of a [`Context`], valid from [`Context::acquire`] until
/// [`Context::release`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    index: u32,
    generation: u32,
}

impl Slot {
    /// The slot's index: `0..n_slots`, and its sequence id in the batch.
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// Which logits of a run of tokens are wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logits {
    /// None (a prompt chunk that is not the last).
    None,
    /// The last token's (the end of a prompt; a decode step).
    Last,
    /// Every token's (teacher-forced scoring; checking draft tokens).
    All,
    /// The tokens at these indices of the run.
    Range(Range<usize>),
}

impl Logits {
    fn wants(&self, i: usize, n: usize) -> bool {
        match self {
            Logits::None => false,
            Logits::Last => i + 1 == n,
            Logits::All => true,
            Logits::Range(r) => r.contains(&i),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct SlotState {
    in_use: bool,
    generation: u32,
    /// Tokens of the pending batch for this slot.
    queued: usize,
}

/// Everything a model needs to run sequences besides its weights — the KV cache
/// with a table of sequence slots, the scratch buffers, the pending batch, the logits, and
/// the thread pool — sized once, so that running it allocates nothing.
///
/// Every use of a model drives one: a chat session holds one slot, speculative decoding one
/// per model, `compare` and `bench` one each, and a server one with a slot per concurrent
/// request, stepping them together: each step it queues the decode token of every running
/// slot and a chunk of a waiting prompt ([`Context::push`]), then runs them as one batch
/// ([`Context::forward`]). A slot's tokens take the positions after what it holds, and its
/// logits do not depend on what else is in the batch.
///
/// Slots are [acquired](Context::acquire) and [released](Context::release); an id names its
/// slot until it is released, so a stale id is an error, not another request's tokens. A
/// slot can be [truncated](Context::truncate) (rejected draft tokens) or start as a copy of
/// another's prefix ([`Context::copy_prefix`]: a system prompt computed once for many
/// requests).
///
/// ```no_run
/// use pupil::model::{self, Context, ContextParams, Logits, Threads};
/// use std::sync::Arc;
/// # fn main() -> Result<(), pupil::model::ModelError> {
/// let model = Arc::new(model::load("models/gemma-3-270m-q4_k_m.gguf")?);
/// let params = ContextParams { n_slots: 2, max_logits: 2, ..ContextParams::default() };
/// let mut ctx = Context::new(model, &params, Threads::new(2)?)?;
/// let system = ctx.acquire()?;
/// ctx.push(system, &[2, 651, 6037], Logits::None)?; // a shared prefix, computed once
/// ctx.forward()?;
/// let user = ctx.acquire()?;
/// ctx.copy_prefix(system, user, 3)?;
/// let a = ctx.push(system, &[529], Logits::Last)?; // two sequences in one batch
/// let b = ctx.push(user, &[7001], Logits::Last)?;
/// let logits = ctx.forward()?; // [2, n_vocab]: rows `a` and `b`
/// # let _ = (a, b, logits);
/// # Ok(()) }
/// ```
///
/// `M` is how it holds the model: `Arc<Model>` (the default), `&Model`, ...
#[derive(Debug)]
pub struct Context<M: Borrow<Model> = Arc<Model>> {
    model: M,
    threads: Threads,
    cache: KvCache,
    scratch: Scratch,
    /// The pending batch; sequence ids are slot indices.
    batch: Batch, // [≤ max_batch]
    slots: Vec<SlotState>, // [n_slots]
    /// Logits rows the pending batch will write.
    wanted: usize,
    logits: Vec<f32>, // [max_logits, n_vocab]
    /// Rows of `logits` the last forward pass wrote.
    n_out: usize,
    max_logits: usize,
}

impl<M: Borrow<Model>> Context<M> {
    /// A context for `model` sized by `params`, running on `threads`.
    pub fn new(model: M, params: &ContextParams, threads: Threads) -> Result<Self, ModelError> {
        if params.n_slots == 0 || params.n_slots > u32::MAX as usize {
            return Err(ModelError::ContextSize { what: "n_slots must be at least 1" });
        }
        if params.max_batch == 0 {
            return Err(ModelError::ContextSize { what: "max_batch must be at least 1" });
        }
        let m: &Model = model.borrow();
        let cfg = m.config();
        let n_ctx = params.n_ctx.map_or(cfg.n_ctx_train, |c| c.min(cfg.n_ctx_train)).max(1);
        let max_batch = params.max_batch.min(n_ctx);
        let cache = KvCache::windowed(cfg, n_ctx, params.n_slots, max_batch, params.kv_type);
        // Sizing the scratch converts a buffer with parallel loops: inside the pool, so that
        // rayon's global pool is never started.
        let scratch = threads.install(|| Scratch::for_threads(cfg, max_batch, &cache, threads.count()));
        Ok(Context {
            logits: vec![0.0; params.max_logits * cfg.n_vocab],
            max_logits: params.max_logits,
            model,
            threads,
            cache,
            scratch,
            batch: Batch::with_capacity(max_batch),
            slots: vec![SlotState::default(); params.n_slots],
            wanted: 0,
            n_out: 0,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        self.model.borrow()
    }

    /// The thread pool forward passes run on.
    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// Positions per slot.
    pub fn n_ctx(&self) -> usize {
        self.cache.n_ctx()
    }

    /// Sequence slots.
    pub fn n_slots(&self) -> usize {
        self.slots.len()
    }

    /// Most tokens in one forward pass.
    pub fn max_batch(&self) -> usize {
        self.scratch.max_batch()
    }

    /// Most logits rows [`forward`](Self::forward) returns.
    pub fn max_logits(&self) -> usize {
        self.max_logits
    }

    /// The KV cache (read-only: sizes, lengths, bytes).
    pub fn cache(&self) -> &KvCache {
        &self.cache
    }

    // ---- the slot table -------------------------------------------------------------------

    /// Takes the lowest free slot, empty.
    pub fn acquire(&mut self) -> Result<Slot, ModelError> {
        let n_slots = self.slots.len();
        let index = self.slots.iter().position(|s| !s.in_use).ok_or(ModelError::NoFreeSlot { n_slots })?;
        let s = &mut self.slots[index];
        s.in_use = true;
        s.queued = 0;
        self.cache.clear(index);
        Ok(Slot { index: index as u32, generation: s.generation })
    }

    /// Gives `slot` back: its id is stale from now on. Fails while tokens are queued for it.
    pub fn release(&mut self, slot: Slot) -> Result<(), ModelError> {
        let i = self.idle(slot)?;
        let s = &mut self.slots[i];
        s.in_use = false;
        s.generation = s.generation.wrapping_add(1);
        self.cache.clear(i);
        Ok(())
    }

    /// Slots in use.
    pub fn n_acquired(&self) -> usize {
        self.slots.iter().filter(|s| s.in_use).count()
    }

    /// Positions `slot` holds (not counting queued tokens): the position its next token takes.
    pub fn len(&self, slot: Slot) -> Result<usize, ModelError> {
        Ok(self.cache.len(self.check(slot)?))
    }

    /// The shortest length `slot` can be truncated to, or copied at, besides 0: its
    /// sliding-window layers keep only the last window (and a batch) of positions.
    pub fn min_prefix(&self, slot: Slot) -> Result<usize, ModelError> {
        Ok(self.cache.min_prefix(self.check(slot)?))
    }

    /// Forgets the positions of `slot` from `len` on; a longer `len` changes nothing. Fails,
    /// changing nothing, below [`min_prefix`](Self::min_prefix) (other than 0), or while
    /// tokens are queued for the slot (their positions were fixed when queued).
    pub fn truncate(&mut self, slot: Slot, len: usize) -> Result<(), ModelError> {
        let i = self.idle(slot)?;
        self.cache.truncate(i, len)
    }

    /// Makes `dst` hold the first `n` positions of `src` (see [`KvCache::copy_prefix`]):
    /// continuing `dst` then gives the logits continuing `src` would. Fails while tokens are
    /// queued for `dst`.
    pub fn copy_prefix(&mut self, src: Slot, dst: Slot, n: usize) -> Result<(), ModelError> {
        let (s, d) = (self.check(src)?, self.idle(dst)?);
        self.cache.copy_prefix(s, d, n)
    }

    /// Bytes of the KV cache, all slots.
    pub fn kv_bytes(&self) -> usize {
        self.cache.bytes()
    }

    /// Bytes of the KV cache each slot owns.
    pub fn kv_bytes_per_slot(&self) -> usize {
        self.cache.bytes_per_seq()
    }

    /// Bytes of the KV cache holding `slot`'s positions now.
    pub fn kv_bytes_used(&self, slot: Slot) -> Result<usize, ModelError> {
        Ok(self.cache.bytes_used(self.check(slot)?))
    }

    /// [`Self::check`], and that no token is queued for the slot.
    fn idle(&self, slot: Slot) -> Result<usize, ModelError> {
        let i = self.check(slot)?;
        if self.slots[i].queued > 0 {
            return Err(ModelError::SlotBusy { index: i });
        }
        Ok(i)
    }

    fn check(&self, slot: Slot) -> Result<usize, ModelError> {
        let i = slot.index();
        match self.slots.get(i) {
            Some(s) if s.in_use && s.generation == slot.generation => Ok(i),
            _ => Err(ModelError::StaleSlot { index: i }),
        }
    }

    // ---- batches --------------------------------------------------------------------------

    /// Queues `tokens` for `slot`, at the positions after what it holds and what is already
    /// queued for it. Returns the rows of the next forward pass's logits that will hold the
    /// wanted ones (rows are in queue order). Fails, queuing nothing, if the batch would
    /// outgrow the context, or the slot's context is full.
    pub fn push(&mut self, slot: Slot, tokens: &[u32], want: Logits) -> Result<Range<usize>, ModelError> {
        let i = self.check(slot)?;
        let n = tokens.len();
        let max = self.scratch.max_batch();
        if self.batch.len() + n > max {
            return Err(ModelError::BatchTooLarge { n: self.batch.len() + n, max });
        }
        let wanted = (0..n).filter(|&j| want.wants(j, n)).count();
        let start = self.cache.len(i) + self.slots[i].queued;
        if start + n > self.cache.n_ctx() {
            let pos = u32::try_from(start.max(self.cache.n_ctx())).unwrap_or(u32::MAX);
            return Err(ModelError::ContextFull { seq: i, pos, n_ctx: self.cache.n_ctx() });
        }
        for (j, &t) in tokens.iter().enumerate() {
            self.batch.push(t, (start + j) as u32, i, want.wants(j, n));
        }
        self.slots[i].queued += n;
        let rows = self.wanted..self.wanted + wanted;
        self.wanted += wanted;
        Ok(rows)
    }

    /// The queued tokens.
    pub fn batch(&self) -> &Batch {
        &self.batch
    }

    /// Drops the queued tokens.
    pub fn clear_batch(&mut self) {
        self.batch.clear();
        self.slots.iter_mut().for_each(|s| s.queued = 0);
        self.wanted = 0;
    }

    /// Runs the queued tokens as one batch on the context's threads and returns the logits
    /// of the wanted ones, `[rows, n_vocab]` in queue order (also [`logits`](Self::logits)
    /// until the next pass). The queue is empty afterwards, whether the pass ran or not; on
    /// error the cache is as it was.
    ///
    /// Fails if more rows are wanted than [`max_logits`](Self::max_logits).
    ///
    /// Called from outside the pool, the pass is handed to it through rayon's injector
    /// queue, which allocates a small block (1.5 KiB) every 63 passes; a loop that runs
    /// inside the pool (`ctx.threads().install(|| ...)`, as a server's engine thread can)
    /// allocates nothing at all.
    pub fn forward(&mut self) -> Result<&[f32], ModelError> {
        let rows = self.wanted;
        let n = rows * self.model.borrow().config().n_vocab;
        self.n_out = 0;
        let r = if rows > self.max_logits {
            Err(ModelError::TooManyLogits { n: rows, max: self.max_logits })
        } else {
            let Context { model, threads, cache, scratch, batch, logits, slots, .. } = self;
            run(<M as Borrow<Model>>::borrow(model), threads, cache, scratch, batch, &mut logits[..n], slots)
        };
        self.clear_batch();
        r?;
        self.n_out = rows;
        Ok(&self.logits[..n])
    }

    /// [`forward`](Self::forward) writing the logits to `out` (exactly `[rows, n_vocab]`)
    /// instead of the context's own buffer, which [`max_logits`](Self::max_logits) does not
    /// then bound: for callers that keep many rows (scoring a text, checking drafts).
    pub fn forward_into(&mut self, out: &mut [f32]) -> Result<(), ModelError> {
        self.n_out = 0;
        let Context { model, threads, cache, scratch, batch, slots, .. } = self;
        let r = run(<M as Borrow<Model>>::borrow(model), threads, cache, scratch, batch, out, slots);
        self.clear_batch();
        r
    }

    /// The logits of the last [`forward`](Self::forward), `[rows, n_vocab]`.
    pub fn logits(&self) -> &[f32] {
        &self.logits[..self.n_out * self.model.borrow().config().n_vocab]
    }

    /// Row `i` of [`logits`](Self::logits), `[n_vocab]`.
    pub fn logits_row(&self, i: usize) -> Option<&[f32]> {
        let nv = self.model.borrow().config().n_vocab;
        (i < self.n_out).then(|| &self.logits[i * nv..][..nv])
    }
}

/// One forward pass of `batch` inside `threads`' pool, after checking that every token's
/// slot is still acquired.
fn run(
    model: &Model,
    threads: &Threads,
    cache: &mut KvCache,
    scratch: &mut Scratch,
    batch: &Batch,
    logits: &mut [f32],
    slots: &[SlotState],
) -> Result<(), ModelError> {
    if let Some(&seq) = batch.seqs().iter().find(|&&s| !slots[s].in_use) {
        return Err(ModelError::StaleSlot { index: seq });
    }
    threads.install(|| model.run(batch, cache, scratch, logits))
}
