//! The device halves of a [`KvCache`](crate::model::KvCache) and a
//! [`Scratch`](crate::model::Scratch): made at the first forward pass that needs them, sized
//! once, reused by every later pass.

use std::ops::Range;
use std::sync::Arc;

use pupil_kernels::cuda::{CudaSlice, Gpu, GpuError, MatmulScratch};

use super::GpuModel;
use crate::model::Config;
use crate::model::block::Buf;

/// The K and V rows of the offloaded blocks, f16, laid out as the host cache lays out its
/// own (`[n_seq, rows(layer), kv_dim]` per layer), so the same row numbers address both.
#[derive(Debug)]
pub(crate) struct GpuKv {
    gpu: Arc<Gpu>,
    /// The first offloaded block: `k[i]` is block `first + i`.
    first: usize,
    pub k: Vec<CudaSlice<u16>>,
    pub v: Vec<CudaSlice<u16>>,
}

impl GpuKv {
    /// Zeroed rows for blocks `first..` with `rows[il]` rows per slot.
    pub fn new(g: &GpuModel, rows: &[usize], n_seq: usize, kv_dim: usize) -> Result<GpuKv, GpuError> {
        let first = g.offload.first;
        let len = |il: usize| n_seq * rows[il] * kv_dim;
        let k = (first..rows.len()).map(|il| g.gpu.zeros(len(il))).collect::<Result<_, _>>()?;
        let v = (first..rows.len()).map(|il| g.gpu.zeros(len(il))).collect::<Result<_, _>>()?;
        Ok(GpuKv { gpu: g.gpu.clone(), first, k, v })
    }

    /// Whether this was made for blocks from `first` on.
    pub fn fits(&self, first: usize, n_layer: usize) -> bool {
        self.first == first && self.k.len() == n_layer - first
    }

    /// The host cache's row move, on the device: in every offloaded block whose slots have
    /// `rows` rows, elements `from` of that block's buffers to `to`.
    pub fn copy_within(
        &mut self,
        rows_of: &[usize],
        rows: usize,
        from: Range<usize>,
        to: usize,
    ) -> Result<(), GpuError> {
        for (i, (k, v)) in self.k.iter_mut().zip(&mut self.v).enumerate() {
            if rows_of[self.first + i] == rows {
                self.gpu.copy_within(k, from.clone(), to)?;
                self.gpu.copy_within(v, from.clone(), to)?;
            }
        }
        Ok(())
    }
}

/// Device buffers of a pass over up to `max_batch` tokens, and host staging for the small
/// per-batch tables (cache rows, spans) uploaded each pass.
#[derive(Debug)]
pub(crate) struct GpuScratch {
    pub max_batch: usize,
    /// The longest span the attention scratch holds parts for.
    pub max_span: usize,
    /// The activations, by [`Buf`].
    pub bufs: [CudaSlice<f32>; Buf::COUNT],
    /// `[max_batch, n_rot]` RoPE cos/sin of global and of sliding-window layers.
    pub angles: CudaSlice<f32>,
    pub angles_swa: CudaSlice<f32>,
    /// `[max_batch]` cache row of each token; `[max_batch, 2]` its attention span.
    pub rows: CudaSlice<i32>,
    pub spans: CudaSlice<i32>,
    pub partial: CudaSlice<f32>,
    pub matmul: MatmulScratch,
    /// `[max_batch, n_vocab]` logits of a GPU head.
    pub logits: CudaSlice<f32>,
    /// Host staging of `rows` and `spans`.
    pub host_rows: Vec<i32>,
    pub host_spans: Vec<i32>,
}

impl GpuScratch {
    /// Buffers for `cfg`'s model with `g` offloaded, batches of up to `max_batch`.
    /// `max_span`: the most cache rows a token attends to (the cache's positions per slot).
    pub fn new(g: &GpuModel, cfg: &Config, max_batch: usize, max_span: usize) -> Result<GpuScratch, GpuError> {
        let gpu = &g.gpu;
        let b = max_batch.max(1);
        let (e, qd, kvd, ff) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff);
        let widths = [e, e, e, qd, kvd, kvd, qd, ff, ff];
        let mut bufs = Vec::with_capacity(Buf::COUNT);
        for w in widths {
            bufs.push(gpu.zeros(b * w)?);
        }
        let bufs: [CudaSlice<f32>; Buf::COUNT] = bufs.try_into().expect("one buffer per name");
        let widest = e.max(qd).max(ff);
        Ok(GpuScratch {
            max_batch: b,
            max_span,
            bufs,
            angles: gpu.zeros(b * cfg.n_rot)?,
            angles_swa: gpu.zeros(b * cfg.n_rot)?,
            rows: gpu.zeros(b)?,
            spans: gpu.zeros(2 * b)?,
            partial: gpu.zeros(Gpu::attention_scratch_len(b, cfg.n_head, cfg.head_dim, max_span))?,
            matmul: gpu.matmul_scratch(b, widest, g.largest_matrix())?,
            logits: gpu.zeros(if g.offload.head { b * cfg.n_vocab } else { 0 })?,
            host_rows: Vec::with_capacity(b),
            host_spans: Vec::with_capacity(2 * b),
        })
    }
}
