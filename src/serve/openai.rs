//! The OpenAI wire format: request bodies as clients send them, checked and turned into a
//! [`Job`], and the JSON shapes of answers, stream chunks and errors.
//!
//! Unknown fields are ignored, as OpenAI's own server does. Everything a client controls is
//! checked here, before anything reaches the engine: a bad value is an [`ApiError`] with
//! status 400 naming the field.

use serde::{Deserialize, Serialize};

use crate::chat::Message;
use crate::request::GenerateParams;
use crate::sample::SamplerConfig;

/// Most stop strings a request may give.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Most alternatives per position `logprobs`/`top_logprobs` may ask for.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// An error as OpenAI shapes it: `{"error": {"message", "type", "code"}}`, with its status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// What went wrong, for a person.
    pub message: String,
    /// OpenAI's error type: `invalid_request_error`, `authentication_error`, ...
    pub kind: &'static str,
    /// A short machine-readable code, or the parameter at fault.
    pub code: Option<String>,
}

impl ApiError {
    /// 400: the request is wrong; `param` names the field.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        ApiError { status: 400, message: message.into(), kind: "invalid_request_error", code: Some(param.to_owned()) }
    }

    /// An error with any status.
    pub fn new(status: u16, kind: &'static str, code: &str, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into(), kind, code: Some(code.to_owned()) }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "message": self.message, "type": self.kind, "code": self.code } })
    }
}

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// Sampling and length fields common to both endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Sampling {
    /// Most tokens to generate.
    pub max_tokens: Option<i64>,
    /// The newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<i64>,
    /// 0 to 2 in OpenAI's API (any value of 0 or more here); 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0 to 1.
    pub top_p: Option<f32>,
    /// Keep the k most likely tokens (extension).
    pub top_k: Option<i64>,
    /// Min-p sampling (extension).
    pub min_p: Option<f32>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// llama.cpp's repetition penalty (extension).
    pub repeat_penalty: Option<f32>,
    /// Seed of the draw: the same seed gives the same text, whatever the load.
    pub seed: Option<i64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Generate past end-of-generation tokens (extension, for benchmarks).
    #[serde(default)]
    pub ignore_eos: bool,
    /// Choices to generate: only 1 is supported.
    pub n: Option<i64>,
}

/// A message's content: a string, or a list of parts of which the text ones are read.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": ...}, ...]`.
    Parts(Vec<Part>),
}

/// One part of a message's content.
#[derive(Clone, Debug, Deserialize)]
pub struct Part {
    /// `text`, `image_url`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    pub text: Option<String>,
}

/// One chat message as sent.
#[derive(Clone, Debug, Deserialize)]
pub struct WireMessage {
    /// `system`, `user`, `assistant`, `tool`, `developer`.
    pub role: String,
    /// Its content (null for an assistant's tool call).
    pub content: Option<Content>,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    /// The model name (any name is accepted: the server serves one model).
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<WireMessage>,
    /// Sampling and length.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Return the log-probability of each generated token.
    #[serde(default)]
    pub logprobs: bool,
    /// With `logprobs`, this many alternatives per position.
    pub top_logprobs: Option<i64>,
}

/// `prompt`: a string, a list of one string, or token ids.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum WirePrompt {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<i64>),
    /// A batch of texts: only one is supported.
    Texts(Vec<String>),
}

/// `POST /v1/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    /// The model name.
    pub model: Option<String>,
    /// The prompt.
    pub prompt: WirePrompt,
    /// Sampling and length.
    #[serde(flatten)]
    pub sampling: Sampling,
    /// Return the prompt's tokens before the completion (with their log-probabilities when
    /// `logprobs` is set: what lm-evaluation-harness's loglikelihood tasks read).
    #[serde(default)]
    pub echo: bool,
    /// Log-probabilities of each token, with this many alternatives (0 to 20).
    pub logprobs: Option<i64>,
}

/// What a job starts from.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Text, tokenized with BOS as the vocabulary says.
    Text(String),
    /// Token ids, used as given.
    Tokens(Vec<u32>),
    /// A conversation, rendered with the chat template.
    Chat(Vec<Message>),
}

/// A checked request, ready for the engine.
#[derive(Clone, Debug)]
pub struct Job {
    /// What to continue.
    pub prompt: Prompt,
    /// Token limit, sampling, stop strings.
    pub params: GenerateParams,
    /// Keep going past end-of-generation tokens.
    pub ignore_eos: bool,
    /// Alternatives per position to report, when log-probabilities are asked for.
    pub logprobs: Option<usize>,
    /// Return the prompt (completions only).
    pub echo: bool,
    /// Answer as server-sent events.
    pub stream: bool,
    /// With `stream`, a last chunk with the usage.
    pub include_usage: bool,
}

impl Sampling {
    fn params(&self, chat: bool) -> Result<GenerateParams, ApiError> {
        if let Some(n) = self.n
            && n != 1
        {
            return Err(ApiError::invalid("n", format!("n is {n}; this server generates one choice per request")));
        }
        let max = if chat { self.max_completion_tokens.or(self.max_tokens) } else { self.max_tokens };
        let max_tokens = match max {
            None => None,
            Some(m) if m < 0 => return Err(ApiError::invalid("max_tokens", format!("max_tokens is {m}, expected 0 or more"))),
            Some(m) => Some(usize::try_from(m).unwrap_or(usize::MAX)),
        };
        let mut s = SamplerConfig { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, ..SamplerConfig::default() };
        if let Some(t) = self.temperature {
            s.temperature = t;
        }
        if let Some(p) = self.top_p {
            s.top_p = p;
        }
        if let Some(k) = self.top_k {
            s.top_k = usize::try_from(k).map_err(|_| ApiError::invalid("top_k", format!("top_k is {k}, expected 0 or more")))?;
        }
        if let Some(p) = self.min_p {
            s.min_p = p;
        }
        if let Some(p) = self.presence_penalty {
            s.presence_penalty = p;
        }
        if let Some(p) = self.frequency_penalty {
            s.frequency_penalty = p;
        }
        if let Some(p) = self.repeat_penalty {
            s.repeat_penalty = p;
        }
        if let Some(seed) = self.seed {
            s.seed = seed as u64;
        }
        s.validate().map_err(|e| ApiError::invalid(e.param().name(), e.to_string()))?;
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > MAX_STOP_STRINGS {
            return Err(ApiError::invalid("stop", format!("{} stop strings, at most {MAX_STOP_STRINGS}", stop.len())));
        }
        if let Some(s) = stop.iter().find(|s| s.len() > MAX_STOP_BYTES) {
            return Err(ApiError::invalid("stop", format!("a stop string of {} bytes, at most {MAX_STOP_BYTES}", s.len())));
        }
        Ok(GenerateParams { max_tokens, sampler: s, stop })
    }

    fn include_usage(&self) -> bool {
        self.stream && self.stream_options.as_ref().is_some_and(|o| o.include_usage)
    }
}

fn top_n(param: &str, n: Option<i64>) -> Result<Option<usize>, ApiError> {
    match n {
        None => Ok(None),
        Some(n) if (0..=MAX_TOP_LOGPROBS as i64).contains(&n) => Ok(Some(n as usize)),
        Some(n) => Err(ApiError::invalid(param, format!("{param} is {n}, expected 0 to {MAX_TOP_LOGPROBS}"))),
    }
}

impl ChatRequest {
    /// Checks the request and turns it into a job.
    pub fn into_job(self) -> Result<Job, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid("messages", "messages is empty"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    if let Some(p) = parts.iter().find(|p| p.kind != "text") {
                        return Err(ApiError::invalid(
                            "messages",
                            format!("messages[{i}] has a part of type {:?}; this model reads text only", p.kind),
                        ));
                    }
                    parts.into_iter().filter_map(|p| p.text).collect::<Vec<_>>().join("\n")
                }
            };
            messages.push(Message::new(m.role, content));
        }
        let logprobs = if self.logprobs { Some(top_n("top_logprobs", self.top_logprobs)?.unwrap_or(0)) } else { None };
        Ok(Job {
            prompt: Prompt::Chat(messages),
            params: self.sampling.params(true)?,
            ignore_eos: self.sampling.ignore_eos,
            logprobs,
            echo: false,
            stream: self.sampling.stream,
            include_usage: self.sampling.include_usage(),
        })
    }
}

impl CompletionRequest {
    /// Checks the request and turns it into a job.
    pub fn into_job(self) -> Result<Job, ApiError> {
        let prompt = match self.prompt {
            WirePrompt::Text(t) => Prompt::Text(t),
            WirePrompt::Texts(mut v) if v.len() == 1 => Prompt::Text(v.remove(0)),
            WirePrompt::Texts(v) => {
                return Err(ApiError::invalid("prompt", format!("{} prompts; this server takes one per request", v.len())));
            }
            WirePrompt::Tokens(ids) => {
                let ids: Result<Vec<u32>, _> = ids.iter().map(|&t| u32::try_from(t)).collect();
                Prompt::Tokens(ids.map_err(|_| ApiError::invalid("prompt", "a token id is negative or too large"))?)
            }
        };
        if matches!(&prompt, Prompt::Tokens(t) if t.is_empty()) {
            return Err(ApiError::invalid("prompt", "the prompt has no tokens"));
        }
        Ok(Job {
            prompt,
            params: self.sampling.params(false)?,
            ignore_eos: self.sampling.ignore_eos,
            logprobs: top_n("logprobs", self.logprobs)?,
            echo: self.echo,
            stream: self.sampling.stream,
            include_usage: self.sampling.include_usage(),
        })
    }
}

/// `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Their sum.
    pub total_tokens: usize,
}

impl Usage {
    /// Usage of a prompt and a completion.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage { prompt_tokens, completion_tokens, total_tokens: prompt_tokens + completion_tokens }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: serde_json::Value) -> Result<Job, ApiError> {
        serde_json::from_value::<ChatRequest>(body).map_err(|e| ApiError::invalid("body", e.to_string()))?.into_job()
    }

    fn completion(body: serde_json::Value) -> Result<Job, ApiError> {
        serde_json::from_value::<CompletionRequest>(body).map_err(|e| ApiError::invalid("body", e.to_string()))?.into_job()
    }

    #[test]
    fn a_chat_request_with_every_common_field_becomes_a_job() {
        let job = chat(serde_json::json!({
            "model": "x", "messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "seed": 3, "stop": "\n",
            "stream": true, "stream_options": {"include_usage": true}, "logprobs": true, "top_logprobs": 2,
            "some_future_field": {"ignored": true}
        }))
        .unwrap();
        assert_eq!(job.prompt, Prompt::Chat(vec![Message::new("system", "Be brief."), Message::new("user", "Hi")]));
        assert_eq!(job.params.max_tokens, Some(7));
        assert_eq!((job.params.sampler.temperature, job.params.sampler.top_p, job.params.sampler.seed), (0.0, 0.5, 3));
        assert_eq!(job.params.stop, ["\n"]);
        assert!(job.stream && job.include_usage);
        assert_eq!(job.logprobs, Some(2));
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        let cases = [
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": -1}), "max_tokens"),
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "top_p": 7}), "top_p"),
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "temperature": -1}), "temperature"),
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "top_k": -5}), "top_k"),
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "n": 2}), "n"),
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "logprobs": true, "top_logprobs": 99}), "top_logprobs"),
            (serde_json::json!({"messages": []}), "messages"),
            (serde_json::json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}), "messages"),
            (serde_json::json!({"messages": [{"role": "user", "content": "x"}], "stop": vec!["s"; 17]}), "stop"),
        ];
        for (body, param) in cases {
            let e = chat(body.clone()).unwrap_err();
            assert_eq!((e.status, e.code.as_deref()), (400, Some(param)), "{body}: {e}");
        }
    }

    #[test]
    fn completion_prompts_take_text_one_text_or_tokens() {
        assert_eq!(completion(serde_json::json!({"prompt": "a"})).unwrap().prompt, Prompt::Text("a".into()));
        assert_eq!(completion(serde_json::json!({"prompt": ["a"]})).unwrap().prompt, Prompt::Text("a".into()));
        assert_eq!(completion(serde_json::json!({"prompt": [1, 2]})).unwrap().prompt, Prompt::Tokens(vec![1, 2]));
        for bad in [serde_json::json!({"prompt": ["a", "b"]}), serde_json::json!({"prompt": [-1]}), serde_json::json!({"prompt": []})] {
            assert_eq!(completion(bad.clone()).unwrap_err().status, 400, "{bad}");
        }
        let job = completion(serde_json::json!({"prompt": "a", "echo": true, "logprobs": 1, "max_tokens": 0})).unwrap();
        assert!(job.echo && job.logprobs == Some(1) && job.params.max_tokens == Some(0));
    }

    #[test]
    fn errors_have_openais_shape() {
        let body = ApiError::invalid("top_p", "top_p is 7").body();
        assert_eq!(body, serde_json::json!({"error": {"message": "top_p is 7", "type": "invalid_request_error", "code": "top_p"}}));
    }
}
