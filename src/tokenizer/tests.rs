//! Unit tests on toy vocabularies built in memory. Equality with llama.cpp on real
//! vocabularies is tested in `tests/tokenizer_vectors.rs` and `tests/tokenizer_oracle.rs`.

use super::*;
use crate::gguf::{GgufWriter, Value};

/// A metadata builder for toy vocabularies.
fn gguf(entries: Vec<(&str, Value)>) -> Gguf {
    let mut w = GgufWriter::new();
    for (k, v) in entries {
        w.add(k, v);
    }
    Gguf::parse(&w.to_bytes()).unwrap()
}

fn strings(v: &[&str]) -> Value {
    Value::from(v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

/// A SentencePiece vocabulary: `<unk> <s> </s>`, 256 byte tokens, then a few pieces.
fn spm_entries() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    let mut scores = vec![0.0f32; 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
        scores.push(0.0);
    }
    for (t, ty, s) in [
        ("▁", 1, -3.0),
        ("a", 1, -4.0),
        ("b", 1, -4.0),
        ("▁a", 1, -1.0),
        ("ab", 1, -2.0),
        ("▁ab", 1, -0.5),
        ("<start_of_turn>", 3, 0.0),
        ("<end_of_turn>", 3, 0.0),
        ("<tag>", 4, 0.0),
    ] {
        tokens.push(t.into());
        types.push(ty);
        scores.push(s);
    }
    vec![
        ("tokenizer.ggml.model", Value::from("llama")),
        ("tokenizer.ggml.tokens", Value::from(tokens)),
        ("tokenizer.ggml.scores", Value::from(scores)),
        ("tokenizer.ggml.token_type", Value::from(types)),
    ]
}

fn spm() -> Tokenizer {
    Tokenizer::from_gguf(&gguf(spm_entries())).unwrap()
}

/// A byte-level BPE vocabulary: the 256 byte characters, then `Ġt`, `he`, `Ġthe`.
fn bpe_entries(pre: &str) -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = (0..=255u8).map(|b| bytes::byte_to_char(b).to_string()).collect();
    tokens.extend(["Ġt", "he", "Ġthe", "<|endoftext|>"].map(String::from));
    let mut types = vec![1; tokens.len()];
    *types.last_mut().unwrap() = 3;
    vec![
        ("tokenizer.ggml.model", Value::from("gpt2")),
        ("tokenizer.ggml.pre", Value::from(pre)),
        ("tokenizer.ggml.tokens", Value::from(tokens)),
        ("tokenizer.ggml.token_type", Value::from(types)),
        ("tokenizer.ggml.merges", strings(&["Ġ t", "h e", "Ġt he"])),
        ("tokenizer.ggml.bos_token_id", Value::U32(259)),
        ("tokenizer.ggml.eos_token_id", Value::U32(259)),
    ]
}

fn replace(mut entries: Vec<(&'static str, Value)>, key: &'static str, value: Option<Value>) -> Vec<(&'static str, Value)> {
    entries.retain(|(k, _)| *k != key);
    if let Some(v) = value {
        entries.push((key, v));
    }
    entries
}

fn load_err(entries: Vec<(&str, Value)>) -> TokenizerError {
    Tokenizer::from_gguf(&gguf(entries)).unwrap_err()
}

#[test]
fn tokenizer_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tokenizer>();
}

#[test]
fn spm_merges_best_score_first_and_falls_back_to_bytes() {
    let tok = spm();
    let id = |t: &str| tok.token_id(t).unwrap();
    assert_eq!(tok.model_kind(), ModelKind::Spm);
    assert_eq!(tok.encode("ab", false, false), [id("▁ab")]);
    assert_eq!(tok.encode("ab", true, false), [1, id("▁ab")]);
    assert_eq!(tok.encode("ba", false, false), [id("▁"), id("b"), id("a")]);
    assert_eq!(tok.encode("é", false, false), [id("▁"), id("<0xC3>"), id("<0xA9>")]);
    assert_eq!(tok.decode(&tok.encode("ab ba é", false, false)), "ab ba é");
    // llama.cpp strips the prefixed space from the first token only, here the unrendered BOS.
    assert_eq!(tok.decode(&tok.encode("ab ba é", true, false)), " ab ba é");
    assert_eq!(tok.detokenize(&tok.encode("ab", true, false), true, false), b" ab");
}

#[test]
fn special_tokens_are_parsed_only_on_request_but_user_defined_always() {
    let tok = spm();
    let id = |t: &str| tok.token_id(t).unwrap();
    let sot = id("<start_of_turn>");
    assert_eq!(tok.encode("<start_of_turn>ab", false, true), [sot, id("▁ab")]);
    assert!(!tok.encode("<start_of_turn>ab", false, false).contains(&sot));
    assert_eq!(tok.encode("a<tag>", false, false), [id("▁a"), id("<tag>")]);
    assert!(tok.is_eog(id("<end_of_turn>")) && tok.is_eog(2) && !tok.is_eog(sot));
    assert_eq!(tok.eot(), Some(id("<end_of_turn>")));
    assert_eq!(tok.token_to_piece(sot, false), b"");
    assert_eq!(tok.token_to_piece(sot, true), b"<start_of_turn>");
}

#[test]
fn stream_holds_back_an_emoji_split_over_byte_tokens() {
    let tok = spm();
    let ids = tok.encode("🦙", false, false);
    assert_eq!(ids.len(), 5, "▁ and four byte tokens: {ids:?}");
    let mut stream = tok.stream();
    assert_eq!(stream.push(ids[0]).as_deref(), Some(" "));
    for &id in &ids[1..4] {
        assert_eq!(stream.push(id), None);
        assert!(stream.has_pending());
    }
    assert_eq!(stream.push(ids[4]).as_deref(), Some("🦙"));
    assert!(!stream.has_pending());
    assert_eq!(stream.finish(), "");
}

#[test]
fn stream_replaces_invalid_bytes_and_flushes_a_cut_sequence() {
    let tok = spm();
    let byte = |b: u8| tok.token_id(&format!("<0x{b:02X}>")).unwrap();
    let mut stream = tok.stream();
    assert_eq!(stream.push(byte(0xFF)).as_deref(), Some("\u{FFFD}"));
    assert_eq!(stream.push(byte(0xE4)), None);
    assert_eq!(stream.finish(), "\u{FFFD}");
}

#[test]
fn bpe_merges_by_rank() {
    let tok = Tokenizer::from_gguf(&gguf(bpe_entries("gpt-2"))).unwrap();
    let id = |t: &str| tok.token_id(t).unwrap();
    assert_eq!(tok.model_kind(), ModelKind::Bpe);
    assert_eq!(tok.encode(" the", false, false), [id("Ġthe")]);
    assert_eq!(tok.encode("the the", false, false), [id("t"), id("he"), id("Ġthe")]);
    assert_eq!(tok.decode(&tok.encode("the\n thé", false, false)), "the\n thé");
    assert!(tok.is_eog(id("<|endoftext|>")));
}

#[test]
fn unknown_pre_tokenizer_is_an_error() {
    let err = load_err(replace(bpe_entries("gpt-2"), "tokenizer.ggml.pre", Some(Value::from("gpt-5-turbo"))));
    assert!(matches!(&err, TokenizerError::UnknownPreTokenizer { name } if name == "gpt-5-turbo"), "{err}");
}

#[test]
fn absent_pre_tokenizer_is_llama_cpp_default() {
    let tok = Tokenizer::from_gguf(&gguf(replace(bpe_entries("x"), "tokenizer.ggml.pre", None))).unwrap();
    assert_eq!(tok.pre(), None);
    assert_eq!(tok.decode(&tok.encode("a 1234!", false, false)), "a 1234!");
}

#[test]
fn malformed_vocabularies_are_typed_errors() {
    let err = load_err(replace(spm_entries(), "tokenizer.ggml.scores", Some(Value::from(vec![0.0f32; 3]))));
    assert!(matches!(err, TokenizerError::LengthMismatch { key: "tokenizer.ggml.scores", found: 3, .. }), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.token_type", Some(Value::from(vec![1i32; 7]))));
    assert!(matches!(err, TokenizerError::LengthMismatch { key: "tokenizer.ggml.token_type", .. }), "{err}");

    let err = load_err(replace(bpe_entries("gpt-2"), "tokenizer.ggml.merges", None));
    assert!(matches!(err, TokenizerError::MissingKey { key: "tokenizer.ggml.merges" }), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.bos_token_id", Some(Value::U32(1_000_000))));
    assert!(matches!(&err, TokenizerError::SpecialIdOutOfRange { id: 1_000_000, .. }), "{err}");
    assert!(err.to_string().contains("tokenizer.ggml.bos_token_id"), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.tokens", Some(Value::from(vec![1i32, 2]))));
    assert!(matches!(err, TokenizerError::WrongArrayType { key: "tokenizer.ggml.tokens", .. }), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.model", Some(Value::from("t5"))));
    assert!(matches!(&err, TokenizerError::UnsupportedModel { name } if name == "t5"), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.model", None));
    assert!(matches!(err, TokenizerError::MissingKey { key: "tokenizer.ggml.model" }), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.add_bos_token", Some(Value::from("yes"))));
    assert!(matches!(err, TokenizerError::Gguf(_)), "{err}");

    let mut entries = spm_entries();
    entries.retain(|(k, _)| !k.ends_with("scores") && !k.ends_with("token_type"));
    let err = load_err(replace(entries, "tokenizer.ggml.tokens", Some(strings(&["a", "b", "a"]))));
    assert!(matches!(err, TokenizerError::DuplicateToken { first: 0, second: 2, .. }), "{err}");

    let err = load_err(replace(spm_entries(), "tokenizer.ggml.tokens", Some(strings(&[]))));
    assert!(matches!(err, TokenizerError::BadTokenCount { count: 0, .. }), "{err}");
}

#[test]
fn out_of_range_default_ids_are_dropped_not_errors() {
    // gpt2's default BOS/EOS is 11, which this 4-token vocabulary does not have.
    let tok = Tokenizer::from_gguf(&gguf(vec![
        ("tokenizer.ggml.model", Value::from("gpt2")),
        ("tokenizer.ggml.pre", Value::from("gpt-2")),
        ("tokenizer.ggml.tokens", strings(&["a", "b", "c", "d"])),
        ("tokenizer.ggml.merges", strings(&[])),
    ]))
    .unwrap();
    assert_eq!(tok.bos(), None);
    assert_eq!(tok.encode("abcd", true, true), [0, 1, 2, 3]);
}

/// Gemma 4's kind of vocabulary: control tokens, 256 `<0xNN>` byte tokens, then pieces with
/// `▁` for spaces, merged by rank across spaces.
fn gemma4_entries() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = vec!["<pad>".into(), "<eos>".into(), "<bos>".into(), "<unk>".into()];
    let mut types = vec![3, 3, 3, 2];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for t in ["▁", "a", "b", "▁a", "▁a▁", "▁a▁b", "\n", "\n\n", "\n\n\n"] {
        tokens.push(t.into());
        types.push(1);
    }
    vec![
        ("tokenizer.ggml.model", Value::from("gemma4")),
        ("tokenizer.ggml.tokens", Value::from(tokens)),
        ("tokenizer.ggml.token_type", Value::from(types)),
        ("tokenizer.ggml.merges", strings(&["▁ a", "▁a ▁", "▁a▁ b", "\n \n"])),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        // Gemma 4 files that say false get BOS anyway, as in llama.cpp.
        ("tokenizer.ggml.add_bos_token", Value::from(false)),
    ]
}

#[test]
fn gemma4_merges_across_spaces_and_falls_back_to_byte_tokens() {
    let tok = Tokenizer::from_gguf(&gguf(gemma4_entries())).unwrap();
    let id = |t: &str| tok.token_id(t).unwrap();
    assert_eq!(tok.model_kind(), ModelKind::Gemma4);
    assert!(tok.add_bos());
    assert_eq!(tok.encode(" a b", true, false), [2, id("▁a▁b")]);
    // No space is prefixed, and bytes without a token become `<0xNN>` tokens.
    assert_eq!(tok.encode("aé", false, false), [id("a"), id("<0xC3>"), id("<0xA9>")]);
    // A run of newlines that is a token is taken whole, though merges would not build it.
    assert_eq!(tok.encode("\n\n\n", false, false), [id("\n\n\n")]);
    assert_eq!(tok.encode("\n\n\na", false, false), [id("\n\n\n"), id("a")]);
    assert_eq!(tok.token_to_piece(id("▁a▁b"), false), b" a b");
    let text = " a b\n\n\né a";
    assert_eq!(tok.decode(&tok.encode(text, true, false)), text);
    // The tree's own Gemma 4 vocabulary is checked against llama.cpp in tests/.
}

#[test]
fn unsupported_models_are_named_with_their_algorithm() {
    for (model, algorithm) in [("bert", "WordPiece"), ("t5", "Unigram"), ("rwkv", "RWKV")] {
        let err = load_err(replace(spm_entries(), "tokenizer.ggml.model", Some(Value::from(model))));
        assert!(matches!(&err, TokenizerError::UnsupportedModel { name } if name == model), "{err}");
        let message = err.to_string();
        assert!(message.contains(algorithm) && message.contains("'gemma4'"), "{message}");
    }
}
