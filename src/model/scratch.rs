//! [`Scratch`]: every intermediate buffer of a forward pass, sized once for the largest batch
//! so that decoding allocates nothing.

use pupil_kernels::DType;
use pupil_kernels::ops::Activations;

use super::block::Buf;
use super::{Config, KvCache};

/// Working memory of [`Model::forward`](super::Model::forward) for batches of up to
/// `max_batch` tokens over a cache of `n_ctx` positions and `n_seq` sequences.
#[derive(Debug)]
pub struct Scratch {
    pub(crate) max_batch: usize,
    pub(crate) n_ctx: usize,
    pub(crate) n_seq: usize,
    /// `(n_embd, q_dim, kv_dim, n_ff, n_rot)` of the model it was built for.
    pub(crate) dims: (usize, usize, usize, usize, usize),
    pub(crate) x: Vec<f32>,                        // [max_batch, n_embd] residual stream
    pub(crate) xn: Vec<f32>,                       // [max_batch, n_embd] normed block input; final-normed wanted rows
    pub(crate) out: Vec<f32>,                      // [max_batch, n_embd] attention / FFN block output
    pub(crate) q: Vec<f32>,                        // [max_batch, n_head * head_dim]
    pub(crate) k: Vec<f32>,                        // [max_batch, n_head_kv * head_dim]
    pub(crate) v: Vec<f32>,                        // [max_batch, n_head_kv * head_dim]
    pub(crate) attn: Vec<f32>,                     // [max_batch, n_head * head_dim]
    pub(crate) gate: Vec<f32>,                     // [max_batch, n_ff]
    pub(crate) up: Vec<f32>,                       // [max_batch, n_ff]
    pub(crate) head: Vec<f32>,                     // [head_dim] one head, for Q/K norms
    pub(crate) scores: Vec<f32>,                   // [runs, n_ctx] attention scores, one head per parallel run
    pub(crate) spans: Vec<std::ops::Range<usize>>, // [max_batch] cache rows each token attends to
    pub(crate) rope: Vec<f32>,                     // [max_batch, n_rot] cos/sin per token, global layers
    pub(crate) rope_swa: Vec<f32>,                 // [max_batch, n_rot] cos/sin per token, sliding-window layers
    pub(crate) lens: Vec<usize>,                   // [n_seq] cache lengths after the batch, while validating
    pub(crate) needs: Vec<usize>,                  // [n_seq] oldest position the batch's tokens attend to
    pub(crate) oldest: Vec<usize>,                 // [n_seq] oldest position each ring keeps for the batch
    pub(crate) act: Activations,                   // [max_batch, max(n_embd, n_ff)] converted matmul input
    /// The device buffers of offloaded blocks, made by the first pass that needs them.
    #[cfg(feature = "cuda")]
    pub(crate) gpu: Option<Box<super::gpu::state::GpuScratch>>,
}

impl Scratch {
    /// Buffers for a model with `cfg`, batches of up to `max_batch` tokens, and `cache`, for
    /// as many threads as the current rayon pool has (the global pool if called outside one).
    pub fn new(cfg: &Config, max_batch: usize, cache: &KvCache) -> Scratch {
        Scratch::for_threads(cfg, max_batch, cache, rayon::current_num_threads())
    }

    /// How many GPU decode steps this scratch holds recorded for replay (CUDA graphs): 0
    /// without offload, with `PUPIL_GPU_GRAPHS=0`, or where recording failed (a warning
    /// says why); for tests and diagnostics.
    pub fn recorded_steps(&self) -> usize {
        #[cfg(feature = "cuda")]
        if let Some(g) = &self.gpu {
            return g.graphs.len();
        }
        0
    }

    /// [`Scratch::new`] for a pool of `threads` workers. Converts a zero buffer to size the
    /// activations, which runs parallel loops: call it inside the pool that will run it.
    pub(crate) fn for_threads(cfg: &Config, max_batch: usize, cache: &KvCache, threads: usize) -> Scratch {
        let b = max_batch.max(1);
        let (e, qd, kvd, ff, rot) = (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff, cfg.n_rot);
        let mut act = Activations::new();
        // F32 is the widest activation type; converting the largest input once reserves the
        // most any matmul will need, so no later batch grows the buffer.
        let widest = b * e.max(ff).max(qd);
        let _ = act.quantize(DType::F32, &vec![0.0; widest], b, widest / b);
        Scratch {
            max_batch: b,
            n_ctx: cache.n_ctx,
            n_seq: cache.n_seq,
            dims: (e, qd, kvd, ff, rot),
            x: vec![0.0; b * e],
            xn: vec![0.0; b * e],
            out: vec![0.0; b * e],
            q: vec![0.0; b * qd],
            k: vec![0.0; b * kvd],
            v: vec![0.0; b * kvd],
            attn: vec![0.0; b * qd],
            gate: vec![0.0; b * ff],
            up: vec![0.0; b * ff],
            head: vec![0.0; cfg.head_dim],
            // A few runs per thread, so that the (token, head) pairs of a causal batch, whose
            // costs grow with the position, balance over the threads.
            scores: vec![0.0; cache.n_ctx * 4 * threads.max(1)],
            spans: Vec::with_capacity(b),
            rope: vec![0.0; b * rot],
            rope_swa: vec![0.0; b * rot],
            lens: Vec::with_capacity(cache.n_seq),
            needs: Vec::with_capacity(cache.n_seq),
            oldest: Vec::with_capacity(cache.n_seq),
            act,
            #[cfg(feature = "cuda")]
            gpu: None,
        }
    }

    /// The activation buffers by [`Buf`] (in its order), and the matmul input buffer.
    pub(crate) fn bufs(&mut self) -> ([&mut Vec<f32>; Buf::COUNT], &mut Activations) {
        let s = self;
        (
            [&mut s.x, &mut s.xn, &mut s.out, &mut s.q, &mut s.k, &mut s.v, &mut s.attn, &mut s.gate, &mut s.up],
            &mut s.act,
        )
    }

    /// The most tokens a batch may have.
    pub fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Whether these buffers fit a model with `cfg` and `cache`.
    pub(crate) fn fits(&self, cfg: &Config, cache: &KvCache) -> bool {
        self.dims == (cfg.n_embd, cfg.q_dim(), cfg.kv_dim(), cfg.n_ff, cfg.n_rot)
            && self.n_ctx >= cache.n_ctx
            && self.n_seq >= cache.n_seq
            && self.head.len() == cfg.head_dim
    }
}
