//! `pupil inspect` end to end: the real test model, every test vocabulary, and broken files.

use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[path = "support/llama_tree.rs"]
mod llama_tree;

fn pupil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pupil")).args(args).output().expect("run pupil")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn gemma() -> PathBuf {
    let p = root().join("models/gemma-3-270m-q4_k_m.gguf");
    assert!(p.exists(), "{} is missing: run models/fetch-gemma3-270m.sh (the test command does)", p.display());
    p
}

fn inspect_json(path: &Path) -> Json {
    let out = pupil(&["inspect", "--json", path.to_str().unwrap()]);
    assert!(out.status.success(), "inspect {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("inspect --json prints one JSON object")
}

#[test]
fn gemma3_270m_lists_236_tensors_and_totals_that_add_up_to_the_file() {
    let path = gemma();
    let r = inspect_json(&path);
    assert_eq!(r["architecture"], "gemma3");
    assert_eq!(r["gguf_version"], 3);
    assert_eq!(r["file_type"]["name"], "Q4_K_M");
    let tensors = r["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 236);

    // Per-type totals equal a recount of the tensor table.
    let mut recount = std::collections::BTreeMap::<String, (u64, u64, u64)>::new();
    for t in tensors {
        let e = recount.entry(t["dtype"].as_str().unwrap().to_string()).or_default();
        e.0 += 1;
        e.1 += t["elements"].as_u64().unwrap();
        e.2 += t["bytes"].as_u64().unwrap();
    }
    let totals = r["totals"].as_array().unwrap();
    assert_eq!(totals.len(), recount.len());
    for t in totals {
        let (n, elems, bytes) = recount[t["dtype"].as_str().unwrap()];
        assert_eq!((t["tensors"].as_u64().unwrap(), t["elements"].as_u64().unwrap(), t["bytes"].as_u64().unwrap()), (n, elems, bytes));
    }

    // And the tensor data tiles the file: from the data offset to the end, with only alignment
    // padding between tensors and after the last one.
    let file_bytes = std::fs::metadata(&path).unwrap().len();
    assert_eq!(r["file_bytes"], file_bytes);
    let align = r["alignment"].as_u64().unwrap();
    let data_offset = r["data_offset"].as_u64().unwrap();
    let mut spans: Vec<(u64, u64)> = tensors.iter().map(|t| (t["offset"].as_u64().unwrap(), t["bytes"].as_u64().unwrap())).collect();
    spans.sort();
    let mut end = 0;
    for (off, len) in spans {
        assert!(off >= end && off - end < align, "gap or overlap before offset {off}");
        end = off + len;
    }
    assert!(file_bytes - (data_offset + end) < align, "unaccounted bytes at the end of the file");
    let padding: u64 = file_bytes - data_offset - r["tensor_bytes"].as_u64().unwrap();
    assert!(padding < align * tensors.len() as u64);

    // Known facts of this model: a 640-wide, 18-layer Gemma 3 with Gemma's 262k vocabulary.
    assert_eq!(r["hyperparameters"]["gemma3.embedding_length"], 640);
    assert_eq!(r["hyperparameters"]["gemma3.block_count"], 18);
    assert_eq!(r["tokenizer"]["model"], "llama");
    assert_eq!(r["tokenizer"]["vocab_size"], 262144);
    // The base (not instruction-tuned) 270M ships no chat template.
    assert!(r["tokenizer"]["chat_template_bytes"].is_null());
}

#[test]
fn human_output_names_the_architecture_and_tensor_count() {
    let out = pupil(&["inspect", gemma().to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("architecture  gemma3"), "{text}");
    assert!(text.contains("tensors (236)"), "{text}");
    assert!(text.contains("file type     Q4_K_M (15)"), "{text}");
    assert!(text.contains("token_embd.weight"), "{text}");
    assert!(text.contains("chat template  no"), "{text}");
    assert!(text.contains("bos            2 \"<bos>\""), "{text}");
}

/// Every vocabulary of llama.cpp's tree, with its `tokenizer.ggml.model` and
/// `tokenizer.ggml.pre` (`None`: the key is absent).
const VOCABULARIES: &[(&str, &str, Option<&str>)] = &[
    ("aquila", "gpt2", None),
    ("baichuan", "llama", None),
    ("bert-bge", "bert", Some("bert-bge")),
    ("command-r", "gpt2", Some("command-r")),
    ("deepseek-coder", "gpt2", Some("deepseek-coder")),
    ("deepseek-llm", "gpt2", Some("deepseek-llm")),
    ("falcon", "gpt2", Some("falcon")),
    ("gemma-4", "gemma4", None),
    ("gpt-2", "gpt2", Some("gpt-2")),
    ("gpt-neox", "gpt2", None),
    ("llama-bpe", "gpt2", Some("llama-bpe")),
    ("llama-spm", "llama", Some("default")),
    ("mpt", "gpt2", Some("mpt")),
    ("nomic-bert-moe", "t5", Some("default")),
    ("phi-3", "llama", Some("default")),
    ("qwen2", "gpt2", Some("qwen2")),
    ("qwen35", "gpt2", Some("qwen35")),
    ("refact", "gpt2", Some("refact")),
    ("starcoder", "gpt2", Some("starcoder")),
];

#[test]
fn every_test_vocabulary_inspects_with_its_tokenizer_model() {
    let files = llama_tree::vocab_files();
    for path in &files {
        let name = llama_tree::vocab_name(path);
        let r = inspect_json(path);
        assert_eq!(r["tensors"].as_array().unwrap().len(), 0, "{}: vocab files hold no tensors", path.display());
        let (_, model, pre) = VOCABULARIES
            .iter()
            .find(|e| e.0 == name)
            .unwrap_or_else(|| panic!("{name} is not in VOCABULARIES: add its model and pre-tokenizer"));
        assert_eq!(r["tokenizer"]["model"], *model, "{name}");
        assert_eq!(r["tokenizer"]["pre"].as_str(), *pre, "{name}");
        assert!(r["tokenizer"]["vocab_size"].as_u64().unwrap() > 1000, "{name}");
        // The human form must work too.
        assert!(pupil(&["inspect", path.to_str().unwrap()]).status.success(), "{name}");
    }
    assert_eq!(files.len(), VOCABULARIES.len(), "a vocabulary of VOCABULARIES is missing from llama.cpp's tree");
}

/// `pupil tokenize` gives the library's ids on every vocabulary pupil supports, and on the
/// others one line naming the tokenizer model, with exit status 2.
#[test]
fn every_test_vocabulary_tokenizes_or_is_one_clear_line_and_exit_code_2() {
    llama_tree::print_unsupported();
    let text = "Hello world, 123 café\n\n  🦙";
    for path in llama_tree::vocab_files() {
        let name = llama_tree::vocab_name(&path);
        let out = pupil(&["tokenize", "-m", path.to_str().unwrap(), text]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some((_, model, _)) = llama_tree::UNSUPPORTED.iter().find(|u| u.0 == name) {
            assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
            assert!(stderr.starts_with("error: ") && stderr.contains(&format!("'{model}'")), "{name}: {stderr}");
            assert!(stderr.contains(&format!("ggml-vocab-{name}.gguf")), "{name}: {stderr}");
            assert!(out.stdout.is_empty(), "{name}");
            continue;
        }
        assert!(out.status.success(), "{name}: {stderr}");
        let file = pupil::gguf::GgufFile::open(&path).unwrap();
        let tok = pupil::tokenizer::Tokenizer::from_gguf(&file).unwrap();
        let want: Vec<String> = tok.encode(text, true, false).iter().map(u32::to_string).collect();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), want.join(" "), "{name}");
    }
}

#[test]
fn a_truncated_file_is_one_clear_line_and_exit_code_2() {
    let bytes = std::fs::read(gemma()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (name, len) in [("header.gguf", 10), ("metadata.gguf", 200_000), ("tensors.gguf", 4_000_000)] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes[..len]).unwrap();
        let out = pupil(&["inspect", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{name}: {err}");
        assert!(err.starts_with("error: ") && err.contains(name), "{name}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn a_file_that_is_not_gguf_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    std::fs::write(&path, b"PK\x03\x04 this is a zip file, not a model").unwrap();
    let out = pupil(&["inspect", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap().to_lowercase();
    assert!(err.contains("not a gguf file") && err.contains("expected \"gguf\""), "{err}");
}

#[test]
fn a_missing_file_is_an_error_naming_it() {
    let out = pupil(&["inspect", "/nonexistent/model.gguf"]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("/nonexistent/model.gguf"));
}

/// llama.cpp's own loader, as the oracle: same parameter count, same tensor bytes, and every
/// metadata key it reads is in our report.
#[cfg(feature = "llama")]
#[test]
fn parameter_count_size_and_metadata_keys_match_llama_cpp() {
    let model = pupil::llama::LlamaModel::load(&gemma()).unwrap();
    let r = inspect_json(&gemma());
    assert_eq!(r["parameters"].as_u64(), Some(model.n_params()));
    assert_eq!(r["tensor_bytes"].as_u64(), Some(model.size()));
    let ours = r["metadata"].as_object().unwrap();
    for (key, theirs) in model.metadata().unwrap() {
        assert!(ours.contains_key(&key), "llama.cpp sees metadata key {key}, pupil does not");
        if let (Some(theirs), Some(Json::String(s))) = (theirs, ours.get(&key)) {
            if s.len() < 100 {
                assert_eq!(&theirs, s, "value of {key}");
            }
        }
    }
}
