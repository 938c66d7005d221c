//! Special-token roles llama.cpp infers from token texts when the metadata does not say:
//! end-of-turn and fill-in-the-middle tokens, unused tokens, the end-of-generation set, and a
//! few per-model attribute fixes. The text lists are llama.cpp's (`llama_vocab::impl::load`).
//!
//! llama.cpp walks a hash map here, so where several texts could fill one role its choice is
//! unspecified; pupil takes the lowest id. Only the reported id can differ: every candidate
//! of the end-of-turn role is end-of-generation either way.

use super::SpecialIds;
use super::vocab::{Attr, Vocab};

const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>", "_<EOT>",
    "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>", "<|code_prefix|>", "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>", "<|code_suffix|>", "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>", "<|code_middle|>", "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &["<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>", "<end_of_turn>",
    "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>",
    "<eos>", "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[",
];
/// gpt-oss's structural tokens, which llama.cpp always renders.
const ALWAYS_RENDERED: &[&str] = &["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"];

/// Fills unset end-of-turn, end-of-message and fill-in-the-middle roles from token texts,
/// marks tokens as llama.cpp does, and returns the end-of-generation ids, sorted.
pub(crate) fn infer_roles(vocab: &mut Vocab, ids: &mut SpecialIds) -> Vec<u32> {
    let roles: [(&mut Option<u32>, &[&str]); 8] = [
        (&mut ids.eot, EOT_TEXTS),
        (&mut ids.eom, EOM_TEXTS),
        (&mut ids.fim_pre, FIM_PRE_TEXTS),
        (&mut ids.fim_suf, FIM_SUF_TEXTS),
        (&mut ids.fim_mid, FIM_MID_TEXTS),
        (&mut ids.fim_pad, FIM_PAD_TEXTS),
        (&mut ids.fim_rep, FIM_REP_TEXTS),
        (&mut ids.fim_sep, FIM_SEP_TEXTS),
    ];
    for (slot, texts) in roles {
        if slot.is_none() {
            *slot = texts.iter().filter_map(|t| vocab.id(t)).min();
            if let Some(id) = *slot {
                vocab.set_attr(id, Attr::CONTROL, true);
            }
        }
    }

    // Control tokens named "unused" are unused.
    let unused: Vec<u32> = vocab
        .iter()
        .filter(|&(id, text)| vocab.attr(id).any(Attr::CONTROL) && text.contains("unused"))
        .map(|(id, _)| id)
        .collect();
    for id in unused {
        vocab.set_attr(id, Attr::UNUSED, true);
    }

    let mut eog: Vec<u32> = [ids.fim_pad, ids.fim_rep, ids.fim_sep].into_iter().flatten().collect();
    let by_text: Vec<u32> = EOG_TEXTS.iter().filter_map(|t| vocab.id(t)).collect();
    for id in by_text {
        eog.push(id);
        vocab.set_attr(id, Attr::CONTROL, true);
    }
    let rendered: Vec<u32> = ALWAYS_RENDERED.iter().filter_map(|t| vocab.id(t)).collect();
    for id in rendered {
        vocab.replace_attr(id, Attr::USER_DEFINED);
    }
    eog.extend([ids.eos, ids.eot, ids.eom].into_iter().flatten());
    eog.sort_unstable();
    eog.dedup();

    // o200k_harmony and solar-open end turns with `<|return|>`/`<|call|>`; their `<|end|>` is
    // not an end of generation.
    let has = |eog: &[u32], t: &str| in_eog(vocab, eog, t).is_some();
    let call = has(&eog, "<|call|>") || has(&eog, "<|calls|>");
    if let Some(end) = in_eog(vocab, &eog, "<|end|>")
        && call
        && (has(&eog, "<|return|>") || has(&eog, "<|flush|>"))
    {
        eog.retain(|&id| id != end);
        vocab.replace_attr(end, Attr::USER_DEFINED);
    }
    // Gemma 4 and PLaMo have an ordinary `</s>`.
    let has = |eog: &[u32], t: &str| in_eog(vocab, eog, t).is_some();
    let normal_s = has(&eog, "<|tool_response>") || has(&eog, "<|plamo:eos|>");
    if let Some(s) = in_eog(vocab, &eog, "</s>").filter(|_| normal_s) {
        eog.retain(|&id| id != s);
        vocab.replace_attr(s, Attr::NORMAL);
    }
    eog
}

/// The id of the token `text` if it is in the sorted set `eog`.
fn in_eog(vocab: &Vocab, eog: &[u32], text: &str) -> Option<u32> {
    vocab.id(text).filter(|id| eog.binary_search(id).is_ok())
}

/// llama.cpp's per-model strip attributes, chosen by `general.name`, `tokenizer.ggml.pre` and
/// `general.architecture`. `special` are the special-token ids (control, user-defined,
/// unknown) as collected before this step.
pub(crate) fn strip_attrs(vocab: &mut Vocab, special: &[u32], name: &str, pre: &str, arch: &str) {
    let name = name.to_ascii_lowercase();
    let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|sub| s.contains(sub));
    let set = |vocab: &mut Vocab, text: &str, bits: Attr, on: bool| {
        if let Some(id) = vocab.id(text) {
            vocab.set_attr(id, bits, on);
        }
    };
    if contains_any(pre, &["jina-v2-de", "jina-v2-es", "jina-v2-code", "mmbert"])
        || contains_any(arch, &["nomic-bert-moe", "jina-bert-v3"])
    {
        set(vocab, "<mask>", Attr::LSTRIP, true);
    } else if contains_any(&name, &["phi-3", "phi3"]) {
        for &id in special {
            vocab.set_attr(id, Attr::RSTRIP, true);
        }
        set(vocab, "</s>", Attr::RSTRIP, true);
        for text in ["<unk>", "<s>", "<|endoftext|>"] {
            set(vocab, text, Attr::RSTRIP, false);
        }
    } else if name.contains("modern-bert") {
        set(vocab, "[MASK]", Attr::LSTRIP, true);
    }
}
