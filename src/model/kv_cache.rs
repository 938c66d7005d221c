//! [`KvCache`]: keys and values of every layer for a fixed number of sequences, allocated once.
//!
//! Each sequence owns a slot of `n_ctx` rows per layer, row `p` holding position `p`. Keeping
//! a sequence's positions contiguous makes the rows a token attends to (its sequence, at or
//! before its position, within the sliding window on SWA layers) one slice of the buffer.
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

use super::Config;

/// Element type of the KV cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvType {
    /// Half precision (llama.cpp's default): half the memory.
    #[default]
    F16,
    /// Single precision.
    F32,
}

/// The K and V buffers of every layer, in one element type.
#[derive(Debug)]
pub(crate) struct KvStore<T> {
    pub k: Vec<Vec<T>>, // [n_layer][n_seq, n_ctx, n_head_kv * head_dim]
    pub v: Vec<Vec<T>>, // [n_layer][n_seq, n_ctx, n_head_kv * head_dim]
}

impl<T: KvScalar> KvStore<T> {
    fn new(n_layer: usize, len: usize) -> Self {
        let zero = T::from_f32(0.0);
        KvStore { k: vec![vec![zero; len]; n_layer], v: vec![vec![zero; len]; n_layer] }
    }
}

#[derive(Debug)]
pub(crate) enum Store {
    F16(KvStore<f16>),
    F32(KvStore<f32>),
}

/// Keys and values for `n_seq` sequences of up to `n_ctx` positions each.
#[derive(Debug)]
pub struct KvCache {
    pub(crate) n_ctx: usize,
    pub(crate) n_seq: usize,
    pub(crate) n_layer: usize,
    pub(crate) kv_dim: usize,
    /// Positions written per sequence (the next position to write).
    pub(crate) lens: Vec<usize>, // [n_seq]
    pub(crate) store: Store,
}

impl KvCache {
    /// A cache for `n_seq` sequences of `n_ctx` positions of a model with `cfg`. Allocates
    /// `2 * n_layer * n_seq * n_ctx * n_head_kv * head_dim` elements.
    pub fn new(cfg: &Config, n_ctx: usize, n_seq: usize, kv_type: KvType) -> KvCache {
        let kv_dim = cfg.kv_dim();
        let len = n_seq * n_ctx * kv_dim;
        let store = match kv_type {
            KvType::F16 => Store::F16(KvStore::new(cfg.n_layer, len)),
            KvType::F32 => Store::F32(KvStore::new(cfg.n_layer, len)),
        };
        KvCache { n_ctx, n_seq, n_layer: cfg.n_layer, kv_dim, lens: vec![0; n_seq], store }
    }

    /// Positions per sequence.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Sequence slots.
    pub fn n_seq(&self) -> usize {
        self.n_seq
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

    /// Forgets sequence `seq` (its slot is reused from position 0).
    pub fn clear(&mut self, seq: usize) {
        self.truncate(seq, 0);
    }

    /// Forgets the positions of `seq` from `len` on (rejected draft tokens of speculative
    /// decoding); a longer `len` changes nothing.
    pub fn truncate(&mut self, seq: usize, len: usize) {
        if let Some(l) = self.lens.get_mut(seq) {
            *l = (*l).min(len);
        }
    }

    /// Forgets every sequence.
    pub fn clear_all(&mut self) {
        self.lens.fill(0);
    }

    /// Bytes held by the K and V buffers.
    pub fn bytes(&self) -> usize {
        let elem = match self.store {
            Store::F16(_) => 2,
            Store::F32(_) => 4,
        };
        2 * self.n_layer * self.n_seq * self.n_ctx * self.kv_dim * elem
    }
}
