//! The OpenAI-compatible HTTP server over the [`Scheduler`]: axum on tokio. Handlers check
//! and tokenize requests (chat templates render on a blocking thread, bounded by fuel and
//! size), hand them to the engine thread, and answer as JSON or as server-sent events. The
//! forward pass never runs on tokio's workers.
//!
//! | endpoint | |
//! |---|---|
//! | `POST /v1/chat/completions` | chat, streamed or not, with `logprobs` |
//! | `POST /v1/completions` | text completion, with `logprobs` and `echo` (lm-evaluation-harness) |
//! | `GET /v1/models` | the one model, under its alias |
//! | `POST /tokenize`, `POST /detokenize` | llama-server's shapes |
//! | `GET /health` | liveness: 200 while the process serves |
//! | `GET /ready` | readiness: 503 while draining |
//! | `GET /metrics` | Prometheus |
//!
//! With an API key, `/v1/*`, `/tokenize` and `/detokenize` need `Authorization: Bearer KEY`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::openai::{ApiError, ChatRequest, CompletionRequest, Job, Prompt, Usage};
use super::scheduler::{Event, Events, Scheduler, SubmitError, Submission, TokenLogprob};
use crate::engine::Engine;
use crate::request::StopReason;

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and waits
/// for the open connections to finish their requests. A client that does not send its
/// headers within `header_timeout` is disconnected (slowloris).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors, say: wait instead of spinning.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let conn = graceful.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// How the HTTP side behaves.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// The model's name in answers and `/v1/models`.
    pub alias: String,
    /// Requests to `/v1/*` must carry `Authorization: Bearer` this.
    pub api_key: Option<String>,
    /// Largest request body, bytes.
    pub max_body: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { alias: "pupil".into(), api_key: None, max_body: 4 << 20 }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct App {
    engine: Arc<Engine>,
    sched: Scheduler,
    opts: HttpOptions,
    created: u64,
    /// Cleared when a drain begins, before admissions stop, so that load balancers move away.
    ready: std::sync::atomic::AtomicBool,
}

impl App {
    /// The server's state over a running scheduler.
    pub fn new(engine: Arc<Engine>, sched: Scheduler, opts: HttpOptions) -> Arc<App> {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Arc::new(App { engine, sched, opts, created, ready: std::sync::atomic::AtomicBool::new(true) })
    }

    /// Turns `/ready` to 503 (the first step of a drain); requests are still admitted.
    pub fn set_unready(&self) {
        self.ready.store(false, std::sync::atomic::Ordering::Release);
    }

    /// The scheduler.
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }
}

/// Every route, with the body limit and the API key check.
pub fn router(app: Arc<App>) -> Router {
    let api = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&app), authorize));
    Router::new()
        .merge(api)
        .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(ApiError::new(404, "invalid_request_error", "not_found", "no such endpoint")) })
        .layer(DefaultBodyLimit::max(app.opts.max_body))
        .layer(middleware::from_fn_with_state(Arc::clone(&app), refuse_oversize))
        .with_state(app)
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, axum::Json(e.body())).into_response();
    if e.status == 429 {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A body whose declared length is over the limit is refused before it is read, so the
/// client hears 413 instead of a connection closed while it still sends.
async fn refuse_oversize(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > app.opts.max_body as u64) {
        let limit = app.opts.max_body;
        return error(ApiError::new(413, "invalid_request_error", "body", format!("the body is larger than the limit of {limit} bytes")));
    }
    next.run(req).await
}

async fn authorize(State(app): State<Arc<App>>, headers: HeaderMap, req: Request, next: Next) -> Response {
    if let Some(key) = &app.opts.api_key {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), key.as_bytes())) {
            return error(ApiError::new(401, "authentication_error", "invalid_api_key", "a valid API key is needed: Authorization: Bearer KEY"));
        }
    }
    next.run(req).await
}

/// Equality that takes as long for any mismatch (the key is a secret).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn ready(State(app): State<Arc<App>>) -> Response {
    if app.sched.is_draining() || !app.ready.load(std::sync::atomic::Ordering::Acquire) {
        error(ApiError::new(503, "unavailable", "draining", "the server is shutting down"))
    } else {
        axum::Json(json!({"status": "ready"})).into_response()
    }
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], app.sched.metrics().render()).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Response {
    let cfg = app.engine.model().config();
    axum::Json(json!({
        "object": "list",
        "data": [{
            "id": app.opts.alias, "object": "model", "created": app.created, "owned_by": "pupil",
            "meta": { "n_ctx": app.sched.n_ctx(), "n_ctx_train": cfg.n_ctx_train, "n_vocab": cfg.n_vocab },
        }],
    }))
    .into_response()
}

/// The body as JSON of type `T`, or OpenAI's 400/413.
fn parse<T: for<'de> Deserialize<'de>>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = body.map_err(|e| ApiError::new(e.status().as_u16(), "invalid_request_error", "body", e.body_text()))?;
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", format!("the body is not a valid request: {e}")))
}

#[derive(Deserialize)]
struct TokenizeBody {
    content: String,
    #[serde(default)]
    add_special: bool,
    #[serde(default)]
    parse_special: Option<bool>,
}

async fn tokenize(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let b: TokenizeBody = match parse(body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let tokens = app.engine.tokenizer().encode(&b.content, b.add_special, b.parse_special.unwrap_or(true));
    axum::Json(json!({ "tokens": tokens })).into_response()
}

#[derive(Deserialize)]
struct DetokenizeBody {
    tokens: Vec<i64>,
}

async fn detokenize(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    let b: DetokenizeBody = match parse(body) {
        Ok(b) => b,
        Err(e) => return error(e),
    };
    let tok = app.engine.tokenizer();
    let ids: Option<Vec<u32>> = b.tokens.iter().map(|&t| u32::try_from(t).ok().filter(|&t| (t as usize) < tok.n_vocab())).collect();
    match ids {
        Some(ids) => axum::Json(json!({ "content": tok.decode(&ids) })).into_response(),
        None => error(ApiError::invalid("tokens", "a token id is not in the vocabulary")),
    }
}

/// Which endpoint a job came from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

async fn chat(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<ChatRequest>(body).and_then(ChatRequest::into_job) {
        Ok(job) => run(app, job, Kind::Chat).await,
        Err(e) => error(e),
    }
}

async fn completions(State(app): State<Arc<App>>, body: Result<Bytes, BytesRejection>) -> Response {
    match parse::<CompletionRequest>(body).and_then(CompletionRequest::into_job) {
        Ok(job) => run(app, job, Kind::Text).await,
        Err(e) => error(e),
    }
}

/// The prompt's tokens: a chat rendered with the template (on a blocking thread: templates
/// come from model files and may be slow up to their fuel), text tokenized as llama-server
/// does (BOS as the vocabulary says, special-token text parsed), ids checked.
async fn prompt_tokens(app: &Arc<App>, prompt: Prompt) -> Result<Vec<u32>, ApiError> {
    match prompt {
        Prompt::Tokens(t) => Ok(t),
        Prompt::Text(text) => {
            let app = Arc::clone(app);
            tokio::task::spawn_blocking(move || app.engine.tokenizer().encode(&text, true, true))
                .await
                .map_err(|e| ApiError::new(500, "server_error", "internal", e.to_string()))
        }
        Prompt::Chat(messages) => {
            let app = Arc::clone(app);
            tokio::task::spawn_blocking(move || app.engine.chat_tokens(&messages))
                .await
                .map_err(|e| ApiError::new(500, "server_error", "internal", e.to_string()))?
                .map_err(|e| ApiError::invalid("messages", e.to_string()))
        }
    }
}

fn submit_error(e: SubmitError) -> ApiError {
    match e {
        SubmitError::QueueFull { .. } => ApiError::new(429, "rate_limit_error", "queue_full", e.to_string()),
        SubmitError::ShuttingDown => ApiError::new(503, "unavailable", "draining", e.to_string()),
        SubmitError::PromptTooLong { .. } => ApiError::invalid("context_length_exceeded", e.to_string()),
        _ => ApiError::invalid("prompt", e.to_string()),
    }
}

async fn run(app: Arc<App>, job: Job, kind: Kind) -> Response {
    let prompt = match prompt_tokens(&app, job.prompt.clone()).await {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let sub = Submission {
        prompt: prompt.clone(),
        params: job.params.clone(),
        ignore_eos: job.ignore_eos,
        logprobs: job.logprobs,
        prompt_logprobs: job.echo && job.logprobs.is_some(),
    };
    let events = match app.sched.submit(sub) {
        Ok(e) => e,
        Err(e) => return error(submit_error(e)),
    };
    let answer = Answer::new(&app, &job, kind, prompt);
    if job.stream { stream(answer, events) } else { whole(answer, events).await }
}

/// Builds the JSON of one answer as its events arrive.
struct Answer {
    app: Arc<App>,
    kind: Kind,
    id: String,
    created: u64,
    logprobs: Option<usize>,
    include_usage: bool,
    echo: bool,
    prompt: Vec<u32>,
    text: String,
    tokens: Vec<TokenLogprob>,
    prompt_lp: Vec<TokenLogprob>,
}

fn finish_reason(stop: &StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        _ => "stop",
    }
}

impl Answer {
    fn new(app: &Arc<App>, job: &Job, kind: Kind, prompt: Vec<u32>) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let id = match kind {
            Kind::Chat => format!("chatcmpl-{created:x}{n:06x}"),
            Kind::Text => format!("cmpl-{created:x}{n:06x}"),
        };
        Answer {
            app: Arc::clone(app),
            kind,
            id,
            created,
            logprobs: job.logprobs,
            include_usage: job.include_usage,
            echo: job.echo,
            prompt,
            text: String::new(),
            tokens: Vec::new(),
            prompt_lp: Vec::new(),
        }
    }

    /// A token's text as the answer's text holds it (control tokens render as nothing).
    fn piece(&self, id: u32) -> String {
        String::from_utf8_lossy(self.app.engine.tokenizer().token_to_piece(id, false)).into_owned()
    }

    /// Chat's `logprobs.content` entries.
    fn chat_logprobs(&self, tokens: &[TokenLogprob]) -> Value {
        let entry = |id: u32, lp: f32| {
            let t = self.piece(id);
            json!({ "token": t, "logprob": lp, "bytes": t.as_bytes() })
        };
        let content: Vec<Value> = tokens
            .iter()
            .map(|t| {
                let mut e = entry(t.id, t.logprob.unwrap_or(0.0));
                e["top_logprobs"] = t.top.iter().map(|&(id, lp)| entry(id, lp)).collect();
                e
            })
            .collect();
        json!({ "content": content })
    }

    /// Completions' `logprobs`: parallel lists, with `text_offset` from `offset`.
    fn text_logprobs(&self, tokens: &[TokenLogprob], mut offset: usize) -> Value {
        let mut out = json!({ "tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": [] });
        for t in tokens {
            let piece = self.piece(t.id);
            out["tokens"].as_array_mut().map(|a| a.push(json!(piece)));
            out["token_logprobs"].as_array_mut().map(|a| a.push(json!(t.logprob)));
            let top: Value = if t.logprob.is_none() {
                Value::Null
            } else {
                Value::Object(t.top.iter().map(|&(id, lp)| (self.piece(id), json!(lp))).collect())
            };
            out["top_logprobs"].as_array_mut().map(|a| a.push(top));
            out["text_offset"].as_array_mut().map(|a| a.push(json!(offset)));
            offset += piece.len();
        }
        out
    }

    fn echo_text(&self) -> String {
        if self.echo { self.app.engine.tokenizer().decode(&self.prompt) } else { String::new() }
    }

    /// The whole answer, non-streamed.
    fn whole(&self, stop: &StopReason, usage: Usage) -> Value {
        let choice = match self.kind {
            Kind::Chat => json!({
                "index": 0,
                "message": { "role": "assistant", "content": self.text },
                "logprobs": self.logprobs.map(|_| self.chat_logprobs(&self.tokens)),
                "finish_reason": finish_reason(stop),
            }),
            Kind::Text => {
                let echo = self.echo_text();
                let logprobs = self.logprobs.map(|_| {
                    let mut all = if self.echo { self.prompt_lp.clone() } else { Vec::new() };
                    all.extend(self.tokens.iter().cloned());
                    self.text_logprobs(&all, 0)
                });
                json!({ "index": 0, "text": echo + &self.text, "logprobs": logprobs, "finish_reason": finish_reason(stop) })
            }
        };
        json!({
            "id": self.id, "object": if self.kind == Kind::Chat { "chat.completion" } else { "text_completion" },
            "created": self.created, "model": self.app.opts.alias, "choices": [choice], "usage": usage,
        })
    }

    /// One stream chunk with `delta` text (and its tokens' log-probabilities).
    fn chunk(&self, text: &str, tokens: &[TokenLogprob], finish: Option<&StopReason>, first: bool) -> Value {
        let finish = finish.map(finish_reason);
        let choice = match self.kind {
            Kind::Chat => {
                let delta = if finish.is_some() && text.is_empty() {
                    json!({})
                } else if first {
                    json!({ "role": "assistant", "content": text })
                } else {
                    json!({ "content": text })
                };
                let lp = self.logprobs.filter(|_| !tokens.is_empty()).map(|_| self.chat_logprobs(tokens));
                json!({ "index": 0, "delta": delta, "logprobs": lp, "finish_reason": finish })
            }
            Kind::Text => {
                let lp = self.logprobs.filter(|_| !tokens.is_empty()).map(|_| self.text_logprobs(tokens, 0));
                json!({ "index": 0, "text": text, "logprobs": lp, "finish_reason": finish })
            }
        };
        json!({
            "id": self.id, "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created, "model": self.app.opts.alias, "choices": [choice],
        })
    }

    fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id, "object": if self.kind == Kind::Chat { "chat.completion.chunk" } else { "text_completion" },
            "created": self.created, "model": self.app.opts.alias, "choices": [], "usage": usage,
        })
    }
}

async fn whole(mut a: Answer, mut events: Events) -> Response {
    while let Some(e) = events.recv().await {
        match e {
            Event::Prompt { tokens } => a.prompt_lp = tokens,
            Event::Text { text, token } => {
                a.text.push_str(&text);
                a.tokens.push(token);
            }
            Event::Done { stop, tail, prompt_tokens, completion_tokens, .. } => {
                a.text.push_str(&tail);
                return axum::Json(a.whole(&stop, Usage::new(prompt_tokens, completion_tokens))).into_response();
            }
            Event::Failed { message } => return error(ApiError::new(500, "server_error", "engine", message)),
        }
    }
    error(ApiError::new(500, "server_error", "engine", "the engine stopped"))
}

fn stream(a: Answer, events: Events) -> Response {
    // State: the answer, the events, whether the first chunk went out, and chunks to send.
    let state = (a, events, true, std::collections::VecDeque::<SseEvent>::new(), false);
    let s = futures_util::stream::unfold(state, |(mut a, mut events, mut first, mut out, mut done)| async move {
        loop {
            if let Some(e) = out.pop_front() {
                return Some((Ok::<_, Infallible>(e), (a, events, first, out, done)));
            }
            if done {
                return None;
            }
            let data = |v: Value| SseEvent::default().data(v.to_string());
            let event = events.recv().await;
            // `echo` sends the prompt first, as one chunk (with its log-probabilities).
            if a.echo && first && matches!(event, Some(Event::Text { .. } | Event::Done { .. })) {
                let lp = std::mem::take(&mut a.prompt_lp);
                out.push_back(data(a.chunk(&a.echo_text(), &lp, None, true)));
                first = false;
            }
            match event {
                Some(Event::Prompt { tokens }) => a.prompt_lp = tokens,
                Some(Event::Text { text, token }) => {
                    if !text.is_empty() || first || a.logprobs.is_some() {
                        out.push_back(data(a.chunk(&text, std::slice::from_ref(&token), None, first)));
                        first = false;
                    }
                }
                Some(Event::Done { stop, tail, prompt_tokens, completion_tokens, .. }) => {
                    out.push_back(data(a.chunk(&tail, &[], Some(&stop), first)));
                    if a.include_usage {
                        out.push_back(data(a.usage_chunk(Usage::new(prompt_tokens, completion_tokens))));
                    }
                    out.push_back(SseEvent::default().data("[DONE]"));
                    done = true;
                }
                Some(Event::Failed { message }) => {
                    out.push_back(data(ApiError::new(500, "server_error", "engine", message).body()));
                    done = true;
                }
                None => return None,
            }
        }
    });
    Sse::new(s.boxed()).keep_alive(KeepAlive::default()).into_response()
}
