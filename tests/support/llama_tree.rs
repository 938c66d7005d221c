//! Where the tests find llama.cpp's own data: the vocabularies with their test vectors and the
//! chat templates, unpacked from PyPI's `llama-cpp-python` source distribution by
//! `models/fetch-llama-cpp.sh` (which the README's test command runs) into `models/.cache`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// `models/.cache/llama.cpp/models`, checked to exist.
pub fn models_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/.cache/llama.cpp/models");
    assert!(
        dir.is_dir(),
        "{} is missing: run models/fetch-llama-cpp.sh (scripts/test.sh does)",
        dir.display()
    );
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
