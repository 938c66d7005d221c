//! The architectures pupil runs: one [`ArchSpec`] each, holding the tensor table (which
//! tensors the file must or may have) and the few switches that tell the one generic forward
//! pass how this architecture differs from the others.
//!
//! This file is the single source of what a tensor is. Each [`Role`] is described once, in
//! [`Role::def`]: its GGUF name, its shape in terms of the hyperparameters, and its [`Kind`]
//! (a matrix, a norm, a bias, RoPE factors, or several roles fused in one tensor). Each
//! architecture's table says which roles it loads and whether each is [`Need::Required`].
//! The loader (`weights.rs`), the checks at load and the synthesizer (`synth.rs`) walk these
//! tables; none of them names a tensor. The forward pass asks for tensors by role.
//!
//! Facts follow llama.cpp (`src/llama-arch.cpp` for names, `src/models/<arch>.cpp` for the
//! tensors each architecture loads and its graph). Adding an architecture means adding an
//! [`Arch`] variant, its table and its switches here, and its metadata defaults in
//! `config.rs` if they differ — not another forward pass.
//!
//! ```
//! use pupil::model::{Arch, Kind, Role};
//! let spec = Arch::Gemma3.spec();
//! assert!(spec.is_required(Role::AttnQNorm));
//! assert!(Arch::Llama.spec().need(Role::PostAttnNorm).is_none());
//! assert_eq!(Arch::from_name("qwen3"), Some(Arch::Qwen3));
//! // Phi-3 stores Q, K and V in one tensor; the loader hands the forward pass the three parts.
//! assert!(Arch::Phi3.spec().is_required(Role::AttnQkv));
//! assert_eq!(Role::AttnQkv.def().kind, Kind::Fused(&[Role::AttnQ, Role::AttnK, Role::AttnV]));
//! ```

use super::Config;

/// An architecture pupil has a tensor table for (`general.architecture`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Arch {
    /// Llama 1–3 (and Llama 3's `rope_freqs` frequency factors).
    Llama,
    /// Qwen 2 / 2.5: Q, K, V biases.
    Qwen2,
    /// Qwen 3 (dense): per-head RMS norm on Q and K.
    Qwen3,
    /// Gemma 2: post-norms, GELU, embedding scale, attention and final soft-capping,
    /// alternating sliding-window layers.
    Gemma2,
    /// Gemma 3: Gemma 2 with Q/K norms instead of attention soft-capping, five sliding-window
    /// layers per global one, and a separate RoPE base for the local layers.
    Gemma3,
    /// Phi-3 / Phi-4-mini: fused QKV and gate+up matrices, LongRoPE frequency factors chosen
    /// by the context size.
    Phi3,
}

impl Arch {
    /// Every architecture.
    pub const ALL: &'static [Arch] = &[Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma2, Arch::Gemma3, Arch::Phi3];

    /// Their `general.architecture` names, in the order of [`Arch::ALL`].
    pub const NAMES: &'static [&'static str] = &["llama", "qwen2", "qwen3", "gemma2", "gemma3", "phi3"];

    /// The architecture called `name` in `general.architecture`.
    pub fn from_name(name: &str) -> Option<Arch> {
        Self::NAMES.iter().position(|&n| n == name).map(|i| Self::ALL[i])
    }

    /// The `general.architecture` name, also the prefix of its metadata keys.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Its table and switches.
    pub fn spec(self) -> &'static ArchSpec {
        match self {
            Arch::Llama => &LLAMA,
            Arch::Qwen2 => &QWEN2,
            Arch::Qwen3 => &QWEN3,
            Arch::Gemma2 => &GEMMA2,
            Arch::Gemma3 => &GEMMA3,
            Arch::Phi3 => &PHI3,
        }
    }
}

/// Whether a tensor in an architecture's table must be in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Loading fails without it.
    Required,
    /// Used when present (biases, an untied output matrix, RoPE frequency factors).
    Optional,
}

/// What a tensor holds: decides how it is loaded and how the synthesizer fills it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A weight matrix, left in the file's type and memory map.
    Matrix,
    /// An RMS norm weight, widened to f32 at load.
    Norm,
    /// A bias, widened to f32 at load.
    Bias,
    /// RoPE frequency divisors, one per rotated pair, widened to f32 at load.
    RopeFactors,
    /// The rows (or, for vectors, the elements) of these roles stacked in one tensor, in this
    /// order. Loaded as each part's own range of the tensor, so the forward pass sees the
    /// parts and runs them as it runs separate tensors (one activation conversion for all).
    Fused(&'static [Role]),
}

/// The FFN's gate activation (`act(gate(x)) * up(x)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnAct {
    /// SiLU (SwiGLU): Llama, Qwen.
    Silu,
    /// GELU, tanh approximation (GeGLU): Gemma.
    GeluTanh,
}

/// How sliding-window attention is configured, as llama.cpp's per-architecture loaders do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwaRule {
    /// Every layer is global.
    None,
    /// Always on, `window` positions unless `attention.sliding_window` says otherwise; layer
    /// `il` slides when `il % pattern < pattern - 1`; local layers default to the global RoPE
    /// base and scale (Gemma 2).
    Always {
        /// Default window.
        window: usize,
        /// Default `attention.sliding_window_pattern`.
        pattern: usize,
    },
    /// On only when `attention.sliding_window` is present and non-zero; local layers use
    /// `rope.freq_base_swa` (default 10000) and no RoPE scaling (Gemma 3).
    IfWindowKey {
        /// Default `attention.sliding_window_pattern`.
        pattern: usize,
    },
}

/// How the attention score scale is chosen and where it is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnScale {
    /// `1/sqrt(head_dim)`, applied to the scores `q·k`.
    HeadDim,
    /// `1/sqrt(head_dim)`, applied to the queries after RoPE (Phi-3's graph).
    Queries,
    /// Gemma: `1/sqrt(head_dim)`, except the 27B model (recognised by its layer count, as
    /// llama.cpp does) which uses `1/sqrt(n_embd / n_head)`; applied to the queries before
    /// the dot product (and so before Gemma 2's soft-cap), as Gemma's reference does.
    Gemma {
        /// Layer count of the 27B model.
        n_layer_27b: usize,
    },
}

impl AttnScale {
    /// Whether the scale multiplies the queries (rather than the scores `q·k`). Equal up to
    /// rounding; chosen as each reference graph does.
    pub fn on_queries(self) -> bool {
        !matches!(self, AttnScale::HeadDim)
    }
}

/// One architecture: its tensor table and the switches of the generic forward pass.
#[derive(Debug)]
pub struct ArchSpec {
    /// `general.architecture`.
    pub name: &'static str,
    /// The tensors this architecture loads, with their need. Roles not listed are ignored
    /// even if the file has them (llama.cpp does not load them either).
    pub tensors: &'static [(Role, Need)],
    /// NeoX RoPE layout (rotate pairs `(i, i + n_rot/2)`) rather than adjacent pairs.
    pub rope_neox: bool,
    /// FFN activation.
    pub ffn_act: FfnAct,
    /// Multiply token embeddings by `sqrt(n_embd)` (Gemma).
    pub scale_embeddings: bool,
    /// Sliding-window layers.
    pub swa: SwaRule,
    /// Attention soft-cap when `attn_logit_softcapping` is absent (Gemma 2: 50; `None`: off).
    pub attn_softcap: Option<f32>,
    /// Final logit soft-cap when `final_logit_softcapping` is absent (Gemma 2: 30).
    pub final_softcap: Option<f32>,
    /// Attention scale rule.
    pub attn_scale: AttnScale,
}

impl ArchSpec {
    /// Whether the table lists `role`, and how.
    pub fn need(&self, role: Role) -> Option<Need> {
        self.tensors.iter().find(|(r, _)| *r == role).map(|&(_, n)| n)
    }

    /// Whether `role` is required.
    pub fn is_required(&self, role: Role) -> bool {
        self.need(role) == Some(Need::Required)
    }
}

/// What a tensor is for. Each role has one GGUF name, one shape and one kind ([`Role::def`]).
#[allow(missing_docs)] // the names say it; `Role::def` gives the GGUF name and shape
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    TokEmbd,
    OutputNorm,
    Output,
    OutputBias,
    RopeFreqs,
    RopeFactorsLong,
    RopeFactorsShort,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnQkv,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    AttnQkvBias,
    AttnQNorm,
    AttnKNorm,
    AttnOut,
    AttnOutBias,
    PostAttnNorm,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnGateUp,
    FfnDown,
    FfnGateBias,
    FfnUpBias,
    FfnDownBias,
    PostFfnNorm,
}

/// A symbolic dimension, resolved against a [`Config`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// `n_embd`.
    Embd,
    /// `n_vocab`.
    Vocab,
    /// `n_ff`.
    Ff,
    /// `n_head * head_dim` (queries, and the attention output).
    QDim,
    /// `n_head_kv * head_dim` (keys and values).
    KvDim,
    /// `head_dim` (per-head Q/K norms).
    Head,
    /// `n_rot / 2` (RoPE frequency factors).
    RotHalf,
}

impl Dim {
    /// The size of this dimension in `cfg`.
    pub fn size(self, cfg: &Config) -> usize {
        match self {
            Dim::Embd => cfg.n_embd,
            Dim::Vocab => cfg.n_vocab,
            Dim::Ff => cfg.n_ff,
            Dim::QDim => cfg.n_head * cfg.head_dim,
            Dim::KvDim => cfg.n_head_kv * cfg.head_dim,
            Dim::Head => cfg.head_dim,
            Dim::RotHalf => cfg.n_rot / 2,
        }
    }
}

/// A role's GGUF name, shape (`ne[0]`, the row length, first) and kind.
#[derive(Clone, Copy, Debug)]
pub struct TensorDef {
    /// Name, without the `blk.{i}.` prefix for per-layer tensors.
    pub name: &'static str,
    /// One per layer (`blk.{i}.name`) or one per model.
    pub per_layer: bool,
    /// Shape, `ne[0]` first. Empty for [`Kind::Fused`]: the parts' shapes give it.
    pub dims: &'static [Dim],
    /// What it holds.
    pub kind: Kind,
}

impl TensorDef {
    /// The full tensor name for layer `layer` (ignored for per-model tensors).
    pub fn full_name(&self, layer: usize) -> String {
        if self.per_layer { format!("blk.{layer}.{}", self.name) } else { self.name.to_owned() }
    }

    /// The expected shape under `cfg`. A fused tensor has its parts' shape with their last
    /// dimensions (rows, or elements of a vector) added up.
    pub fn shape(&self, cfg: &Config) -> Vec<u64> {
        let Kind::Fused(parts) = self.kind else {
            return self.dims.iter().map(|d| d.size(cfg) as u64).collect();
        };
        let mut shape: Vec<u64> = parts.first().map(|p| p.def().shape(cfg)).unwrap_or_default();
        if let Some(last) = shape.last_mut() {
            *last = parts.iter().filter_map(|p| p.def().shape(cfg).last().copied()).sum();
        }
        shape
    }

    /// The kind of what it holds once loaded: a fused tensor's parts' kind.
    pub fn part_kind(&self) -> Kind {
        match self.kind {
            Kind::Fused(parts) => parts.first().map_or(Kind::Matrix, |p| p.def().kind),
            k => k,
        }
    }
}

impl Role {
    /// The GGUF name, shape and kind of this role (llama.cpp's `LLM_TENSOR_NAMES` and
    /// `create_tensor` shapes).
    pub const fn def(self) -> TensorDef {
        use Dim::*;
        use Kind::*;
        const fn g(name: &'static str, dims: &'static [Dim], kind: Kind) -> TensorDef {
            TensorDef { name, per_layer: false, dims, kind }
        }
        const fn l(name: &'static str, dims: &'static [Dim], kind: Kind) -> TensorDef {
            TensorDef { name, per_layer: true, dims, kind }
        }
        match self {
            Role::TokEmbd => g("token_embd.weight", &[Embd, Vocab], Matrix),
            Role::OutputNorm => g("output_norm.weight", &[Embd], Norm),
            // Absent: the output is tied to `token_embd` (see `Weights::output`).
            Role::Output => g("output.weight", &[Embd, Vocab], Matrix),
            Role::OutputBias => g("output.bias", &[Vocab], Bias),
            // Llama 3: used at every context size.
            Role::RopeFreqs => g("rope_freqs.weight", &[RotHalf], RopeFactors),
            // LongRoPE (Phi-3): long factors for contexts past `rope.scaling.original_context_length`.
            Role::RopeFactorsLong => g("rope_factors_long.weight", &[RotHalf], RopeFactors),
            Role::RopeFactorsShort => g("rope_factors_short.weight", &[RotHalf], RopeFactors),
            Role::AttnNorm => l("attn_norm.weight", &[Embd], Norm),
            Role::AttnQ => l("attn_q.weight", &[Embd, QDim], Matrix),
            Role::AttnK => l("attn_k.weight", &[Embd, KvDim], Matrix),
            Role::AttnV => l("attn_v.weight", &[Embd, KvDim], Matrix),
            Role::AttnQkv => l("attn_qkv.weight", &[], Fused(&[Role::AttnQ, Role::AttnK, Role::AttnV])),
            Role::AttnQBias => l("attn_q.bias", &[QDim], Bias),
            Role::AttnKBias => l("attn_k.bias", &[KvDim], Bias),
            Role::AttnVBias => l("attn_v.bias", &[KvDim], Bias),
            Role::AttnQkvBias => l("attn_qkv.bias", &[], Fused(&[Role::AttnQBias, Role::AttnKBias, Role::AttnVBias])),
            Role::AttnQNorm => l("attn_q_norm.weight", &[Head], Norm),
            Role::AttnKNorm => l("attn_k_norm.weight", &[Head], Norm),
            Role::AttnOut => l("attn_output.weight", &[QDim, Embd], Matrix),
            Role::AttnOutBias => l("attn_output.bias", &[Embd], Bias),
            Role::PostAttnNorm => l("post_attention_norm.weight", &[Embd], Norm),
            Role::FfnNorm => l("ffn_norm.weight", &[Embd], Norm),
            Role::FfnGate => l("ffn_gate.weight", &[Embd, Ff], Matrix),
            Role::FfnUp => l("ffn_up.weight", &[Embd, Ff], Matrix),
            // Same name as `FfnUp`, twice the rows: the gate's, then the up projection's
            // (ggml's `swiglu` of one tensor activates its first half).
            Role::FfnGateUp => l("ffn_up.weight", &[], Fused(&[Role::FfnGate, Role::FfnUp])),
            Role::FfnDown => l("ffn_down.weight", &[Ff, Embd], Matrix),
            Role::FfnGateBias => l("ffn_gate.bias", &[Ff], Bias),
            Role::FfnUpBias => l("ffn_up.bias", &[Ff], Bias),
            Role::FfnDownBias => l("ffn_down.bias", &[Embd], Bias),
            Role::PostFfnNorm => l("post_ffw_norm.weight", &[Embd], Norm),
        }
    }
}

use Need::{Optional as O, Required as R};

/// The tensors every architecture with separate Q, K, V and gate, up matrices shares:
/// embeddings, final norm, the pre-norm attention block with optional Q/K/V biases (llama.cpp's
/// `create_tensor_qkv`) and the gated FFN.
macro_rules! table {
    ($($extra:expr),* $(,)?) => {
        &[
            (Role::TokEmbd, R), (Role::OutputNorm, R),
            (Role::AttnNorm, R), (Role::AttnQ, R), (Role::AttnK, R), (Role::AttnV, R),
            (Role::AttnQBias, O), (Role::AttnKBias, O), (Role::AttnVBias, O), (Role::AttnOut, R),
            (Role::FfnNorm, R), (Role::FfnGate, R), (Role::FfnUp, R), (Role::FfnDown, R),
            $($extra),*
        ]
    };
}

static LLAMA: ArchSpec = ArchSpec {
    name: "llama",
    tensors: table![
        (Role::Output, O),
        (Role::RopeFreqs, O),
        (Role::AttnOutBias, O),
        (Role::FfnGateBias, O),
        (Role::FfnUpBias, O),
        (Role::FfnDownBias, O),
    ],
    rope_neox: false,
    ffn_act: FfnAct::Silu,
    scale_embeddings: false,
    swa: SwaRule::None,
    attn_softcap: None,
    final_softcap: None,
    attn_scale: AttnScale::HeadDim,
};

static QWEN2: ArchSpec =
    ArchSpec { name: "qwen2", tensors: table![(Role::Output, O), (Role::OutputBias, O)], rope_neox: true, ..LLAMA };

static QWEN3: ArchSpec = ArchSpec {
    name: "qwen3",
    tensors: table![(Role::Output, O), (Role::AttnQNorm, R), (Role::AttnKNorm, R)],
    rope_neox: true,
    ..LLAMA
};

/// Gemma 2 always ties the output matrix to the embeddings (llama.cpp never looks for
/// `output.weight`).
static GEMMA2: ArchSpec = ArchSpec {
    name: "gemma2",
    tensors: table![(Role::PostAttnNorm, R), (Role::PostFfnNorm, R)],
    rope_neox: true,
    ffn_act: FfnAct::GeluTanh,
    scale_embeddings: true,
    swa: SwaRule::Always { window: 4096, pattern: 2 },
    attn_softcap: Some(50.0),
    final_softcap: Some(30.0),
    attn_scale: AttnScale::Gemma { n_layer_27b: 46 },
};

static GEMMA3: ArchSpec = ArchSpec {
    name: "gemma3",
    tensors: table![
        (Role::Output, O),
        (Role::AttnQNorm, R),
        (Role::AttnKNorm, R),
        (Role::PostAttnNorm, R),
        (Role::PostFfnNorm, R),
    ],
    swa: SwaRule::IfWindowKey { pattern: 6 },
    attn_softcap: None,
    final_softcap: None,
    attn_scale: AttnScale::Gemma { n_layer_27b: 62 },
    ..GEMMA2
};

/// Phi-3 (`src/models/phi3.cpp`): Q, K, V in one matrix (llama.cpp would also take them apart;
/// Phi-3's converter writes them fused), gate and up in one `ffn_up` of `2 * n_ff` rows, and
/// LongRoPE factors. llama.cpp reads `attention.sliding_window` and then turns SWA off, so the
/// rule is `None`. The queries, not the scores, are scaled.
static PHI3: ArchSpec = ArchSpec {
    name: "phi3",
    tensors: &[
        (Role::TokEmbd, R),
        (Role::OutputNorm, R),
        (Role::Output, O),
        (Role::RopeFactorsLong, O),
        (Role::RopeFactorsShort, O),
        (Role::AttnNorm, R),
        (Role::AttnQkv, R),
        (Role::AttnQkvBias, O),
        (Role::AttnOut, R),
        (Role::FfnNorm, R),
        (Role::FfnGateUp, R),
        (Role::FfnDown, R),
    ],
    rope_neox: true,
    attn_scale: AttnScale::Queries,
    ..LLAMA
};

#[cfg(test)]
mod tests {
    use super::*;

    /// The roles the forward pass reads without a fallback: every table must provide each,
    /// required, itself or as part of a fused tensor.
    const FORWARD_NEEDS: &[Role] = &[
        Role::TokEmbd,
        Role::OutputNorm,
        Role::AttnNorm,
        Role::AttnQ,
        Role::AttnK,
        Role::AttnV,
        Role::AttnOut,
        Role::FfnNorm,
        Role::FfnGate,
        Role::FfnUp,
        Role::FfnDown,
    ];

    #[test]
    fn every_table_provides_what_the_forward_pass_reads() {
        for &arch in Arch::ALL {
            let spec = arch.spec();
            for &need in FORWARD_NEEDS {
                let provided = spec.tensors.iter().any(|&(r, n)| {
                    n == Need::Required && (r == need || matches!(r.def().kind, Kind::Fused(p) if p.contains(&need)))
                });
                assert!(provided, "{}: {need:?} is not required", spec.name);
            }
        }
    }

    #[test]
    fn no_table_loads_a_tensor_name_twice_or_a_role_both_alone_and_fused() {
        for &arch in Arch::ALL {
            let spec = arch.spec();
            let mut names: Vec<&str> = spec.tensors.iter().map(|(r, _)| r.def().name).collect();
            names.sort_unstable();
            let n = names.len();
            names.dedup();
            assert_eq!(names.len(), n, "{}: a GGUF name twice", spec.name);
            for (r, _) in spec.tensors {
                if let Kind::Fused(parts) = r.def().kind {
                    assert!(parts.iter().all(|p| spec.need(*p).is_none()), "{}: {r:?} and its parts", spec.name);
                    assert!(
                        parts
                            .iter()
                            .all(|p| p.def().per_layer == r.def().per_layer && !matches!(p.def().kind, Kind::Fused(_)))
                    );
                }
            }
        }
    }

    #[test]
    fn names_and_architectures_line_up() {
        assert_eq!(Arch::ALL.len(), Arch::NAMES.len());
        for (&a, &n) in Arch::ALL.iter().zip(Arch::NAMES) {
            assert_eq!((a.name(), Arch::from_name(n)), (n, Some(a)));
        }
    }
}
