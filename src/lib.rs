//! pupil: an inference runtime for distilled student language models.
//!
//! - [`chat`]: chat templates, rendered from the model's own Jinja source.
//! - [`generate`]: sessions that turn prompts into streamed text (KV cache reuse, stop strings).
//! - [`gguf`]: the GGUF file format, read zero-copy from a memory map, and written.
//! - [`model`]: architectures over GGUF tensors: batched forward pass, KV cache, logits.
//! - [`sample`]: choosing the next token from logits.
//! - [`tokenizer`]: text ↔ token ids from a GGUF file's vocabulary, equal to llama.cpp's.
//!
//! Kernels (block formats, dot products) live in the `pupil-kernels` crate, re-exported as
//! [`kernels`].
#![deny(missing_docs)]

pub use pupil_kernels as kernels;

pub mod chat;
pub mod generate;
pub mod gguf;
pub mod model;
pub mod sample;
pub mod tokenizer;
