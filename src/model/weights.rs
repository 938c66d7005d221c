//! The weights of a model, located and checked against the architecture's tensor table.
//!
//! The loader walks the table ([`ArchSpec::tensors`]): it names no tensor itself. Each listed
//! tensor is looked up by its role's name, checked (shape, type), and stored under its role;
//! a missing one is an error if the table says it is required. What is loaded follows the
//! role's [`Kind`]:
//!
//! - matrices stay in the memory map: a [`Matrix`] is the byte range of a tensor in the file,
//!   turned into a kernel [`WeightRef`] when used. Where the chosen kernel tier packs a type
//!   ([`PackedWeight`]), the matrix also gets a packed copy, made once at load:
//!   `Q4_0`, `Q5_0`, `Q8_0`, `Q4_K` and `Q6_K` on AVX-512 go into panels of 16 rows whose
//!   stored quant bytes are interleaved by row (`pupil_kernels`' `cpu::nibble`): the file's
//!   size (3% more for `Q4_K`), read by every batch size and row lookup, so the mapped pages
//!   they came from are released ([`GgufFile::release`]) and memory stays about the file's
//!   size. Other types stay in the map only.
//!
//!   Embeddings not tied to the output only serve row lookups and get no copy.
//!   [`LoadOptions::repack`] off (`--no-repack`; `PUPIL_NO_REPACK=1` in the environment)
//!   makes none;
//! - norm weights, biases and RoPE frequency factors (a few KiB per layer) are widened to f32
//!   once, so the forward pass reads them as plain slices whatever type the file stores;
//! - a fused tensor (Phi-3's `attn_qkv`, its `ffn_up` holding gate and up) is stored as its
//!   parts: each part is its own range of rows of the one tensor, still in the map.
//!
//! The forward pass then asks for tensors by role ([`Tensors::matrix`], [`Tensors::vector`],
//! [`Tensors::optional`]).

use std::ops::Range;

use std::sync::Arc;

use pupil_kernels::ops::{PackedWeight, WeightRef};
use pupil_kernels::quant;

use super::arch::{ArchSpec, Kind, Need, Role};
use super::{Config, ModelError};
use crate::gguf::{GgufFile, TensorInfo};

/// A weight matrix in the file: `rows` rows of `cols` elements of `dtype`.
#[derive(Clone, Debug)]
pub(crate) struct Matrix {
    pub dtype: pupil_kernels::DType,
    pub rows: usize,
    pub cols: usize,
    /// Byte range of the data in the file.
    pub range: Range<usize>,
    /// The same matrix packed for the chosen tier's GEMM, where it packs this type.
    pub packed: Option<Arc<PackedWeight>>,
}

impl Matrix {
    /// The matrix as the kernels take it, borrowing `file`'s mapping (and the packed copy).
    pub fn weight<'f>(&'f self, file: &'f GgufFile) -> WeightRef<'f> {
        WeightRef {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            data: &file.bytes()[self.range.clone()],
            packed: self.packed.as_deref(),
        }
    }
}

/// One loaded tensor.
#[derive(Debug)]
pub(crate) enum Tensor {
    /// A matrix, in the file.
    Matrix(Matrix),
    /// A norm, bias or RoPE factors, widened to f32.
    Vector(Vec<f32>),
}

/// The tensors of one block (or the model's own, `layer` `None`), by role. Shapes are the
/// roles' ([`Role::def`]), e.g. `AttnQ`: `[n_head * head_dim, n_embd]` (rows, cols).
#[derive(Debug)]
pub(crate) struct Tensors {
    layer: Option<usize>,
    by_role: Vec<(Role, Tensor)>,
}

impl Tensors {
    fn get(&self, role: Role) -> Option<&Tensor> {
        self.by_role.iter().find(|(r, _)| *r == role).map(|(_, t)| t)
    }

    /// The error for a role the forward pass needs that the table did not load (a bug in
    /// the table; `arch.rs` tests that every table provides what the forward pass reads).
    fn not_loaded(&self, role: Role) -> ModelError {
        ModelError::NotLoaded { name: role.def().full_name(self.layer.unwrap_or(0)) }
    }

    /// Every loaded tensor with its role.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub fn iter(&self) -> impl Iterator<Item = (Role, &Tensor)> {
        self.by_role.iter().map(|(r, t)| (*r, t))
    }

    /// The matrix for `role`.
    pub fn matrix(&self, role: Role) -> Result<&Matrix, ModelError> {
        self.optional_matrix(role).ok_or_else(|| self.not_loaded(role))
    }

    /// The matrix for `role`, if loaded.
    pub fn optional_matrix(&self, role: Role) -> Option<&Matrix> {
        match self.get(role) {
            Some(Tensor::Matrix(m)) => Some(m),
            _ => None,
        }
    }

    /// The f32 values for `role` (a norm, bias or RoPE factors).
    pub fn vector(&self, role: Role) -> Result<&[f32], ModelError> {
        self.optional(role).ok_or_else(|| self.not_loaded(role))
    }

    /// The f32 values for `role`, if loaded: the forward pass skips the step without them.
    pub fn optional(&self, role: Role) -> Option<&[f32]> {
        match self.get(role) {
            Some(Tensor::Vector(v)) => Some(v),
            _ => None,
        }
    }
}

/// All of a model's weights.
#[derive(Debug)]
pub(crate) struct Weights {
    /// The per-model tensors: embeddings, output, final norm, RoPE factors.
    pub model: Tensors,
    /// The blocks' tensors, `[n_layer]`.
    pub layers: Vec<Tensors>,
}

impl Weights {
    /// Locates and checks every tensor of `cfg.arch`'s table in `file`.
    pub fn load(file: &GgufFile, cfg: &Config, opts: &super::LoadOptions) -> Result<Weights, ModelError> {
        // Blocks offloaded to a GPU are never run by the CPU: no packed copy for them.
        let cpu_layers = super::gpu::Offload::new(opts.gpu_layers, cfg.n_layer).first;
        let l = Loader { file, cfg, spec: cfg.arch.spec(), pack: opts.repack, cpu_layers };
        Ok(Weights {
            model: l.tensors(None)?,
            layers: (0..cfg.n_layer).map(|i| l.tensors(Some(i))).collect::<Result<_, _>>()?,
        })
    }

    /// `output.weight`, or the embeddings when the file ties them (as llama.cpp falls back).
    pub fn output(&self) -> Result<&Matrix, ModelError> {
        match self.model.optional_matrix(Role::Output) {
            Some(m) => Ok(m),
            None => self.model.matrix(Role::TokEmbd),
        }
    }
}

/// Finds the table's tensors in a file, checking presence, shape and type.
#[derive(Clone, Copy)]
struct Loader<'a> {
    file: &'a GgufFile,
    cfg: &'a Config,
    spec: &'static ArchSpec,
    /// Whether to pack the matrices the tier has packed kernels for.
    pack: bool,
    /// Blocks `0..cpu_layers` run on the CPU (the others are offloaded).
    cpu_layers: usize,
}

/// Shapes compare as ggml compares them: missing trailing dimensions are 1.
fn same_shape(a: &[u64], b: &[u64]) -> bool {
    (0..a.len().max(b.len())).all(|i| a.get(i).copied().unwrap_or(1) == b.get(i).copied().unwrap_or(1))
}

impl<'a> Loader<'a> {
    /// Every tensor of the table for `layer` (`None`: the per-model ones).
    fn tensors(&self, layer: Option<usize>) -> Result<Tensors, ModelError> {
        let on_cpu = layer.is_none_or(|i| i < self.cpu_layers);
        let this = Loader { pack: self.pack && on_cpu, ..*self };
        this.tensors_here(layer)
    }

    fn tensors_here(&self, layer: Option<usize>) -> Result<Tensors, ModelError> {
        let mut by_role = Vec::new();
        for &(role, need) in self.spec.tensors.iter().filter(|(r, _)| r.def().per_layer == layer.is_some()) {
            let Some(t) = self.find(role, need, layer.unwrap_or(0))? else { continue };
            match role.def().kind {
                Kind::Fused(parts) => self.split(t, parts, &mut by_role)?,
                Kind::Matrix => {
                    let rows = t.dims[1..].iter().product::<u64>() as usize;
                    // Embeddings only serve row lookups unless they are the output too.
                    let output = Role::Output.def().full_name(0);
                    let pack = self.pack && (role != Role::TokEmbd || self.file.tensor(&output).is_none());
                    by_role.push((role, Tensor::Matrix(self.matrix(t, rows, self.range(t), pack)?)));
                }
                Kind::Norm | Kind::Bias | Kind::RopeFactors => by_role.push((role, Tensor::Vector(self.widen(t)?))),
            }
        }
        Ok(Tensors { layer, by_role })
    }

    /// The tensor for `role` in `layer`, if the file has it.
    fn find(&self, role: Role, need: Need, layer: usize) -> Result<Option<&'a TensorInfo>, ModelError> {
        let def = role.def();
        let name = def.full_name(layer);
        let expected = def.shape(self.cfg);
        let Some(t) = self.file.tensor(&name) else {
            return match need {
                Need::Required => Err(ModelError::MissingTensor { name, expected }),
                Need::Optional => Ok(None),
            };
        };
        if !same_shape(&t.dims, &expected) {
            return Err(ModelError::TensorShape { name, expected, found: t.dims.clone() });
        }
        if quant::ops(t.dtype).is_none() {
            return Err(ModelError::UnsupportedDType { name, dtype: t.dtype });
        }
        Ok(Some(t))
    }

    fn range(&self, t: &TensorInfo) -> Range<usize> {
        // Ranges of this file's tensors were checked against the mapping when it was opened.
        let r = self.file.tensor_range(t);
        r.start as usize..r.end as usize
    }

    /// `rows` rows of `t` (`ne[0]` columns each) at `range` of the file, with a packed copy
    /// where the tier packs its type.
    fn matrix(&self, t: &TensorInfo, rows: usize, range: Range<usize>, pack: bool) -> Result<Matrix, ModelError> {
        let mut m = Matrix { dtype: t.dtype, cols: t.dims[0] as usize, rows, range, packed: None };
        if pack {
            m.packed = PackedWeight::new(&m.weight(self.file))?.map(Arc::new);
            if m.packed.as_ref().is_some_and(|p| p.replaces_stored()) {
                // The copy is all the kernels read: the mapped pages it came from leave
                // resident memory (and come back from the page cache if ever read).
                self.file.release(m.range.clone());
            }
        }
        Ok(m)
    }

    fn widen(&self, t: &TensorInfo) -> Result<Vec<f32>, ModelError> {
        let mut out = vec![0.0; t.n_elements() as usize];
        // `find` checked the type has kernels.
        if let Some(ops) = quant::ops(t.dtype) {
            (ops.dequantize)(self.file.tensor_data(t), &mut out)?;
        }
        Ok(out)
    }

    /// Stores the parts of the fused tensor `t`: consecutive rows of a matrix (whole rows,
    /// so any block type splits), or consecutive elements of a vector.
    fn split(&self, t: &TensorInfo, parts: &[Role], out: &mut Vec<(Role, Tensor)>) -> Result<(), ModelError> {
        let widened = match parts.first().map(|p| p.def().kind) {
            Some(Kind::Matrix) | None => None,
            Some(_) => Some(self.widen(t)?),
        };
        let range = self.range(t);
        // The GGUF parser refused rows that are not whole blocks, so `row_bytes` is known.
        let row_bytes = t.dtype.row_bytes(t.dims[0]).unwrap_or(0) as usize;
        let mut start = 0;
        for &part in parts {
            // `find` checked the fused shape is the parts' shapes stacked.
            let len = part.def().shape(self.cfg).last().copied().unwrap_or(0) as usize;
            let tensor = match &widened {
                Some(v) => Tensor::Vector(v[start..start + len].to_vec()),
                None => {
                    let r = range.start + start * row_bytes..range.start + (start + len) * row_bytes;
                    Tensor::Matrix(self.matrix(t, len, r, self.pack)?)
                }
            };
            out.push((part, tensor));
            start += len;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pupil_kernels::DType;

    use super::super::synth::{Synth, SynthModel};
    use super::super::{Arch, Model};
    use super::*;

    fn open(m: &SynthModel) -> Result<Model, ModelError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        m.write(&path)?;
        Model::open(&path)
    }

    fn phi3() -> SynthModel {
        let spec = Synth { n_vocab: 300, biases: true, rope_freqs: true, ..Synth::new(Arch::Phi3, DType::Q4_K) };
        SynthModel::build(&spec, None).unwrap()
    }

    #[test]
    fn fused_tensors_load_as_their_parts_row_ranges() {
        let m = open(&phi3()).unwrap();
        let t = m.file.tensor("blk.1.attn_qkv.weight").unwrap();
        let whole = m.file.tensor_range(t);
        let layer = &m.weights.layers[1];
        let parts = [Role::AttnQ, Role::AttnK, Role::AttnV].map(|r| layer.matrix(r).unwrap().clone());
        assert_eq!(parts.each_ref().map(|p| (p.rows, p.cols)), [(256, 256), (128, 256), (128, 256)]);
        assert_eq!((parts[0].range.start as u64, parts[2].range.end as u64), (whole.start, whole.end));
        assert!(parts[0].range.end == parts[1].range.start && parts[1].range.end == parts[2].range.start);
        let (gate, up) = (layer.matrix(Role::FfnGate).unwrap(), layer.matrix(Role::FfnUp).unwrap());
        assert_eq!((gate.rows, up.rows, gate.range.end), (512, 512, up.range.start), "gate first, then up");
        let biases = [Role::AttnQBias, Role::AttnKBias, Role::AttnVBias].map(|r| layer.vector(r).unwrap().len());
        assert_eq!(biases, [256, 128, 128]);
        assert_eq!(m.weights.model.vector(Role::RopeFactorsLong).unwrap().len(), 32);
        // Phi-3's table has no separate gate tensor: `FfnGate` is the fused one's first half.
        assert!(m.file.tensor("blk.1.ffn_gate.weight").is_none());
    }

    #[test]
    fn fused_tensors_missing_or_misshapen_are_named() {
        let mut m = phi3();
        m.tensors.retain(|t| t.name != "blk.1.attn_qkv.weight");
        match open(&m) {
            Err(ModelError::MissingTensor { name, expected }) => {
                assert_eq!((name.as_str(), expected), ("blk.1.attn_qkv.weight", vec![256, 512]))
            }
            other => panic!("{other:?}"),
        }

        // An `ffn_up` of n_ff rows (a separate up projection) where Phi-3 stacks gate and up.
        let mut m = phi3();
        let t = m.tensor_mut("blk.0.ffn_up.weight").unwrap();
        t.dims[1] /= 2;
        let half = t.data.len() / 2;
        t.data.truncate(half);
        match open(&m) {
            Err(ModelError::TensorShape { name, expected, found }) => {
                assert_eq!((name.as_str(), expected, found), ("blk.0.ffn_up.weight", vec![256, 1024], vec![256, 512]));
            }
            other => panic!("{other:?}"),
        }

        // Optional LongRoPE factors of the wrong length are refused, not ignored.
        let mut m = phi3();
        let t = m.tensor_mut("rope_factors_short.weight").unwrap();
        t.dims[0] = 16;
        t.data.truncate(16 * 4);
        assert!(matches!(open(&m), Err(ModelError::TensorShape { name, .. }) if name == "rope_factors_short.weight"));
    }
}
