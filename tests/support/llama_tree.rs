//! Where the tests find llama.cpp's own data: the vocabularies with their test vectors and the
//! chat templates, unpacked from PyPI's `llama-cpp-python` source distribution by
//! `models/fetch-llama-cpp.sh` (which the README's test command runs) into `models/.cache`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `models/.cache/llama.cpp/models`, checked to exist.
pub fn models_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/.cache/llama.cpp/models");
    assert!(dir.is_dir(), "{} is missing: run models/fetch-llama-cpp.sh (scripts/test.sh does)", dir.display());
    dir
}

/// The chat templates of real models, `*.jinja`, sorted.
pub fn templates() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(models_dir().join("templates"))
        .expect("templates directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jinja"))
        .collect();
    files.sort();
    files
}

/// Every `ggml-vocab-NAME.gguf`, sorted.
pub fn vocab_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(models_dir())
        .expect("models directory")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    files.sort();
    files
}

/// `ggml-vocab-NAME.gguf`.
pub fn vocab(name: &str) -> PathBuf {
    let path = models_dir().join(format!("ggml-vocab-{name}.gguf"));
    assert!(path.is_file(), "{} is missing from llama.cpp's tree", path.display());
    path
}

/// `NAME` of `ggml-vocab-NAME.gguf`.
pub fn vocab_name(path: &Path) -> String {
    let file = path.file_name().expect("file name").to_string_lossy();
    file.trim_start_matches("ggml-vocab-").trim_end_matches(".gguf").to_owned()
}

/// The vocabularies of llama.cpp's tree whose tokenizer model pupil does not implement, with
/// the model and why. Every other vocabulary there must tokenize exactly as llama.cpp does;
/// the tests derive that set from the directory, so a new vocabulary is either exact or named
/// here.
pub const UNSUPPORTED: &[(&str, &str, &str)] = &[
    ("bert-bge", "bert", "WordPiece, a model pupil lacks"),
    ("nomic-bert-moe", "t5", "Unigram (UGM), a model pupil lacks"),
];

/// Whether `name` is in [`UNSUPPORTED`].
pub fn is_unsupported(name: &str) -> bool {
    UNSUPPORTED.iter().any(|(n, _, _)| *n == name)
}

/// Prints the unsupported vocabularies, so that a test run says what it did not check.
pub fn print_unsupported() {
    for (name, model, why) in UNSUPPORTED {
        eprintln!("unsupported: {name:15} tokenizer model '{model}': {why}");
    }
}

/// The strings of a vocabulary's `.inp` test vectors, split as llama.cpp's
/// `test-tokenizer-0` splits them: at each line `__ggml_vocab_test__` together with the
/// newlines around it; text after the last separator is one more string (gemma-4's file ends
/// without a separator).
pub fn vector_inputs(inp: &Path) -> Vec<String> {
    const SEP: &str = "\n__ggml_vocab_test__\n";
    let text = std::fs::read_to_string(inp).unwrap_or_else(|e| panic!("{}: {e}", inp.display()));
    let mut parts: Vec<String> = text.split(SEP).map(str::to_owned).collect();
    if parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    parts
}
