//! The output file before any data is written: its metadata, its tensors in llama.cpp's order,
//! and the type of each.

use pupil_kernels::DType;

use super::QuantizeError;
use super::recipe::{Hparams, Recipe, layer_of};
use super::types::is_quantized;
use crate::gguf::{FileType, Gguf, TensorInfo, Value};

/// `GGML_QNT_VERSION`: the version of the quantized block layouts, written to
/// `general.quantization_version`.
pub const QUANTIZATION_VERSION: u32 = 2;

/// One tensor of the output file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorPlan {
    /// Name.
    pub name: String,
    /// Shape as ggml writes it (`ne[0]` first, trailing 1s dropped).
    pub dims: Vec<u64>,
    /// Type in the input.
    pub from: DType,
    /// Type in the output.
    pub to: DType,
    /// The type the recipe wanted, when the row length forced a fallback to `to`.
    pub fell_back_from: Option<DType>,
    /// Position in the input's tensor table.
    pub(crate) input_index: usize,
}

impl TensorPlan {
    /// Whether the data changes (otherwise it is copied byte for byte).
    pub fn converts(&self) -> bool {
        self.from != self.to
    }

    /// Whether an already quantized tensor is quantized again (dequantized, then quantized).
    pub fn requantizes(&self) -> bool {
        self.converts() && is_quantized(self.from)
    }

    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Bytes of data in the output.
    pub fn out_bytes(&self) -> u64 {
        self.to.row_bytes(self.dims[0]).unwrap_or(0) * self.dims[1..].iter().product::<u64>()
    }
}

/// The shape ggml sees (`ggml_n_dims`): trailing 1s dropped, at least one dimension.
fn ggml_dims(dims: &[u64]) -> Vec<u64> {
    let n = dims.iter().rposition(|&d| d != 1).map_or(1, |i| i + 1);
    dims[..n.min(dims.len()).max(1)].to_vec()
}

/// llama.cpp's tensor order (its loader's `weights_map`, a map sorted by
/// `weight_name_comparer`): tensors outside the blocks first, then block by block, each group
/// by name.
fn order(tensors: &[TensorInfo]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tensors.len()).collect();
    idx.sort_by(|&a, &b| {
        let key = |t: &TensorInfo| layer_of(&t.name).unwrap_or(-1);
        key(&tensors[a]).cmp(&key(&tensors[b])).then_with(|| tensors[a].name.as_bytes().cmp(tensors[b].name.as_bytes()))
    });
    idx
}

/// The output's metadata: the input's, in its order, without split keys and with
/// `general.quantization_version` and `general.file_type` moved to the end (llama.cpp's
/// `gguf_set_val_u32` removes a key and appends it).
pub(crate) fn metadata(g: &Gguf, ftype: FileType) -> Vec<(String, Value)> {
    const DROP: [&str; 5] =
        ["general.quantization_version", "general.file_type", "split.no", "split.count", "split.tensors.count"];
    let mut m: Vec<(String, Value)> =
        g.metadata().iter().filter(|(k, _)| !DROP.contains(&k.as_str())).cloned().collect();
    m.push(("general.quantization_version".to_owned(), Value::U32(QUANTIZATION_VERSION)));
    m.push(("general.file_type".to_owned(), Value::U32(ftype.id())));
    m
}

/// Every tensor of `g` with its new type under `ftype`, in output order.
pub(crate) fn tensors(
    g: &Gguf,
    path: &std::path::Path,
    ftype: FileType,
    pure: bool,
) -> Result<Vec<TensorPlan>, QuantizeError> {
    let hp = Hparams::from_gguf(g).map_err(|key| QuantizeError::MissingKey { path: path.to_path_buf(), key })?;
    let infos = g.tensors();
    let order = order(infos);
    let mut recipe = Recipe::new(ftype, pure, hp, order.iter().map(|&i| infos[i].name.as_str()));
    order
        .into_iter()
        .map(|i| {
            let t = &infos[i];
            let dims = ggml_dims(&t.dims);
            let choice = recipe.select(&t.name, &dims, t.dtype)?;
            Ok(TensorPlan {
                name: t.name.clone(),
                dims,
                from: t.dtype,
                to: choice.dtype,
                fell_back_from: choice.fell_back_from,
                input_index: i,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_globals_then_blocks_in_numeric_order() {
        let t = |name: &str| TensorInfo { name: name.into(), dims: vec![4], dtype: DType::F32, offset: 0 };
        let infos = [
            t("blk.10.attn_q.weight"),
            t("output.weight"),
            t("blk.2.ffn_up.weight"),
            t("blk.2.attn_q.weight"),
            t("token_embd.weight"),
            t("blk.0.attn_norm.weight"),
        ];
        let names: Vec<&str> = order(&infos).into_iter().map(|i| infos[i].name.as_str()).collect();
        assert_eq!(
            names,
            [
                "output.weight",
                "token_embd.weight",
                "blk.0.attn_norm.weight",
                "blk.2.attn_q.weight",
                "blk.2.ffn_up.weight",
                "blk.10.attn_q.weight"
            ]
        );
    }

    #[test]
    fn trailing_unit_dims_are_dropped() {
        assert_eq!(ggml_dims(&[256, 1]), [256]);
        assert_eq!(ggml_dims(&[1, 1]), [1]);
        assert_eq!(ggml_dims(&[256, 1, 4]), [256, 1, 4]);
    }
}
