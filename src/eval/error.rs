//! [`EvalError`]: why a comparison could not run.

use std::path::PathBuf;

use crate::gguf::GgufError;
use crate::model::ModelError;
use crate::runner::RunnerError;
use crate::tokenizer::{TokenizerError, VocabMismatch};

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
    /// A prompts file (or built-in set) gives no prompt.
    #[error("no prompts: the file holds no non-blank line")]
    NoPrompts,
    /// A prompt cannot be read or rendered.
    #[error("prompt {line}: {message}")]
    Prompt {
        /// Its line in the prompts file (its number in the set), from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A conversation was given and no chat template to render it.
    #[error("a conversation needs a chat template, and none was given")]
    NoChatTemplate,
    /// The teacher's chat template does not parse.
    #[error("the teacher's chat template: {0}")]
    ChatTemplate(String),
    /// A prompt and the tokens to write do not fit the models' context.
    #[error(
        "prompt {index} is {tokens} tokens; with {n_predict} to write that is more than the models' context of {n_ctx_train} (lower -n or shorten it)"
    )]
    PromptTooLong {
        /// The prompt's number, from 1.
        index: usize,
        /// Its tokens.
        tokens: usize,
        /// Tokens to write.
        n_predict: usize,
        /// The smaller training context of the two models.
        n_ctx_train: usize,
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
    /// An engine could not be set up for the sizes asked (more positions than a model was
    /// trained for).
    #[error(transparent)]
    Runner(RunnerError),
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
            EvalError::Runner(e) => matches!(e, RunnerError::ContextTooLong { .. }),
            _ => true,
        }
    }
}

#[cfg(feature = "llama")]
impl From<crate::llama::LlamaError> for EvalError {
    fn from(e: crate::llama::LlamaError) -> EvalError {
        use crate::llama::LlamaError;
        match e {
            LlamaError::Load { path, message } => EvalError::LlamaLoad { path, arch: None, message },
            LlamaError::Call { what, message } => EvalError::Llama { what, message },
        }
    }
}

impl From<RunnerError> for EvalError {
    /// The engines' errors as the variants a comparison always had: a model's, llama.cpp's.
    fn from(e: RunnerError) -> EvalError {
        match e {
            RunnerError::Model(e) => EvalError::Model(e),
            #[cfg(feature = "llama")]
            RunnerError::Llama(e) => e.into(),
            e => EvalError::Runner(e),
        }
    }
}

/// `" (architecture \"name\")"`, or nothing.
fn arch_note(arch: Option<&str>) -> String {
    arch.map_or_else(String::new, |a| format!(" (architecture {a:?})"))
}
