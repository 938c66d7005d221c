//! Serving many users at once: a scheduler that runs every active request's next token and
//! chunks of new prompts in one forward pass per step, and (next) the OpenAI-compatible HTTP
//! server over it.
//!
//! - [`plan`]: the step plan, a pure function of the scheduler's state (decodes first, prompt
//!   chunks under a token budget, admission to the slot with the longest cached prefix).
//! - [`openai`]: the OpenAI wire format: request bodies checked into jobs, answer shapes,
//!   errors.

pub mod http;
pub mod loadgen;
pub mod metrics;
pub mod openai;
pub mod plan;
pub mod scheduler;
