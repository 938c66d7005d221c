//! [`EvalError`]: why a comparison could not run, and [`VocabMismatch`]: how two
//! vocabularies differ.

use std::path::PathBuf;

use crate::gguf::GgufError;
use crate::model::ModelError;
use crate::tokenizer::TokenizerError;

/// Why a comparison could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Loading or running a model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A model file could not be read (the teacher's vocabulary, when llama.cpp runs it).
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A vocabulary could not be loaded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The two models do not share a vocabulary, so their logits cannot be compared.
    #[error(transparent)]
    Vocab(#[from] VocabMismatch),
    /// The text gives nothing to score.
    #[error("the text is {tokens} tokens: at least 2 are needed to score a next-token prediction")]
    TextTooShort {
        /// Tokens in the text.
        tokens: usize,
    },
    /// A window, batch or repetition count out of range.
    #[error("{what} must be at least {min}, found {found}")]
    BadOption {
        /// The option (`--ctx`, `--batch`...).
        what: &'static str,
        /// Smallest value allowed.
        min: usize,
        /// The value given.
        found: usize,
    },
    /// llama.cpp was asked for, and this build does not have it.
    #[error("built without the llama feature; rebuild with --features llama")]
    LlamaUnavailable,
    /// llama.cpp could not load a model file.
    #[error("llama.cpp cannot load {}{}: {message}", path.display(), arch_note(arch.as_deref()))]
    LlamaLoad {
        /// The file.
        path: PathBuf,
        /// Its `general.architecture`, where read (llama.cpp's own reasons are not logged).
        arch: Option<String>,
        /// llama.cpp's (or its binding's) message.
        message: String,
    },
    /// llama.cpp failed while running.
    #[error("llama.cpp: {what}: {message}")]
    Llama {
        /// What was being done.
        what: &'static str,
        /// llama.cpp's (or its binding's) message.
        message: String,
    },
}

impl EvalError {
    /// Whether the user can fix it by changing the input (files, text, options), as opposed
    /// to a failure while running.
    pub fn is_bad_input(&self) -> bool {
        match self {
            EvalError::Model(e) => !matches!(e, ModelError::LogitsSize { .. }),
            EvalError::Llama { .. } => false,
            _ => true,
        }
    }
}

/// Two vocabularies that differ: in size, or in the text of some token ids.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct VocabMismatch {
    /// What the two sides are called (`("teacher", "student")`, `("target", "draft")`).
    pub names: (&'static str, &'static str),
    /// Token counts of the two tokenizers.
    pub n_vocab: (usize, usize),
    /// Logit rows of the two models (`n_vocab` of their configs).
    pub n_logits: (usize, usize),
    /// The first few ids (up to [`VocabMismatch::SHOWN`]) whose texts differ, with both
    /// texts (`None`: the id is past that side's vocabulary).
    pub first_differing: Vec<(u32, Option<String>, Option<String>)>,
    /// How many ids below the smaller size have different texts.
    pub n_differing: usize,
}

impl VocabMismatch {
    /// How many differing ids are kept and shown.
    pub const SHOWN: usize = 5;

    fn describe(&self) -> String {
        let (a, b) = self.names;
        let mut parts = Vec::new();
        if self.n_vocab.0 != self.n_vocab.1 {
            parts.push(format!("the {a} has {} tokens, the {b} {}", self.n_vocab.0, self.n_vocab.1));
        }
        if self.n_logits.0 != self.n_logits.1 {
            parts.push(format!("the {a} model outputs {} logits, the {b} model {}", self.n_logits.0, self.n_logits.1));
        }
        if self.n_differing > 0 {
            parts.push(format!("{} of the ids both have differ in text", self.n_differing));
        }
        if !self.first_differing.is_empty() {
            let shown: Vec<String> = self
                .first_differing
                .iter()
                .map(|(id, x, y)| format!("{id}: {} vs {}", quoted(x.as_deref()), quoted(y.as_deref())))
                .collect();
            parts.push(format!("first differing ids: {}", shown.join(", ")));
        }
        format!("the {a} and {b} vocabularies differ: {}", parts.join("; "))
    }
}

/// `" (architecture \"name\")"`, or nothing.
fn arch_note(arch: Option<&str>) -> String {
    arch.map_or_else(String::new, |a| format!(" (architecture {a:?})"))
}

fn quoted(s: Option<&str>) -> String {
    s.map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"))
}
