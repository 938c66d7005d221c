//! [`KvCache`]: keys and values of every layer for a fixed number of sequences, allocated once.
//!
//! Each sequence owns a slot of rows per layer. On global layers the slot has `n_ctx` rows,
//! row `p` holding position `p`. On sliding-window layers (5 of 6 in Gemma 3) a token sees
//! only the last `window` positions, so a [windowed](KvCache::windowed) cache gives them a
//! *ring* of `window + max_batch` rows (rounded up to 64), as llama.cpp's iSWA cache does
//! (`llama-kv-cache-iswa.cpp`: `n_swa + n_ubatch`, padded): memory per slot then follows the
//! window, not the context.
//!
//! The ring keeps its rows in position order: row `r` holds position `oldest + r`. When a
//! batch would write past the last row, the rows its tokens still attend to, and half the
//! spare rows' worth of history before them, are first moved to the front (one
//! `copy_within` per layer, every `max_batch / 2` positions or so) and the older ones are
//! dropped. The rows a token attends to (its sequence, at or before its
//! position, within the window on SWA layers) are therefore always one contiguous slice, in
//! position order: the attention kernel takes them unchanged and sums them in the same order
//! as over a full-size cache, so the logits are the same bits whether the rows were moved or
//! not, and whether a prompt ran in one batch or in chunks. (A wrapping ring would split a
//! span in two and need the kernels, tiled prefill included, to take two pieces.)
//!
//! What a ring has dropped cannot come back: truncating a sequence, or copying its prefix,
//! to a length whose window reaches before the oldest row held is a typed error
//! ([`ModelError::PrefixEvicted`]); [`KvCache::min_prefix`] says how short is possible.
//! Entries are stored as f16 by default, as llama.cpp does, or as f32.
//!
//! ```no_run
//! # fn main() -> Result<(), pupil::model::ModelError> {
//! use pupil::model::{self, KvType};
//! let m = model::load("models/gemma-3-270m-q4_k_m.gguf")?;
//! let mut cache = m.new_cache(Some(2048), 4, KvType::F16); // 4 sequences of up to 2048 tokens
//! assert_eq!((cache.n_ctx(), cache.n_seq(), cache.len(0)), (2048, 4, 0));
//! cache.clear(0);
//! # Ok(()) }
//! ```

use half::f16;
use pupil_kernels::ops::KvScalar;

use super::{Config, ModelError};

/// Ring sizes are rounded up to a multiple of this many rows, so that a cache sized for
/// one-token batches moves its rows every 64 positions rather than at every step.
const RING_ALIGN: usize = 64;

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Half precision (llama.cpp's default): half the memory.
    #[default]
    F16,
    /// Single precision.
    F32,
}

impl KvType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            KvType::F16 => 2,
            KvType::F32 => 4,
        }
    }
}

/// The K and V buffers of every layer, in one element type.
#[derive(Debug)]
pub(crate) struct KvStore<T> {
    pub k: Vec<Vec<T>>, // [n_layer][n_seq, rows(layer), n_head_kv * head_dim]
    pub v: Vec<Vec<T>>, // [n_layer][n_seq, rows(layer), n_head_kv * head_dim]
}

impl<T: KvScalar> KvStore<T> {
    /// Buffers of `lens[l]` elements for layer `l`.
    fn new(lens: &[usize]) -> Self {
        let zero = T::from_f32(0.0);
        KvStore { k: lens.iter().map(|&n| vec![zero; n]).collect(), v: lens.iter().map(|&n| vec![zero; n]).collect() }
    }

    /// In every layer whose row count is `rows`, the elements `op` moves.
    fn copy_rows(&mut self, rows_of: &[usize], rows: usize, kv_dim: usize, op: RowOp) {
        let (from, to) = op.elements(rows, kv_dim);
        for (il, &r) in rows_of.iter().enumerate() {
            if r == rows {
                self.k[il].copy_within(from.clone(), to);
                self.v[il].copy_within(from.clone(), to);
            }
        }
    }
}

/// The rows a sliding-window layer needs for batches of up to `max_batch` tokens: the
/// window, the batch, rounded up (`usize::MAX` for a model without a window).
fn ring_for(cfg: &Config, max_batch: usize) -> usize {
    cfg.sliding_window.map_or(usize::MAX, |w| (w + max_batch.max(1)).next_multiple_of(RING_ALIGN))
}

/// The window the cache rings (`None` if no layer slides), the ring's rows per slot (at most
/// `n_ctx`), and the rows per slot of each layer.
fn layout(cfg: &Config, n_ctx: usize, ring: usize) -> (Option<usize>, usize, Vec<usize>) {
    let window = cfg.sliding_window.filter(|_| cfg.swa_layers.iter().any(|&s| s));
    let ring = if window.is_some() { ring.min(n_ctx) } else { n_ctx };
    let rows = (0..cfg.n_layer).map(|il| if window.is_some() && cfg.swa_layers[il] { ring } else { n_ctx }).collect();
    (window, ring, rows)
}

/// A move of rows within one layer's buffer, in rows of a slot.
#[derive(Clone, Copy, Debug)]
enum RowOp {
    /// Rows `[from, to)` of slot `seq` to its rows `[0, to - from)`.
    Slide { seq: usize, from: usize, to: usize },
    /// Rows `[0, n)` of slot `src` to the same rows of slot `dst`.
    Copy { src: usize, dst: usize, n: usize },
}

impl RowOp {
    /// The elements moved and where they go, in a layer of `rows` rows per slot.
    fn elements(self, rows: usize, kv_dim: usize) -> (std::ops::Range<usize>, usize) {
        let slot = rows * kv_dim;
        match self {
            RowOp::Slide { seq, from, to } => (seq * slot + from * kv_dim..seq * slot + to * kv_dim, seq * slot),
            RowOp::Copy { src, dst, n } => (src * slot..src * slot + n * kv_dim, dst * slot),
        }
    }
}

#[derive(Debug)]
pub(crate) enum Store {
    F16(KvStore<f16>),
    F32(KvStore<f32>),
}

/// Keys and values for `n_seq` sequences of up to `n_ctx` positions each. Built by
/// [`KvCache::new`] every layer keeps every position; built by [`KvCache::windowed`] (as a
/// [`Context`](super::Context) does) the sliding-window layers keep a ring of
/// `window + max_batch` rows per sequence, in position order, moving them to the front when
/// a batch would write past the end: the same logits, bit for bit, in a fraction of the bytes.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) n_ctx: usize,
    pub(crate) n_seq: usize,
    pub(crate) n_layer: usize,
    pub(crate) kv_dim: usize,
    /// The sliding window of the model's SWA layers (`None`: it has none).
    pub(crate) window: Option<usize>,
    /// Rows per slot of the SWA layers: `n_ctx` when they keep everything.
    pub(crate) ring: usize,
    /// Rows per slot of each layer: `n_ctx`, or `ring` on SWA layers.
    pub(crate) rows: Vec<usize>, // [n_layer]
    /// Positions written per sequence (the next position to write).
    pub(crate) lens: Vec<usize>, // [n_seq]
    /// Per sequence, the position held in row 0 of its SWA rings (0 until a ring fills).
    pub(crate) oldest: Vec<usize>, // [n_seq]
    pub(crate) store: Store,
    /// The offloaded layers' rows on the GPU, made by the first forward pass that needs them.
    #[cfg(feature = "cuda")]
    pub(crate) gpu: Option<crate::model::gpu::state::GpuKv>,
}

impl KvCache {
    /// A cache for `n_seq` sequences of `n_ctx` positions of a model with `cfg`, every layer
    /// keeping every position (as llama.cpp's `swa_full`). Allocates
    /// `2 * n_layer * n_seq * n_ctx * n_head_kv * head_dim` elements.
    pub fn new(cfg: &Config, n_ctx: usize, n_seq: usize, kv_type: KvType) -> KvCache {
        KvCache::with_ring(cfg, n_ctx, n_seq, n_ctx, kv_type)
    }

    /// A cache whose sliding-window layers keep `window + max_batch` rows per sequence
    /// (rounded up to a multiple of 64, at most `n_ctx`): enough for any batch of up to
    /// `max_batch` tokens. Global layers keep `n_ctx` rows.
    pub fn windowed(cfg: &Config, n_ctx: usize, n_seq: usize, max_batch: usize, kv_type: KvType) -> KvCache {
        KvCache::with_ring(cfg, n_ctx, n_seq, ring_for(cfg, max_batch), kv_type)
    }

    /// The bytes one slot of a cache of `n_ctx` positions takes: [`windowed`](Self::windowed)
    /// for batches of `max_batch`, or [`new`](Self::new) (every layer full-size) if `None`.
    /// Allocates nothing: to size a server's slots before building its context.
    pub fn slot_bytes(cfg: &Config, n_ctx: usize, max_batch: Option<usize>, kv_type: KvType) -> usize {
        let ring = max_batch.map_or(n_ctx, |b| ring_for(cfg, b));
        let (_, _, rows) = layout(cfg, n_ctx, ring);
        2 * rows.iter().sum::<usize>() * cfg.kv_dim() * kv_type.size()
    }

    fn with_ring(cfg: &Config, n_ctx: usize, n_seq: usize, ring: usize, kv_type: KvType) -> KvCache {
        let kv_dim = cfg.kv_dim();
        let (window, ring, rows) = layout(cfg, n_ctx, ring);
        let lens: Vec<usize> = rows.iter().map(|r| n_seq * r * kv_dim).collect();
        let store = match kv_type {
            KvType::F16 => Store::F16(KvStore::new(&lens)),
            KvType::F32 => Store::F32(KvStore::new(&lens)),
        };
        KvCache {
            n_ctx,
            n_seq,
            n_layer: cfg.n_layer,
            kv_dim,
            window,
            ring,
            rows,
            lens: vec![0; n_seq],
            oldest: vec![0; n_seq],
            store,
            #[cfg(feature = "cuda")]
            gpu: None,
        }
    }

    /// Positions per sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Sequence slots.
    pub fn n_seq(&self) -> usize {
        self.n_seq
    }

    /// Rows per sequence of the sliding-window layers (`n_ctx` if they keep everything, or
    /// the model has none).
    pub fn ring_rows(&self) -> usize {
        self.ring
    }

    /// Element type.
    pub fn kv_type(&self) -> KvType {
        match self.store {
            Store::F16(_) => KvType::F16,
            Store::F32(_) => KvType::F32,
        }
    }

    /// Positions written to sequence `seq` (0 for an unknown sequence): the next position a
    /// batch may give it.
    pub fn len(&self, seq: usize) -> usize {
        self.lens.get(seq).copied().unwrap_or(0)
    }

    /// Whether no sequence holds anything.
    pub fn is_empty(&self) -> bool {
        self.lens.iter().all(|&l| l == 0)
    }

    /// The first position of `seq` its sliding-window layers still hold (0 for an unknown
    /// sequence, and always 0 when they keep everything).
    pub fn oldest(&self, seq: usize) -> usize {
        self.oldest.get(seq).copied().unwrap_or(0)
    }

    /// The shortest non-empty prefix of `seq` that is still whole: the shortest length it
    /// can be [truncated](Self::truncate) to, or [copied](Self::copy_prefix) at, other than 0.
    /// A prefix of `n` is whole when the window of its next position `n` starts at or after
    /// [`oldest`](Self::oldest).
    pub fn min_prefix(&self, seq: usize) -> usize {
        match (self.window, self.oldest(seq)) {
            (Some(w), oldest) if oldest > 0 => (oldest + w - 1).min(self.len(seq)),
            _ => 0,
        }
    }

    /// Forgets sequence `seq` (its slot is reused from position 0).
    pub fn clear(&mut self, seq: usize) {
        if seq < self.n_seq {
            self.lens[seq] = 0;
            self.oldest[seq] = 0;
        }
    }

    /// Forgets the positions of `seq` from `len` on (rejected draft tokens of speculative
    /// decoding); a longer `len` changes nothing.
    ///
    /// Fails, changing nothing, if `seq` is out of range, or if the sliding-window layers no
    /// longer hold the window of position `len` (`len` below [`min_prefix`](Self::min_prefix)
    /// and above 0).
    pub fn truncate(&mut self, seq: usize, len: usize) -> Result<(), ModelError> {
        self.check_prefix(seq, len)?;
        if len == 0 {
            self.clear(seq);
        } else {
            self.lens[seq] = self.lens[seq].min(len);
        }
        Ok(())
    }

    /// Makes `dst` hold the first `n` positions of `src` (a shared system prompt computed
    /// once): the same keys and values at the same positions, so a batch continuing `dst`
    /// gives the logits continuing `src` would. Whatever `dst` held is forgotten.
    ///
    /// Fails, changing nothing, if either sequence is out of range, `src` holds fewer than
    /// `n` positions, or its prefix of `n` is no longer whole (see
    /// [`min_prefix`](Self::min_prefix)).
    pub fn copy_prefix(&mut self, src: usize, dst: usize, n: usize) -> Result<(), ModelError> {
        self.check_prefix(src, n)?;
        if dst >= self.n_seq {
            return Err(ModelError::NoSequence { seq: dst, n_seq: self.n_seq });
        }
        if n > self.lens[src] {
            return Err(ModelError::PrefixTooLong { seq: src, n, len: self.lens[src] });
        }
        if src == dst {
            return self.truncate(src, n);
        }
        let oldest = if n == 0 { 0 } else { self.oldest[src] };
        // Global layers: positions [0, n); rings: every row `src` holds up to `n`, so that
        // `dst` can be truncated as far back as `src` could.
        let (n_ctx, ring) = (self.n_ctx, self.ring);
        let ops = [(n_ctx, RowOp::Copy { src, dst, n }), (ring, RowOp::Copy { src, dst, n: n - oldest })];
        for (rows, op) in ops.into_iter().take(if ring == n_ctx { 1 } else { 2 }) {
            self.move_rows(rows, op)?;
        }
        self.lens[dst] = n;
        self.oldest[dst] = oldest;
        Ok(())
    }

    /// Checks that `seq` exists and that its prefix of `len` (if shorter than what it holds)
    /// is whole.
    fn check_prefix(&self, seq: usize, len: usize) -> Result<(), ModelError> {
        if seq >= self.n_seq {
            return Err(ModelError::NoSequence { seq, n_seq: self.n_seq });
        }
        let min = self.min_prefix(seq);
        if len > 0 && len < min {
            return Err(ModelError::PrefixEvicted { seq, len, min_len: min, oldest: self.oldest[seq] });
        }
        Ok(())
    }

    /// The oldest position the rings of `seq` are to hold after a batch that leaves it `len`
    /// positions long and whose windows reach back to `needs` (`usize::MAX`: the batch has no
    /// token of `seq`): unchanged while the rows fit, else moved on just enough for the
    /// batch, keeping half of the ring's spare rows as history before `needs` (so that
    /// rejected draft tokens or an edited chat turn can still be truncated away), and the
    /// other half free for the next positions (so that the rows move every `spare / 2`
    /// tokens, not every token).
    pub(crate) fn plan_slide(&self, seq: usize, len: usize, needs: usize) -> Result<usize, ModelError> {
        let oldest = self.oldest[seq];
        if len - oldest <= self.ring {
            return Ok(oldest);
        }
        if len - needs > self.ring {
            return Err(ModelError::RingOverflow { seq, span: len - needs, rows: self.ring });
        }
        let spare = self.ring - self.window.unwrap_or(0).min(self.ring);
        Ok((len - self.ring).max(needs.saturating_sub(spare / 2)))
    }

    /// Moves the ring rows of `seq` so that row 0 holds position `oldest` (at or after the
    /// current oldest), dropping the rows before it. Called by the forward pass before a batch
    /// that would otherwise write past the last row.
    pub(crate) fn slide(&mut self, seq: usize, oldest: usize) -> Result<(), ModelError> {
        let old = self.oldest[seq];
        if oldest <= old {
            return Ok(());
        }
        let (from, to) = (oldest - old, self.lens[seq].saturating_sub(old).max(oldest - old));
        self.move_rows(self.ring, RowOp::Slide { seq, from, to })?;
        self.oldest[seq] = oldest;
        Ok(())
    }

    /// `op` in every layer of `rows` rows per slot: on the host and, for offloaded layers,
    /// on the device.
    fn move_rows(&mut self, rows: usize, op: RowOp) -> Result<(), ModelError> {
        match &mut self.store {
            Store::F16(kv) => kv.copy_rows(&self.rows, rows, self.kv_dim, op),
            Store::F32(kv) => kv.copy_rows(&self.rows, rows, self.kv_dim, op),
        }
        #[cfg(feature = "cuda")]
        if let Some(g) = &mut self.gpu {
            let (from, to) = op.elements(rows, self.kv_dim);
            g.copy_within(&self.rows, rows, from, to).map_err(|e| ModelError::Device { reason: e.to_string() })?;
        }
        Ok(())
    }

    /// Forgets every sequence.
    pub fn clear_all(&mut self) {
        self.lens.fill(0);
        self.oldest.fill(0);
    }

    /// Bytes held by the K and V buffers of all sequences.
    pub fn bytes(&self) -> usize {
        self.n_seq * self.bytes_per_seq()
    }

    /// Bytes of the K and V buffers each sequence slot owns: `n_ctx` rows per global layer,
    /// the ring's rows per sliding-window layer.
    pub fn bytes_per_seq(&self) -> usize {
        2 * self.rows.iter().sum::<usize>() * self.kv_dim * self.kv_type().size()
    }

    /// Bytes of the rows that hold positions of `seq` now (at most
    /// [`bytes_per_seq`](Self::bytes_per_seq)).
    pub fn bytes_used(&self, seq: usize) -> usize {
        let (len, oldest) = (self.len(seq), self.oldest(seq));
        let rows: usize = self.rows.iter().map(|&r| if r == self.n_ctx { len } else { len - oldest }).sum();
        2 * rows * self.kv_dim * self.kv_type().size()
    }
}
