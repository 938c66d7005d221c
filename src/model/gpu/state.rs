//! The device halves of a [`KvCache`](crate::model::KvCache) and a
//! [`Scratch`](crate::model::Scratch): made at the first forward pass that needs them, sized
//! once, reused by every later pass.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pupil_kernels::cuda::{CudaSlice, Gpu, GpuError, GpuGraph, MatmulScratch};

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
    /// Unique to this cache, for the steps recorded with its buffers ([`StepKey`]).
    pub id: u64,
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
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Ok(GpuKv { gpu: g.gpu.clone(), first, id: NEXT.fetch_add(1, Ordering::Relaxed), k, v })
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

/// Where a pass's tokens go in one kind of layer's cache and what they attend to, uploaded
/// once per pass for every layer of that kind (the same rows per slot and window).
#[derive(Debug)]
pub(crate) struct Table {
    /// Rows per slot, and the sliding window (`None`: all of the past).
    pub kind: (usize, Option<usize>),
    /// A layer of this kind, to read the cache layout of.
    pub layer: usize,
    /// `[max_batch]` cache row of each token; `[max_batch, 2]` its attention span.
    pub rows: CudaSlice<i32>,
    pub spans: CudaSlice<i32>,
    /// The longest span this pass.
    pub longest: usize,
    /// Host staging of `rows` and `spans`.
    pub host_rows: Vec<i32>,
    pub host_spans: Vec<i32>,
}

impl Table {
    pub fn new(gpu: &Gpu, kind: (usize, Option<usize>), layer: usize, max_batch: usize) -> Result<Table, GpuError> {
        Ok(Table {
            kind,
            layer,
            rows: gpu.zeros(max_batch)?,
            spans: gpu.zeros(2 * max_batch)?,
            longest: 1,
            host_rows: Vec::with_capacity(max_batch),
            host_spans: Vec::with_capacity(2 * max_batch),
        })
    }
}

/// Kinds of layer (tables) a recorded step can tell apart.
pub(crate) const MAX_TABLES: usize = 4;
/// Recorded steps kept per scratch (the oldest goes first).
pub(crate) const MAX_GRAPHS: usize = 8;

/// What a recorded step baked in besides the scratch's own buffers: the batch size, which
/// tokens want logits, the cache, and each table's attention parts (launch sizes). A step
/// with the same key replays the recording with the new values in the same buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StepKey {
    pub n: usize,
    pub want: u64,
    pub kv: u64,
    pub splits: [usize; MAX_TABLES],
}

/// Device buffers of a pass over up to `max_batch` tokens, the per-pass tables, and the
/// decode steps recorded on these buffers.
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
    /// One table per kind of layer seen, made at the first pass that has it.
    pub tables: Vec<Table>,
    /// `[offloaded layers]` each layer's table this pass.
    pub layer_table: Vec<usize>,
    pub partial: CudaSlice<f32>,
    pub matmul: MatmulScratch,
    /// `[max_batch, n_vocab]` logits of a GPU head.
    pub logits: CudaSlice<f32>,
    /// Decode steps recorded on these buffers, oldest first (at most [`MAX_GRAPHS`]).
    pub graphs: Vec<(StepKey, GpuGraph)>,
    /// Set when recording failed once: later passes queue their ops one by one.
    pub graphs_off: bool,
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
            tables: Vec::with_capacity(MAX_TABLES),
            layer_table: Vec::with_capacity(cfg.n_layer),
            partial: gpu.zeros(Gpu::attention_scratch_len(b, cfg.n_head, cfg.head_dim, max_span))?,
            matmul: gpu.matmul_scratch(b, widest, g.largest_matrix())?,
            logits: gpu.zeros(if g.offload.head { b * cfg.n_vocab } else { 0 })?,
            graphs: Vec::with_capacity(MAX_GRAPHS),
            graphs_off: false,
        })
    }
}
