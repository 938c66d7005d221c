//! [`Engine`]: a model loaded with its tokenizer and chat template, the bundle every use of a
//! model to produce text starts from (sessions, speculative decoding, the server). Load once,
//! share with an `Arc`: it is `Send + Sync`.
//!
//! ```no_run
//! use pupil::chat::Message;
//! use pupil::engine::Engine;
//! # fn main() -> Result<(), pupil::engine::EngineError> {
//! let engine = Engine::load("models/gemma-3-270m-q4_k_m.gguf")?;
//! let tokens = engine.chat_tokens(&[Message::new("user", "Hello")])?;
//! # let _ = tokens;
//! # Ok(()) }
//! ```

use std::path::Path;

use crate::chat::{ChatError, ChatTemplate, Message};
use crate::error::ErrorKind;
use crate::model::{LoadOptions, Model, ModelError, Threads};
use crate::tokenizer::{Tokenizer, TokenizerError};

/// Why an engine could not load, or a conversation could not become tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The model could not be loaded.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The vocabulary could not be loaded.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The chat template is broken or rejected the conversation.
    #[error(transparent)]
    Chat(#[from] ChatError),
    /// The model has no chat template and none was given.
    #[error("the model has no chat template (tokenizer.chat_template)")]
    NoChatTemplate,
    /// The model's own chat template does not parse (the error when it was loaded).
    #[error("{0}")]
    BrokenTemplate(String),
}

impl EngineError {
    /// Whose fault it is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Model(e) => e.kind(),
            EngineError::Tokenizer(e) => e.kind(),
            EngineError::Chat(_) | EngineError::NoChatTemplate | EngineError::BrokenTemplate(_) => ErrorKind::BadInput,
        }
    }
}

/// A model, its tokenizer and chat template, and the threads its forward passes run on.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    /// The chat template, or why the file's did not parse (reported when a chat needs it, so a
    /// broken template does not stop plain completions).
    template: Template,
    threads: Threads,
}

/// A [`Context`](crate::model::Context) may hold its engine: the engine's model is the
/// context's.
impl std::borrow::Borrow<Model> for std::sync::Arc<Engine> {
    fn borrow(&self) -> &Model {
        &self.model
    }
}

#[derive(Debug)]
enum Template {
    None,
    Ready(ChatTemplate),
    Broken(String),
}

/// The name template errors give for the file's own template.
const FILE_TEMPLATE: &str = "tokenizer.chat_template";

impl Engine {
    /// Loads the model, its vocabulary and (if present) its chat template from a GGUF file,
    /// with a pool of one thread per core.
    pub fn load(path: impl AsRef<Path>) -> Result<Engine, EngineError> {
        Engine::load_with(path, &LoadOptions::default())
    }

    /// [`Engine::load`] with the model loaded by `opts`.
    pub fn load_with(path: impl AsRef<Path>, opts: &LoadOptions) -> Result<Engine, EngineError> {
        let model = Model::open_with(path, opts)?;
        let tokenizer = Tokenizer::from_gguf(model.file())?;
        let mut engine = Engine { model, tokenizer, template: Template::None, threads: Threads::available()? };
        if let Some(src) = engine.model.file().get_str("tokenizer.chat_template").map_err(ModelError::from)? {
            engine.template = match engine.template_from(FILE_TEMPLATE, src.to_owned()) {
                Ok(t) => Template::Ready(t),
                Err(e) => {
                    tracing::warn!("{e}; chats need another (--chat-template)");
                    Template::Broken(e.to_string())
                }
            };
        }
        Ok(engine)
    }

    /// Runs what is made from now on on `threads`.
    pub fn set_threads(&mut self, threads: Threads) {
        self.threads = threads;
    }

    /// The pool forward passes run on.
    pub fn threads(&self) -> &Threads {
        &self.threads
    }

    /// Uses `source` as the chat template instead of the file's; `name` is what its errors
    /// call it (a file name).
    pub fn set_chat_template(&mut self, name: &str, source: String) -> Result<(), EngineError> {
        self.template = Template::Ready(self.template_from(name, source)?);
        Ok(())
    }

    fn template_from(&self, name: &str, source: String) -> Result<ChatTemplate, ChatError> {
        crate::chat::template_for(name, source, &self.tokenizer)
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat template, if the model has one that parses (or one was set).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        match &self.template {
            Template::Ready(t) => Some(t),
            _ => None,
        }
    }

    /// Renders a conversation with the chat template and tokenizes it, ready to generate the
    /// assistant's reply. Special-token text in the rendering becomes special tokens; a BOS
    /// the template writes itself is not doubled.
    pub fn chat_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, EngineError> {
        let template = match &self.template {
            Template::Ready(t) => t,
            Template::None => return Err(EngineError::NoChatTemplate),
            Template::Broken(e) => return Err(EngineError::BrokenTemplate(e.clone())),
        };
        Ok(crate::chat::tokens(template, &self.tokenizer, messages)?)
    }
}
