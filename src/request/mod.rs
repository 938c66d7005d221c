//! One request's life, from the tokens a model produces to the text a user sees: the state
//! machine that [`generate::Session`](crate::generate::Session), speculative decoding and
//! the server all drive, one token at a time.
//!
//! A [`Request`] takes each sampled token ([`Request::push`]) and answers with the text it
//! may release now and, once generation must end, why ([`StopReason`]): an end-of-generation
//! token, the token limit, or a stop string. It holds back text that may begin a stop string
//! and bytes of a character split across tokens, and it keeps the [`Timings`]. The caller
//! owns the model and the sampler, and says when the context is full or the client went
//! away ([`Request::finish`]). Nothing here blocks or calls back, so a scheduler can step
//! many requests in one loop.
//!
//! Timings follow one definition, shared by every use: the clock starts when the request is
//! made ([`Request::new`]), before its prompt is evaluated; **TTFT** is the time to the first
//! generated token; **prompt** time is from the start until the prompt's logits are ready
//! ([`Request::prompt_done`]); **generation** time runs from the first token to the end, and
//! its rate counts the tokens after the first (the first one's cost is the prompt's).
//!
//! ```
//! use pupil::gguf::GgufFile;
//! use pupil::request::{GenerateParams, Request, StopReason};
//! use pupil::tokenizer::Tokenizer;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let file = GgufFile::open("models/distill/teacher-f16.gguf")?;
//! let tok = Tokenizer::from_gguf(&file)?;
//! let mut params = GenerateParams::greedy(16);
//! params.stop = vec![" unto".into()];
//! let mut req = Request::new(&tok, &params);
//! req.prompt_done(3);
//! let mut text = String::new();
//! let mut stop = None;
//! for t in tok.encode("And God said unto Moses", false, false) {
//!     // a model would sample `t` here
//!     if let Some(reason) = req.push(t, &mut text) {
//!         stop = Some(reason);
//!         break;
//!     }
//! }
//! assert_eq!(stop, Some(StopReason::StopString(" unto".into())));
//! let done = req.finish(stop.unwrap(), &mut text);
//! assert_eq!((text.as_str(), done.text.as_str()), ("And God said", "And God said"));
//! # Ok(()) }
//! ```

mod stop;

use std::time::Instant;

use crate::sample::SamplerConfig;
use crate::tokenizer::{StreamDecoder, Tokenizer};
pub use stop::{StopMatcher, StopScan};

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateParams {
    /// Most tokens to generate (`None`: until end of generation or a full context).
    pub max_tokens: Option<usize>,
    /// Sampling settings.
    pub sampler: SamplerConfig,
    /// Stop when the text contains one of these (the stop string is not returned).
    pub stop: Vec<String>,
}

impl GenerateParams {
    /// Greedy decoding of at most `n` tokens.
    pub fn greedy(n: usize) -> Self {
        Self { max_tokens: Some(n), sampler: SamplerConfig::greedy(), stop: Vec::new() }
    }
}

/// Why generation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` were generated.
    MaxTokens,
    /// A stop string appeared.
    StopString(String),
    /// The context is full.
    ContextFull,
    /// The caller stopped it (a callback said so, or a client went away).
    Cancelled,
}

/// Timings of one generation (see the [module docs](self) for the definitions).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens evaluated (after prefix reuse).
    pub prompt_tokens: usize,
    /// Seconds from the start until the prompt's logits were ready.
    pub prompt_secs: f64,
    /// Tokens generated.
    pub gen_tokens: usize,
    /// Seconds from the first generated token to the end.
    pub gen_secs: f64,
    /// Seconds from the start to the first generated token.
    pub ttft_secs: f64,
}

impl Timings {
    /// Prompt tokens per second.
    pub fn prompt_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_secs)
    }
    /// Generated tokens per second (the first token is the prompt's, so it is not counted).
    pub fn gen_tok_s(&self) -> f64 {
        rate(self.gen_tokens.saturating_sub(1), self.gen_secs)
    }
}

fn rate(n: usize, secs: f64) -> f64 {
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}

/// A finished generation.
#[derive(Clone, Debug)]
pub struct Completion {
    /// The generated text (without the prompt or a stop string).
    pub text: String,
    /// The generated tokens (an end-of-generation token is not included).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop: StopReason,
    /// How long it took.
    pub timings: Timings,
}

/// One generation in progress: tokens in, text out (see the [module docs](self)).
#[derive(Debug)]
pub struct Request<'t> {
    tok: &'t Tokenizer,
    decoder: StreamDecoder<'t>,
    stops: StopMatcher,
    max_tokens: Option<usize>,
    text: String,
    tokens: Vec<u32>,
    timings: Timings,
    start: Instant,
    gen_start: Option<Instant>,
}

impl<'t> Request<'t> {
    /// A request decoding with `tok` under `params`' token limit and stop strings; its clock
    /// starts now.
    pub fn new(tok: &'t Tokenizer, params: &GenerateParams) -> Self {
        Self::starting_at(tok, params, Instant::now())
    }

    /// [`new`](Self::new) with the clock started at `start` (when a server received it).
    pub fn starting_at(tok: &'t Tokenizer, params: &GenerateParams, start: Instant) -> Self {
        Request {
            tok,
            decoder: tok.stream(),
            stops: StopMatcher::new(&params.stop),
            max_tokens: params.max_tokens,
            text: String::new(),
            tokens: Vec::with_capacity(params.max_tokens.unwrap_or(0).min(1 << 16)),
            timings: Timings::default(),
            start,
            gen_start: None,
        }
    }

    /// The prompt's logits are ready: `evaluated` tokens were run (after prefix reuse).
    pub fn prompt_done(&mut self, evaluated: usize) {
        self.timings.prompt_tokens = evaluated;
        self.timings.prompt_secs = self.start.elapsed().as_secs_f64();
    }

    /// `Some` if the request may not take another token: its limit is reached (a limit of 0
    /// ends it before the first).
    pub fn limit_reached(&self) -> Option<StopReason> {
        self.max_tokens.is_some_and(|n| self.tokens.len() >= n).then_some(StopReason::MaxTokens)
    }

    /// Takes one generated token, appends the text it releases to `out`, and says whether
    /// generation ends with it. An end-of-generation token ends it unrecorded; a stop string
    /// ends it with the text before the stop string released; the token limit ends it after
    /// the token.
    pub fn push(&mut self, token: u32, out: &mut String) -> Option<StopReason> {
        if self.gen_start.is_none() {
            self.timings.ttft_secs = self.start.elapsed().as_secs_f64();
            self.gen_start = Some(Instant::now());
        }
        if self.tok.is_eog(token) {
            return Some(StopReason::EndOfGeneration);
        }
        self.tokens.push(token);
        if let Some(piece) = self.decoder.push(token) {
            match self.stops.push(&piece) {
                StopScan::Go(text) => self.release(&text, out),
                StopScan::Stop { text, stop } => {
                    let stop = stop.to_owned();
                    self.release(&text, out);
                    return Some(StopReason::StopString(stop));
                }
            }
        }
        self.limit_reached()
    }

    fn release(&mut self, text: &str, out: &mut String) {
        self.text.push_str(text);
        out.push_str(text);
    }

    /// Tokens generated so far.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Text released so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Ends the request for `reason`: text held back (a possible stop-string prefix, bytes of
    /// an unfinished character) is released to `out` unless a stop string ended it.
    pub fn finish(self, reason: StopReason, out: &mut String) -> Completion {
        let Request { decoder, mut stops, mut text, tokens, mut timings, gen_start, .. } = self;
        if !matches!(reason, StopReason::StopString(_)) {
            let tail = stops.finish() + &decoder.finish();
            text.push_str(&tail);
            out.push_str(&tail);
        }
        timings.gen_tokens = tokens.len();
        timings.gen_secs = gen_start.map_or(0.0, |g| g.elapsed().as_secs_f64());
        Completion { text, tokens, stop: reason, timings }
    }
}
