//! A model's rotary embeddings, and the one choice that depends on the context size.
//!
//! LongRoPE (Phi-3) ships two sets of frequency factors. llama.cpp picks one per context, not
//! per position (`llama_model::get_rope_factors`): the long factors once the context per
//! sequence exceeds `rope.scaling.original_context_length`, the short ones otherwise, for
//! every token. So the same token at the same position gets other logits in a larger cache;
//! [`Ropes::at`] makes that explicit by taking the cache's positions per sequence.
//! Llama 3's `rope_freqs` take precedence over both (as in llama.cpp) and serve every context.
//!
//! Sliding-window layers use their own base and scale and no factors (Gemma 3).

use pupil_kernels::ops::Rope;

use super::Config;
use super::arch::Role;
use super::weights::Tensors;

/// The RoPE parameters of a model's layers.
#[derive(Clone, Debug)]
pub(crate) struct Ropes {
    /// Global layers: Llama 3's factors, LongRoPE's short ones, or none.
    global: Rope,
    /// Global layers in a context past `n_ctx_orig`, when the model has LongRoPE long factors.
    long: Option<Rope>,
    /// Sliding-window layers.
    swa: Rope,
    /// The context the short factors serve.
    n_ctx_orig: usize,
}

impl Ropes {
    /// The ropes of a model with hyperparameters `cfg` and per-model tensors `model`.
    pub fn new(cfg: &Config, model: &Tensors) -> Ropes {
        let neox = cfg.arch.spec().rope_neox;
        let global = |factors: Option<&[f32]>| Rope {
            n_dims: cfg.n_rot,
            base: cfg.rope_base,
            freq_scale: cfg.rope_freq_scale,
            freq_factors: factors.map(<[f32]>::to_vec),
            mscale: cfg.rope_attn_factor,
            neox,
        };
        let freqs = model.optional(Role::RopeFreqs);
        Ropes {
            global: global(freqs.or(model.optional(Role::RopeFactorsShort))),
            long: model.optional(Role::RopeFactorsLong).filter(|_| freqs.is_none()).map(|f| global(Some(f))),
            swa: Rope {
                n_dims: cfg.n_rot,
                base: cfg.rope_base_swa,
                freq_scale: cfg.rope_freq_scale_swa,
                freq_factors: None,
                mscale: cfg.rope_attn_factor,
                neox,
            },
            n_ctx_orig: cfg.n_ctx_orig,
        }
    }

    /// The rope that rotates vectors by angles from [`Rope::angles`] of any of these ropes:
    /// rotation reads only the layout (rotated dimensions, NeoX or not), which they share.
    pub fn rotation(&self) -> &Rope {
        &self.global
    }

    /// The ropes of global and of sliding-window layers, for a KV cache of `n_ctx` positions
    /// per sequence.
    ///
    /// llama.cpp compares its context per sequence after rounding it up to a multiple of 256;
    /// pupil compares the cache's own size, so the two choose alike whenever the cache size is
    /// such a multiple (or the rounding does not cross `original_context_length`).
    pub fn at(&self, n_ctx: usize) -> (&Rope, &Rope) {
        let global = match &self.long {
            Some(long) if n_ctx > self.n_ctx_orig => long,
            _ => &self.global,
        };
        (global, &self.swa)
    }
}

#[cfg(test)]
mod tests {
    use pupil_kernels::DType;

    use super::super::synth::{Synth, SynthModel};
    use super::super::{Arch, Batch, KvType, Model};

    /// Logits of `tokens` from position 0 in a cache of `n_ctx` positions.
    fn logits(m: &Model, tokens: &[u32], n_ctx: usize) -> Vec<f32> {
        let mut cache = m.new_cache(Some(n_ctx), 1, KvType::F32);
        let mut scratch = m.new_scratch(tokens.len(), &cache);
        let mut batch = Batch::new();
        batch.push_sequence(tokens, 0, 0, true);
        let mut out = vec![0.0; tokens.len() * m.config().n_vocab];
        m.forward(&batch, &mut cache, &mut scratch, &mut out).unwrap();
        out
    }

    #[test]
    fn longrope_takes_the_long_factors_only_past_the_original_context() {
        let spec = Synth {
            n_layer: 1,
            n_vocab: 300,
            rope_freqs: true,
            n_ctx_orig: Some(128),
            ..Synth::new(Arch::Phi3, DType::F32)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phi3.gguf");
        SynthModel::build(&spec, None).unwrap().write(&path).unwrap();
        let m = Model::open(&path).unwrap();
        assert_eq!((m.config().n_ctx_orig, m.config().rope_attn_factor), (128, 1.0));
        let tokens: Vec<u32> = (0..48).map(|i| 3 + (i * 37) % 290).collect();
        let (short, at_orig, long) = (logits(&m, &tokens, 64), logits(&m, &tokens, 128), logits(&m, &tokens, 129));
        assert_eq!(short, at_orig, "a context of exactly original_context_length is short");
        assert_eq!(short[..300], long[..300], "position 0 does not turn whatever the factors");
        let diff = short.iter().zip(&long).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(diff > 1e-2, "the long factors change the logits: max |diff| {diff}");

        // Without LongRoPE factors the context size changes nothing.
        let plain = Synth { rope_freqs: false, ..spec };
        SynthModel::build(&plain, None).unwrap().write(&path).unwrap();
        let m = Model::open(&path).unwrap();
        assert_eq!(logits(&m, &tokens, 64), logits(&m, &tokens, 129));
    }
}
