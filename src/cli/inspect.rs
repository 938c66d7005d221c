//! `pupil inspect`: what is in a GGUF file, for a person or (with `--json`) a program.

use super::output;
use anyhow::Result;
use pupil::gguf::{Array, FileType, Gguf, GgufFile, Value};
use pupil::kernels::DType;
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Show a model file's architecture, hyperparameters, tokenizer and tensors.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  pupil inspect models/gemma-3-270m-q4_k_m.gguf\n  pupil inspect model.gguf --json | jq .totals"
)]
pub struct Args {
    /// The GGUF file.
    model: PathBuf,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
    /// Human output: list only the first N tensors (0 for none, all by default).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    max_tensors: Option<usize>,
}

/// Arrays longer than this are summarised (type and length) rather than printed.
const ARRAY_PREVIEW: usize = 16;

#[derive(Serialize)]
struct Report {
    file: String,
    file_bytes: u64,
    gguf_version: u32,
    alignment: u64,
    data_offset: u64,
    architecture: Option<String>,
    name: Option<String>,
    size_label: Option<String>,
    parameters: u64,
    file_type: Option<FileTypeReport>,
    hyperparameters: BTreeMap<String, Value>,
    tokenizer: Option<TokenizerReport>,
    metadata: BTreeMap<String, serde_json::Value>,
    tensors: Vec<TensorReport>,
    totals: Vec<TypeTotal>,
    tensor_bytes: u64,
}

#[derive(Serialize)]
struct FileTypeReport {
    id: u64,
    name: Option<&'static str>,
}

#[derive(Serialize)]
struct TokenizerReport {
    model: Option<String>,
    pre: Option<String>,
    vocab_size: usize,
    special: Vec<SpecialToken>,
    add_bos: Option<bool>,
    add_eos: Option<bool>,
    control_tokens: usize,
    chat_template_bytes: Option<usize>,
}

#[derive(Serialize)]
struct SpecialToken {
    role: &'static str,
    id: u64,
    text: Option<String>,
}

#[derive(Serialize)]
struct TensorReport {
    name: String,
    dtype: &'static str,
    shape: Vec<u64>,
    elements: u64,
    bytes: u64,
    offset: u64,
}

#[derive(Serialize)]
struct TypeTotal {
    dtype: &'static str,
    tensors: usize,
    elements: u64,
    bytes: u64,
}

/// Roles of the special-token ids, as `tokenizer.ggml.<role>_token_id`.
const SPECIAL_ROLES: [&str; 9] = ["bos", "eos", "eot", "eom", "unknown", "padding", "seperator", "cls", "mask"];

pub fn run(args: Args) -> Result<()> {
    let file = GgufFile::open(&args.model).map_err(output::in_file(&args.model))?;
    let report = report(&args.model.display().to_string(), file.file_size(), &file)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_human(&mut out, &report, args.max_tensors)?;
    }
    out.flush()?;
    Ok(())
}

fn report(path: &str, file_bytes: u64, g: &Gguf) -> Result<Report> {
    let arch = g.architecture().map(str::to_owned);
    let prefix = arch.as_deref().map(|a| format!("{a}."));
    let hyperparameters = g
        .metadata()
        .iter()
        .filter(|(k, _)| prefix.as_deref().is_some_and(|p| k.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let metadata = g.metadata().iter().map(|(k, v)| (k.clone(), json_preview(v))).collect();
    let tensors: Vec<TensorReport> = g
        .tensors()
        .iter()
        .map(|t| TensorReport {
            name: t.name.clone(),
            dtype: t.dtype.name(),
            shape: t.dims.clone(),
            elements: t.n_elements(),
            bytes: t.n_bytes(),
            offset: t.offset,
        })
        .collect();
    let mut by_type: BTreeMap<DType, TypeTotal> = BTreeMap::new();
    for t in g.tensors() {
        let e =
            by_type.entry(t.dtype).or_insert(TypeTotal { dtype: t.dtype.name(), tensors: 0, elements: 0, bytes: 0 });
        e.tensors += 1;
        e.elements += t.n_elements();
        e.bytes += t.n_bytes();
    }
    Ok(Report {
        file: path.to_owned(),
        file_bytes,
        gguf_version: g.version(),
        alignment: g.alignment(),
        data_offset: g.data_offset(),
        architecture: arch,
        name: g.get_str("general.name")?.map(str::to_owned),
        size_label: g.get_str("general.size_label")?.map(str::to_owned),
        parameters: tensors.iter().map(|t| t.elements).sum(),
        file_type: g.get_u64("general.file_type")?.map(|id| FileTypeReport {
            id,
            name: u32::try_from(id).ok().and_then(FileType::from_id).map(FileType::name),
        }),
        hyperparameters,
        tokenizer: tokenizer(g)?,
        metadata,
        tensor_bytes: tensors.iter().map(|t| t.bytes).sum(),
        tensors,
        totals: by_type.into_values().collect(),
    })
}

fn tokenizer(g: &Gguf) -> Result<Option<TokenizerReport>> {
    let model = g.get_str("tokenizer.ggml.model")?.map(str::to_owned);
    let tokens = g.get_array("tokenizer.ggml.tokens")?;
    if model.is_none() && tokens.is_none() {
        return Ok(None);
    }
    let texts = tokens.and_then(Array::as_strings).unwrap_or(&[]);
    let mut special = Vec::new();
    for role in SPECIAL_ROLES {
        if let Some(id) = g.get_u64(&format!("tokenizer.ggml.{role}_token_id"))? {
            let text = usize::try_from(id).ok().and_then(|i| texts.get(i)).cloned();
            special.push(SpecialToken { role: if role == "seperator" { "separator" } else { role }, id, text });
        }
    }
    // Token type 3 is CONTROL in llama.cpp's `llama_token_type`.
    let control_tokens = g
        .get_array("tokenizer.ggml.token_type")?
        .and_then(Array::as_i32s)
        .map_or(0, |types| types.iter().filter(|&&t| t == 3).count());
    Ok(Some(TokenizerReport {
        model,
        pre: g.get_str("tokenizer.ggml.pre")?.map(str::to_owned),
        vocab_size: tokens.map_or(0, Array::len),
        special,
        add_bos: g.get_bool("tokenizer.ggml.add_bos_token")?,
        add_eos: g.get_bool("tokenizer.ggml.add_eos_token")?,
        control_tokens,
        chat_template_bytes: g.get_str("tokenizer.chat_template")?.map(str::len),
    }))
}

/// A metadata value for JSON, with long arrays cut down to their type and length.
fn json_preview(v: &Value) -> serde_json::Value {
    match v {
        Value::Array(a) if a.len() > ARRAY_PREVIEW => {
            serde_json::json!({ "array": a.type_name(), "len": a.len() })
        }
        v => serde_json::to_value(v).unwrap_or(serde_json::Value::Null),
    }
}

/// A metadata value in one short line.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) if s.len() > 60 || s.contains('\n') => format!("<{} bytes of text>", s.len()),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) if a.len() > ARRAY_PREVIEW => format!("[{}; {}]", a.type_name(), a.len()),
        v => serde_json::to_string(v).unwrap_or_default(),
    }
}

fn print_human(out: &mut impl Write, r: &Report, max_tensors: Option<usize>) -> Result<()> {
    let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
    writeln!(
        out,
        "file          {} ({}, GGUF v{}, alignment {})",
        r.file,
        output::bytes(r.file_bytes),
        r.gguf_version,
        r.alignment
    )?;
    writeln!(out, "architecture  {}", or_dash(&r.architecture))?;
    writeln!(out, "name          {}", or_dash(&r.name))?;
    writeln!(out, "size label    {}", or_dash(&r.size_label))?;
    writeln!(out, "parameters    {} ({})", output::count(r.parameters), r.parameters)?;
    let ftype = r.file_type.as_ref().map_or("-".into(), |f| format!("{} ({})", f.name.unwrap_or("unknown"), f.id));
    writeln!(out, "file type     {ftype}")?;

    if !r.hyperparameters.is_empty() {
        writeln!(out, "\nhyperparameters")?;
        let width = r.hyperparameters.keys().map(String::len).max().unwrap_or(0);
        for (k, v) in &r.hyperparameters {
            writeln!(out, "  {k:width$}  {}", value_text(v))?;
        }
    }

    if let Some(t) = &r.tokenizer {
        writeln!(out, "\ntokenizer")?;
        writeln!(out, "  model          {}", or_dash(&t.model))?;
        writeln!(out, "  pre-tokenizer  {}", or_dash(&t.pre))?;
        writeln!(out, "  vocab size     {}", t.vocab_size)?;
        writeln!(out, "  control tokens {}", t.control_tokens)?;
        for s in &t.special {
            writeln!(
                out,
                "  {:14} {} {}",
                s.role,
                s.id,
                s.text.as_deref().map_or("(out of range)".into(), |x| format!("{x:?}"))
            )?;
        }
        let flag = |b: Option<bool>| b.map_or("-".to_string(), |b| b.to_string());
        writeln!(out, "  add bos/eos    {} / {}", flag(t.add_bos), flag(t.add_eos))?;
        let tpl = t.chat_template_bytes.map_or("no".into(), |n| format!("yes ({n} bytes)"));
        writeln!(out, "  chat template  {tpl}")?;
    }

    writeln!(out, "\ntensors ({})", r.tensors.len())?;
    let shown = max_tensors.unwrap_or(usize::MAX).min(r.tensors.len());
    if shown > 0 {
        let width = r.tensors.iter().map(|t| t.name.len()).max().unwrap_or(4).max(4);
        writeln!(out, "  {:width$}  {:7}  {:>20}  {:>12}", "name", "type", "shape", "bytes")?;
        for t in &r.tensors[..shown] {
            let shape = t.shape.iter().map(u64::to_string).collect::<Vec<_>>().join(" x ");
            writeln!(out, "  {:width$}  {:7}  {:>20}  {:>12}", t.name, t.dtype, shape, t.bytes)?;
        }
        if shown < r.tensors.len() {
            writeln!(out, "  ... {} more", r.tensors.len() - shown)?;
        }
    }

    writeln!(out, "\ntotals per type")?;
    writeln!(out, "  {:7}  {:>7}  {:>14}  {:>14}  {:>10}", "type", "tensors", "elements", "bytes", "size")?;
    for t in &r.totals {
        writeln!(
            out,
            "  {:7}  {:>7}  {:>14}  {:>14}  {:>10}",
            t.dtype,
            t.tensors,
            t.elements,
            t.bytes,
            output::bytes(t.bytes)
        )?;
    }
    writeln!(
        out,
        "  {:7}  {:>7}  {:>14}  {:>14}  {:>10}",
        "total",
        r.tensors.len(),
        r.parameters,
        r.tensor_bytes,
        output::bytes(r.tensor_bytes)
    )?;
    Ok(())
}
