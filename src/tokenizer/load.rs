//! Building a [`Tokenizer`] from GGUF metadata, with llama.cpp's defaults where a key is
//! absent (`llama_vocab::impl::load`).
//!
//! Where llama.cpp only warns about a broken file, pupil refuses it with a typed error: a
//! per-token array of the wrong length, a special-token id outside the vocabulary, duplicate
//! token texts (llama.cpp aborts on those).

use crate::gguf::{Array, Gguf};

use super::bpe::Bpe;
use super::decode::{self, Spelling};
use super::partition::SpecialTokens;
use super::pretokenize::PreConfig;
use super::special;
use super::vocab::{Attr, Vocab};
use super::{Model, ModelKind, SpecialIds, Tokenizer, TokenizerError};

const KEY_MODEL: &str = "tokenizer.ggml.model";
const KEY_PRE: &str = "tokenizer.ggml.pre";
const KEY_TOKENS: &str = "tokenizer.ggml.tokens";
const KEY_SCORES: &str = "tokenizer.ggml.scores";
const KEY_TYPES: &str = "tokenizer.ggml.token_type";
const KEY_MERGES: &str = "tokenizer.ggml.merges";

/// Builds the tokenizer described by `g`'s `tokenizer.ggml.*` keys.
pub(super) fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
    let model_name = g.get_str(KEY_MODEL)?.ok_or(TokenizerError::MissingKey { key: KEY_MODEL })?;
    let pre_name = g.get_str(KEY_PRE)?;
    let (kind, pre) = match model_name {
        "llama" => (ModelKind::Spm, None),
        // Resolved first, so an unknown pre-tokenizer is reported before anything else.
        "gpt2" => (ModelKind::Bpe, Some(PreConfig::from_name(pre_name)?)),
        // llama.cpp gives this model Gemma 4's pre-tokenizer whatever the file names.
        "gemma4" => (ModelKind::Gemma4, Some(PreConfig::gemma4())),
        other => return Err(TokenizerError::UnsupportedModel { name: other.to_owned() }),
    };

    let tokens = strings(g, KEY_TOKENS)?.ok_or(TokenizerError::MissingKey { key: KEY_TOKENS })?;
    let n = tokens.len();
    let max = i32::MAX as usize;
    if n == 0 || n > max {
        return Err(TokenizerError::BadTokenCount { count: n, max });
    }
    let scores = scores(g, n)?;
    let attrs = attrs(g, n)?;
    let texts = tokens
        .iter()
        .enumerate()
        // llama.cpp renames empty tokens so that every text is unique and non-empty.
        .map(|(i, t)| if t.is_empty() { format!("[EMPTY_{i}]").into() } else { t.as_str().into() })
        .collect();
    let mut vocab = Vocab::new(texts, scores, attrs)?;

    let (model, spelling) = match &pre {
        None => (Model::Spm, Spelling::Spm),
        Some(cfg) => {
            let merges = strings(g, KEY_MERGES)?.ok_or(TokenizerError::MissingKey { key: KEY_MERGES })?;
            // Gemma 4's tokens are spelt as SentencePiece's: `▁` for a space, `<0xNN>` bytes.
            let spelling = if cfg.byte_level() { Spelling::Bpe } else { Spelling::Spm };
            (Model::Bpe(Bpe::new(merges, cfg)), spelling)
        }
    };

    let mut ids = special_ids(g, kind, n)?;
    let bool_key = |key: &str, default: bool| g.get_bool(key).map(|b| b.unwrap_or(default));
    let is_spm = pre.is_none();
    let add_bos = bool_key("tokenizer.ggml.add_bos_token", pre.is_none_or(|c| c.add_bos))?
        || pre.is_some_and(|c| c.force_bos());
    let add_eos = bool_key("tokenizer.ggml.add_eos_token", false)?;
    let add_space_prefix = bool_key("tokenizer.ggml.add_space_prefix", is_spm)?;
    let clean_spaces = pre.is_some_and(|c| c.clean_spaces);

    let eog = special::infer_roles(&mut vocab, &mut ids);
    let special = SpecialTokens::new(&vocab);
    let pieces = (0..n as u32).map(|id| decode::piece(&vocab, spelling, id).into_boxed_slice()).collect();
    let text_of = |key| g.get_str(key).map(|s| s.unwrap_or(""));
    special::strip_attrs(&mut vocab, special.ids(), text_of("general.name")?, pre_name.unwrap_or(""), text_of("general.architecture")?);

    Ok(Tokenizer {
        vocab,
        kind,
        model,
        pre: pre_name.map(str::to_owned),
        ids,
        eog,
        special,
        pieces,
        add_bos,
        add_eos,
        add_space_prefix,
        clean_spaces,
    })
}

/// A string array, if present.
fn strings<'g>(g: &'g Gguf, key: &'static str) -> Result<Option<&'g [String]>, TokenizerError> {
    let Some(a) = g.get_array(key)? else { return Ok(None) };
    let wrong = || TokenizerError::WrongArrayType { key, expected: "string", found: a.type_name() };
    a.as_strings().map(Some).ok_or_else(wrong)
}

/// `tokenizer.ggml.scores` (f32, or i32 as some converters write), zeros if absent.
fn scores(g: &Gguf, n: usize) -> Result<Vec<f32>, TokenizerError> {
    let Some(a) = g.get_array(KEY_SCORES)? else { return Ok(vec![0.0; n]) };
    check_len(KEY_SCORES, a, n)?;
    // `+ 0.0` turns -0.0 into 0.0: llama.cpp compares scores with `<`, which sees them equal.
    match a {
        Array::F32(v) => Ok(v.iter().map(|s| s + 0.0).collect()),
        Array::I32(v) => Ok(v.iter().map(|&s| s as f32).collect()),
        _ => Err(TokenizerError::WrongArrayType { key: KEY_SCORES, expected: "f32 or i32", found: a.type_name() }),
    }
}

/// Attributes from `tokenizer.ggml.token_type`, all normal if absent.
fn attrs(g: &Gguf, n: usize) -> Result<Vec<Attr>, TokenizerError> {
    let Some(a) = g.get_array(KEY_TYPES)? else { return Ok(vec![Attr::NORMAL; n]) };
    check_len(KEY_TYPES, a, n)?;
    let types = a
        .as_i32s()
        .ok_or(TokenizerError::WrongArrayType { key: KEY_TYPES, expected: "i32", found: a.type_name() })?;
    Ok(types.iter().map(|&t| Attr::from_token_type(t)).collect())
}

fn check_len(key: &'static str, a: &Array, n: usize) -> Result<(), TokenizerError> {
    if a.len() == n { Ok(()) } else { Err(TokenizerError::LengthMismatch { key, expected: n, found: a.len() }) }
}

/// Special-token ids: llama.cpp's defaults per model type (dropped when outside the
/// vocabulary), overridden by the `tokenizer.ggml.*_token_id` keys.
fn special_ids(g: &Gguf, kind: ModelKind, n: usize) -> Result<SpecialIds, TokenizerError> {
    let mut ids = match kind {
        ModelKind::Spm => SpecialIds { bos: Some(1), eos: Some(2), unk: Some(0), ..SpecialIds::default() },
        ModelKind::Bpe => SpecialIds { bos: Some(11), eos: Some(11), ..SpecialIds::default() },
        ModelKind::Gemma4 => SpecialIds::default(),
    };
    for slot in [&mut ids.bos, &mut ids.eos, &mut ids.unk] {
        *slot = slot.filter(|&id| (id as usize) < n);
    }
    // The deprecated prefix/suffix/middle keys come last and win, as in llama.cpp.
    let keys: [(&str, &mut Option<u32>); 15] = [
        ("bos", &mut ids.bos),
        ("eos", &mut ids.eos),
        ("eot", &mut ids.eot),
        ("eom", &mut ids.eom),
        ("unknown", &mut ids.unk),
        ("seperator", &mut ids.sep),
        ("padding", &mut ids.pad),
        ("cls", &mut ids.cls),
        ("mask", &mut ids.mask),
        ("fim_pre", &mut ids.fim_pre),
        ("fim_suf", &mut ids.fim_suf),
        ("fim_mid", &mut ids.fim_mid),
        ("fim_pad", &mut ids.fim_pad),
        ("fim_rep", &mut ids.fim_rep),
        ("fim_sep", &mut ids.fim_sep),
    ];
    for (role, slot) in keys {
        read_id(g, role, n, slot)?;
    }
    read_id(g, "prefix", n, &mut ids.fim_pre)?;
    read_id(g, "suffix", n, &mut ids.fim_suf)?;
    read_id(g, "middle", n, &mut ids.fim_mid)?;
    Ok(ids)
}

fn read_id(g: &Gguf, role: &str, n: usize, slot: &mut Option<u32>) -> Result<(), TokenizerError> {
    let key = format!("tokenizer.ggml.{role}_token_id");
    if let Some(id) = g.get_u64(&key)? {
        match u32::try_from(id).ok().filter(|&i| (i as usize) < n) {
            Some(i) => *slot = Some(i),
            None => return Err(TokenizerError::SpecialIdOutOfRange { key, id, n_vocab: n }),
        }
    }
    Ok(())
}
