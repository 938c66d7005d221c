//! A load generator for OpenAI-compatible servers (`pupil serve`, llama-server): closed loop,
//! streaming, loopback only, bounded by a request count and a deadline.
//!
//! `clients` clients each keep one request in flight and send the next when the previous
//! answer has ended, until `requests` have been sent or the deadline passes; a request still
//! running at the deadline is cut and counted apart. Every request is a streamed
//! `/v1/completions` of token ids, greedy, with `ignore_eos`, so every answer has exactly
//! `max_tokens` tokens and the same request gives the same text on a deterministic server.
//! Prompts are windows of a text tokenized by the server itself (`POST /tokenize`), one
//! window per request, so no two prompts share a prefix unless a shared one is asked for.
//!
//! What is measured, from the client's side of loopback: output and total (prompt + output)
//! tokens per second over the run's wall time; time to first token (from sending the request
//! to the first chunk with text, queueing included); the gaps between text chunks of a
//! stream (inter-token latency); errors. Two extra measurements:
//! - `long_prompt`: once every client's stream has produced `long_after` tokens, one more
//!   request with a long prompt is sent; the gaps of the other streams while it waits for its
//!   first token show whether a long prompt freezes running streams.
//! - `solo`: after the load, the first requests are sent again one at a time; the fraction
//!   whose text is the same as under load says whether answers depend on the load. The solo
//!   runs have a deadline of their own, as long as the load's.
//!
//! ```no_run
//! use pupil::serve::loadgen::{self, LoadConfig};
//! let text = std::fs::read_to_string("models/distill/heldout.txt")?;
//! let cfg = LoadConfig { clients: 8, requests: 32, ..LoadConfig::new("http://127.0.0.1:8080") };
//! let report = loadgen::run(&cfg, &text, &|_done| {})?;
//! println!("{:.1} tok/s out, {} errors", report.output_tok_s, report.errors);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Value, json};

/// Largest text sent to `/tokenize` (1.5 MB: JSON escapes stay under a server's body limit of a
/// few MB): its first this many bytes.
const MAX_TEXT_BYTES: usize = 3 << 19;
/// Largest non-streamed answer read (`/tokenize` of [`MAX_TEXT_BYTES`]).
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// How often the long-prompt sender looks at the streams' progress.
const POLL: Duration = Duration::from_millis(5);

/// What the load generator could not do: the run never started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The URL is not `http://HOST:PORT` with nothing after the root.
    #[error("{url}: expected http://HOST:PORT (the server's root): {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL names a host that is not on this machine's loopback.
    #[error("{url}: not a loopback address (127.0.0.0/8, ::1, localhost): the load generator only loads this machine")]
    NotLoopback {
        /// The URL given.
        url: String,
    },
    /// A count in the configuration is out of range.
    #[error("{0}")]
    BadConfig(String),
    /// The text does not have enough tokens for unique prompts.
    #[error("the text is {have} tokens; {need} are needed ({what}): give a longer text or fewer requests")]
    TextTooShort {
        /// Tokens in the text.
        have: usize,
        /// Tokens needed.
        need: usize,
        /// For what.
        what: String,
    },
    /// The server could not be asked to tokenize the text.
    #[error("{url}/tokenize: {message}")]
    Tokenize {
        /// The server's root.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// `/proc/PID/status` could not be read or has no memory lines.
    #[error("/proc/{pid}/status: {message}")]
    ServerMemory {
        /// The process id.
        pid: u32,
        /// What went wrong.
        message: String,
    },
    /// The async runtime could not start.
    #[error("starting the runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// One load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server's root, `http://127.0.0.1:8080`.
    pub url: String,
    /// Requests in flight at once (closed loop).
    pub clients: usize,
    /// Requests to send in all.
    pub requests: usize,
    /// The load (with the long prompt) ends by then; the solo runs after it have as long
    /// again.
    pub deadline: Duration,
    /// Tokens of each request's own part of the prompt, its leading special tokens (BOS)
    /// included.
    pub prompt_tokens: usize,
    /// Tokens every prompt starts with after its special tokens (a system prompt), 0 for none.
    pub shared_prefix: usize,
    /// Tokens generated per request.
    pub max_tokens: usize,
    /// Send one request with a prompt this long while the streams run.
    pub long_prompt: Option<usize>,
    /// Tokens every stream has produced before the long prompt goes out.
    pub long_after: usize,
    /// Run the first this many requests again alone after the load and compare the texts.
    pub solo: usize,
    /// Prompts start at this number: runs against the same server with different offsets
    /// send different prompts, so that none finds another's in a prefix cache.
    pub prompt_offset: usize,
}

impl LoadConfig {
    /// Eight clients, 32 requests of 256 prompt tokens and 128 output tokens, five minutes.
    pub fn new(url: impl Into<String>) -> Self {
        LoadConfig {
            url: url.into(),
            clients: 8,
            requests: 32,
            deadline: Duration::from_secs(300),
            prompt_tokens: 256,
            shared_prefix: 0,
            max_tokens: 128,
            long_prompt: None,
            long_after: 16,
            solo: 0,
            prompt_offset: 0,
        }
    }

    fn check(&self) -> Result<(), LoadError> {
        let bad = |m: &str| Err(LoadError::BadConfig(m.to_owned()));
        if self.clients == 0 || self.requests == 0 || self.max_tokens == 0 || self.prompt_tokens == 0 {
            return bad("clients, requests, max_tokens and prompt_tokens must each be 1 or more");
        }
        if self.deadline.is_zero() {
            return bad("the deadline must be more than 0 seconds");
        }
        if self.long_prompt == Some(0) {
            return bad("a long prompt must have 1 token or more");
        }
        Ok(())
    }
}

/// p50, p99 and the largest of a set of durations, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// How many values.
    pub n: usize,
}

impl Percentiles {
    /// Of `values` in milliseconds; `None` when there are none.
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let n = values.len();
        let rank = |p: f64| values[((p * n as f64).ceil() as usize).clamp(1, n) - 1];
        Some(Percentiles { p50: rank(0.50), p99: rank(0.99), max: values[n - 1], n })
    }
}

/// The long prompt's request and the other streams while it was prefilled.
#[derive(Clone, Debug, Serialize)]
pub struct LongPromptReport {
    /// Its prompt tokens.
    pub prompt_tokens: usize,
    /// Its time to first token (queueing and prefill), when it got one.
    pub ttft_ms: Option<f64>,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Gaps between text chunks of the other streams that overlap the time from its sending
    /// to its first token.
    pub streams_itl_ms: Option<Percentiles>,
}

/// Requests run again alone after the load.
#[derive(Clone, Debug, Serialize)]
pub struct SoloReport {
    /// Requests that completed both under load and alone.
    pub checked: usize,
    /// Of those, how many gave the same text.
    pub identical: usize,
    /// `identical / checked`.
    pub fraction: f64,
    /// The request numbers whose texts differ.
    pub differing: Vec<usize>,
    /// Solo runs that failed (not compared).
    pub errors: usize,
    /// The first solo failure's message.
    pub first_error: Option<String>,
}

/// A process's memory from `/proc/PID/status`.
#[derive(Clone, Debug, Serialize)]
pub struct ServerMemory {
    /// The process id.
    pub pid: u32,
    /// Resident set now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Largest resident set so far, KiB (`VmHWM`).
    pub peak_rss_kib: u64,
}

/// The memory of process `pid` (Linux).
pub fn server_memory(pid: u32) -> Result<ServerMemory, LoadError> {
    let fail = |message: String| LoadError::ServerMemory { pid, message };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| fail(e.to_string()))?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss_kib), Some(peak_rss_kib)) => Ok(ServerMemory { pid, rss_kib, peak_rss_kib }),
        _ => Err(fail("no VmRSS/VmHWM lines (a kernel thread, or not Linux)".into())),
    }
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The server's root.
    pub url: String,
    /// Clients in the closed loop.
    pub clients: usize,
    /// Requests planned.
    pub requests: usize,
    /// Requests that completed without error.
    pub completed: usize,
    /// Requests that failed (a status other than 200, a broken or short stream, an error
    /// chunk, no connection).
    pub errors: usize,
    /// Requests still running at the deadline.
    pub cut: usize,
    /// Errors by kind.
    pub error_kinds: BTreeMap<String, usize>,
    /// The first error's message.
    pub first_error: Option<String>,
    /// From the first request sent to the last answer's end, seconds.
    pub wall_s: f64,
    /// Prompt tokens of the completed requests.
    pub prompt_tokens: usize,
    /// Output tokens of the completed requests.
    pub output_tokens: usize,
    /// `output_tokens / wall_s`.
    pub output_tok_s: f64,
    /// `(prompt_tokens + output_tokens) / wall_s`.
    pub total_tok_s: f64,
    /// Time to first token of the completed requests.
    pub ttft_ms: Option<Percentiles>,
    /// Gaps between text chunks of the completed requests.
    pub itl_ms: Option<Percentiles>,
    /// With `long_prompt`.
    pub long_prompt: Option<LongPromptReport>,
    /// With `solo`.
    pub solo: Option<SoloReport>,
    /// Filled in by the caller that knows the server's process.
    pub server_memory: Option<ServerMemory>,
}

/// Runs the load against `cfg.url` with prompts cut from `text`; `on_done(n)` is called as
/// the `n`th request of the load ends. Returns when every request has ended or the
/// deadline has passed.
pub fn run(cfg: &LoadConfig, text: &str, on_done: &dyn Fn(usize)) -> Result<Report, LoadError> {
    cfg.check()?;
    let ep = Endpoint::parse(&cfg.url)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(LoadError::Runtime)?;
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + cfg.deadline;
        // Bounded too: a server that never answers /tokenize must not hang the run.
        let prompts = tokio::time::timeout_at(deadline, Prompts::build(&ep, cfg, text)).await.map_err(|_| {
            LoadError::Tokenize { url: ep.url.clone(), message: "no answer before the deadline".into() }
        })??;
        Ok(drive(&ep, cfg, &prompts, deadline, on_done).await)
    })
}

// ----------------------------------------------------------------------------- the address

/// Where the server listens, checked to be on loopback.
#[derive(Clone, Debug)]
struct Endpoint {
    /// The root as given, without a trailing slash.
    url: String,
    /// `Host:` header.
    authority: String,
    addr: SocketAddr,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, LoadError> {
        let bad = |reason: &str| LoadError::BadUrl { url: url.to_owned(), reason: reason.to_owned() };
        let rest = url.strip_prefix("http://").ok_or_else(|| bad("only http:// is spoken"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !path.is_empty() {
            return Err(bad("give the root without a path (the paths /v1/completions and /tokenize are added)"));
        }
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("no host"));
        }
        let has_port = match authority.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => authority.contains(':'),
        };
        let with_port = if has_port { authority.to_owned() } else { format!("{authority}:80") };
        let addrs: Vec<SocketAddr> = with_port.to_socket_addrs().map_err(|e| bad(&e.to_string()))?.collect();
        match addrs.first() {
            Some(&addr) if addrs.iter().all(|a| a.ip().is_loopback()) => {
                Ok(Endpoint { url: format!("http://{authority}"), authority: authority.to_owned(), addr })
            }
            Some(_) => Err(LoadError::NotLoopback { url: url.to_owned() }),
            None => Err(bad("the host has no address")),
        }
    }
}

// ----------------------------------------------------------------------------- HTTP

/// One keep-alive HTTP/1.1 connection, opened again when the server closed it.
struct Client<'a> {
    ep: &'a Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl<'a> Client<'a> {
    fn new(ep: &'a Endpoint) -> Self {
        Client { ep, sender: None }
    }

    /// Sends a request on the kept-alive connection, or on a new one when there is none or the
    /// server closed it (an idle connection may be closed just as a request goes out: then
    /// the request is sent once more, on a new connection).
    async fn post(&mut self, path: &str, body: Vec<u8>) -> Result<Response<Incoming>, String> {
        let body = Bytes::from(body);
        if let Some(sender) = self.sender.take().filter(|s| !s.is_closed()) {
            if let Ok(resp) = self.send(sender, path, body.clone()).await {
                return Ok(resp);
            }
        }
        let stream =
            tokio::net::TcpStream::connect(self.ep.addr).await.map_err(|e| format!("connect {}: {e}", self.ep.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        self.send(sender, path, body).await
    }

    async fn send(
        &mut self,
        mut sender: SendRequest<Full<Bytes>>,
        path: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, String> {
        sender.ready().await.map_err(|e| e.to_string())?;
        let req = Request::post(path)
            .header(header::HOST, &self.ep.authority)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        // The answer's body must be read to its end before the connection carries the next
        // request, which every caller does (or drops the connection).
        self.sender = Some(sender);
        Ok(resp)
    }

    /// A non-streamed JSON answer.
    async fn post_json(&mut self, path: &str, body: &Value) -> Result<Value, String> {
        let resp = self.post(path, body.to_string().into_bytes()).await?;
        let status = resp.status();
        let bytes =
            Limited::new(resp.into_body(), MAX_ANSWER_BYTES).collect().await.map_err(|e| e.to_string())?.to_bytes();
        if !status.is_success() {
            return Err(format!("status {status}: {}", String::from_utf8_lossy(&bytes[..bytes.len().min(300)])));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("the answer is not JSON: {e}"))
    }
}

// ----------------------------------------------------------------------------- prompts

/// Every request's prompt, as token ids.
///
/// The text's tokens are `shared prefix | pool | long prompt`. Request `i` (global number
/// `g = prompt_offset + i`) takes `unique` tokens of the pool: window `g % per_pass` of the
/// pool, shifted by `g / per_pass` tokens on each pass over it, so that no two requests share
/// more than their special tokens and the shared prefix, however many there are (up to about
/// as many as the pool has tokens).
struct Prompts {
    /// What the server puts before a text (BOS).
    specials: Vec<u32>,
    shared: Vec<u32>,
    pool: Vec<u32>,
    /// Tokens of each request's own part.
    unique: usize,
    /// Windows in one pass over the pool.
    per_pass: usize,
    offset: usize,
    long: Option<Vec<u32>>,
}

impl Prompts {
    async fn build(ep: &Endpoint, cfg: &LoadConfig, text: &str) -> Result<Prompts, LoadError> {
        let fail = |message: String| LoadError::Tokenize { url: ep.url.clone(), message };
        let mut client = Client::new(ep);
        let ids = |v: &Value| -> Result<Vec<u32>, LoadError> {
            v["tokens"]
                .as_array()
                .and_then(|a| {
                    a.iter().map(|t| t.as_u64().and_then(|t| u32::try_from(t).ok())).collect::<Option<Vec<u32>>>()
                })
                .ok_or_else(|| fail(format!("expected {{\"tokens\": [ids]}}, got {}", short(&v.to_string()))))
        };
        let specials =
            ids(&client.post_json("/tokenize", &json!({ "content": "", "add_special": true })).await.map_err(fail)?)?;
        let unique = cfg.prompt_tokens.checked_sub(specials.len()).filter(|&u| u > 0).ok_or_else(|| {
            LoadError::BadConfig(format!(
                "prompts of {} tokens leave no room after the {} special tokens the server adds",
                cfg.prompt_tokens,
                specials.len()
            ))
        })?;
        let long = cfg.long_prompt.map(|n| n.saturating_sub(specials.len()).max(1)).unwrap_or(0);
        let body = json!({ "content": prefix_of(text, MAX_TEXT_BYTES), "add_special": false, "parse_special": false });
        let tokens = ids(&client.post_json("/tokenize", &body).await.map_err(fail)?)?;
        let pool_len = tokens.len().saturating_sub(cfg.shared_prefix + long);
        let per_pass = (pool_len + 1).saturating_sub(unique) / unique;
        let wanted = cfg.prompt_offset + cfg.requests;
        if per_pass == 0 || wanted > per_pass * unique {
            let what = format!(
                "{wanted} different prompts of {unique} tokens{}{}",
                if cfg.shared_prefix > 0 { format!(" after a shared {}", cfg.shared_prefix) } else { String::new() },
                if long > 0 { format!(", and a long prompt of {long}") } else { String::new() },
            );
            let need = cfg.shared_prefix + long + unique + wanted;
            return Err(LoadError::TextTooShort { have: tokens.len(), need, what });
        }
        let shared = tokens[..cfg.shared_prefix].to_vec();
        let pool = tokens[cfg.shared_prefix..cfg.shared_prefix + pool_len].to_vec();
        let long = cfg.long_prompt.map(|_| [specials.as_slice(), &tokens[tokens.len() - long..]].concat());
        Ok(Prompts { specials, shared, pool, unique, per_pass, offset: cfg.prompt_offset, long })
    }

    fn prompt(&self, i: usize) -> Vec<u32> {
        let g = self.offset + i;
        let start = (g % self.per_pass) * self.unique + g / self.per_pass;
        [self.specials.as_slice(), &self.shared, &self.pool[start..start + self.unique]].concat()
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn prefix_of(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn short(s: &str) -> &str {
    prefix_of(s, 200)
}

fn body(prompt: &[u32], max_tokens: usize) -> Vec<u8> {
    json!({
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true,
        "stream": true, "stream_options": { "include_usage": true },
    })
    .to_string()
    .into_bytes()
}

// ----------------------------------------------------------------------------- one request

/// How a request failed.
#[derive(Clone, Debug)]
enum Failure {
    /// No connection, or it broke before an answer.
    Transport(String),
    /// An answer other than 200.
    Status(u16, String),
    /// The stream ended without `[DONE]`.
    Incomplete,
    /// An error chunk in the stream.
    InStream(String),
    /// Fewer tokens than asked for, despite `ignore_eos`.
    Short { got: usize, want: usize },
    /// Still running at the deadline.
    Cut,
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Transport(_) => "transport",
            Failure::Status(..) => "status",
            Failure::Incomplete => "incomplete",
            Failure::InStream(_) => "error_chunk",
            Failure::Short { .. } => "short",
            Failure::Cut => "cut",
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Transport(m) => m.clone(),
            Failure::Status(s, m) => format!("status {s}: {m}"),
            Failure::Incomplete => "the stream ended without [DONE]".into(),
            Failure::InStream(m) => format!("error in the stream: {m}"),
            Failure::Short { got, want } => format!("{got} tokens of {want} (ignore_eos)"),
            Failure::Cut => "still running at the deadline".into(),
        }
    }
}

/// One request as the client saw it; times in seconds from the start of the load.
#[derive(Clone, Debug)]
struct Record {
    id: usize,
    sent: f64,
    /// When each chunk with text arrived.
    chunks: Vec<f64>,
    text: String,
    prompt_tokens: usize,
    output_tokens: usize,
    failure: Option<Failure>,
}

impl Record {
    fn ok(&self) -> bool {
        self.failure.is_none()
    }

    fn gaps(&self) -> impl Iterator<Item = (f64, f64)> + '_ {
        self.chunks.windows(2).map(|w| (w[0], w[1]))
    }
}

/// Sends request `id` and reads its stream to the end; `seen` counts its text chunks as they
/// arrive.
async fn complete(
    client: &mut Client<'_>,
    id: usize,
    prompt: &[u32],
    max_tokens: usize,
    t0: Instant,
    deadline: tokio::time::Instant,
    seen: Option<&Cell<usize>>,
) -> Record {
    let since = |t: Instant| t.duration_since(t0).as_secs_f64();
    let mut rec = Record {
        id,
        sent: since(Instant::now()),
        chunks: Vec::with_capacity(max_tokens + 1),
        text: String::new(),
        prompt_tokens: prompt.len(),
        output_tokens: 0,
        failure: None,
    };
    let work = read_stream(client, &mut rec, prompt, max_tokens, t0, seen);
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok(())) => {}
        Ok(Err(f)) => rec.failure = Some(f),
        Err(_) => {
            rec.failure = Some(Failure::Cut);
            // The connection is in the middle of an answer.
            client.sender = None;
        }
    }
    if rec.failure.is_some() && !matches!(rec.failure, Some(Failure::Cut)) {
        client.sender = None;
    }
    rec
}

async fn read_stream(
    client: &mut Client<'_>,
    rec: &mut Record,
    prompt: &[u32],
    max_tokens: usize,
    t0: Instant,
    seen: Option<&Cell<usize>>,
) -> Result<(), Failure> {
    let resp = client.post("/v1/completions", body(prompt, max_tokens)).await.map_err(Failure::Transport)?;
    let status = resp.status();
    let mut body = resp.into_body();
    if status != hyper::StatusCode::OK {
        let bytes = Limited::new(body, 1 << 20).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        return Err(Failure::Status(status.as_u16(), short(&String::from_utf8_lossy(&bytes)).to_owned()));
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut done = false;
    let mut usage: Option<(usize, usize)> = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Failure::Transport(e.to_string()))?;
        let now = Instant::now().duration_since(t0).as_secs_f64();
        let Some(data) = frame.data_ref() else { continue };
        buf.extend_from_slice(data);
        while let Some(at) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=at).collect();
            let line = String::from_utf8_lossy(&line);
            let Some(data) = line.trim_end().strip_prefix("data:").map(str::trim_start) else { continue };
            if data == "[DONE]" {
                done = true;
                continue;
            }
            let v: Value = serde_json::from_str(data)
                .map_err(|e| Failure::InStream(format!("a chunk that is not JSON ({e}): {}", short(data))))?;
            if let Some(e) = v.get("error") {
                return Err(Failure::InStream(short(&e.to_string()).to_owned()));
            }
            if let Some(c) = v["choices"].get(0) {
                let piece = c["text"].as_str().or_else(|| c["delta"]["content"].as_str()).unwrap_or("");
                if !piece.is_empty() {
                    rec.text.push_str(piece);
                    rec.chunks.push(now);
                    if let Some(seen) = seen {
                        seen.set(seen.get() + 1);
                    }
                }
            }
            if let (Some(p), Some(c)) = (v["usage"]["prompt_tokens"].as_u64(), v["usage"]["completion_tokens"].as_u64())
            {
                usage = Some((p as usize, c as usize));
            }
        }
    }
    if !done {
        return Err(Failure::Incomplete);
    }
    match usage {
        Some((p, c)) => {
            rec.prompt_tokens = p;
            rec.output_tokens = c;
        }
        None => rec.output_tokens = rec.chunks.len(),
    }
    if rec.output_tokens < max_tokens {
        return Err(Failure::Short { got: rec.output_tokens, want: max_tokens });
    }
    Ok(())
}

// ----------------------------------------------------------------------------- the load

/// What the clients share (one thread: plain cells).
struct Load<'a> {
    ep: &'a Endpoint,
    cfg: &'a LoadConfig,
    prompts: &'a Prompts,
    t0: Instant,
    deadline: tokio::time::Instant,
    next: Cell<usize>,
    done: Cell<usize>,
    /// Text chunks of each client's current answer.
    seen: Vec<Cell<usize>>,
    /// Clients that have sent their last request.
    finished: Cell<usize>,
    on_done: &'a dyn Fn(usize),
}

async fn client_loop(load: &Load<'_>, k: usize) -> Vec<Record> {
    let mut client = Client::new(load.ep);
    let mut out = Vec::new();
    loop {
        let id = load.next.get();
        if id >= load.cfg.requests || tokio::time::Instant::now() >= load.deadline {
            break;
        }
        load.next.set(id + 1);
        load.seen[k].set(0);
        let prompt = load.prompts.prompt(id);
        out.push(
            complete(&mut client, id, &prompt, load.cfg.max_tokens, load.t0, load.deadline, Some(&load.seen[k])).await,
        );
        load.done.set(load.done.get() + 1);
        (load.on_done)(load.done.get());
    }
    load.finished.set(load.finished.get() + 1);
    out
}

/// Sends the long prompt once every stream has `long_after` tokens (or a client has run out
/// of requests).
async fn long_sender(load: &Load<'_>, prompt: &[u32]) -> Record {
    while load.finished.get() == 0
        && tokio::time::Instant::now() < load.deadline
        && load.seen.iter().any(|s| s.get() < load.cfg.long_after)
    {
        tokio::time::sleep(POLL).await;
    }
    let mut client = Client::new(load.ep);
    complete(&mut client, usize::MAX, prompt, 1, load.t0, load.deadline, None).await
}

async fn drive(
    ep: &Endpoint,
    cfg: &LoadConfig,
    prompts: &Prompts,
    deadline: tokio::time::Instant,
    on_done: &dyn Fn(usize),
) -> Report {
    let load = Load {
        ep,
        cfg,
        prompts,
        t0: Instant::now(),
        deadline,
        next: Cell::new(0),
        done: Cell::new(0),
        seen: (0..cfg.clients).map(|_| Cell::new(0)).collect(),
        finished: Cell::new(0),
        on_done,
    };
    let clients = futures_util::future::join_all((0..cfg.clients).map(|k| client_loop(&load, k)));
    let (records, long) = match &prompts.long {
        Some(p) => {
            let (r, l) = futures_util::future::join(clients, long_sender(&load, p)).await;
            (r, Some(l))
        }
        None => (clients.await, None),
    };
    let mut records: Vec<Record> = records.into_iter().flatten().collect();
    records.sort_by_key(|r| r.id);
    let mut report = summarize(cfg, &ep.url, &records);
    report.long_prompt = long.map(|l| long_report(&l, &records));
    if cfg.solo > 0 {
        report.solo = Some(solo(&load, &records).await);
    }
    report
}

fn summarize(cfg: &LoadConfig, url: &str, records: &[Record]) -> Report {
    let ok: Vec<&Record> = records.iter().filter(|r| r.ok()).collect();
    let mut error_kinds = BTreeMap::new();
    for r in records {
        if let Some(f) = r.failure.as_ref().filter(|f| !matches!(f, Failure::Cut)) {
            *error_kinds.entry(f.kind().to_owned()).or_insert(0) += 1;
        }
    }
    let first_error =
        records.iter().find_map(|r| r.failure.as_ref().filter(|f| !matches!(f, Failure::Cut)).map(Failure::message));
    let start = records.iter().map(|r| r.sent).fold(f64::INFINITY, f64::min);
    let end = ok.iter().filter_map(|r| r.chunks.last().copied()).fold(f64::NEG_INFINITY, f64::max);
    let wall_s = if end > start { end - start } else { 0.0 };
    let prompt_tokens: usize = ok.iter().map(|r| r.prompt_tokens).sum();
    let output_tokens: usize = ok.iter().map(|r| r.output_tokens).sum();
    let per_s = |n: usize| if wall_s > 0.0 { n as f64 / wall_s } else { 0.0 };
    let ms = |s: f64| s * 1e3;
    Report {
        url: url.to_owned(),
        clients: cfg.clients,
        requests: cfg.requests,
        completed: ok.len(),
        errors: error_kinds.values().sum(),
        cut: records.iter().filter(|r| matches!(r.failure, Some(Failure::Cut))).count()
            + cfg.requests.saturating_sub(records.len()),
        error_kinds,
        first_error,
        wall_s,
        prompt_tokens,
        output_tokens,
        output_tok_s: per_s(output_tokens),
        total_tok_s: per_s(prompt_tokens + output_tokens),
        ttft_ms: Percentiles::of(ok.iter().filter_map(|r| r.chunks.first().map(|&t| ms(t - r.sent))).collect()),
        itl_ms: Percentiles::of(ok.iter().flat_map(|r| r.gaps()).map(|(a, b)| ms(b - a)).collect()),
        long_prompt: None,
        solo: None,
        server_memory: None,
    }
}

fn long_report(long: &Record, records: &[Record]) -> LongPromptReport {
    let first = long.chunks.first().copied();
    // The window: from sending it to its first token (to the end of the run if it got none).
    let until = first.unwrap_or(f64::INFINITY);
    let gaps =
        records.iter().flat_map(|r| r.gaps()).filter(|&(a, b)| b >= long.sent && a < until).map(|(a, b)| (b - a) * 1e3);
    LongPromptReport {
        prompt_tokens: long.prompt_tokens,
        ttft_ms: first.map(|t| (t - long.sent) * 1e3),
        error: long.failure.as_ref().map(Failure::message),
        streams_itl_ms: Percentiles::of(gaps.collect()),
    }
}

/// Runs the first `cfg.solo` requests again, one at a time, and compares their texts.
async fn solo(load: &Load<'_>, records: &[Record]) -> SoloReport {
    // A deadline of its own: a slow load must not leave the check without time.
    let deadline = tokio::time::Instant::now() + load.cfg.deadline;
    let mut client = Client::new(load.ep);
    let (mut checked, mut identical, mut differing, mut errors, mut first_error) = (0, 0, Vec::new(), 0, None);
    for r in records.iter().filter(|r| r.id < load.cfg.solo && r.ok()) {
        let prompt = load.prompts.prompt(r.id);
        let alone = complete(&mut client, r.id, &prompt, load.cfg.max_tokens, load.t0, deadline, None).await;
        match &alone.failure {
            Some(Failure::Cut) => break,
            Some(f) => {
                errors += 1;
                first_error.get_or_insert_with(|| f.message());
                continue;
            }
            None => {}
        }
        checked += 1;
        if alone.text == r.text {
            identical += 1;
        } else {
            differing.push(r.id);
        }
    }
    let fraction = if checked > 0 { identical as f64 / checked as f64 } else { 0.0 };
    SoloReport { checked, identical, fraction, differing, errors, first_error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for ok in ["http://127.0.0.1:8080", "http://localhost:9", "http://[::1]:80", "http://127.0.0.2:1/"] {
            assert!(Endpoint::parse(ok).is_ok(), "{ok}");
        }
        assert!(matches!(Endpoint::parse("http://10.0.0.1:8080"), Err(LoadError::NotLoopback { .. })));
        assert!(matches!(Endpoint::parse("http://[2001:db8::1]:8080"), Err(LoadError::NotLoopback { .. })));
        for bad in
            ["https://127.0.0.1:8080", "127.0.0.1:8080", "http://", "http://127.0.0.1:8080/v1", "http://u@127.0.0.1:1"]
        {
            assert!(matches!(Endpoint::parse(bad), Err(LoadError::BadUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn percentiles_take_the_nearest_rank() {
        assert_eq!(Percentiles::of(vec![]), None);
        let p = Percentiles::of((1..=100).rev().map(f64::from).collect()).unwrap();
        assert_eq!((p.p50, p.p99, p.max, p.n), (50.0, 99.0, 100.0, 100));
        let one = Percentiles::of(vec![7.0]).unwrap();
        assert_eq!((one.p50, one.p99), (7.0, 7.0));
    }

    #[test]
    fn prompts_share_nothing_past_the_shared_prefix_on_every_pass() {
        let (unique, pool_len) = (10, 1000);
        let per_pass = (pool_len + 1 - unique) / unique;
        let p = Prompts {
            specials: vec![2],
            shared: vec![7, 7],
            pool: (100..100 + pool_len as u32).collect(),
            unique,
            per_pass,
            offset: 3,
            long: None,
        };
        let starts: std::collections::HashSet<u32> = (0..per_pass * unique - 3)
            .map(|i| {
                let t = p.prompt(i);
                assert_eq!((t.len(), &t[..3]), (13, &[2, 7, 7][..]));
                t[3]
            })
            .collect();
        assert_eq!(starts.len(), per_pass * unique - 3);
    }

    #[test]
    fn a_prefix_ends_on_a_character_boundary() {
        assert_eq!(prefix_of("aé", 2), "a");
        assert_eq!(prefix_of("abc", 10), "abc");
    }

    #[test]
    fn the_long_prompt_window_takes_the_gaps_it_overlaps() {
        let rec = |id, chunks: Vec<f64>| Record {
            id,
            sent: 0.0,
            chunks,
            text: String::new(),
            prompt_tokens: 1,
            output_tokens: 0,
            failure: None,
        };
        let long = Record { sent: 1.0, ..rec(usize::MAX, vec![3.0]) };
        // Gaps 0.5-0.9 (before it), 0.9-2.9 (the freeze), 2.9-3.0 (ends at its first token),
        // 3.0-3.1 and on (after).
        let r = long_report(&long, &[rec(0, vec![0.5, 0.9, 2.9, 3.0, 3.1, 3.2])]);
        let itl = r.streams_itl_ms.unwrap();
        assert_eq!(itl.n, 2);
        assert!((itl.max - 2000.0).abs() < 1e-6);
        assert!((r.ttft_ms.unwrap() - 2000.0).abs() < 1e-6);
    }
}
