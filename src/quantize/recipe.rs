//! Which type each tensor gets: llama.cpp's mixture rules (`llama_tensor_get_type` and the
//! functions it calls in `src/llama-quant.cpp`), for the file types pupil makes.
//!
//! The rules read a tensor's name (its category and, for FFN tensors, its layer), its row
//! length, a few hyperparameters, and counters of how many `attn_v` / `ffn_down` tensors came
//! before it: so [`Recipe::select`] must be called once per tensor, in the order the file is
//! written (see `plan.rs`). Branches that only fire for file types pupil cannot make (the
//! i-quants, ternary and MXFP4 recipes) are left out; every other branch is kept, including
//! the Falcon, 70B and 8-expert ones, so that the table reads like llama.cpp's.

use pupil_kernels::DType;

use super::QuantizeError;
use super::types::{default_type, is_quantized};
use crate::gguf::{Array, FileType, Gguf, Value};

/// The hyperparameters the rules read (`qs.model.hparams` and `qs.model.type`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hparams {
    /// `general.architecture`.
    pub arch: String,
    /// `{arch}.block_count`.
    pub n_layer: i64,
    /// `{arch}.attention.head_count` (of layer 0 if per-layer).
    pub n_head: i64,
    /// `{arch}.attention.head_count_kv` (default: `n_head`).
    pub n_head_kv: i64,
    /// `{arch}.expert_count` (default 0).
    pub n_expert: i64,
}

impl Hparams {
    /// Reads them from a file's metadata; `None` names the missing key.
    pub fn from_gguf(g: &Gguf) -> Result<Hparams, String> {
        let arch = g.architecture().ok_or("general.architecture")?.to_owned();
        // A per-layer array counts as its first layer's value, as `hparams.n_head(0)` does.
        let int = |k: &str| -> Result<Option<i64>, String> {
            let key = format!("{arch}.{k}");
            match g.get(&key) {
                None => Ok(None),
                Some(v) => {
                    let first = match v {
                        Value::Array(Array::U32(x)) => x.first().map(|&x| i64::from(x)),
                        Value::Array(Array::I32(x)) => x.first().map(|&x| i64::from(x)),
                        v => v.as_i64(),
                    };
                    first.map(Some).ok_or(key)
                }
            }
        };
        let n_layer = int("block_count")?.filter(|&n| n > 0).ok_or_else(|| format!("{arch}.block_count"))?;
        let n_head = int("attention.head_count")?.unwrap_or(0);
        let n_head_kv = int("attention.head_count_kv")?.unwrap_or(n_head);
        let n_expert = int("expert_count")?.unwrap_or(0);
        Ok(Hparams { arch, n_layer, n_head, n_head_kv, n_expert })
    }

    /// `hparams.n_gqa()`: query heads per KV head.
    fn n_gqa(&self) -> i64 {
        if self.n_head_kv == 0 { 0 } else { self.n_head / self.n_head_kv }
    }

    /// Whether llama.cpp classes the model as `LLM_TYPE_70B` (its `load_arch_hparams`).
    fn is_70b(&self) -> bool {
        match self.arch.as_str() {
            "llama" => self.n_expert != 8 && self.n_layer == 80 && self.n_head != self.n_head_kv,
            "qwen2" | "olmo" | "deci" => self.n_layer == 80,
            "jais2" => self.n_layer == 68,
            _ => false,
        }
    }

    fn is_falcon(&self) -> bool {
        self.arch == "falcon"
    }
}

/// `tensor_category`: the broad role of a tensor, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    let has = |s: &str| name.contains(s);
    if name == "output.weight" {
        Output
    } else if name == "token_embd.weight" || name == "per_layer_token_embd.weight" {
        TokenEmbd
    } else if has("attn_qkv.weight") {
        AttnQkv
    } else if has("attn_kv_b.weight") {
        AttnKvB
    } else if has("attn_v.weight") {
        AttnV
    } else if has("attn_k.weight") {
        AttnK
    } else if has("attn_q.weight") {
        AttnQ
    } else if has("attn_output.weight") {
        AttnOutput
    } else if has("ffn_up") {
        FfnUp
    } else if has("ffn_gate") {
        FfnGate
    } else if has("ffn_down") {
        FfnDown
    } else {
        Other
    }
}

impl Category {
    /// `category_is_attn_v`: the tensors most sensitive to quantization.
    fn is_attn_v(self) -> bool {
        matches!(self, Category::AttnV | Category::AttnQkv | Category::AttnKvB)
    }
}

/// `tensor_allows_quantization`: matrices whose name ends in `weight`, minus norms, routers,
/// positional tables and the small special tensors llama.cpp keeps as they are. `n_dims` is
/// ggml's (trailing 1s dropped).
pub(crate) fn allows_quantization(name: &str, n_dims: usize) -> bool {
    const KEEP: &[&str] = &[
        "_norm.weight",
        "ffn_gate_inp.weight",
        "ffn_gate_tid2eid.weight",
        "altup",
        "laurel",
        "per_layer_model_proj",
        "ssm_conv1d",
        "shortconv.conv.weight",
        "indexer.k_proj.weight",
        "indexer.q_proj.weight",
        "time_mix_first.weight",
        "time_mix_w0.weight",
        "time_mix_w1.weight",
        "time_mix_w2.weight",
        "time_mix_v0.weight",
        "time_mix_v1.weight",
        "time_mix_v2.weight",
        "time_mix_a0.weight",
        "time_mix_a1.weight",
        "time_mix_a2.weight",
        "time_mix_g1.weight",
        "time_mix_g2.weight",
        "time_mix_decay_w1.weight",
        "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight",
        "attn_rel_b.weight",
        ".position_embd",
        "sam.pos_embd",
        "sam.neck.",
        "sam.net_",
        ".rel_pos",
        ".patch_embd",
        ".patch_merger",
        "a.rvq.codebook",
        "mm.a.code_embd",
    ];
    n_dims >= 2
        && name.ends_with("weight")
        && name != "position_embd.weight"
        && name != "token_types.weight"
        && !KEEP.iter().any(|k| name.contains(k))
}

/// `use_more_bits`: the first and last eighth of the layers, and every third one between.
fn use_more_bits(i_layer: i64, n_layer: i64) -> bool {
    i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2
}

/// The layer of `blk.N.…` as C's `sscanf(name, "blk.%d.")` reads it.
pub(crate) fn layer_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("blk.")?.trim_start();
    let (neg, digits) = match rest.as_bytes().first() {
        Some(b'-') => (true, &rest[1..]),
        Some(b'+') => (false, &rest[1..]),
        _ => (false, rest),
    };
    let end = digits.bytes().position(|b| !b.is_ascii_digit()).unwrap_or(digits.len());
    let n = digits[..end].parse::<i64>().ok()?;
    Some(if neg { -n } else { n })
}

/// A file type's rules, with the counters they keep across tensors.
#[derive(Clone, Debug)]
pub struct Recipe {
    ftype: FileType,
    default: DType,
    pure: bool,
    hp: Hparams,
    has_tied_embeddings: bool,
    n_attention_wv: i64,
    i_attention_wv: i64,
    i_ffn_down: i64,
    i_ffn_gate: i64,
    i_ffn_up: i64,
}

/// The type chosen for one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The type written.
    pub dtype: DType,
    /// The type the rules wanted, when the row length forced a fallback to `dtype`.
    pub fell_back_from: Option<DType>,
}

impl Recipe {
    /// The rules of `ftype` for a model with hyperparameters `hp` whose tensors are `names`
    /// (all of them: the counters and the tied-embeddings test look at the whole list).
    /// `pure` keeps every matrix in the file type's base type (llama-quantize's `--pure`).
    ///
    /// # Panics
    ///
    /// If pupil cannot make `ftype` ([`parse_type`](super::parse_type) only returns types it
    /// can).
    pub fn new<'n>(ftype: FileType, pure: bool, hp: Hparams, names: impl IntoIterator<Item = &'n str>) -> Recipe {
        let Some(default) = default_type(ftype) else { panic!("no recipe for file type {}", ftype.name()) };
        let (mut n_attention_wv, mut has_output) = (0, false);
        for name in names {
            let c = category(name);
            n_attention_wv += i64::from(c.is_attn_v());
            has_output |= c == Category::Output;
        }
        Recipe {
            ftype,
            default,
            pure,
            hp,
            has_tied_embeddings: !has_output,
            n_attention_wv,
            i_attention_wv: 0,
            i_ffn_down: 0,
            i_ffn_gate: 0,
            i_ffn_up: 0,
        }
    }

    /// The type for tensor `name` of shape `dims` (ggml's, trailing 1s dropped) now of type
    /// `current`. Call once per tensor, in file order.
    pub fn select(&mut self, name: &str, dims: &[u64], current: DType) -> Result<Choice, QuantizeError> {
        let keep = Choice { dtype: current, fell_back_from: None };
        if !allows_quantization(name, dims.len()) {
            return Ok(keep);
        }
        if !is_quantized(self.default) {
            return Ok(Choice { dtype: self.default, fell_back_from: None });
        }
        let cols = dims[0];
        let wanted = if self.pure { self.default } else { self.mixture(name, cols)? };
        fallback(name, cols, wanted)
    }

    /// `llama_tensor_get_type_impl`.
    fn mixture(&mut self, name: &str, cols: u64) -> Result<DType, QuantizeError> {
        use Category as C;
        use DType as T;
        use FileType as F;
        let (ftype, hp) = (self.ftype, &self.hp);
        let falcon = hp.is_falcon();
        let mut t = self.default;
        let cat = category(name);
        if cat == C::Output || (self.has_tied_embeddings && cat == C::TokenEmbd) {
            if falcon || !cols.is_multiple_of(t.block_size() as u64) {
                t = T::Q8_0;
            } else if t != T::Q8_0 {
                t = T::Q6_K;
            }
        } else if cat == C::TokenEmbd {
            // Only the i-quant and ternary recipes change token embeddings.
        } else if cat.is_attn_v() {
            match ftype {
                F::Q2_K => t = if hp.n_gqa() >= 4 { T::Q4_K } else { T::Q3_K },
                F::Q3_K_M => t = if self.i_attention_wv < 2 { T::Q5_K } else { T::Q4_K },
                F::Q3_K_L => t = T::Q5_K,
                F::Q4_K_M | F::Q5_K_M if use_more_bits(self.i_attention_wv, self.n_attention_wv) => t = T::Q6_K,
                F::Q4_K_S if self.i_attention_wv < 4 => t = T::Q5_K,
                _ => {}
            }
            // 70B models share attn_v across 8 heads, so it is 8x smaller than attn_q: more
            // bits cost little there.
            if hp.is_70b() && matches!(t, T::Q3_K | T::Q4_K) {
                t = T::Q5_K;
            }
            if hp.n_expert == 8 {
                t = T::Q8_0;
            }
            self.i_attention_wv += 1;
        } else if cat == C::AttnK {
            if hp.n_expert == 8 {
                t = T::Q8_0;
            }
        } else if cat == C::FfnDown {
            let (i, n) = self.layer_info(self.i_ffn_down, name)?;
            match ftype {
                F::Q2_K => t = T::Q3_K,
                F::Q3_K_M => {
                    t = if i < n / 16 {
                        T::Q5_K
                    } else if !falcon || use_more_bits(i, n) {
                        T::Q4_K
                    } else {
                        T::Q3_K
                    }
                }
                F::Q3_K_L => t = if falcon { T::Q4_K } else { T::Q5_K },
                F::Q4_K_M if falcon => {
                    t = if i < n / 16 {
                        T::Q6_K
                    } else if use_more_bits(i, n) {
                        T::Q5_K
                    } else {
                        T::Q4_K
                    }
                }
                F::Q4_K_M | F::Q5_K_M if use_more_bits(i, n) => t = T::Q6_K,
                F::Q4_K_S if !falcon && i < n / 8 => t = T::Q5_K,
                _ => {}
            }
            self.i_ffn_down += 1;
        } else if cat == C::AttnOutput {
            if !falcon {
                if hp.n_expert == 8 {
                    if matches!(ftype, F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M) {
                        t = T::Q5_K;
                    }
                } else {
                    match ftype {
                        F::Q2_K => t = T::Q3_K,
                        F::Q3_K_M => t = T::Q4_K,
                        F::Q3_K_L => t = T::Q5_K,
                        _ => {}
                    }
                }
            } else if ftype == F::Q3_K_L {
                t = T::Q4_K;
            }
        } else if cat == C::AttnQkv {
            match ftype {
                F::Q3_K_M | F::Q3_K_L => t = T::Q4_K,
                F::Q4_K_M => t = T::Q5_K,
                F::Q5_K_M => t = T::Q6_K,
                _ => {}
            }
        } else if cat == C::FfnGate {
            // The layer is still checked (and can fail) for expert models, as llama.cpp does.
            self.layer_info(self.i_ffn_gate, name)?;
            self.i_ffn_gate += 1;
        } else if cat == C::FfnUp {
            self.layer_info(self.i_ffn_up, name)?;
            self.i_ffn_up += 1;
        }
        Ok(t)
    }

    /// `layer_info`: (layer, layer count) of an FFN tensor. Dense models count tensors; expert
    /// models, whose FFN tensors are not in layer order, read the layer from the name.
    fn layer_info(&self, counter: i64, name: &str) -> Result<(i64, i64), QuantizeError> {
        let n = self.hp.n_layer;
        if self.hp.n_expert.max(1) > 1 {
            return match layer_of(name) {
                Some(i) if (0..n).contains(&i) => Ok((i, n)),
                _ => Err(QuantizeError::BadLayer { tensor: name.to_owned(), n_layer: n as u64 }),
            };
        }
        Ok((counter, n))
    }
}

/// `tensor_type_fallback`: a type whose blocks fit rows of `cols`, when `wanted`'s do not.
fn fallback(name: &str, cols: u64, wanted: DType) -> Result<Choice, QuantizeError> {
    let fits = |t: DType| cols.is_multiple_of(t.block_size() as u64);
    if fits(wanted) {
        return Ok(Choice { dtype: wanted, fell_back_from: None });
    }
    let mut t = match wanted {
        DType::Q2_K | DType::Q3_K => DType::Q4_0,
        DType::Q4_K => DType::Q5_0,
        DType::Q5_K => DType::Q5_1,
        DType::Q6_K => DType::Q8_0,
        t if t.block_size() <= 32 => t,
        t => return Err(QuantizeError::NoFallback { tensor: name.to_owned(), cols, dtype: t }),
    };
    // Rows that are not even whole 32-blocks (rare) can only be kept in F16.
    if !fits(t) {
        t = DType::F16;
    }
    Ok(Choice { dtype: t, fell_back_from: Some(wanted) })
}
