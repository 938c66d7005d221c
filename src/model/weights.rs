//! The weights of a model, located and checked against the architecture's tensor table.
//!
//! Matrices stay in the memory map: a [`Matrix`] is the byte range of a tensor in the file,
//! turned into a kernel [`WeightRef`] when used, never copied. Norm weights, biases and RoPE
//! frequency factors (a few KiB per layer) are widened to f32 once at load, so the forward
//! pass reads them as plain slices whatever type the file stores them in.

use std::ops::Range;

use pupil_kernels::ops::WeightRef;
use pupil_kernels::quant;

use super::arch::{ArchSpec, Need, Role};
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
}

impl Matrix {
    /// The matrix as the kernels take it, borrowing `file`'s mapping.
    pub fn weight<'f>(&self, file: &'f GgufFile) -> WeightRef<'f> {
        WeightRef { dtype: self.dtype, rows: self.rows, cols: self.cols, data: &file.bytes()[self.range.clone()] }
    }
}

/// One transformer block. Optional fields are `None` when the architecture's table does not
/// list the tensor or the file leaves out an optional one; the forward pass skips that step.
#[derive(Debug)]
pub(crate) struct Layer {
    pub attn_norm: Vec<f32>,              // [n_embd]
    pub wq: Matrix,                       // [n_head * head_dim, n_embd]
    pub wk: Matrix,                       // [n_head_kv * head_dim, n_embd]
    pub wv: Matrix,                       // [n_head_kv * head_dim, n_embd]
    pub bq: Option<Vec<f32>>,             // [n_head * head_dim]
    pub bk: Option<Vec<f32>>,             // [n_head_kv * head_dim]
    pub bv: Option<Vec<f32>>,             // [n_head_kv * head_dim]
    pub q_norm: Option<Vec<f32>>,         // [head_dim]
    pub k_norm: Option<Vec<f32>>,         // [head_dim]
    pub wo: Matrix,                       // [n_embd, n_head * head_dim]
    pub bo: Option<Vec<f32>>,             // [n_embd]
    pub post_attn_norm: Option<Vec<f32>>, // [n_embd]
    pub ffn_norm: Vec<f32>,               // [n_embd]
    pub w_gate: Matrix,                   // [n_ff, n_embd]
    pub w_up: Matrix,                     // [n_ff, n_embd]
    pub w_down: Matrix,                   // [n_embd, n_ff]
    pub b_gate: Option<Vec<f32>>,         // [n_ff]
    pub b_up: Option<Vec<f32>>,           // [n_ff]
    pub b_down: Option<Vec<f32>>,         // [n_embd]
    pub post_ffn_norm: Option<Vec<f32>>,  // [n_embd]
}

/// All of a model's weights.
#[derive(Debug)]
pub(crate) struct Weights {
    pub tok_embd: Matrix,                // [n_vocab, n_embd]
    /// `output.weight`, or the embeddings again when the file ties them.
    pub output: Matrix,                  // [n_vocab, n_embd]
    pub output_norm: Vec<f32>,           // [n_embd]
    pub output_bias: Option<Vec<f32>>,   // [n_vocab]
    pub rope_freqs: Option<Vec<f32>>,    // [n_rot / 2]
    pub layers: Vec<Layer>,              // [n_layer]
}

/// Finds tensors by role, checking presence, shape and type against the table.
struct Loader<'a> {
    file: &'a GgufFile,
    cfg: &'a Config,
    spec: &'static ArchSpec,
}

/// Shapes compare as ggml compares them: missing trailing dimensions are 1.
fn same_shape(a: &[u64], b: &[u64]) -> bool {
    (0..a.len().max(b.len())).all(|i| a.get(i).copied().unwrap_or(1) == b.get(i).copied().unwrap_or(1))
}

impl<'a> Loader<'a> {
    /// The tensor for `role` in `layer`, if the table lists it and the file has it.
    fn find(&self, role: Role, layer: usize) -> Result<Option<&'a TensorInfo>, ModelError> {
        let Some(need) = self.spec.need(role) else { return Ok(None) };
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

    fn matrix(&self, role: Role, layer: usize) -> Result<Option<Matrix>, ModelError> {
        Ok(self.find(role, layer)?.map(|t| Matrix {
            dtype: t.dtype,
            cols: t.dims[0] as usize,
            rows: t.dims[1..].iter().product::<u64>() as usize,
            range: self.range(t),
        }))
    }

    fn vector(&self, role: Role, layer: usize) -> Result<Option<Vec<f32>>, ModelError> {
        let Some(t) = self.find(role, layer)? else { return Ok(None) };
        let mut out = vec![0.0; t.n_elements() as usize];
        // `find` checked the type has kernels.
        if let Some(ops) = quant::ops(t.dtype) {
            (ops.dequantize)(self.file.tensor_data(t), &mut out)?;
        }
        Ok(Some(out))
    }

    /// A tensor every architecture's forward pass needs; a table that leaves it out is
    /// reported as the tensor missing.
    fn required<T>(&self, role: Role, layer: usize, got: Option<T>) -> Result<T, ModelError> {
        got.ok_or_else(|| {
            let def = role.def();
            ModelError::MissingTensor { name: def.full_name(layer), expected: def.shape(self.cfg) }
        })
    }

    fn req_matrix(&self, role: Role, layer: usize) -> Result<Matrix, ModelError> {
        self.required(role, layer, self.matrix(role, layer)?)
    }

    fn req_vector(&self, role: Role, layer: usize) -> Result<Vec<f32>, ModelError> {
        self.required(role, layer, self.vector(role, layer)?)
    }

    fn layer(&self, i: usize) -> Result<Layer, ModelError> {
        Ok(Layer {
            attn_norm: self.req_vector(Role::AttnNorm, i)?,
            wq: self.req_matrix(Role::AttnQ, i)?,
            wk: self.req_matrix(Role::AttnK, i)?,
            wv: self.req_matrix(Role::AttnV, i)?,
            bq: self.vector(Role::AttnQBias, i)?,
            bk: self.vector(Role::AttnKBias, i)?,
            bv: self.vector(Role::AttnVBias, i)?,
            q_norm: self.vector(Role::AttnQNorm, i)?,
            k_norm: self.vector(Role::AttnKNorm, i)?,
            wo: self.req_matrix(Role::AttnOut, i)?,
            bo: self.vector(Role::AttnOutBias, i)?,
            post_attn_norm: self.vector(Role::PostAttnNorm, i)?,
            ffn_norm: self.req_vector(Role::FfnNorm, i)?,
            w_gate: self.req_matrix(Role::FfnGate, i)?,
            w_up: self.req_matrix(Role::FfnUp, i)?,
            w_down: self.req_matrix(Role::FfnDown, i)?,
            b_gate: self.vector(Role::FfnGateBias, i)?,
            b_up: self.vector(Role::FfnUpBias, i)?,
            b_down: self.vector(Role::FfnDownBias, i)?,
            post_ffn_norm: self.vector(Role::PostFfnNorm, i)?,
        })
    }
}

impl Weights {
    /// Locates and checks every tensor of `cfg.arch`'s table in `file`.
    pub fn load(file: &GgufFile, cfg: &Config) -> Result<Weights, ModelError> {
        let l = Loader { file, cfg, spec: cfg.arch.spec() };
        let tok_embd = l.req_matrix(Role::TokEmbd, 0)?;
        let output = match l.matrix(Role::Output, 0)? {
            Some(m) => m,
            None => tok_embd.clone(),
        };
        Ok(Weights {
            output,
            tok_embd,
            output_norm: l.req_vector(Role::OutputNorm, 0)?,
            output_bias: l.vector(Role::OutputBias, 0)?,
            rope_freqs: l.vector(Role::RopeFreqs, 0)?,
            layers: (0..cfg.n_layer).map(|i| l.layer(i)).collect::<Result<_, _>>()?,
        })
    }
}
