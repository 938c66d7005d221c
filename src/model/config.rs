//! [`Config`]: a model's hyperparameters, parsed once from GGUF metadata with llama.cpp's
//! defaults for absent keys (`llama_model_base::load_hparams` and the per-architecture
//! `load_arch_hparams`).
//!
//! ```
//! use pupil::gguf::{Gguf, GgufWriter, Value};
//! use pupil::model::{Arch, Config, ModelError};
//! let mut w = GgufWriter::new();
//! w.add("general.architecture", Value::from("qwen3"));
//! for (k, v) in [("context_length", 4096u32), ("embedding_length", 256), ("block_count", 2),
//!                ("feed_forward_length", 512), ("attention.head_count", 4), ("vocab_size", 1000)] {
//!     w.add(format!("qwen3.{k}"), Value::U32(v));
//! }
//! w.add("qwen3.attention.layer_norm_rms_epsilon", Value::F32(1e-6));
//! let cfg = Config::from_gguf(&Gguf::parse(&w.to_bytes())?)?;
//! assert_eq!((cfg.arch, cfg.n_head_kv, cfg.head_dim, cfg.rope_base), (Arch::Qwen3, 4, 64, 10000.0));
//!
//! w.add("qwen3.attention.head_count", Value::from("four"));
//! let err = Config::from_gguf(&Gguf::parse(&w.to_bytes())?).unwrap_err();
//! assert!(matches!(err, ModelError::BadKey { ref key, .. } if key == "qwen3.attention.head_count"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::ModelError;
use super::arch::{Arch, AttnScale, SwaRule};
use crate::gguf::{Array, Gguf, GgufError};

/// Hyperparameters of a model. Sizes are element counts.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The architecture.
    pub arch: Arch,
    /// Vocabulary size (`{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`).
    pub n_vocab: usize,
    /// Training context length (`context_length`): the default and the cap of a KV cache.
    pub n_ctx_train: usize,
    /// Residual stream width (`embedding_length`).
    pub n_embd: usize,
    /// Transformer blocks (`block_count`).
    pub n_layer: usize,
    /// FFN hidden width (`feed_forward_length`).
    pub n_ff: usize,
    /// Query heads (`attention.head_count`).
    pub n_head: usize,
    /// Key/value heads (`attention.head_count_kv`, default `n_head`).
    pub n_head_kv: usize,
    /// Per-head width of queries, keys and values (`attention.key_length` =
    /// `attention.value_length`, default `n_embd / n_head`).
    pub head_dim: usize,
    /// Rotated dimensions per head (`rope.dimension_count`, default `head_dim`).
    pub n_rot: usize,
    /// RMS norm epsilon (`attention.layer_norm_rms_epsilon`, required).
    pub rms_eps: f32,
    /// RoPE base of global layers (`rope.freq_base`, default 10000).
    pub rope_base: f32,
    /// RoPE position scale of global layers (`1 / rope.scaling.factor`; 1 for none).
    pub rope_freq_scale: f32,
    /// RoPE base of sliding-window layers.
    pub rope_base_swa: f32,
    /// RoPE position scale of sliding-window layers.
    pub rope_freq_scale_swa: f32,
    /// Multiplier of RoPE's cos and sin on every layer (`rope.scaling.attn_factor`, default 1;
    /// Phi-3's LongRoPE sets it), as llama.cpp applies it at every context size.
    pub rope_attn_factor: f32,
    /// The context LongRoPE's short factors serve (`rope.scaling.original_context_length`,
    /// default `n_ctx_train`): a KV cache of more positions per sequence takes the long ones.
    pub n_ctx_orig: usize,
    /// Sliding window in positions: a key at `p0` is visible from `p1` if `p1 - p0 < window`.
    pub sliding_window: Option<usize>,
    /// Per layer: whether it attends within the sliding window. All false without SWA.
    pub swa_layers: Vec<bool>,
    /// Scale applied to `q·k` before the softmax.
    pub attn_scale: f32,
    /// Attention logit soft-cap (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Final logit soft-cap (Gemma 2; Gemma 3 if the key is present).
    pub final_softcap: Option<f32>,
}

/// Typed access to `{arch}.*` metadata with the key named in every error.
struct Meta<'a> {
    g: &'a Gguf,
    prefix: &'static str,
}

fn bad_key(e: GgufError) -> ModelError {
    match e {
        GgufError::WrongType { key, expected, found } => {
            ModelError::BadKey { key, expected: expected.to_owned(), found }
        }
        other => ModelError::Gguf(other),
    }
}

impl Meta<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    /// A count: a non-negative integer, or an array of equal ones (llama.cpp's
    /// `get_key_or_arr`; per-layer values that differ are not supported).
    fn count(&self, suffix: &str) -> Result<Option<usize>, ModelError> {
        let key = self.key(suffix);
        let Some(arr) = self.g.get(&key).and_then(|v| v.as_array()) else {
            let v = self.g.get_u64(&key).map_err(bad_key)?;
            return v.map(|v| usize::try_from(v).map_err(|_| too_large(&key, v))).transpose();
        };
        let vals: Option<Vec<u64>> = match arr {
            Array::I32(v) => v.iter().map(|&x| u64::try_from(x).ok()).collect(),
            Array::U32(v) => Some(v.iter().map(|&x| u64::from(x)).collect()),
            _ => None,
        };
        match vals.as_deref() {
            Some([first, rest @ ..]) if rest.iter().all(|x| x == first) => {
                usize::try_from(*first).map(Some).map_err(|_| too_large(&key, *first))
            }
            Some([_, ..]) => Err(ModelError::Unsupported { what: format!("per-layer values of '{key}' that differ") }),
            _ => Err(invalid(
                key,
                "a non-negative integer or a non-empty array of them",
                format!("array of {}", arr.type_name()),
            )),
        }
    }

    fn req_count(&self, suffix: &str) -> Result<usize, ModelError> {
        self.count(suffix)?.ok_or_else(|| ModelError::MissingKey { key: self.key(suffix) })
    }

    fn float(&self, suffix: &str) -> Result<Option<f32>, ModelError> {
        Ok(self.g.get_f64(&self.key(suffix)).map_err(bad_key)?.map(|v| v as f32))
    }

    fn string(&self, suffix: &str) -> Result<Option<&str>, ModelError> {
        self.g.get_str(&self.key(suffix)).map_err(bad_key)
    }
}

fn too_large(key: &str, v: u64) -> ModelError {
    ModelError::BadKey { key: key.to_owned(), expected: "a count that fits in memory".into(), found: v.to_string() }
}

fn invalid(key: String, expected: &str, found: impl ToString) -> ModelError {
    ModelError::BadKey { key, expected: expected.to_owned(), found: found.to_string() }
}

impl Config {
    /// Parses the hyperparameters of the model described by `g`.
    pub fn from_gguf(g: &Gguf) -> Result<Config, ModelError> {
        let name = g.get_str("general.architecture").map_err(bad_key)?.ok_or(ModelError::NoArchitecture)?;
        let arch = Arch::from_name(name).ok_or_else(|| ModelError::UnknownArchitecture { arch: name.to_owned() })?;
        let spec = arch.spec();
        let m = Meta { g, prefix: spec.name };

        let n_ctx_train = m.req_count("context_length")?;
        let n_embd = m.req_count("embedding_length")?;
        let n_layer = m.req_count("block_count")?;
        let n_ff = m.req_count("feed_forward_length")?;
        let n_head = m.req_count("attention.head_count")?;
        let n_head_kv = m.count("attention.head_count_kv")?.unwrap_or(n_head);
        for (suffix, v) in [("embedding_length", n_embd), ("block_count", n_layer), ("attention.head_count", n_head)] {
            if v == 0 {
                return Err(invalid(m.key(suffix), "a positive count", 0));
            }
        }
        if n_head_kv == 0 || n_head % n_head_kv != 0 {
            return Err(invalid(
                m.key("attention.head_count_kv"),
                &format!("a divisor of head_count {n_head}"),
                n_head_kv,
            ));
        }
        let head_dim = m.count("attention.key_length")?.unwrap_or(n_embd / n_head);
        let head_dim_v = m.count("attention.value_length")?.unwrap_or(n_embd / n_head);
        if head_dim_v != head_dim {
            return Err(ModelError::Unsupported {
                what: format!("value heads of {head_dim_v} with key heads of {head_dim}"),
            });
        }
        let n_rot = m.count("rope.dimension_count")?.unwrap_or(head_dim);
        if n_rot > head_dim || n_rot % 2 != 0 || head_dim == 0 {
            return Err(invalid(
                m.key("rope.dimension_count"),
                &format!("an even count up to the head size {head_dim}"),
                n_rot,
            ));
        }
        let rms_eps = m
            .float("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| ModelError::MissingKey { key: m.key("attention.layer_norm_rms_epsilon") })?;

        let n_vocab = match m.count("vocab_size")? {
            Some(n) => n,
            None => match g.get_array("tokenizer.ggml.tokens").map_err(bad_key)? {
                Some(a) => a.len(),
                None => return Err(ModelError::MissingKey { key: "tokenizer.ggml.tokens".into() }),
            },
        };

        // RoPE: llama.cpp's defaults, then its context-time rule that scaling type "none"
        // means no scaling on global layers.
        let rope_base = m.float("rope.freq_base")?.unwrap_or(10000.0);
        let scaling = m.string("rope.scaling.type")?.unwrap_or("linear");
        let factor = match m.float("rope.scaling.factor")? {
            Some(f) => Some(f),
            None => m.float("rope.scale_linear")?,
        };
        let freq_scale_train = match factor {
            Some(f) if f != 0.0 => 1.0 / f,
            _ => 1.0,
        };
        let rope_attn_factor = m.float("rope.scaling.attn_factor")?.unwrap_or(1.0);
        if !(rope_attn_factor.is_finite() && rope_attn_factor > 0.0) {
            return Err(invalid(m.key("rope.scaling.attn_factor"), "a positive factor", rope_attn_factor));
        }
        let n_ctx_orig = m.count("rope.scaling.original_context_length")?.filter(|&n| n > 0).unwrap_or(n_ctx_train);
        let rope_freq_scale = match scaling {
            "none" => 1.0,
            "linear" => freq_scale_train,
            other => {
                return Err(ModelError::Unsupported {
                    what: format!("RoPE scaling type '{other}' ({})", m.key("rope.scaling.type")),
                });
            }
        };

        let (mut sliding_window, mut rope_base_swa, mut rope_freq_scale_swa, mut pattern) =
            (None, rope_base, rope_freq_scale, 0);
        match spec.swa {
            SwaRule::None => {}
            SwaRule::Always { window, pattern: p } => {
                sliding_window = Some(m.count("attention.sliding_window")?.unwrap_or(window));
                (rope_base_swa, rope_freq_scale_swa, pattern) = (rope_base, freq_scale_train, p);
            }
            SwaRule::IfWindowKey { pattern: p } => {
                if let Some(w) = m.count("attention.sliding_window")?.filter(|&w| w > 0) {
                    sliding_window = Some(w);
                    (rope_base_swa, rope_freq_scale_swa, pattern) = (10000.0, 1.0, p);
                }
            }
        }
        if let Some(b) = m.float("rope.freq_base_swa")?.filter(|_| sliding_window.is_some()) {
            rope_base_swa = b;
        }
        let swa_layers = match sliding_window {
            None => vec![false; n_layer],
            Some(0) => return Err(invalid(m.key("attention.sliding_window"), "a positive window", 0)),
            Some(_) => swa_pattern(&m, pattern, n_layer)?,
        };

        let attn_scale = match spec.attn_scale {
            AttnScale::Gemma { n_layer_27b } if n_layer == n_layer_27b => 1.0 / ((n_embd / n_head) as f32).sqrt(),
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let softcap = |suffix: &str, default: Option<f32>| -> Result<Option<f32>, ModelError> {
            Ok(m.float(suffix)?.or(default).filter(|&c| c != 0.0))
        };
        let attn_softcap = match spec.attn_softcap {
            Some(d) => softcap("attn_logit_softcapping", Some(d))?,
            None => None,
        };
        let final_softcap = softcap("final_logit_softcapping", spec.final_softcap)?;

        Ok(Config {
            arch,
            n_vocab,
            n_ctx_train,
            n_embd,
            n_layer,
            n_ff,
            n_head,
            n_head_kv,
            head_dim,
            n_rot,
            rms_eps,
            rope_base,
            rope_freq_scale,
            rope_base_swa,
            rope_freq_scale_swa,
            rope_attn_factor,
            n_ctx_orig,
            sliding_window,
            swa_layers,
            attn_scale,
            attn_softcap,
            final_softcap,
        })
    }

    /// Width of a query row: `n_head * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_head * self.head_dim
    }

    /// Width of a key or value row: `n_head_kv * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_head_kv * self.head_dim
    }
}

/// `attention.sliding_window_pattern`: an array of per-layer bools, or a period `n` (layer
/// `il` slides when `il % n < n - 1`; 0 means every layer slides), as llama.cpp's
/// `load_swa_pattern`.
fn swa_pattern(m: &Meta<'_>, default: usize, n_layer: usize) -> Result<Vec<bool>, ModelError> {
    let key = m.key("attention.sliding_window_pattern");
    if let Some(Array::Bool(v)) = m.g.get_array(&key).ok().flatten() {
        if v.len() < n_layer {
            return Err(invalid(key, &format!("{n_layer} per-layer flags"), format!("{} flags", v.len())));
        }
        return Ok(v[..n_layer].to_vec());
    }
    let n = m.count("attention.sliding_window_pattern")?.unwrap_or(default);
    Ok((0..n_layer).map(|il| n == 0 || il % n < n - 1).collect())
}
