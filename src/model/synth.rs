//! Random-weight models of every architecture, as GGUF files that llama.cpp loads too: the
//! fixtures of the oracle tests, and small models for benchmarks.
//!
//! The tensors written are the architecture's own table ([`ArchSpec::tensors`]) with its
//! shapes, so a synthetic model checks the table as much as the forward pass: what to write
//! and how to fill it follow each role's [`Kind`] and need, never its name. Matrices are
//! quantized to the chosen type with the reference quantizers; norms, biases and RoPE factors
//! are F32, as llama.cpp's converter writes them. Weights are scaled like a trained model's
//! (matrices `N(0, 1/cols)`, norms near 1), so activations and logits have realistic ranges.
//! A fused tensor is its parts' values stacked, each filled as its part would be.
//!
//! ```
//! use pupil::kernels::DType;
//! use pupil::model::{synth::{Synth, SynthModel}, Arch, Model};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("qwen3.gguf");
//! let spec = Synth { n_layer: 1, ..Synth::new(Arch::Qwen3, DType::Q8_0) };
//! SynthModel::build(&spec, None)?.write(&path)?;
//! let m = Model::open(&path)?;
//! assert_eq!(m.config().n_layer, 1);
//! # Ok::<(), pupil::model::ModelError>(())
//! ```

use std::path::Path;

use pupil_kernels::{DType, KernelError, quant};
use rayon::prelude::*;

use super::arch::{Arch, Kind, Need, Role};
use super::{Config, ModelError};
use crate::gguf::{Array, Gguf, GgufWriter, Value};

/// What to synthesise. [`Synth::new`] gives a small model every weight type can hold (rows
/// of 256, as k-quants need).
#[derive(Clone, Debug, PartialEq)]
pub struct Synth {
    /// Architecture.
    pub arch: Arch,
    /// Type of every matrix (embeddings and output included).
    pub dtype: DType,
    /// Vocabulary size (the vocabulary passed to [`SynthModel::build`] is cut to it).
    pub n_vocab: usize,
    /// Residual width.
    pub n_embd: usize,
    /// FFN width.
    pub n_ff: usize,
    /// Blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Head width.
    pub head_dim: usize,
    /// Rotated dimensions per head (`rope.dimension_count`); `None`: all of `head_dim`.
    pub n_rot: Option<usize>,
    /// `context_length`.
    pub n_ctx: usize,
    /// `rope.freq_base`.
    pub rope_base: f32,
    /// `attention.sliding_window` (Gemma; Phi-3 files carry it too); `None` leaves it out.
    pub sliding_window: Option<usize>,
    /// `rope.scaling.original_context_length`; `None` leaves the key out.
    pub n_ctx_orig: Option<usize>,
    /// `rope.scaling.attn_factor`; `None` leaves the key out.
    pub rope_attn_factor: Option<f32>,
    /// Write every optional bias of the table (Q/K/V biases, and the others it lists).
    pub biases: bool,
    /// Leave `output.weight` out (tie it to the embeddings).
    pub tied_output: bool,
    /// Write the RoPE frequency factors the table has: Llama 3's `rope_freqs.weight`,
    /// LongRoPE's long and short factors.
    pub rope_freqs: bool,
    /// Random seed.
    pub seed: u64,
}

impl Synth {
    /// A 2-layer model of `arch` in `dtype`: n_embd 256, n_ff 512, 4 query and 2 KV heads of
    /// 64, 1024 tokens.
    pub fn new(arch: Arch, dtype: DType) -> Synth {
        Synth {
            arch,
            dtype,
            n_vocab: 1024,
            n_embd: 256,
            n_ff: 512,
            n_layer: 2,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 64,
            n_rot: None,
            n_ctx: 4096,
            rope_base: 10000.0,
            sliding_window: None,
            n_ctx_orig: None,
            rope_attn_factor: None,
            biases: false,
            tied_output: false,
            rope_freqs: false,
            seed: 1,
        }
    }
}

/// One tensor of a synthetic model.
#[derive(Clone, Debug)]
pub struct SynthTensor {
    /// GGUF name.
    pub name: String,
    /// Element type.
    pub dtype: DType,
    /// Shape, `ne[0]` first.
    pub dims: Vec<u64>,
    /// Raw data.
    pub data: Vec<u8>,
}

/// A synthetic model's metadata and tensors, open to edits (tests break them on purpose)
/// before [`SynthModel::write`].
#[derive(Clone, Debug)]
pub struct SynthModel {
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    /// Tensors in file order.
    pub tensors: Vec<SynthTensor>,
}

/// SplitMix64 with Box–Muller normals: deterministic, no dependency. Its state moves by a
/// constant per draw, so a stream can be cut into pieces that start anywhere ([`Rng::normals`]).
struct Rng(u64);

/// SplitMix64's step.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// `f` of each of the next `n` normals: the values `n` calls of [`Rng::normal`] would
    /// give, drawn in parallel pieces (each normal takes two steps, so piece `c` starts
    /// `2 * c * PIECE` steps on). A 1B-parameter model is otherwise minutes of one core.
    fn normals(&mut self, n: usize, f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
        const PIECE: usize = 1 << 16;
        let start = self.0;
        let at = |draws: usize| start.wrapping_add((2 * draws as u64).wrapping_mul(GOLDEN));
        let mut out = vec![0f32; n];
        out.par_chunks_mut(PIECE).enumerate().for_each(|(c, piece)| {
            let mut rng = Rng(at(c * PIECE));
            piece.iter_mut().for_each(|v| *v = f(rng.normal()));
        });
        self.0 = at(n);
        out
    }
}

fn tokenizer(spec: &Synth, vocab: Option<&Gguf>) -> Vec<(String, Value)> {
    let n = spec.n_vocab;
    let Some(v) = vocab else {
        // A SentencePiece-style vocabulary: unknown, BOS, EOS, the 256 byte tokens, then
        // made-up pieces.
        let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
        tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
        let first = tokens.len();
        tokens.extend((first..n.max(first)).map(|i| format!("\u{2581}p{i}")));
        tokens.truncate(n);
        let types: Vec<i32> = (0..n)
            .map(|i| {
                if i == 0 {
                    2
                } else if i < 3 {
                    3
                } else if i < first {
                    6
                } else {
                    1
                }
            })
            .collect();
        return vec![
            ("tokenizer.ggml.model".into(), Value::from("llama")),
            ("tokenizer.ggml.tokens".into(), Value::from(tokens)),
            ("tokenizer.ggml.scores".into(), Value::from((0..n).map(|i| -(i as f32)).collect::<Vec<f32>>())),
            ("tokenizer.ggml.token_type".into(), Value::from(types)),
            ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
            ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
            ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ];
    };
    let cut = |a: &Array| -> Array {
        match a {
            Array::String(x) => Array::String(x[..n.min(x.len())].to_vec()),
            Array::F32(x) => Array::F32(x[..n.min(x.len())].to_vec()),
            Array::I32(x) => Array::I32(x[..n.min(x.len())].to_vec()),
            other => other.clone(),
        }
    };
    v.metadata()
        .iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .map(|(k, val)| match (k.as_str(), val) {
            ("tokenizer.ggml.tokens" | "tokenizer.ggml.scores" | "tokenizer.ggml.token_type", Value::Array(a)) => {
                (k.clone(), Value::Array(cut(a)))
            }
            _ => (k.clone(), val.clone()),
        })
        .collect()
}

fn metadata(spec: &Synth, vocab: Option<&Gguf>) -> Vec<(String, Value)> {
    let a = spec.arch.name();
    let u = |k: &str, v: usize| (format!("{a}.{k}"), Value::U32(v as u32));
    let mut m = vec![
        ("general.architecture".to_owned(), Value::from(a)),
        ("general.name".to_owned(), Value::from(format!("synthetic {a} {}", spec.dtype).as_str())),
        u("context_length", spec.n_ctx),
        u("embedding_length", spec.n_embd),
        u("block_count", spec.n_layer),
        u("feed_forward_length", spec.n_ff),
        u("attention.head_count", spec.n_head),
        u("attention.head_count_kv", spec.n_head_kv),
        u("attention.key_length", spec.head_dim),
        u("attention.value_length", spec.head_dim),
        u("rope.dimension_count", spec.n_rot.unwrap_or(spec.head_dim)),
        (format!("{a}.rope.freq_base"), Value::F32(spec.rope_base)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-6)),
    ];
    if let Some(w) = spec.sliding_window {
        m.push(u("attention.sliding_window", w));
    }
    if let Some(n) = spec.n_ctx_orig {
        m.push(u("rope.scaling.original_context_length", n));
    }
    if let Some(f) = spec.rope_attn_factor {
        m.push((format!("{a}.rope.scaling.attn_factor"), Value::F32(f)));
    }
    m.extend(tokenizer(spec, vocab));
    m
}

/// Whether a tensor the table lists with `need` goes in the file: required ones always,
/// optional ones as `spec` asks by kind (biases, RoPE factors; the one optional matrix is the
/// untied output).
fn wanted(spec: &Synth, kind: Kind, need: Need) -> bool {
    match (need, kind) {
        (Need::Required, _) => true,
        (Need::Optional, Kind::Bias) => spec.biases,
        (Need::Optional, Kind::RopeFactors) => spec.rope_freqs,
        (Need::Optional, Kind::Matrix) => !spec.tied_output,
        (Need::Optional, Kind::Norm | Kind::Fused(_)) => true,
    }
}

/// Values for one tensor of `role` with `n` elements, `cols` per row, under `cfg`.
fn values(rng: &mut Rng, cfg: &Config, role: Role, n: usize, cols: usize) -> Vec<f32> {
    // A rising curve over the pairs: 1 for the fast-turning pairs, `top` for the slow ones.
    let rising = |top: f32| (0..n).map(|i| 1.0 + (top - 1.0) * (i as f32 / (n.max(2) - 1) as f32).powi(2)).collect();
    match role.def().kind {
        Kind::Norm => rng.normals(n, |z| 1.0 + 0.1 * z),
        Kind::Bias => rng.normals(n, |z| 0.2 * z),
        // Llama 3's and LongRoPE's long factors stretch the slow pairs up to 8 times; the
        // short ones less, so that a wrong choice between the two shows in the logits.
        Kind::RopeFactors if role == Role::RopeFactorsShort => rising(1.5),
        Kind::RopeFactors => rising(8.0),
        // Larger output rows give logits a spread of a few units, so that the softmax is
        // peaked enough for KL divergence to mean something. Embeddings stay small: tied to
        // the output and scaled up on Gemma they would drown the blocks, and every position
        // would just predict its own input token.
        Kind::Matrix if role == Role::Output => rng.normals(n, |z| 3.0 / (cols as f32).sqrt() * z),
        Kind::Matrix => rng.normals(n, |z| z / (cols as f32).sqrt()),
        Kind::Fused(parts) => {
            let mut out = Vec::with_capacity(n);
            for &p in parts {
                let shape = p.def().shape(cfg);
                out.extend(values(rng, cfg, p, shape.iter().product::<u64>() as usize, shape[0] as usize));
            }
            out
        }
    }
}

/// `x` (rows of `cols`) in `dtype`, via the reference quantizers.
fn encode(x: &[f32], cols: usize, dtype: DType) -> Result<Vec<u8>, ModelError> {
    let q = quant::ops(dtype).and_then(|o| o.quantize).ok_or(KernelError::Unsupported { op: "quantize", dtype })?;
    let row_bytes = dtype.row_bytes(cols as u64).ok_or(KernelError::Length {
        what: "row (whole blocks)",
        expected: cols.next_multiple_of(dtype.block_size()),
        found: cols,
    })? as usize;
    let rows = x.len() / cols;
    // Blocks need their natural alignment; a u64 buffer has more than any of them.
    let mut buf = vec![0u64; (rows * row_bytes).div_ceil(8)];
    let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut buf)[..rows * row_bytes];
    // Rows are independent: quantized in parallel, the bytes are the same.
    x.par_chunks_exact(cols).zip(bytes.par_chunks_exact_mut(row_bytes)).try_for_each(|(src, dst)| q(src, dst))?;
    Ok(bytes.to_vec())
}

impl SynthModel {
    /// Builds the model `spec` describes, with the tokenizer of `vocab` (cut to
    /// `spec.n_vocab` tokens) or a made-up SentencePiece-style one.
    pub fn build(spec: &Synth, vocab: Option<&Gguf>) -> Result<SynthModel, ModelError> {
        Self::build_typed(spec, vocab, |_, _| spec.dtype)
    }

    /// The tensors [`SynthModel::build`] writes for `spec`, in file order: name, shape
    /// (`ne[0]` first), and whether it is a matrix (the tensors `spec.dtype` applies to).
    pub fn plan(spec: &Synth) -> Result<Vec<(String, Vec<u64>, bool)>, ModelError> {
        let (_, cfg) = Self::header(spec, None)?;
        Ok(Self::roles(spec, &cfg)
            .into_iter()
            .map(|(role, layer)| {
                let def = role.def();
                (def.full_name(layer), def.shape(&cfg), def.part_kind() == Kind::Matrix)
            })
            .collect())
    }

    /// As [`SynthModel::build`], with each matrix in the type `dtype_of(name, shape)` gives,
    /// called once per matrix in file order (a quantization recipe's mixture: llama.cpp's
    /// `Q4_K_M` keeps some matrices in `Q6_K`). Norms, biases and RoPE factors stay F32.
    pub fn build_typed(
        spec: &Synth,
        vocab: Option<&Gguf>,
        mut dtype_of: impl FnMut(&str, &[u64]) -> DType,
    ) -> Result<SynthModel, ModelError> {
        let (metadata, cfg) = Self::header(spec, vocab)?;
        let mut rng = Rng(spec.seed);
        let mut tensors = Vec::new();
        for (role, layer) in Self::roles(spec, &cfg) {
            let def = role.def();
            let dims = def.shape(&cfg);
            let cols = dims[0] as usize;
            let n: usize = dims.iter().product::<u64>() as usize;
            let x = values(&mut rng, &cfg, role, n, cols);
            let name = def.full_name(layer);
            let dtype = if def.part_kind() == Kind::Matrix { dtype_of(&name, &dims) } else { DType::F32 };
            let data = encode(&x, cols, dtype)?;
            tensors.push(SynthTensor { name, dtype, dims, data });
        }
        Ok(SynthModel { metadata, tensors })
    }

    /// The metadata, and the config the reader will parse from it: the shapes come from it,
    /// so the two cannot disagree.
    fn header(spec: &Synth, vocab: Option<&Gguf>) -> Result<(Vec<(String, Value)>, Config), ModelError> {
        let metadata = metadata(spec, vocab);
        let mut w = GgufWriter::new();
        for (k, v) in &metadata {
            w.add(k.clone(), v.clone());
        }
        let cfg = Config::from_gguf(&Gguf::parse(&w.to_bytes())?)?;
        Ok((metadata, cfg))
    }

    /// Every tensor's role and layer, in file order: the global ones, then layer by layer.
    fn roles(spec: &Synth, cfg: &Config) -> Vec<(Role, usize)> {
        let table = spec.arch.spec().tensors.iter().filter(|&&(r, need)| wanted(spec, r.def().part_kind(), need));
        let layer_roles = table.clone().filter(|(r, _)| r.def().per_layer);
        let global_roles = table.filter(|(r, _)| !r.def().per_layer);
        global_roles
            .map(|&(r, _)| (r, 0))
            .chain((0..cfg.n_layer).flat_map(|i| layer_roles.clone().map(move |&(r, _)| (r, i))))
            .collect()
    }

    /// Sets metadata `key` (replacing it in place if present).
    pub fn set(&mut self, key: &str, value: Value) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(kv) => kv.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
        self
    }

    /// The tensor called `name`.
    pub fn tensor_mut(&mut self, name: &str) -> Option<&mut SynthTensor> {
        self.tensors.iter_mut().find(|t| t.name == name)
    }

    /// The GGUF writer for this model.
    pub fn writer(&self) -> Result<GgufWriter<'_>, ModelError> {
        let mut w = GgufWriter::new();
        for (k, v) in &self.metadata {
            w.add(k.clone(), v.clone());
        }
        for t in &self.tensors {
            w.add_tensor(t.name.clone(), t.dtype, &t.dims, &t.data[..])?;
        }
        Ok(w)
    }

    /// Writes the model to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        Ok(self.writer()?.write_file(path)?)
    }
}
