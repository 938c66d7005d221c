//! [`ModelFacts`]: what a benchmark table says about a model, and the bytes one generated
//! token reads.

use serde::Serialize;

use crate::gguf::FileType;
use crate::model::Model;

/// Size, parameters and per-token traffic of a loaded model.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelFacts {
    /// `gemma3 270M Q4_K_M`: architecture, size label (or parameter count) and file type.
    pub description: String,
    /// Bytes of all tensor data.
    pub model_bytes: u64,
    /// Elements of all tensors.
    pub params: u64,
    /// Bytes of weights one decode step reads: every tensor once, except an untied token
    /// embedding table, of which only one row is read (a tied one is read whole, as the
    /// output projection).
    pub bytes_per_token: u64,
    /// Whether the output projection is the token embedding table.
    pub tied_output: bool,
}

impl ModelFacts {
    /// The facts of `model`.
    pub fn of(model: &Model) -> ModelFacts {
        let g = model.file().gguf();
        let tensors = g.tensors();
        let model_bytes: u64 = tensors.iter().map(|t| t.n_bytes()).sum();
        let params: u64 = tensors.iter().map(|t| t.n_elements()).sum();
        let tied_output = g.tensor("output.weight").is_none();
        let embd = g.tensor("token_embd.weight");
        let bytes_per_token = match embd {
            Some(e) if !tied_output => {
                let rows = e.dims.iter().skip(1).product::<u64>().max(1);
                model_bytes - e.n_bytes() + e.n_bytes() / rows
            }
            _ => model_bytes,
        };
        let arch = model.config().arch.name();
        let size = match g.get_str("general.size_label") {
            Ok(Some(label)) => label.to_owned(),
            _ => params_label(params),
        };
        let ftype = match g.get_u64("general.file_type") {
            Ok(Some(id)) => u32::try_from(id).ok().and_then(FileType::from_id).map(|t| t.name().to_owned()),
            _ => None,
        };
        let description = match ftype {
            Some(t) => format!("{arch} {size} {t}"),
            None => format!("{arch} {size}"),
        };
        ModelFacts { description, model_bytes, params, bytes_per_token, tied_output }
    }
}

/// `268M`, `1.2B`, `1.7M`: a parameter count as model names write it (three figures at most).
fn params_label(n: u64) -> String {
    let (v, unit) = match n {
        0..1_000_000 => (n as f64 / 1e3, "K"),
        1_000_000..1_000_000_000 => (n as f64 / 1e6, "M"),
        _ => (n as f64 / 1e9, "B"),
    };
    if v < 10.0 { format!("{v:.1}{unit}") } else { format!("{v:.0}{unit}") }
}
