//! The forward pass: one generic transformer, driven by the architecture's switches and by
//! which optional tensors the model has.
//!
//! Per block, as llama.cpp builds it (`src/models/{llama,qwen2,qwen3,gemma2,gemma3,phi3}.cpp`):
//!
//! ```text
//! h   = rms_norm(x) * attn_norm
//! q,k,v = h·Wq (+bq), h·Wk (+bk), h·Wv (+bv)   (row ranges of one fused Wqkv on Phi-3)
//! q,k = per-head rms_norm (Qwen 3, Gemma 3), then RoPE at each token's position
//! cache[seq][pos] = k, v
//! a   = softmax(q·kᵀ · scale, soft-capped) · v over the sequence's rows ≤ pos (within the
//!       window on sliding layers), then a·Wo (+bo), post-norm (Gemma)
//! x  += a
//! h   = rms_norm(x) * ffn_norm
//! x  += post-norm(Wdown · (act(h·Wgate) * h·Wup))
//! ```
//!
//! and finally `logits = rms_norm(x) * output_norm · Woutᵀ (+b)`, soft-capped (Gemma 2), for
//! the wanted tokens only. All arithmetic goes through `pupil_kernels::ops`.

use pupil_kernels::ops::{self, Activations, KvScalar, WeightRef};
use pupil_kernels::{DType, KernelError, quant};

use super::arch::{FfnAct, Role};
use super::kv_cache::{KvStore, Store};
use super::weights::Tensors;
use super::{Batch, KvCache, Model, ModelError, Scratch};

/// Where a layer's cache rows are: rows per sequence slot, and for a ring (sliding-window
/// layers of a windowed cache) the position each sequence's row 0 holds.
#[derive(Clone, Copy)]
struct Rows<'a> {
    per_seq: usize,
    oldest: Option<&'a [usize]>, // [n_seq]
}

impl Rows<'_> {
    /// The cache row of position `pos` of `seq`.
    fn of(&self, seq: usize, pos: usize) -> usize {
        seq * self.per_seq + pos - self.oldest.map_or(0, |o| o[seq])
    }
}

/// One matmul input, converted to a weight's activation type once and reused by the next
/// weights of the same activation type (Q, K and V share theirs).
struct Input<'a> {
    x: &'a [f32],
    n: usize,
    act: &'a mut Activations,
    ready: Option<DType>,
}

impl<'a> Input<'a> {
    fn new(x: &'a [f32], n: usize, act: &'a mut Activations) -> Self {
        Input { x, n, act, ready: None }
    }

    /// `out[t] = w · x[t] (+ bias)` for the `n` rows; `out` is at least `[n, w.rows]`.
    fn project(&mut self, w: WeightRef<'_>, bias: Option<&[f32]>, out: &mut [f32]) -> Result<(), ModelError> {
        self.project_all([(w, bias, out)])
    }

    /// [`Self::project`] for several weights of this input: those that share an activation
    /// type with the first run together ([`ops::matmul_many`]), the others one by one.
    fn project_all<const N: usize>(
        &mut self,
        jobs: [(WeightRef<'_>, Option<&[f32]>, &mut [f32]); N],
    ) -> Result<(), ModelError> {
        let act_of = |w: &WeightRef<'_>| {
            quant::ops(w.dtype).map(|o| o.act).ok_or(KernelError::Unsupported { op: "matmul", dtype: w.dtype })
        };
        let need = act_of(&jobs[0].0)?;
        let mut shared = true;
        for (w, _, _) in &jobs {
            shared &= act_of(w)? == need && w.cols == jobs[0].0.cols;
        }
        let n = self.n;
        let mut jobs = jobs.map(|(w, b, out)| (w, b, &mut out[..n * w.rows]));
        if shared {
            self.ready_for(need, jobs[0].0.cols)?;
            let mut products = jobs.each_mut().map(|(w, _, out)| (*w, &mut **out));
            ops::matmul_many(&mut products, self.act)?;
        } else {
            for (w, _, out) in &mut jobs {
                self.ready_for(act_of(w)?, w.cols)?;
                ops::matmul(w, self.act, out)?;
            }
        }
        for (w, bias, out) in jobs {
            if let Some(b) = bias {
                out.chunks_exact_mut(w.rows).for_each(|row| ops::add_assign(row, b));
            }
        }
        Ok(())
    }

    /// Converts the input to `act` (rows of `cols`) unless it already is.
    fn ready_for(&mut self, act: DType, cols: usize) -> Result<(), ModelError> {
        if self.ready != Some(act) {
            self.act.quantize(act, &self.x[..self.n * cols], self.n, cols)?;
            self.ready = Some(act);
        }
        Ok(())
    }
}

/// RMS-normalise every head of `x` (`[n_heads, head_dim]`) with weight `w`, via `tmp`.
fn head_norm(x: &mut [f32], w: &[f32], eps: f32, tmp: &mut [f32]) {
    for h in x.chunks_exact_mut(w.len()) {
        ops::rms_norm(h, w, eps, tmp);
        h.copy_from_slice(tmp);
    }
}

/// `x += norm(y)` if there is a post-norm, else `x += y`; rows of width `w`, `n` of them.
fn residual(x: &mut [f32], y: &[f32], post_norm: Option<&[f32]>, eps: f32, tmp: &mut [f32], n: usize, e: usize) {
    for t in 0..n {
        let (xt, yt) = (&mut x[t * e..][..e], &y[t * e..][..e]);
        match post_norm {
            Some(w) => {
                let tt = &mut tmp[t * e..][..e];
                ops::rms_norm(yt, w, eps, tt);
                ops::add_assign(xt, tt);
            }
            None => ops::add_assign(xt, yt),
        }
    }
}

impl Model {
    /// Runs `batch`, writing its keys and values into `cache` and the logits of its wanted
    /// tokens, in batch order, into `logits` (`[batch.n_wanted(), n_vocab]`).
    ///
    /// A token attends to the cache rows of its own sequence at positions up to its own
    /// (within the sliding window on SWA layers), including rows written by earlier tokens of
    /// the same batch. Positions of a sequence must follow on from what the cache holds: a
    /// token may rewrite a position (after [`KvCache::truncate`], say) but not skip one.
    /// The whole batch is checked before anything is written: on error the cache is as it was.
    ///
    /// This runs on the rayon pool it is called from, rayon's global pool if none: a
    /// [`Context`](super::Context) runs it on the pool it was given instead.
    pub fn forward(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        // Run the whole pass on a worker of the thread pool: the ~130 parallel loops of a
        // decode step then split work among the workers directly, instead of each being
        // handed over from a thread outside the pool and waited for (a futex round trip each).
        // Called from inside the pool, `join` runs it in place.
        rayon::join(|| self.run(batch, cache, s, logits), || ()).0
    }

    /// [`Self::forward`] on the current thread, which should be a worker of the pool the
    /// pass is to run on.
    pub(super) fn run(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        s: &mut Scratch,
        logits: &mut [f32],
    ) -> Result<(), ModelError> {
        let cfg = &self.config;
        let expected = batch.n_wanted() * cfg.n_vocab;
        if logits.len() != expected {
            return Err(ModelError::LogitsSize { expected, found: logits.len() });
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.check(batch, cache, s)?;
        self.embed(batch, s)?;
        let (rope, rope_swa) = self.ropes.at(cache.n_ctx);
        for (t, &pos) in batch.positions().iter().enumerate() {
            let r = cfg.n_rot;
            rope.angles(pos as i32, &mut s.rope[t * r..][..r]);
            rope_swa.angles(pos as i32, &mut s.rope_swa[t * r..][..r]);
        }
        for seq in 0..cache.n_seq {
            cache.slide(seq, s.oldest[seq]);
        }
        let KvCache { rows, oldest, store, n_ctx, .. } = cache;
        let layout = |il: usize| Rows { per_seq: rows[il], oldest: (rows[il] != *n_ctx).then_some(&oldest[..]) };
        match store {
            Store::F16(kv) => self.blocks(batch, kv, layout, s)?,
            Store::F32(kv) => self.blocks(batch, kv, layout, s)?,
        }
        self.output(batch, s, logits)?;
        cache.lens.copy_from_slice(&s.lens[..cache.n_seq]);
        Ok(())
    }

    /// Validates the batch against the cache and scratch; leaves the cache lengths the batch
    /// will produce in `s.lens`.
    fn check(&self, batch: &Batch, cache: &KvCache, s: &mut Scratch) -> Result<(), ModelError> {
        let cfg = &self.config;
        if cache.n_layer != cfg.n_layer || cache.kv_dim != cfg.kv_dim() {
            return Err(ModelError::Mismatch { what: "KV cache" });
        }
        if !s.fits(cfg, cache) {
            return Err(ModelError::Mismatch { what: "scratch" });
        }
        if batch.len() > s.max_batch {
            return Err(ModelError::BatchTooLarge { n: batch.len(), max: s.max_batch });
        }
        s.lens.clear();
        s.lens.extend_from_slice(&cache.lens);
        s.needs.clear();
        s.needs.resize(cache.n_seq, usize::MAX);
        for (index, ((&token, &pos), &seq)) in
            batch.tokens().iter().zip(batch.positions()).zip(batch.seqs()).enumerate()
        {
            if token as usize >= cfg.n_vocab {
                return Err(ModelError::BadToken { index, token, n_vocab: cfg.n_vocab });
            }
            let Some(len) = s.lens.get_mut(seq) else {
                return Err(ModelError::BadSequence { index, seq, n_seq: cache.n_seq });
            };
            if pos as usize >= cache.n_ctx {
                return Err(ModelError::ContextFull { seq, pos, n_ctx: cache.n_ctx });
            }
            if pos as usize > *len {
                return Err(ModelError::PositionGap { seq, pos, len: *len });
            }
            *len = (*len).max(pos as usize + 1);
            let needs = cache.window.map_or(0, |w| (pos as usize + 1).saturating_sub(w));
            if needs < cache.oldest[seq] {
                return Err(ModelError::WindowEvicted { seq, pos, needs, oldest: cache.oldest[seq] });
            }
            s.needs[seq] = s.needs[seq].min(needs);
        }
        // A ring the batch would write past drops rows its tokens' windows do not reach.
        s.oldest.clear();
        for (seq, (&len, &needs)) in s.lens.iter().zip(&s.needs).enumerate() {
            s.oldest.push(cache.plan_slide(seq, len, needs)?);
        }
        Ok(())
    }

    /// Token embeddings into the residual stream (scaled by `sqrt(n_embd)` for Gemma).
    fn embed(&self, batch: &Batch, s: &mut Scratch) -> Result<(), ModelError> {
        let e = self.config.n_embd;
        let w = self.weights.model.matrix(Role::TokEmbd)?.weight(&self.file);
        let scale = self.config.arch.spec().scale_embeddings.then(|| (e as f32).sqrt());
        for (t, &token) in batch.tokens().iter().enumerate() {
            let xt = &mut s.x[t * e..][..e];
            ops::get_row(&w, token as usize, xt)?;
            if let Some(sc) = scale {
                ops::scale(xt, sc);
            }
        }
        Ok(())
    }

    fn blocks<'r, T: KvScalar>(
        &self,
        batch: &Batch,
        kv: &mut KvStore<T>,
        layout: impl Fn(usize) -> Rows<'r>,
        s: &mut Scratch,
    ) -> Result<(), ModelError> {
        for (il, layer) in self.weights.layers.iter().enumerate() {
            self.attention(il, layer, batch, &mut kv.k[il], &mut kv.v[il], layout(il), s)?;
            self.ffn(layer, batch.len(), s)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn attention<T: KvScalar>(
        &self,
        il: usize,
        layer: &Tensors,
        batch: &Batch,
        k_cache: &mut [T], // [n_seq, rows.per_seq, n_head_kv * head_dim]
        v_cache: &mut [T], // [n_seq, rows.per_seq, n_head_kv * head_dim]
        rows: Rows<'_>,
        s: &mut Scratch,
    ) -> Result<(), ModelError> {
        let cfg = &self.config;
        let (n, e, qd, kvd, hd, r) = (batch.len(), cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.head_dim, cfg.n_rot);
        let eps = cfg.rms_eps;
        let f = &self.file;
        for t in 0..n {
            ops::rms_norm(&s.x[t * e..][..e], layer.vector(Role::AttnNorm)?, eps, &mut s.xn[t * e..][..e]);
        }
        Input::new(&s.xn, n, &mut s.act).project_all([
            (layer.matrix(Role::AttnQ)?.weight(f), layer.optional(Role::AttnQBias), &mut s.q[..]),
            (layer.matrix(Role::AttnK)?.weight(f), layer.optional(Role::AttnKBias), &mut s.k[..]),
            (layer.matrix(Role::AttnV)?.weight(f), layer.optional(Role::AttnVBias), &mut s.v[..]),
        ])?;

        // Gemma scales the queries, the others the scores (equal up to rounding).
        let (q_scale, kq_scale) =
            if cfg.arch.spec().attn_scale.on_queries() { (Some(cfg.attn_scale), 1.0) } else { (None, cfg.attn_scale) };
        let swa = cfg.swa_layers[il];
        let (rope, angles) = (self.ropes.rotation(), if swa { &s.rope_swa } else { &s.rope });
        for (t, (&pos, &seq)) in batch.positions().iter().zip(batch.seqs()).enumerate() {
            let (qt, kt) = (&mut s.q[t * qd..][..qd], &mut s.k[t * kvd..][..kvd]);
            if let Some(w) = layer.optional(Role::AttnQNorm) {
                head_norm(qt, w, eps, &mut s.head);
            }
            if let Some(w) = layer.optional(Role::AttnKNorm) {
                head_norm(kt, w, eps, &mut s.head);
            }
            let a = &angles[t * r..][..r];
            rope.apply(a, qt, hd);
            rope.apply(a, kt, hd);
            if let Some(sc) = q_scale {
                ops::scale(qt, sc);
            }
            let row = rows.of(seq, pos as usize) * kvd;
            for (c, &x) in k_cache[row..row + kvd].iter_mut().zip(kt.iter()) {
                *c = T::from_f32(x);
            }
            for (c, &x) in v_cache[row..row + kvd].iter_mut().zip(&s.v[t * kvd..][..kvd]) {
                *c = T::from_f32(x);
            }
        }

        let window = if swa { cfg.sliding_window } else { None };
        s.spans.clear();
        for (&pos, &seq) in batch.positions().iter().zip(batch.seqs()) {
            let pos = pos as usize;
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            s.spans.push(rows.of(seq, first)..rows.of(seq, pos) + 1);
        }
        ops::attend_batch(
            &s.q[..n * qd],
            k_cache,
            v_cache,
            &s.spans,
            cfg.n_head,
            cfg.n_head_kv,
            hd,
            kq_scale,
            cfg.attn_softcap,
            &mut s.attn[..n * qd],
            &mut s.scores,
        );
        Input::new(&s.attn, n, &mut s.act).project(
            layer.matrix(Role::AttnOut)?.weight(f),
            layer.optional(Role::AttnOutBias),
            &mut s.out,
        )?;
        residual(&mut s.x, &s.out, layer.optional(Role::PostAttnNorm), eps, &mut s.xn, n, e);
        Ok(())
    }

    fn ffn(&self, layer: &Tensors, n: usize, s: &mut Scratch) -> Result<(), ModelError> {
        let cfg = &self.config;
        let (e, ff, eps, f) = (cfg.n_embd, cfg.n_ff, cfg.rms_eps, &self.file);
        for t in 0..n {
            ops::rms_norm(&s.x[t * e..][..e], layer.vector(Role::FfnNorm)?, eps, &mut s.xn[t * e..][..e]);
        }
        Input::new(&s.xn, n, &mut s.act).project_all([
            (layer.matrix(Role::FfnGate)?.weight(f), layer.optional(Role::FfnGateBias), &mut s.gate[..]),
            (layer.matrix(Role::FfnUp)?.weight(f), layer.optional(Role::FfnUpBias), &mut s.up[..]),
        ])?;
        let (gate, up) = (&mut s.gate[..n * ff], &s.up[..n * ff]);
        match cfg.arch.spec().ffn_act {
            FfnAct::Silu => ops::silu(gate),
            FfnAct::GeluTanh => ops::gelu_tanh_f16(gate),
        }
        ops::mul_assign(gate, up);
        Input::new(&s.gate, n, &mut s.act).project(
            layer.matrix(Role::FfnDown)?.weight(f),
            layer.optional(Role::FfnDownBias),
            &mut s.out,
        )?;
        residual(&mut s.x, &s.out, layer.optional(Role::PostFfnNorm), eps, &mut s.xn, n, e);
        Ok(())
    }

    /// Final norm and output projection of the wanted tokens.
    fn output(&self, batch: &Batch, s: &mut Scratch, logits: &mut [f32]) -> Result<(), ModelError> {
        let cfg = &self.config;
        let e = cfg.n_embd;
        let (mut j, norm) = (0, self.weights.model.vector(Role::OutputNorm)?);
        for (t, _) in batch.want_logits().iter().enumerate().filter(|(_, w)| **w) {
            ops::rms_norm(&s.x[t * e..][..e], norm, cfg.rms_eps, &mut s.xn[j * e..][..e]);
            j += 1;
        }
        if j == 0 {
            return Ok(());
        }
        let w = self.weights.output()?.weight(&self.file);
        Input::new(&s.xn, j, &mut s.act).project(w, self.weights.model.optional(Role::OutputBias), logits)?;
        if let Some(cap) = cfg.final_softcap {
            ops::softcap(logits, cap);
        }
        Ok(())
    }
}
