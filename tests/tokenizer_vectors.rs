//! llama.cpp's tokenizer test vectors (`models/.cache/llama.cpp/models`): every string of each
//! `ggml-vocab-*.gguf.inp` encoded without special handling must give the ids of the `.out`
//! line, exactly.
//!
//! The vocabularies are whatever the directory holds. Each must load and match, unless it is
//! named in `llama_tree::UNSUPPORTED` (a tokenizer model pupil lacks), in which case loading
//! it must be pupil's typed error; the list is printed.
//!
//! The vectors come from a 2025 llama.cpp; the tokenizer follows the llama.cpp bundled with
//! `llama-cpp-2`. Where the two disagree, the string goes in [`EXCEPTIONS`] with the ids the
//! bundled llama.cpp produces; an exception that stops being needed fails the test too, so the
//! list stays honest. It is empty: `tests/tokenizer_oracle.rs` runs every `.inp` string
//! through the bundled llama.cpp as well, and it agrees with these vectors on all of them.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pupil::gguf::GgufFile;
use pupil::tokenizer::{Tokenizer, TokenizerError};

#[path = "support/llama_tree.rs"]
mod llama_tree;
use llama_tree::vocab_name as name;

/// `(vocabulary, index of the string in its .inp, ids the bundled llama.cpp gives)`.
const EXCEPTIONS: &[(&str, usize, &[u32])] = &[];

/// The vocabularies pupil must tokenize exactly: every file but the named unsupported ones.
fn supported_files() -> Vec<PathBuf> {
    let files: Vec<PathBuf> =
        llama_tree::vocab_files().into_iter().filter(|p| !llama_tree::is_unsupported(&name(p))).collect();
    assert!(!files.is_empty(), "no vocabularies in {}", llama_tree::models_dir().display());
    files
}

fn read_outputs(path: &Path) -> Vec<Vec<u32>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(|l| l.split_whitespace().map(|t| t.parse().unwrap()).collect()).collect()
}

fn load(path: &Path) -> Tokenizer {
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn llama_cpp_test_vectors() {
    llama_tree::print_unsupported();
    let mut failures = Vec::new();
    let mut used_exceptions = 0;
    let mut with_vectors = 0;
    for path in supported_files() {
        let vocab = name(&path);
        let tok = load(&path);
        let inp = path.with_extension("gguf.inp");
        if !inp.exists() {
            eprintln!("{vocab:15} no test vectors (checked against llama.cpp by tests/tokenizer_oracle.rs)");
            continue;
        }
        with_vectors += 1;
        let inputs = llama_tree::vector_inputs(&inp);
        let outputs = read_outputs(&path.with_extension("gguf.out"));
        assert_eq!(inputs.len(), outputs.len(), "{vocab}: .inp and .out disagree on the count");
        let mut exceptions = 0;
        for (i, (text, want)) in inputs.iter().zip(&outputs).enumerate() {
            let got = tok.encode(text, false, false);
            let exception = EXCEPTIONS.iter().find(|(v, idx, _)| *v == vocab && *idx == i);
            let expected: &[u32] = match exception {
                Some((_, _, ids)) => {
                    exceptions += 1;
                    assert_ne!(&want[..], *ids, "{vocab} #{i}: exception no longer needed, remove it");
                    ids
                }
                None => want,
            };
            if got != expected {
                failures.push(format!("{vocab} #{i} {text:?}\n  want {expected:?}\n  got  {got:?}"));
            }
        }
        used_exceptions += exceptions;
        eprintln!("{vocab:15} {:3} strings, {exceptions} exceptions", inputs.len());
    }
    assert_eq!(used_exceptions, EXCEPTIONS.len(), "an exception names a string that does not exist");
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(with_vectors > 0, "no vocabulary has test vectors");
}

/// A vocabulary pupil cannot tokenize is refused with the typed error naming its model, never
/// a panic; and each name in the unsupported list is a file of the tree that really is
/// unsupported, so the list cannot hide a vocabulary pupil could check.
#[test]
fn unsupported_vocabularies_are_a_typed_error() {
    llama_tree::print_unsupported();
    for (vocab, model, _) in llama_tree::UNSUPPORTED {
        let path = llama_tree::vocab(vocab);
        let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        match Tokenizer::from_gguf(&file) {
            Err(TokenizerError::UnsupportedModel { name }) => {
                assert_eq!(name, *model, "{vocab}");
                let message = TokenizerError::UnsupportedModel { name }.to_string();
                assert!(message.contains(model) && !message.contains('\n'), "{vocab}: {message}");
            }
            Err(e) => panic!("{vocab}: expected an unsupported-model error, got {e}"),
            Ok(_) => panic!("{vocab} now loads: test it, and take it off llama_tree::UNSUPPORTED"),
        }
    }
}

/// A 100 kB mix of prose, code, numbers, whitespace runs and several scripts.
fn long_text() -> String {
    let chunk = "The quick brown fox jumps over 13 lazy dogs; 1234567890 times!\n\
                 fn main() { println!(\"{}\", x + 42); }\t\t  \n\
                 Привет, мир! 你好，世界。 مرحبا بالعالم नमस्ते दुनिया 🦙🚀👩‍👩‍👧 café naïve\n\n    ";
    chunk.repeat(100_000 / chunk.len() + 1)
}

#[test]
fn long_input_encodes_in_linear_time() {
    let text = long_text();
    assert!(text.len() >= 100_000);
    // One word as long as the input: the worst case for merge loops.
    let word = "a".repeat(100_000);
    for path in supported_files() {
        let tok = load(&path);
        for (what, input) in [("mixed text", &text), ("one long word", &word)] {
            let start = Instant::now();
            let ids = tok.encode(input, true, true);
            let took = start.elapsed();
            eprintln!("{:15} {what}: {} bytes -> {} tokens in {took:?}", name(&path), input.len(), ids.len());
            assert!(took < Duration::from_millis(500), "{}: {what} took {took:?}", name(&path));
            assert!(tok.decode(&tok.encode(input, false, false)) == *input, "{}: {what} does not round-trip", name(&path));
        }
    }
}
