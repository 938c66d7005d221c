//! pupil: an inference runtime for distilled student language models.
//!
//! - [`bench`]: prompt and generation speed, llama-bench style, against llama.cpp and the
//!   memory-bandwidth ceiling.
//! - [`chat`]: chat templates, rendered from the model's own Jinja source.
//! - [`engine`]: a model loaded with its tokenizer and chat template, shared by every use that makes text.
//! - [`error`]: [`ErrorKind`](error::ErrorKind), whose fault an error is.
//! - [`eval`]: a student against its teacher: KL divergence, top-1 agreement, perplexity, and
//!   the cost of each (size, memory, speed).
//! - [`generate`]: sessions that turn prompts into streamed text (KV cache reuse, stop strings).
//! - [`gguf`]: the GGUF file format, read zero-copy from a memory map, and written.
//! - `llama` (feature `llama`): llama.cpp, pupil's oracle and baseline; every call into it.
//! - [`model`]: architectures over GGUF tensors: batched forward pass, KV cache, logits.
//! - [`quantize`]: GGUF to GGUF in another file type (`Q4_K_M`, `Q8_0`...), equal to llama-quantize's.
//! - [`runner`]: one model on one engine (pupil or llama.cpp) behind one trait, and the one
//!   definition of pp, tg and TTFT (`runner::speed`) that `bench` and `eval` report.
//! - [`request`]: one generation's state machine: tokens in, text pieces, stop reason, timings.
//! - [`sample`]: choosing the next token from logits.
//! - [`serve`]: many users at once: the step scheduler and the OpenAI-compatible server.
//! - [`tokenizer`]: text ↔ token ids from a GGUF file's vocabulary, equal to llama.cpp's.
//!
//! Kernels (block formats, dot products) live in the `pupil-kernels` crate, re-exported as
//! [`kernels`].
#![deny(missing_docs)]

pub use pupil_kernels as kernels;

pub mod bench;
pub mod chat;
pub mod engine;
pub mod error;
pub mod eval;
pub mod generate;
pub mod gguf;
#[cfg(feature = "llama")]
pub mod llama;
pub mod model;
pub mod quantize;
pub mod request;
pub mod runner;
pub mod sample;
pub mod serve;
pub mod tokenizer;
