//! The scheduler: one engine thread owns the model's [`Context`] (a KV slot per concurrent
//! request), the admission queue and every running request, and steps them together.
//!
//! Each step it takes new submissions, drops requests whose receiver went away (a client
//! that disconnected frees its slot at the next step), asks [`plan`](super::plan) what to
//! run, queues each running request's next token and the planned prompt chunks into one
//! batch, runs it on the context's own thread pool, samples every request that has logits
//! (in parallel), and sends each its text. Nothing here knows HTTP: a Rust program uses it
//! directly.
//!
//! A request's output does not depend on the others: each has its own sampler and seed, and
//! a row's logits do not depend on what else is in the batch.
//!
//! ```no_run
//! use pupil::engine::Engine;
//! use pupil::model::Threads;
//! use pupil::request::GenerateParams;
//! use pupil::serve::scheduler::{Event, Scheduler, SchedulerOptions, Submission};
//! use std::sync::Arc;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Arc::new(Engine::load("models/distill/student-q8_0.gguf")?);
//! let sched = Scheduler::start(Arc::clone(&engine), SchedulerOptions::default(), Threads::new(2)?)?;
//! let prompt = engine.tokenizer().encode("And God said", true, false);
//! for event in sched.submit(Submission::new(prompt, GenerateParams::greedy(16)))? {
//!     match event {
//!         Event::Text { text, .. } => print!("{text}"),
//!         Event::Done { stop, .. } => println!("\n({stop:?})"),
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::thread::JoinHandle;
use std::time::Instant;

use rayon::prelude::*;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::metrics::Metrics;
use super::plan::{self, Budget, FreeSlot};
use crate::engine::Engine;
use crate::model::{Context, ContextParams, KvType, Logits, ModelError, Slot, Threads};
use crate::request::{GenerateParams, Request, StopReason, Timings};
use crate::sample::Sampler;
use crate::tokenizer::Tokenizer;

/// How the scheduler is sized.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Requests running at once (KV cache slots).
    pub n_slots: usize,
    /// Positions per slot: the model's training context, capped by this.
    pub n_ctx: Option<usize>,
    /// Most tokens one step runs, decodes and prompt chunks together.
    pub step_tokens: usize,
    /// Most prompt tokens one step runs while any request is decoding (within
    /// `step_tokens`): how long a new prompt may hold up the running streams' next token,
    /// traded against throughput (see [`plan`]).
    pub prefill_while_decoding: usize,
    /// Most requests waiting for a slot; past it, [`Scheduler::submit`] refuses.
    pub max_queue: usize,
    /// KV cache element type.
    pub kv_type: KvType,
}

impl Default for SchedulerOptions {
    /// 4 slots of 4096 positions, steps of 512 tokens ([`PREFILL_WHILE_DECODING`] of them
    /// prompt tokens while requests decode), a queue of 64.
    fn default() -> Self {
        SchedulerOptions {
            n_slots: 4,
            n_ctx: Some(4096),
            step_tokens: 512,
            prefill_while_decoding: PREFILL_WHILE_DECODING,
            max_queue: 64,
            kv_type: KvType::F16,
        }
    }
}

/// The default of [`SchedulerOptions::prefill_while_decoding`]. Gemma 3 270M, 2 threads, 8
/// slots, 16 clients with 256-token prompts: against no cap (512), the same throughput
/// within 2% and the streams' inter-token p99 0.62x (479 against 770 ms); 128 cut it to
/// 300 ms for 9% less throughput, 64 to 198 ms for 16% less.
pub const PREFILL_WHILE_DECODING: usize = 256;

/// Most rows of prompt log-probabilities computed per step for one request (each row is a
/// whole vocabulary of logits).
const ECHO_ROWS_PER_STEP: usize = 32;

/// A request, tokenized.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The prompt's tokens (BOS included if wanted).
    pub prompt: Vec<u32>,
    /// Token limit, sampling, stop strings.
    pub params: GenerateParams,
    /// Keep going past end-of-generation tokens (they are never sampled).
    pub ignore_eos: bool,
    /// Report the log-probability of each generated token and this many alternatives.
    pub logprobs: Option<usize>,
    /// With `logprobs`, report the prompt's too ([`Event::Prompt`]).
    pub prompt_logprobs: bool,
}

impl Submission {
    /// A plain request.
    pub fn new(prompt: Vec<u32>, params: GenerateParams) -> Self {
        Submission { prompt, params, ignore_eos: false, logprobs: None, prompt_logprobs: false }
    }
}

/// A token with its log-probability and the most likely alternatives, `(id, logprob)`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprob {
    /// The token.
    pub id: u32,
    /// Its log-probability under the model (`None` for a prompt's first token).
    pub logprob: Option<f32>,
    /// The most likely tokens at this position, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// What a request hears from the scheduler, in order: maybe `Prompt`, any number of `Text`,
/// then `Done` or `Failed`.
#[derive(Clone, Debug)]
pub enum Event {
    /// The prompt's tokens with their log-probabilities (asked for with `prompt_logprobs`).
    Prompt {
        /// One per prompt token.
        tokens: Vec<TokenLogprob>,
    },
    /// Generated text released by one token (possibly empty: held back for a stop string or
    /// an unfinished character).
    Text {
        /// The text.
        text: String,
        /// The token, with log-probabilities if asked for.
        token: TokenLogprob,
    },
    /// The end.
    Done {
        /// Why.
        stop: StopReason,
        /// Text held back until the end (released now), if any.
        tail: String,
        /// Prompt tokens.
        prompt_tokens: usize,
        /// Generated tokens.
        completion_tokens: usize,
        /// Timings (prompt time counts from admission).
        timings: Timings,
    },
    /// The engine could not run the request.
    Failed {
        /// Why.
        message: String,
    },
}

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The queue is full: try again later.
    #[error("the server is busy: {waiting} requests are waiting (the most it queues)")]
    QueueFull {
        /// Requests waiting.
        waiting: usize,
    },
    /// The scheduler is shutting down and takes no new requests.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The prompt is empty.
    #[error("the prompt has no tokens")]
    EmptyPrompt,
    /// The prompt does not fit the context.
    #[error("the prompt is {n_prompt} tokens, more than the context of {n_ctx}")]
    PromptTooLong {
        /// Prompt tokens.
        n_prompt: usize,
        /// Positions per slot.
        n_ctx: usize,
    },
    /// A token id is not in the vocabulary.
    #[error("token id {token} is not in the vocabulary of {n_vocab}")]
    BadToken {
        /// The id.
        token: u32,
        /// Vocabulary size.
        n_vocab: usize,
    },
}

/// The events of one request: a blocking [`Iterator`] and an async [`futures_util::Stream`].
/// Dropping it cancels the request.
#[derive(Debug)]
pub struct Events {
    rx: UnboundedReceiver<Event>,
}

impl Iterator for Events {
    type Item = Event;
    /// Blocks for the next event (not to be called on an async runtime's thread).
    fn next(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
}

impl futures_util::Stream for Events {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Event>> {
        self.rx.poll_recv(cx)
    }
}

impl Events {
    /// The next event, awaited.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

enum Msg {
    Submit(Box<Submission>, UnboundedSender<Event>, Instant),
}

struct Shared {
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    /// Submitted and not yet admitted.
    queued: AtomicUsize,
    draining: AtomicBool,
    max_queue: usize,
    n_ctx: usize,
    n_vocab: usize,
    metrics: Metrics,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// A handle to the engine thread; clones share it.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").field("n_ctx", &self.shared.n_ctx).finish_non_exhaustive()
    }
}

impl Scheduler {
    /// Builds the context (all KV memory is allocated here) and starts the engine thread.
    pub fn start(engine: Arc<Engine>, opts: SchedulerOptions, threads: Threads) -> Result<Scheduler, ModelError> {
        let n_slots = opts.n_slots.max(1);
        let params = ContextParams {
            n_ctx: opts.n_ctx,
            n_slots,
            max_batch: opts.step_tokens.max(n_slots),
            max_logits: n_slots + ECHO_ROWS_PER_STEP,
            kv_type: opts.kv_type,
        };
        let mut ctx = Context::new(Arc::clone(&engine), &params, threads)?;
        let slots = (0..n_slots).map(|_| ctx.acquire()).collect::<Result<Vec<_>, _>>()?;
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            tx: Mutex::new(Some(tx)),
            queued: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            max_queue: opts.max_queue,
            n_ctx: ctx.n_ctx(),
            n_vocab: engine.model().config().n_vocab,
            metrics: Metrics::new(),
            thread: Mutex::new(None),
        });
        let budget = Budget { tokens: params.max_batch, prefill_while_decoding: opts.prefill_while_decoding };
        let worker = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("pupil-engine".into())
            .spawn(move || {
                let engine = engine;
                Loop::new(&engine, ctx, slots, budget, &worker).run(rx)
            })
            .map_err(|e| ModelError::Threads { n: 1, reason: e.to_string() })?;
        *shared.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        Ok(Scheduler { shared })
    }

    /// Queues a request; its events come through the returned [`Events`].
    pub fn submit(&self, sub: Submission) -> Result<Events, SubmitError> {
        let s = &self.shared;
        if sub.prompt.is_empty() {
            return Err(SubmitError::EmptyPrompt);
        }
        if let Some(&token) = sub.prompt.iter().find(|&&t| t as usize >= s.n_vocab) {
            return Err(SubmitError::BadToken { token, n_vocab: s.n_vocab });
        }
        if sub.prompt.len() > s.n_ctx {
            return Err(SubmitError::PromptTooLong { n_prompt: sub.prompt.len(), n_ctx: s.n_ctx });
        }
        if s.draining.load(Ordering::Acquire) {
            return Err(SubmitError::ShuttingDown);
        }
        // Reserve a place in the queue first, so concurrent submissions cannot overfill it.
        let waiting = s.queued.fetch_add(1, Ordering::AcqRel);
        if waiting >= s.max_queue {
            s.queued.fetch_sub(1, Ordering::AcqRel);
            s.metrics.requests_rejected.inc();
            return Err(SubmitError::QueueFull { waiting });
        }
        let (etx, erx) = unbounded_channel();
        let sent = s.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|tx| tx.send(Msg::Submit(Box::new(sub), etx, Instant::now())));
        if !matches!(sent, Some(Ok(()))) {
            s.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::ShuttingDown);
        }
        Ok(Events { rx: erx })
    }

    /// Positions per slot.
    pub fn n_ctx(&self) -> usize {
        self.shared.n_ctx
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Whether it is shutting down.
    pub fn is_draining(&self) -> bool {
        self.shared.draining.load(Ordering::Acquire)
    }

    /// Stops taking requests; those queued and running finish. [`join`](Self::join) waits.
    pub fn shutdown(&self) {
        self.shared.draining.store(true, Ordering::Release);
        self.shared.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Whether the engine thread has ended (after [`shutdown`](Self::shutdown), once every
    /// queued and running request finished).
    pub fn is_finished(&self) -> bool {
        self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()).as_ref().is_none_or(|h| h.is_finished())
    }

    /// Waits for the engine thread to finish (after [`shutdown`](Self::shutdown)).
    pub fn join(&self) {
        let handle = self.shared.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
    }
}

/// A request waiting for a slot.
struct Waiting {
    sub: Box<Submission>,
    tx: UnboundedSender<Event>,
    arrived: Instant,
}

/// A request holding a slot.
struct Live<'t> {
    slot: usize,
    sub: Box<Submission>,
    tx: UnboundedSender<Event>,
    arrived: Instant,
    /// Prompt tokens the slot holds (reused or computed).
    done: usize,
    req: Request<'t>,
    sampler: Sampler,
    /// The sampled token not yet run through the model.
    last: Option<u32>,
    /// Prompt log-probabilities gathered so far (with `prompt_logprobs`).
    prompt_lp: Vec<TokenLogprob>,
    /// Rows of this step's logits: the last is where to sample from once the prompt is done.
    rows: std::ops::Range<usize>,
    /// Prompt tokens queued this step.
    chunk: usize,
    last_token_at: Option<Instant>,
    /// Scratch for sampling with banned tokens, `[n_vocab]` (only with `ignore_eos`).
    masked: Vec<f32>,
    /// The outcome of this step's sampling.
    picked: Option<(u32, TokenLogprob)>,
}

/// What a slot holds.
struct SlotState {
    slot: Slot,
    /// Tokens whose keys and values the slot holds, in order.
    cached: Vec<u32>,
    busy: bool,
    last_used: u64,
}

struct Loop<'t> {
    tok: &'t Tokenizer,
    eog: Vec<u32>,
    ctx: Context<Arc<Engine>>,
    slots: Vec<SlotState>,
    budget: Budget,
    shared: &'t Shared,
    waiting: VecDeque<Waiting>,
    live: Vec<Live<'t>>,
    tick: u64,
}

impl<'t> Loop<'t> {
    fn new(engine: &'t Engine, ctx: Context<Arc<Engine>>, slots: Vec<Slot>, budget: Budget, shared: &'t Shared) -> Self {
        let tok = engine.tokenizer();
        let eog = (0..tok.n_vocab() as u32).filter(|&t| tok.is_eog(t)).collect();
        let slots = slots.into_iter().map(|slot| SlotState { slot, cached: Vec::new(), busy: false, last_used: 0 }).collect();
        Loop { tok, eog, ctx, slots, budget, shared, waiting: VecDeque::new(), live: Vec::new(), tick: 0 }
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let mut open = true;
        loop {
            // Take what has arrived; wait only when there is nothing to do.
            if self.live.is_empty() && self.waiting.is_empty() {
                if !open {
                    return;
                }
                match rx.recv() {
                    Ok(m) => self.take(m),
                    Err(_) => open = false,
                }
            }
            loop {
                match rx.try_recv() {
                    Ok(m) => self.take(m),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.drop_cancelled();
            if let Err(e) = self.step() {
                // A failed pass fails the requests in it, never the engine.
                tracing::error!("forward pass failed: {e}");
                self.ctx.clear_batch();
                for l in std::mem::take(&mut self.live) {
                    let _ = l.tx.send(Event::Failed { message: e.to_string() });
                    self.slots[l.slot].busy = false;
                    self.slots[l.slot].cached.clear();
                    let _ = self.ctx.truncate(self.slots[l.slot].slot, 0);
                }
            }
            self.update_gauges();
        }
    }

    fn take(&mut self, m: Msg) {
        let Msg::Submit(sub, tx, arrived) = m;
        self.waiting.push_back(Waiting { sub, tx, arrived });
    }

    fn update_gauges(&self) {
        let m = &self.shared.metrics;
        m.running.set(self.live.len() as i64);
        m.waiting.set(self.shared.queued.load(Ordering::Acquire) as i64);
        let used: usize = self.live.iter().filter_map(|l| self.ctx.kv_bytes_used(self.slots[l.slot].slot).ok()).sum();
        m.kv_usage.set(used as f64 / self.ctx.kv_bytes().max(1) as f64);
    }

    /// Requests whose receiver is gone leave now: their slots are free for this step.
    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|w| !w.tx.is_closed());
        self.shared.queued.fetch_sub(before - self.waiting.len(), Ordering::AcqRel);
        let mut i = 0;
        while i < self.live.len() {
            if self.live[i].tx.is_closed() {
                let l = self.live.swap_remove(i);
                self.release(l.slot);
                self.shared.metrics.requests_finished.inc();
            } else {
                i += 1;
            }
        }
    }

    fn release(&mut self, slot: usize) {
        self.tick += 1;
        let s = &mut self.slots[slot];
        s.busy = false;
        s.last_used = self.tick;
    }

    /// Prompt tokens of `prompt` that slot `k`'s cache can give back.
    fn reusable(&self, prompt: &[u32], k: usize) -> usize {
        let s = &self.slots[k];
        let common = s.cached.iter().zip(prompt).take_while(|(a, b)| a == b).count().min(prompt.len().saturating_sub(1));
        let min = self.ctx.min_prefix(s.slot).unwrap_or(usize::MAX);
        if common >= min { common } else { 0 }
    }

    fn step(&mut self) -> Result<(), ModelError> {
        let running: Vec<plan::Running> = self
            .live
            .iter()
            .map(|l| plan::Running { slot: l.slot, prompt_left: l.sub.prompt.len() - l.done })
            .collect();
        let waiting: Vec<plan::Waiting> = self.waiting.iter().map(|w| plan::Waiting { prompt_len: w.sub.prompt.len() }).collect();
        let free: Vec<FreeSlot> =
            self.slots.iter().enumerate().filter(|(_, s)| !s.busy).map(|(k, s)| FreeSlot { slot: k, last_used: s.last_used }).collect();
        let p = plan::plan(&running, &waiting, &free, self.budget, |w, k| self.reusable(&self.waiting[w].sub.prompt, k));
        // Prompt log-probabilities take a logits row per token: cap those chunks.
        let cap = |l: &Live<'_>, n: usize| if l.sub.prompt_logprobs { n.min(ECHO_ROWS_PER_STEP) } else { n };

        // Admit, in order: the plan's indices refer to the queue as it was.
        let mut moved: Vec<Option<Waiting>> = self.waiting.drain(..).map(Some).collect();
        for &plan::Admit { waiting: w, slot: k, reuse, chunk } in &p.admit {
            let Some(wt) = moved[w].take() else { continue };
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            let s = &mut self.slots[k];
            self.ctx.truncate(s.slot, reuse)?;
            s.cached.truncate(reuse);
            s.busy = true;
            self.shared.metrics.prefix_hit_tokens.inc_by(reuse as u64);
            let req = Request::starting_at(self.tok, &wt.sub.params, wt.arrived);
            let sampler = Sampler::new(wt.sub.params.sampler.clone(), self.ctx.model().config().n_vocab);
            let mut live = Live {
                slot: k,
                sub: wt.sub,
                tx: wt.tx,
                arrived: wt.arrived,
                done: reuse,
                req,
                sampler,
                last: None,
                prompt_lp: Vec::new(),
                rows: 0..0,
                chunk: 0,
                last_token_at: None,
                masked: Vec::new(),
                picked: None,
            };
            if live.sub.prompt_logprobs && reuse > 0 {
                // Every prompt position's logits are needed: compute the prompt again.
                self.ctx.truncate(self.slots[k].slot, 0)?;
                self.slots[k].cached.clear();
                live.done = 0;
            }
            live.chunk = cap(&live, chunk);
            for &t in &live.sub.prompt[..live.done] {
                live.sampler.accept(t);
            }
            self.live.push(live);
        }
        self.waiting.extend(moved.into_iter().flatten());

        // Queue decodes and prompt chunks (prefill entries refer to the running list).
        for &(i, n) in &p.prefill {
            self.live[i].chunk = cap(&self.live[i], n);
        }
        for &i in &p.decode {
            self.live[i].chunk = 0;
        }
        let decode: Vec<bool> = (0..self.live.len()).map(|i| p.decode.contains(&i)).collect();
        let mut any = false;
        for (i, l) in self.live.iter_mut().enumerate() {
            l.rows = 0..0;
            let slot = self.slots[l.slot].slot;
            if decode.get(i).copied().unwrap_or(false) {
                let Some(t) = l.last else { continue };
                if self.ctx.len(slot)? + 1 > self.ctx.n_ctx() {
                    continue; // finished below as ContextFull
                }
                l.rows = self.ctx.push(slot, &[t], Logits::Last)?;
                any = true;
            } else if l.chunk > 0 {
                let chunk = &l.sub.prompt[l.done..l.done + l.chunk];
                let last = l.done + l.chunk == l.sub.prompt.len();
                let want = if l.sub.prompt_logprobs { Logits::All } else if last { Logits::Last } else { Logits::None };
                l.rows = self.ctx.push(slot, chunk, want)?;
                any = true;
            }
        }
        // Sequences that can take no further token end now.
        let full: Vec<usize> = (0..self.live.len())
            .filter(|&i| decode.get(i).copied().unwrap_or(false) && self.live[i].rows.is_empty() && self.live[i].last.is_some())
            .collect();
        if !any {
            self.finish_many(full.into_iter().map(|i| (i, StopReason::ContextFull)).collect());
            return Ok(());
        }
        let n_vocab = self.ctx.model().config().n_vocab;
        let threads = self.ctx.threads().clone();
        let started = Instant::now();
        let logits = self.ctx.forward()?;
        self.shared.metrics.steps.inc();
        tracing::debug!(
            decode = p.decode.len(),
            prompt_tokens = self.live.iter().map(|l| l.chunk).sum::<usize>(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "step"
        );

        // Bookkeeping of what the pass computed, then sampling in parallel.
        let mut computed = 0;
        for l in self.live.iter_mut() {
            if l.rows.is_empty() && l.chunk == 0 {
                continue;
            }
            let s = &mut self.slots[l.slot];
            if l.chunk > 0 {
                let chunk = &l.sub.prompt[l.done..l.done + l.chunk];
                s.cached.extend_from_slice(chunk);
                if l.sub.prompt_logprobs {
                    for (j, row) in logits[l.rows.start * n_vocab..l.rows.end * n_vocab].chunks_exact(n_vocab).enumerate() {
                        let pos = l.done + j;
                        if l.prompt_lp.is_empty() {
                            l.prompt_lp.push(TokenLogprob { id: l.sub.prompt[0], logprob: None, top: Vec::new() });
                        }
                        if let Some(&next) = l.sub.prompt.get(pos + 1) {
                            l.prompt_lp.push(logprob_of(row, next, l.sub.logprobs.unwrap_or(0)));
                        }
                    }
                }
                computed += l.chunk;
                l.done += l.chunk;
                l.chunk = 0;
                if l.done == l.sub.prompt.len() {
                    l.req.prompt_done(l.done);
                    if l.sub.prompt_logprobs {
                        let _ = l.tx.send(Event::Prompt { tokens: std::mem::take(&mut l.prompt_lp) });
                    }
                } else {
                    l.rows = 0..0; // mid-prompt: nothing to sample
                }
            } else if let Some(t) = l.last.take() {
                s.cached.push(t);
            }
        }
        self.shared.metrics.prompt_tokens.inc_by(computed as u64);

        let eog = &self.eog;
        let sample = |l: &mut Live<'_>| {
            if l.rows.is_empty() || l.req.limit_reached().is_some() {
                return;
            }
            let row = &logits[(l.rows.end - 1) * n_vocab..l.rows.end * n_vocab];
            let banned: &[u32] = if l.sub.ignore_eos { eog } else { &[] };
            let t = l.sampler.sample_without(row, banned);
            l.sampler.accept(t);
            let lp = match l.sub.logprobs {
                // The log-probabilities of what was sampled from: the banned tokens at -inf.
                Some(n) if !banned.is_empty() => {
                    l.masked.clear();
                    l.masked.extend_from_slice(row);
                    for &b in banned {
                        l.masked[b as usize] = f32::NEG_INFINITY;
                    }
                    logprob_of(&l.masked, t, n)
                }
                Some(n) => logprob_of(row, t, n),
                None => TokenLogprob { id: t, logprob: None, top: Vec::new() },
            };
            l.picked = Some((t, lp));
        };
        threads.install(|| self.live.par_iter_mut().for_each(sample));

        // Stream the text; collect the requests that end.
        let mut ended = Vec::new();
        let now = Instant::now();
        for (i, l) in self.live.iter_mut().enumerate() {
            if let Some(r) = (l.done == l.sub.prompt.len() && !l.rows.is_empty()).then(|| l.req.limit_reached()).flatten() {
                ended.push((i, r));
                continue;
            }
            let Some((t, lp)) = l.picked.take() else { continue };
            let m = &self.shared.metrics;
            match l.last_token_at {
                None => m.ttft.observe(now.duration_since(l.arrived).as_secs_f64()),
                Some(prev) => m.tpot.observe(now.duration_since(prev).as_secs_f64()),
            }
            l.last_token_at = Some(now);
            m.generation_tokens.inc();
            let mut text = String::new();
            let stop = l.req.push(t, &mut text);
            let _ = l.tx.send(Event::Text { text, token: lp });
            match stop {
                Some(r) => ended.push((i, r)),
                None => l.last = Some(t),
            }
        }
        ended.extend(full.into_iter().map(|i| (i, StopReason::ContextFull)));
        self.finish_many(ended);
        Ok(())
    }

    /// Ends the requests at these indices of the running list.
    fn finish_many(&mut self, mut ended: Vec<(usize, StopReason)>) {
        ended.sort_by_key(|e| std::cmp::Reverse(e.0));
        ended.dedup_by_key(|e| e.0);
        for (i, reason) in ended {
            let l = self.live.swap_remove(i);
            let n_prompt = l.sub.prompt.len();
            let mut tail = String::new();
            let done = l.req.finish(reason, &mut tail);
            let _ = l.tx.send(Event::Done {
                stop: done.stop,
                tail,
                prompt_tokens: n_prompt,
                completion_tokens: done.tokens.len(),
                timings: done.timings,
            });
            self.release(l.slot);
            self.shared.metrics.requests_finished.inc();
        }
    }
}

/// `token`'s log-probability in `logits` and the `top` most likely tokens'.
fn logprob_of(logits: &[f32], token: u32, top: usize) -> TokenLogprob {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    let lse = max as f64 + sum.ln();
    let lp = |x: f32| (x as f64 - lse) as f32;
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        for (i, &x) in logits.iter().enumerate() {
            if best.len() < top || x > best[best.len() - 1].1 {
                let at = best.partition_point(|b| b.1 >= x);
                best.insert(at, (i as u32, x));
                best.truncate(top);
            }
        }
    }
    TokenLogprob {
        id: token,
        logprob: logits.get(token as usize).map(|&x| lp(x)),
        top: best.into_iter().map(|(i, x)| (i, lp(x))).collect(),
    }
}
