//! [`Loaded`]: a model loaded by the engine chosen to run it, pupil or llama.cpp (feature
//! `llama`), from which runners of either kind are made. Scoring and cost measurement take
//! any engine through it, so each is written once.

use std::path::Path;

use super::EvalError;
use crate::gguf::GgufFile;
use crate::model::{LoadOptions, Model};
use crate::runner::{Backend, PupilRunner, Runner, RunnerOptions};
use crate::tokenizer::{Tokenizer, check_vocab};

/// A teacher (on the engine asked for) and a student (on pupil) that share a vocabulary: the
/// teacher's is read from its GGUF file with pupil's reader (which needs no support for its
/// architecture) and checked against the student's.
#[derive(Debug)]
pub(crate) struct Pair {
    /// The shared vocabulary, as the teacher's file states it.
    pub tok: Tokenizer,
    /// The teacher file's chat template source, if it has one.
    pub template: Option<String>,
    pub teacher: Loaded,
    pub student: Model,
}

impl Pair {
    /// Loads both models and checks their vocabularies agree.
    pub(crate) fn load(
        teacher: &Path,
        student: &Path,
        backend: Backend,
        load: &LoadOptions,
    ) -> Result<Pair, EvalError> {
        let (tok, arch, template) = {
            let g = GgufFile::open(teacher)?;
            let template = g.get_str("tokenizer.chat_template")?.map(str::to_owned);
            (Tokenizer::from_gguf(&g)?, g.architecture().map(str::to_owned), template)
        };
        let s = Model::open_with(student, load)?;
        let tok_s = Tokenizer::from_gguf(s.file())?;
        let t = Loaded::open(teacher, backend, arch.as_deref(), load)?;
        check_vocab((&tok, t.n_logits()), (&tok_s, s.config().n_vocab), ("teacher", "student"))?;
        Ok(Pair { tok, template, teacher: t, student: s })
    }

    /// The smaller training context of the two.
    pub(crate) fn n_ctx_train(&self) -> usize {
        self.teacher.n_ctx_train().min(self.student.config().n_ctx_train)
    }
}

/// A model loaded by one engine.
#[derive(Debug)]
pub(crate) enum Loaded {
    /// On pupil.
    Pupil(Model),
    /// On llama.cpp.
    #[cfg(feature = "llama")]
    Llama(crate::llama::LlamaModel),
}

impl Loaded {
    /// Loads `path` on `backend`; `arch` (the file's architecture, if known) goes into a
    /// llama.cpp load error, whose own reasons are not logged.
    /// `load` applies to pupil only.
    pub(crate) fn open(
        path: &Path,
        backend: Backend,
        arch: Option<&str>,
        load: &LoadOptions,
    ) -> Result<Loaded, EvalError> {
        match backend {
            Backend::Pupil => Ok(Loaded::Pupil(Model::open_with(path, load)?)),
            #[cfg(feature = "llama")]
            Backend::Llama => crate::llama::LlamaModel::load(path).map(Loaded::Llama).map_err(|e| match e {
                crate::llama::LlamaError::Load { path, message } => {
                    EvalError::LlamaLoad { path, arch: arch.map(str::to_owned), message }
                }
                e => e.into(),
            }),
            #[cfg(not(feature = "llama"))]
            Backend::Llama => {
                let _ = arch;
                Err(EvalError::LlamaUnavailable)
            }
        }
    }

    /// Logits per position.
    pub(crate) fn n_logits(&self) -> usize {
        match self {
            Loaded::Pupil(m) => m.config().n_vocab,
            #[cfg(feature = "llama")]
            Loaded::Llama(m) => m.n_vocab(),
        }
    }

    /// The context the model was trained for.
    pub(crate) fn n_ctx_train(&self) -> usize {
        match self {
            Loaded::Pupil(m) => m.config().n_ctx_train,
            #[cfg(feature = "llama")]
            Loaded::Llama(m) => m.n_ctx_train(),
        }
    }

    /// A runner sized by `opts`.
    pub(crate) fn runner(&self, opts: &RunnerOptions) -> Result<Box<dyn Runner + '_>, EvalError> {
        Ok(match self {
            Loaded::Pupil(m) => Box::new(PupilRunner::new(m, opts)?),
            #[cfg(feature = "llama")]
            Loaded::Llama(m) => Box::new(m.runner(opts)?),
        })
    }
}
