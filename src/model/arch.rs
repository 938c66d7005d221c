//! The architectures pupil runs: one [`ArchSpec`] each, holding the tensor table (which
//! tensors the file must or may have) and the few switches that tell the one generic forward
//! pass how this architecture differs from the others.
//!
//! Facts follow llama.cpp (`src/llama-arch.cpp` for names, `src/models/<arch>.cpp` for the
//! tensors each architecture loads and its graph). Adding an architecture means adding an
//! [`Arch`] variant, its table and its switches here, and its metadata defaults in
//! `config.rs` if they differ — not another forward pass.
//!
//! ```
//! use pupil::model::{Arch, Role};
//! let spec = Arch::Gemma3.spec();
//! assert!(spec.is_required(Role::AttnQNorm));
//! assert!(Arch::Llama.spec().need(Role::PostAttnNorm).is_none());
//! assert_eq!(Arch::from_name("qwen3"), Some(Arch::Qwen3));
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
}

impl Arch {
    /// Every architecture.
    pub const ALL: &'static [Arch] = &[Arch::Llama, Arch::Qwen2, Arch::Qwen3, Arch::Gemma2, Arch::Gemma3];

    /// Their `general.architecture` names, in the order of [`Arch::ALL`].
    pub const NAMES: &'static [&'static str] = &["llama", "qwen2", "qwen3", "gemma2", "gemma3"];

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
    /// Gemma: `1/sqrt(head_dim)`, except the 27B model (recognised by its layer count, as
    /// llama.cpp does) which uses `1/sqrt(n_embd / n_head)`; applied to the queries before
    /// the dot product (and so before Gemma 2's soft-cap), as Gemma's reference does.
    Gemma {
        /// Layer count of the 27B model.
        n_layer_27b: usize,
    },
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

/// What a tensor is for. Each role has one GGUF name and one shape ([`Role::def`]).
#[allow(missing_docs)] // the names say it; `Role::def` gives the GGUF name and shape
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    TokEmbd,
    OutputNorm,
    Output,
    OutputBias,
    RopeFreqs,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnQBias,
    AttnKBias,
    AttnVBias,
    AttnQNorm,
    AttnKNorm,
    AttnOut,
    AttnOutBias,
    PostAttnNorm,
    FfnNorm,
    FfnGate,
    FfnUp,
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

/// A role's GGUF name and shape (`ne[0]`, the row length, first).
#[derive(Clone, Copy, Debug)]
pub struct TensorDef {
    /// Name, without the `blk.{i}.` prefix for per-layer tensors.
    pub name: &'static str,
    /// One per layer (`blk.{i}.name`) or one per model.
    pub per_layer: bool,
    /// Shape, `ne[0]` first.
    pub dims: &'static [Dim],
}

impl TensorDef {
    /// The full tensor name for layer `layer` (ignored for per-model tensors).
    pub fn full_name(&self, layer: usize) -> String {
        if self.per_layer { format!("blk.{layer}.{}", self.name) } else { self.name.to_owned() }
    }

    /// The expected shape under `cfg`.
    pub fn shape(&self, cfg: &Config) -> Vec<u64> {
        self.dims.iter().map(|d| d.size(cfg) as u64).collect()
    }
}

impl Role {
    /// The GGUF name and shape of this role (llama.cpp's `LLM_TENSOR_NAMES` and
    /// `create_tensor` shapes).
    pub const fn def(self) -> TensorDef {
        use Dim::*;
        const fn g(name: &'static str, dims: &'static [Dim]) -> TensorDef {
            TensorDef { name, per_layer: false, dims }
        }
        const fn l(name: &'static str, dims: &'static [Dim]) -> TensorDef {
            TensorDef { name, per_layer: true, dims }
        }
        match self {
            Role::TokEmbd => g("token_embd.weight", &[Embd, Vocab]),
            Role::OutputNorm => g("output_norm.weight", &[Embd]),
            Role::Output => g("output.weight", &[Embd, Vocab]),
            Role::OutputBias => g("output.bias", &[Vocab]),
            Role::RopeFreqs => g("rope_freqs.weight", &[RotHalf]),
            Role::AttnNorm => l("attn_norm.weight", &[Embd]),
            Role::AttnQ => l("attn_q.weight", &[Embd, QDim]),
            Role::AttnK => l("attn_k.weight", &[Embd, KvDim]),
            Role::AttnV => l("attn_v.weight", &[Embd, KvDim]),
            Role::AttnQBias => l("attn_q.bias", &[QDim]),
            Role::AttnKBias => l("attn_k.bias", &[KvDim]),
            Role::AttnVBias => l("attn_v.bias", &[KvDim]),
            Role::AttnQNorm => l("attn_q_norm.weight", &[Head]),
            Role::AttnKNorm => l("attn_k_norm.weight", &[Head]),
            Role::AttnOut => l("attn_output.weight", &[QDim, Embd]),
            Role::AttnOutBias => l("attn_output.bias", &[Embd]),
            Role::PostAttnNorm => l("post_attention_norm.weight", &[Embd]),
            Role::FfnNorm => l("ffn_norm.weight", &[Embd]),
            Role::FfnGate => l("ffn_gate.weight", &[Embd, Ff]),
            Role::FfnUp => l("ffn_up.weight", &[Embd, Ff]),
            Role::FfnDown => l("ffn_down.weight", &[Ff, Embd]),
            Role::FfnGateBias => l("ffn_gate.bias", &[Ff]),
            Role::FfnUpBias => l("ffn_up.bias", &[Ff]),
            Role::FfnDownBias => l("ffn_down.bias", &[Embd]),
            Role::PostFfnNorm => l("post_ffw_norm.weight", &[Embd]),
        }
    }
}

use Need::{Optional as O, Required as R};

/// The tensors every architecture here shares: embeddings, final norm, the pre-norm attention
/// block with optional Q/K/V biases (llama.cpp's `create_tensor_qkv`) and the gated FFN.
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
        (Role::Output, O), (Role::RopeFreqs, O), (Role::AttnOutBias, O),
        (Role::FfnGateBias, O), (Role::FfnUpBias, O), (Role::FfnDownBias, O),
    ],
    rope_neox: false,
    ffn_act: FfnAct::Silu,
    scale_embeddings: false,
    swa: SwaRule::None,
    attn_softcap: None,
    final_softcap: None,
    attn_scale: AttnScale::HeadDim,
};

static QWEN2: ArchSpec = ArchSpec {
    name: "qwen2",
    tensors: table![(Role::Output, O), (Role::OutputBias, O)],
    rope_neox: true,
    ..LLAMA
};

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
        (Role::Output, O), (Role::AttnQNorm, R), (Role::AttnKNorm, R),
        (Role::PostAttnNorm, R), (Role::PostFfnNorm, R),
    ],
    swa: SwaRule::IfWindowKey { pattern: 6 },
    attn_softcap: None,
    final_softcap: None,
    attn_scale: AttnScale::Gemma { n_layer_27b: 62 },
    ..GEMMA2
};
