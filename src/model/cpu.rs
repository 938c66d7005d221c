//! The CPU as a [`Device`]: the block's ops on [`Scratch`]'s host buffers, with
//! `pupil_kernels::ops` and the host KV cache.

use pupil_kernels::ops::{self, Activations, KvScalar, WeightRef};
use pupil_kernels::{DType, KernelError, quant};

use super::arch::{FfnAct, Role};
use super::block::{Buf, Device, Job, aliased};
use super::kv_cache::KvStore;
use super::{Batch, Model, ModelError, Scratch};

/// Where a layer's cache rows are: rows per sequence slot, and for a ring (sliding-window
/// layers of a windowed cache) the position each sequence's row 0 holds.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    pub per_seq: usize,
    pub oldest: Option<&'a [usize]>, // [n_seq]
}

impl Rows<'_> {
    /// The cache row of position `pos` of `seq`.
    pub fn of(&self, seq: usize, pos: usize) -> usize {
        seq * self.per_seq + pos - self.oldest.map_or(0, |o| o[seq])
    }
}

/// The rows of every layer of a cache: its rows per slot, the rings' oldest positions, and
/// its positions per slot (layers with fewer rows than that are rings).
#[derive(Clone, Copy)]
pub(super) struct Layout<'a> {
    pub rows: &'a [usize],   // [n_layer]
    pub oldest: &'a [usize], // [n_seq]
    pub n_ctx: usize,
}

impl<'a> Layout<'a> {
    /// Where layer `il`'s rows are.
    pub fn layer(&self, il: usize) -> Rows<'a> {
        Rows { per_seq: self.rows[il], oldest: (self.rows[il] != self.n_ctx).then_some(self.oldest) }
    }
}

/// One forward pass's blocks on the CPU: the model, the batch, the host cache and scratch.
pub(super) struct Cpu<'a, T: KvScalar> {
    pub model: &'a Model,
    pub batch: &'a Batch,
    pub kv: &'a mut KvStore<T>,
    pub layout: Layout<'a>,
    pub s: &'a mut Scratch,
}

impl<T: KvScalar> Device for Cpu<'_, T> {
    fn norm(&mut self, il: usize, role: Role, from: Buf, to: Buf, n: usize) -> Result<(), ModelError> {
        let (e, eps) = (self.model.config.n_embd, self.model.config.rms_eps);
        let w = self.model.weights.layers[il].vector(role)?;
        let (mut bufs, _) = self.s.bufs();
        let [x, out] = bufs.get_disjoint_mut([from as usize, to as usize]).map_err(|_| aliased())?;
        for t in 0..n {
            ops::rms_norm(&x[t * e..][..e], w, eps, &mut out[t * e..][..e]);
        }
        Ok(())
    }

    fn project<const N: usize>(&mut self, il: usize, from: Buf, n: usize, jobs: [Job; N]) -> Result<(), ModelError> {
        let (layer, f) = (&self.model.weights.layers[il], &self.model.file);
        let (mut bufs, act) = self.s.bufs();
        // The input moves out for the call (no copy), so the outputs can be borrowed beside it.
        let x = std::mem::take(&mut *bufs[from as usize]);
        let outs = bufs.get_disjoint_mut(jobs.map(|(_, _, b)| b as usize)).map_err(|_| aliased());
        let result = outs.and_then(|outs| {
            for (w, _, _) in &jobs {
                layer.matrix(*w)?;
            }
            let mut outs = outs.map(|o| &mut o[..]).into_iter();
            let products = jobs.map(|(w, bias, _)| {
                let w = layer.matrix(w).expect("checked above").weight(f);
                (w, bias.and_then(|b| layer.optional(b)), outs.next().expect("one output per job"))
            });
            Input::new(&x, n, act).project_all(products)
        });
        *bufs[from as usize] = x;
        result
    }

    fn position(&mut self, il: usize, n: usize) -> Result<(), ModelError> {
        let (m, s) = (self.model, &mut *self.s);
        let cfg = &m.config;
        let (qd, kvd, hd, r, eps) = (cfg.q_dim(), cfg.kv_dim(), cfg.head_dim, cfg.n_rot, cfg.rms_eps);
        let layer = &m.weights.layers[il];
        // Gemma scales the queries, the others the scores (equal up to rounding).
        let q_scale = cfg.arch.spec().attn_scale.on_queries().then_some(cfg.attn_scale);
        let (rope, angles) = (m.ropes.rotation(), if cfg.swa_layers[il] { &s.rope_swa } else { &s.rope });
        for t in 0..n {
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
        }
        Ok(())
    }

    fn attend(&mut self, il: usize, n: usize) -> Result<(), ModelError> {
        let (cfg, batch, s) = (&self.model.config, self.batch, &mut *self.s);
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let rows = self.layout.layer(il);
        let (k_cache, v_cache) = (&mut self.kv.k[il], &mut self.kv.v[il]);
        for (t, (&pos, &seq)) in batch.positions().iter().zip(batch.seqs()).enumerate() {
            let row = rows.of(seq, pos as usize) * kvd;
            for (c, &x) in k_cache[row..row + kvd].iter_mut().zip(&s.k[t * kvd..][..kvd]) {
                *c = T::from_f32(x);
            }
            for (c, &x) in v_cache[row..row + kvd].iter_mut().zip(&s.v[t * kvd..][..kvd]) {
                *c = T::from_f32(x);
            }
        }
        let window = if cfg.swa_layers[il] { cfg.sliding_window } else { None };
        s.spans.clear();
        for (&pos, &seq) in batch.positions().iter().zip(batch.seqs()) {
            let pos = pos as usize;
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            s.spans.push(rows.of(seq, first)..rows.of(seq, pos) + 1);
        }
        let kq_scale = if cfg.arch.spec().attn_scale.on_queries() { 1.0 } else { cfg.attn_scale };
        ops::attend_batch(
            &s.q[..n * qd],
            k_cache,
            v_cache,
            &s.spans,
            cfg.n_head,
            cfg.n_head_kv,
            cfg.head_dim,
            kq_scale,
            cfg.attn_softcap,
            &mut s.attn[..n * qd],
            &mut s.scores,
        );
        Ok(())
    }

    fn glu(&mut self, n: usize) -> Result<(), ModelError> {
        let ff = self.model.config.n_ff;
        let (gate, up) = (&mut self.s.gate[..n * ff], &self.s.up[..n * ff]);
        match self.model.config.arch.spec().ffn_act {
            FfnAct::Silu => ops::silu(gate),
            FfnAct::GeluTanh => ops::gelu_tanh_f16(gate),
        }
        ops::mul_assign(gate, up);
        Ok(())
    }

    fn residual(&mut self, il: usize, post_norm: Role, n: usize) -> Result<(), ModelError> {
        let (e, eps) = (self.model.config.n_embd, self.model.config.rms_eps);
        let post_norm = self.model.weights.layers[il].optional(post_norm);
        let s = &mut *self.s;
        for t in 0..n {
            let (xt, yt) = (&mut s.x[t * e..][..e], &s.out[t * e..][..e]);
            match post_norm {
                Some(w) => {
                    let tt = &mut s.xn[t * e..][..e];
                    ops::rms_norm(yt, w, eps, tt);
                    ops::add_assign(xt, tt);
                }
                None => ops::add_assign(xt, yt),
            }
        }
        Ok(())
    }
}

/// One matmul input, converted to a weight's activation type once and reused by the next
/// weights of the same activation type (Q, K and V share theirs).
pub(super) struct Input<'a> {
    x: &'a [f32],
    n: usize,
    act: &'a mut Activations,
    ready: Option<DType>,
}

impl<'a> Input<'a> {
    pub fn new(x: &'a [f32], n: usize, act: &'a mut Activations) -> Self {
        Input { x, n, act, ready: None }
    }

    /// `out[t] = w · x[t] (+ bias)` for the `n` rows; `out` is at least `[n, w.rows]`.
    pub fn project(&mut self, w: WeightRef<'_>, bias: Option<&[f32]>, out: &mut [f32]) -> Result<(), ModelError> {
        self.project_all([(w, bias, out)])
    }

    /// [`Self::project`] for several weights of this input: those that share an activation
    /// type with the first run together ([`ops::matmul_many`]), the others one by one.
    pub fn project_all<const N: usize>(
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
