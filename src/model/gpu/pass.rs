//! The GPU as a [`Device`]: the block's ops as `pupil_kernels::cuda` launches on a
//! [`GpuScratch`]'s buffers, the offloaded weights and the device cache; and the part of a
//! forward pass that runs there ([`run`]).

use pupil_kernels::cuda::{Gpu, GpuError, MAX_MATVEC_TOKENS};

use super::GpuModel;
use super::state::{GpuKv, GpuScratch, MAX_GRAPHS, MAX_TABLES, StepKey, Table};
use crate::model::arch::{FfnAct, Role};
use crate::model::block::{Buf, Device, Job, aliased, block};
use crate::model::cpu::Layout;
use crate::model::{Batch, Config, Model, ModelError, Scratch};

fn device(e: GpuError) -> ModelError {
    ModelError::Device { reason: e.to_string() }
}

fn missing(reason: String) -> ModelError {
    ModelError::Device { reason }
}

/// One forward pass's offloaded blocks.
struct GpuPass<'a> {
    g: &'a GpuModel,
    cfg: &'a Config,
    batch: &'a Batch,
    /// RoPE pairs `(i, i + n_rot/2)` rather than `(2i, 2i + 1)`.
    neox: bool,
    kv: &'a mut GpuKv,
    s: &'a mut GpuScratch,
}

impl Device for GpuPass<'_> {
    fn norm(&mut self, il: usize, role: Role, from: Buf, to: Buf, n: usize) -> Result<(), ModelError> {
        let (g, cfg) = (self.g, self.cfg);
        let w = g.layer(il).vector(role).map_err(missing)?;
        let [x, out] = self.s.bufs.get_disjoint_mut([from as usize, to as usize]).map_err(|_| aliased())?;
        g.gpu.rms_norm(x, w, cfg.n_embd, n, cfg.rms_eps, out).map_err(device)
    }

    fn project<const N: usize>(&mut self, il: usize, from: Buf, n: usize, jobs: [Job; N]) -> Result<(), ModelError> {
        let (g, s) = (self.g, &mut *self.s);
        let layer = g.layer(il);
        for (w, _, _) in &jobs {
            layer.matrix(*w).map_err(missing)?;
        }
        // Each buffer taken once: the input and the outputs are disjoint borrows.
        let mut bufs = s.bufs.each_mut().map(Some);
        let x = bufs[from as usize].take().ok_or_else(aliased)?;
        let products = jobs.map(|(w, _, to)| Some((layer.matrix(w).ok()?, bufs[to as usize].take()?)));
        if products.iter().any(Option::is_none) {
            return Err(aliased());
        }
        let mut products = products.map(|p| p.expect("none missing: checked above"));
        g.gpu.matmul_many(x, n, &mut products, &mut s.matmul).map_err(device)?;
        for ((w, out), (_, bias, _)) in products.iter_mut().zip(jobs) {
            if let Some(b) = bias.and_then(|b| layer.optional(b)) {
                g.gpu.add_bias(out, b, w.rows, n).map_err(device)?;
            }
        }
        Ok(())
    }

    fn position(&mut self, il: usize, n: usize) -> Result<(), ModelError> {
        let (g, cfg, neox) = (self.g, self.cfg, self.neox);
        let layer = g.layer(il);
        let (hd, eps) = (cfg.head_dim, cfg.rms_eps);
        let s = &mut *self.s;
        let [q, k] = s.bufs.get_disjoint_mut([Buf::Q as usize, Buf::K as usize]).map_err(|_| aliased())?;
        if let Some(w) = layer.optional(Role::AttnQNorm) {
            g.gpu.rms_norm_in_place(q, w, hd, n * cfg.n_head, eps).map_err(device)?;
        }
        if let Some(w) = layer.optional(Role::AttnKNorm) {
            g.gpu.rms_norm_in_place(k, w, hd, n * cfg.n_head_kv, eps).map_err(device)?;
        }
        let angles = if cfg.swa_layers[il] { &s.angles_swa } else { &s.angles };
        g.gpu.rope(q, angles, n, cfg.n_head, hd, cfg.n_rot, neox).map_err(device)?;
        g.gpu.rope(k, angles, n, cfg.n_head_kv, hd, cfg.n_rot, neox).map_err(device)?;
        if cfg.arch.spec().attn_scale.on_queries() {
            g.gpu.scale(q, cfg.attn_scale, n * cfg.q_dim()).map_err(device)?;
        }
        Ok(())
    }

    fn attend(&mut self, il: usize, n: usize) -> Result<(), ModelError> {
        let (g, cfg) = (self.g, self.cfg);
        let i = il - g.offload.first;
        // The rows and spans the host cache would use, uploaded before the blocks ([`tables`]).
        let GpuScratch { bufs, tables, layer_table, partial, .. } = &mut *self.s;
        let table = &tables[layer_table[i]];
        let (kc, vc) = (&mut self.kv.k[i], &mut self.kv.v[i]);
        let [q, k, v, attn] = bufs
            .get_disjoint_mut([Buf::Q as usize, Buf::K as usize, Buf::V as usize, Buf::Attn as usize])
            .map_err(|_| aliased())?;
        g.gpu.kv_write(k, v, &table.rows, n, cfg.kv_dim(), kc, vc).map_err(device)?;
        let kq_scale = if cfg.arch.spec().attn_scale.on_queries() { 1.0 } else { cfg.attn_scale };
        let heads = (cfg.n_head, cfg.n_head_kv, cfg.head_dim);
        let scores = (kq_scale, cfg.attn_softcap.unwrap_or(0.0));
        g.gpu.attend(q, kc, vc, &table.spans, table.longest, n, heads, scores, partial, attn).map_err(device)
    }

    fn glu(&mut self, n: usize) -> Result<(), ModelError> {
        let (g, count) = (self.g, n * self.cfg.n_ff);
        let [gate, up] = self.s.bufs.get_disjoint_mut([Buf::Gate as usize, Buf::Up as usize]).map_err(|_| aliased())?;
        match self.cfg.arch.spec().ffn_act {
            FfnAct::Silu => g.gpu.silu(gate, count),
            FfnAct::GeluTanh => g.gpu.gelu_tanh(gate, count),
        }
        .map_err(device)?;
        g.gpu.mul(gate, up, count).map_err(device)
    }

    fn residual(&mut self, il: usize, post_norm: Role, n: usize) -> Result<(), ModelError> {
        let (g, cfg) = (self.g, self.cfg);
        let e = cfg.n_embd;
        let post_norm = g.layer(il).optional(post_norm);
        let [x, xn, out] = self
            .s
            .bufs
            .get_disjoint_mut([Buf::X as usize, Buf::Xn as usize, Buf::Out as usize])
            .map_err(|_| aliased())?;
        match post_norm {
            Some(w) => {
                g.gpu.rms_norm(out, w, e, n, cfg.rms_eps, xn).map_err(device)?;
                g.gpu.add(x, xn, n * e).map_err(device)
            }
            None => g.gpu.add(x, out, n * e).map_err(device),
        }
    }
}

/// Fills and uploads the pass's tables: for each kind of offloaded layer (rows per slot,
/// window), each token's cache row and attention span, as the host cache has them (the pass
/// checked them); `layer_table` says which table each layer reads.
fn tables(g: &GpuModel, cfg: &Config, batch: &Batch, layout: Layout<'_>, s: &mut GpuScratch) -> Result<(), ModelError> {
    s.layer_table.clear();
    for il in g.offload.first..cfg.n_layer {
        let kind = (layout.rows[il], if cfg.swa_layers[il] { cfg.sliding_window } else { None });
        let t = match s.tables.iter().position(|t| t.kind == kind) {
            Some(t) => t,
            None => {
                s.tables.push(Table::new(&g.gpu, kind, il, s.max_batch).map_err(device)?);
                s.tables.len() - 1
            }
        };
        s.layer_table.push(t);
    }
    for (i, t) in s.tables.iter_mut().enumerate() {
        if !s.layer_table.contains(&i) {
            continue;
        }
        let (rows, window) = (layout.layer(t.layer), t.kind.1);
        t.host_rows.clear();
        t.host_spans.clear();
        t.longest = 1;
        for (&pos, &seq) in batch.positions().iter().zip(batch.seqs()) {
            let pos = pos as usize;
            let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
            let (a, b) = (rows.of(seq, first), rows.of(seq, pos) + 1);
            t.host_rows.push(rows.of(seq, pos) as i32);
            t.host_spans.extend([a as i32, b as i32]);
            t.longest = t.longest.max(b - a);
        }
        g.gpu.write(&t.host_rows, &mut t.rows).map_err(device)?;
        g.gpu.write(&t.host_spans, &mut t.spans).map_err(device)?;
    }
    Ok(())
}

/// The key a recording of this pass would have, if it can be recorded: decode-sized
/// batches (mat-vec kernels only), with graphs on and few enough kinds of layer.
fn step_key(g: &GpuModel, batch: &Batch, kv: &GpuKv, s: &GpuScratch) -> Option<StepKey> {
    let n = batch.len();
    if !g.gpu.graphs() || s.graphs_off || n > MAX_MATVEC_TOKENS || s.tables.len() > MAX_TABLES {
        return None;
    }
    let want = batch.want_logits().iter().enumerate().fold(0u64, |m, (t, &w)| m | (u64::from(w) << t));
    let mut splits = [0; MAX_TABLES];
    for (split, t) in splits.iter_mut().zip(&s.tables) {
        *split = Gpu::attention_split(t.longest);
    }
    Some(StepKey { n, want, kv: kv.id, splits })
}

/// Queues the offloaded blocks and, with the head offloaded, the wanted rows normed and
/// projected into `s.logits` (one row per wanted token, in batch order).
fn queue(pass: &mut GpuPass<'_>, n: usize) -> Result<(), ModelError> {
    let (g, cfg) = (pass.g, pass.cfg);
    for il in g.offload.first..cfg.n_layer {
        block(pass, il, n)?;
    }
    let Some(head) = &g.head else { return Ok(()) };
    let (e, gs) = (cfg.n_embd, &mut *pass.s);
    // The wanted rows, gathered into `Out`, normed into `Xn`, projected into the logits.
    let mut j = 0;
    {
        let [x, out] = gs.bufs.get_disjoint_mut([Buf::X as usize, Buf::Out as usize]).map_err(|_| aliased())?;
        for (t, _) in pass.batch.want_logits().iter().enumerate().filter(|(_, w)| **w) {
            g.gpu.copy(x, t * e, out, j * e, e).map_err(device)?;
            j += 1;
        }
    }
    if j == 0 {
        return Ok(());
    }
    let [out, xn] = gs.bufs.get_disjoint_mut([Buf::Out as usize, Buf::Xn as usize]).map_err(|_| aliased())?;
    g.gpu.rms_norm(out, head.vector(Role::OutputNorm).map_err(missing)?, e, j, cfg.rms_eps, xn).map_err(device)?;
    let w = head.matrix(Role::Output).map_err(missing)?;
    g.gpu.matmul(w, xn, j, &mut gs.logits, &mut gs.matmul).map_err(device)?;
    let v = cfg.n_vocab;
    if let Some(b) = head.optional(Role::OutputBias) {
        g.gpu.add_bias(&mut gs.logits, b, v, j).map_err(device)?;
    }
    if let Some(cap) = cfg.final_softcap {
        g.gpu.softcap(&mut gs.logits, cap, j * v).map_err(device)?;
    }
    Ok(())
}

/// Replays the step recorded under `key`, or records the pass's ops under it (evicting the
/// oldest recording when [`MAX_GRAPHS`] are held) and replays that. If recording fails, the
/// ops are queued one by one, now and from then on: slower, the same results, and a real
/// fault shows itself again, unrecorded.
fn replay_or_record(pass: &mut GpuPass<'_>, key: StepKey, n: usize) -> Result<(), ModelError> {
    let g = pass.g;
    if let Some((_, graph)) = pass.s.graphs.iter().find(|(k, _)| *k == key) {
        return g.gpu.replay(graph).map_err(device);
    }
    match g.gpu.record(|| queue(pass, n)) {
        Ok(graph) => {
            g.gpu.replay(&graph).map_err(device)?;
            if pass.s.graphs.len() == MAX_GRAPHS {
                pass.s.graphs.remove(0);
            }
            pass.s.graphs.push((key, graph));
            Ok(())
        }
        Err(e) => {
            tracing::warn!("recording a decode step as a CUDA graph failed, running without: {e}");
            pass.s.graphs_off = true;
            queue(pass, n)
        }
    }
}

/// Runs the offloaded blocks on the residual stream in `s.x` (blocks before them already
/// ran on the CPU), then the head if it is offloaded too: its logits come back into
/// `logits` and this returns `true`; otherwise the residual stream comes back into `s.x`
/// for the host's head, and this returns `false`.
/// `layout` and `n_seq` are the host cache's (the device cache is made to match).
///
/// A decode step's few hundred launches are recorded once (a CUDA graph) and replayed by
/// later steps with the same [`StepKey`]: the inputs are uploaded into the same buffers
/// first, so a replay computes exactly what queuing the ops again would.
pub(crate) fn run(
    (model, g): (&Model, &GpuModel),
    batch: &Batch,
    (layout, n_seq): (Layout<'_>, usize),
    kv: &mut Option<GpuKv>,
    s: &mut Scratch,
    logits: &mut [f32],
) -> Result<bool, ModelError> {
    let (cfg, neox) = (model.config(), model.ropes.rotation().neox);
    let _one_at_a_time = g.busy.lock().unwrap_or_else(|p| p.into_inner());
    let (n, e, r) = (batch.len(), cfg.n_embd, cfg.n_rot);
    if kv.as_ref().is_none_or(|kv| !kv.fits(g.offload.first, cfg.n_layer)) {
        *kv = Some(GpuKv::new(g, layout.rows, n_seq, cfg.kv_dim()).map_err(device)?);
    }
    if s.gpu.as_ref().is_none_or(|gs| gs.max_batch < s.max_batch || gs.max_span < s.n_ctx) {
        s.gpu = Some(Box::new(GpuScratch::new(g, cfg, s.max_batch, s.n_ctx).map_err(device)?));
    }
    let (Some(kv), Some(gs)) = (kv.as_mut(), s.gpu.as_deref_mut()) else { unreachable!("made above") };
    g.gpu.write(&s.x[..n * e], &mut gs.bufs[Buf::X as usize]).map_err(device)?;
    g.gpu.write(&s.rope[..n * r], &mut gs.angles).map_err(device)?;
    g.gpu.write(&s.rope_swa[..n * r], &mut gs.angles_swa).map_err(device)?;
    tables(g, cfg, batch, layout, gs)?;
    let key = step_key(g, batch, kv, gs);
    let mut pass = GpuPass { g, cfg, batch, neox, kv, s: gs };
    match key {
        Some(key) => replay_or_record(&mut pass, key, n)?,
        None => queue(&mut pass, n)?,
    }
    if g.head.is_none() {
        g.gpu.read(&gs.bufs[Buf::X as usize], &mut s.x[..n * e]).map_err(device)?;
        return Ok(false);
    }
    let j = batch.want_logits().iter().filter(|w| **w).count();
    g.gpu.read(&gs.logits, &mut logits[..j * cfg.n_vocab]).map_err(device)?;
    Ok(true)
}
