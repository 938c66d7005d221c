//! Chat templates: the model's own Jinja template (`tokenizer.chat_template`) turns a
//! conversation into the prompt text it was trained on.
//!
//! Templates are rendered with `minijinja` set up as Hugging Face's `apply_chat_template`
//! sets up Jinja (`trim_blocks`, `lstrip_blocks`, `raise_exception`, `strftime_now`,
//! Python string methods such as `.split()` and `.strip()`), and given what llama.cpp gives
//! them, so that the real templates of Gemma, Llama 3, Qwen2.5, DeepSeek-R1-Distill and the
//! others in llama.cpp's `models/templates` render as they do there:
//! - `{% generation %}` blocks render their body, as llama.cpp renders them (`syntax.rs`);
//! - a template that rejects or ignores the system role gets the system message folded into
//!   the next turn, as llama.cpp does;
//! - `datetime` is today's date, as llama.cpp sets it, and `functions` (firefunction's tool
//!   list) is empty; `tools` stays undefined, as llama.cpp leaves it without tools, and the
//!   `length` of an undefined value is 0, as in Jinja2 and llama.cpp.
//!
//! A template comes from a model file and is untrusted: rendering is bounded by [`Limits`]
//! (instructions executed and bytes written) and every failure is a [`ChatError`] naming the
//! template.
//!
//! ```
//! use pupil::chat::{ChatTemplate, Message};
//! let t = ChatTemplate::new(
//!     "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
//!     "<s>",
//!     "</s>",
//! )?;
//! let text = t.render(&[Message::user("Hi")], true)?;
//! assert_eq!(text, "<user>Hi<assistant>");
//!
//! // An endless loop stops at the limits, with an error that names the template.
//! let forever = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}";
//! let err = ChatTemplate::named("loop.jinja", forever, "", "")?.render(&[], true).unwrap_err();
//! assert!(err.to_string().starts_with("loop.jinja: rendering stopped after 10000000 instructions"));
//! # Ok::<(), pupil::chat::ChatError>(())
//! ```

mod date;
mod syntax;

use std::io;

use crate::tokenizer::Tokenizer;

use minijinja::{Environment, Error, ErrorKind, Value, context};
use serde::{Deserialize, Serialize};

/// Why a template could not be used. Each names the template (see [`ChatTemplate::named`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChatError {
    /// The template does not parse.
    #[error("{template}: does not parse: {source}")]
    Syntax {
        /// The template's name.
        template: String,
        /// The parser's error, with the line.
        source: Error,
    },
    /// The template raised an exception (`raise_exception`), e.g. for roles that do not
    /// alternate.
    #[error("{template}: the template raised an exception: {message}")]
    Raised {
        /// The template's name.
        template: String,
        /// What it said.
        message: String,
    },
    /// Rendering executed more instructions than [`Limits::fuel_for`] the conversation allows.
    #[error("{template}: rendering stopped after {fuel} instructions, the limit (does the template loop without end?)")]
    OutOfFuel {
        /// The template's name.
        template: String,
        /// The limit for this conversation.
        fuel: u64,
    },
    /// The rendering grew past [`Limits::max_output`] bytes.
    #[error("{template}: rendering stopped at {limit} bytes of output, the limit")]
    OutputTooLarge {
        /// The template's name.
        template: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// Rendering failed otherwise (an undefined variable used as a value, a type error...).
    #[error("{template}: rendering failed: {source}")]
    Render {
        /// The template's name.
        template: String,
        /// minijinja's error, with the line.
        source: Error,
    },
}

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant` (templates may know others, such as `tool`).
    pub role: String,
    /// The text of the turn.
    pub content: String,
}

impl Message {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// ChatML, the template llama-server falls back to for a model without one.
pub const CHATML: &str = "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}{% endfor %}\
    {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// The template `source` for a model with vocabulary `tok`: it sees the model's BOS and EOS
/// pieces as `bos_token` and `eos_token`; `name` is what its errors call it.
pub fn template_for(name: &str, source: impl Into<String>, tok: &Tokenizer) -> Result<ChatTemplate, ChatError> {
    let piece = |id: Option<u32>| id.map(|t| String::from_utf8_lossy(tok.token_to_piece(t, true)).into_owned()).unwrap_or_default();
    ChatTemplate::named(name, source, piece(tok.bos()), piece(tok.eos()))
}

/// A conversation rendered by `template` with the generation prompt and tokenized, ready to
/// generate the assistant's reply: special-token text in the rendering becomes special
/// tokens, and a BOS the template writes itself is not doubled.
pub fn tokens(template: &ChatTemplate, tok: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, ChatError> {
    let text = template.render(messages, true)?;
    let mut tokens = tok.encode(&text, true, true);
    if let (Some(bos), [a, b, ..]) = (tok.bos(), tokens.as_slice())
        && *a == bos
        && *b == bos
    {
        tokens.remove(0);
    }
    Ok(tokens)
}

/// Bounds on one rendering, since a template is untrusted input.
///
/// What they do not bound: a value the template builds without writing it. minijinja refuses
/// a repeated string over 100 MB, a range over 100,000 items and recursion over 500 levels, but
/// a string doubled in a loop grows in memory until it is written, and only then meets
/// `max_output` (a 256 MB one takes about half a second to build and refuse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// minijinja instructions one rendering may execute, whatever the conversation's length.
    /// The templates of llama.cpp's tree take at most about 900 for a four-message
    /// conversation; an endless loop stops after about a quarter of a second.
    pub fuel: u64,
    /// Instructions allowed per square message: a conversation of `n` messages may take
    /// `max(fuel, fuel_per_message_pair * n * n)`. Some templates look back over the earlier
    /// messages for each message (Gemma 4's takes about 3.7 n² instructions), so the time a
    /// real template needs grows with the square of the conversation.
    pub fuel_per_message_pair: u64,
    /// Bytes of output one rendering may write: far more than any context holds (a
    /// 128k-token prompt is about 0.5 MB of text), far less than memory.
    pub max_output: usize,
}

impl Limits {
    /// The instructions a conversation of `n_messages` may take.
    pub fn fuel_for(&self, n_messages: usize) -> u64 {
        let n = n_messages as u64;
        self.fuel.max(self.fuel_per_message_pair.saturating_mul(n).saturating_mul(n))
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self { fuel: 10_000_000, fuel_per_message_pair: 16, max_output: 64 << 20 }
    }
}

/// A parsed chat template with the special-token texts it may refer to.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    name: String,
    bos_token: String,
    eos_token: String,
    limits: Limits,
    /// Whether the template shows a system message; if not, it is folded into the next turn.
    system_role: bool,
}

/// The name of a template made with [`ChatTemplate::new`].
const DEFAULT_NAME: &str = "chat template";

/// Text that [`ChatTemplate::supports_system_role`] looks for in a rendering.
const SYSTEM_PROBE: &str = "pupil-system-probe";

impl ChatTemplate {
    /// Parse `source`; `bos_token` and `eos_token` are the texts the template sees under those
    /// names (the model's BOS and EOS token pieces). Errors call it "chat template".
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self, ChatError> {
        Self::named(DEFAULT_NAME, source, bos_token, eos_token)
    }

    /// [`new`](Self::new), with a name for errors (a file name, a model name).
    pub fn named(
        name: impl Into<String>,
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self, ChatError> {
        let name = name.into();
        let source = source.into();
        let syntax_error = |source| ChatError::Syntax { template: name.clone(), source };
        let mut env = Environment::new();
        // Hugging Face renders chat templates with trim_blocks and lstrip_blocks on.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(syntax_error)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("length", length);
        env.add_filter("count", length);
        let source = syntax::rewrite_generation_tags(&source).into_owned();
        env.add_template_owned(name.clone(), source).map_err(syntax_error)?;
        let mut template = Self {
            env,
            name,
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
            limits: Limits::default(),
            system_role: true,
        };
        template.set_limits(Limits::default());
        Ok(template)
    }

    /// Bound renderings by `limits` instead of [`Limits::default`].
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.env.set_fuel(Some(engine_fuel(limits.fuel)));
        self.system_role = self.probe_system_role();
    }

    /// The template's name, as errors give it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the template shows a system message. llama.cpp asks the same (`caps_get`):
    /// Gemma 2's template raises "System role not supported", and such templates get the
    /// system message folded into the next turn, as llama.cpp folds it.
    pub fn supports_system_role(&self) -> bool {
        self.system_role
    }

    /// Render a conversation; `add_generation_prompt` appends the opening of the assistant's
    /// turn, so that generation continues as the assistant.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatError> {
        self.render_with_fuel(messages, add_generation_prompt).map(|(text, _)| text)
    }

    /// [`render`](Self::render), and the fuel (minijinja instructions) it took, to size
    /// [`Limits::fuel`].
    pub fn render_with_fuel(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<(String, u64), ChatError> {
        match messages {
            [system, next, rest @ ..] if !self.system_role && system.role == "system" => {
                // llama.cpp's `system_message_not_supported`: "SYSTEM\nNEXT", in the next turn.
                let folded = Message::new(next.role.clone(), format!("{}\n{}", system.content, next.content));
                let messages: Vec<Message> = std::iter::once(folded).chain(rest.iter().cloned()).collect();
                self.render_raw(&messages, add_generation_prompt)
            }
            [system, rest @ ..] if !self.system_role && system.role == "system" => {
                self.render_raw(rest, add_generation_prompt)
            }
            _ => self.render_raw(messages, add_generation_prompt),
        }
    }

    fn render_raw(&self, messages: &[Message], add_generation_prompt: bool) -> Result<(String, u64), ChatError> {
        let render_error = |source| ChatError::Render { template: self.name.clone(), source };
        let fuel = self.limits.fuel_for(messages.len());
        // The fuel is the environment's; a long conversation gets a copy with more.
        let longer;
        let env = if fuel == self.limits.fuel {
            &self.env
        } else {
            longer = {
                let mut env = self.env.clone();
                env.set_fuel(Some(engine_fuel(fuel)));
                env
            };
            &longer
        };
        let tmpl = env.get_template(&self.name).map_err(render_error)?;
        let ctx = context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
            // llama.cpp's `common_chat_extra_context`; firefunction v2 requires it.
            datetime => date::format_utc(date::now_secs(), "%b %d %Y"),
            // Firefunction v2 appends the JSON of its functions to the system prompt. With no
            // functions llama.cpp appends nothing (its `"text" + undefined` is "text").
            functions => "",
        };
        let mut out = CappedWriter { buf: Vec::new(), limit: self.limits.max_output, overflowed: false };
        let rendered = tmpl.render_captured_to(ctx, &mut out);
        if out.overflowed {
            return Err(ChatError::OutputTooLarge { template: self.name.clone(), limit: self.limits.max_output });
        }
        let used = match rendered {
            Ok(captured) => captured.state().fuel_levels().map_or(0, |(used, _)| used),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => {
                return Err(ChatError::OutOfFuel { template: self.name.clone(), fuel });
            }
            Err(e) => match raised_message(&e) {
                Some(message) => return Err(ChatError::Raised { template: self.name.clone(), message }),
                None => return Err(render_error(e)),
            },
        };
        // Every write is a whole `&str`, so the bytes are UTF-8; lossy only to avoid a panic path.
        let text = String::from_utf8(out.buf).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok((text, used))
    }

    /// Render a system and a user message: does the system text come out? A rendering
    /// stopped by the limits says nothing about the system role, so it counts as yes.
    fn probe_system_role(&self) -> bool {
        let probe = [Message::system(SYSTEM_PROBE), Message::user("Hello")];
        match self.render_raw(&probe, true) {
            Ok((text, _)) => text.contains(SYSTEM_PROBE),
            Err(ChatError::OutOfFuel { .. } | ChatError::OutputTooLarge { .. }) => true,
            Err(_) => false,
        }
    }
}

/// The engine setting that allows exactly `fuel` instructions: minijinja stops when what is
/// left reaches 0, and keeps it as an `isize`.
fn engine_fuel(fuel: u64) -> u64 {
    fuel.min(isize::MAX as u64 - 1) + 1
}

/// Collects the rendering, refusing to grow past `limit` bytes.
struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.len() > self.limit - self.buf.len() {
            self.overflowed = true;
            return Err(io::Error::other("chat template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What `raise_exception` said, marked as its error's source.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Raised(String);

fn raised_message(e: &Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(Raised(message)) = s.downcast_ref::<Raised>() {
            return Some(message.clone());
        }
        source = s.source();
    }
    None
}

fn raise_exception(msg: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
}

/// `strftime_now(format)`: the current UTC time (see [`date::format_utc`] for the directives).
fn strftime_now(format: String) -> String {
    date::format_utc(date::now_secs(), &format)
}

/// Jinja's `length` (and `count`), with `undefined|length` 0 as in Jinja2 and llama.cpp:
/// Apriel's template asks `tools|length` of tools nobody gave.
fn length(v: &Value) -> Result<usize, Error> {
    if v.is_undefined() {
        return Ok(0);
    }
    v.len().ok_or_else(|| {
        Error::new(ErrorKind::InvalidOperation, format!("cannot calculate length of value of type {}", v.kind()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_and_syntax_errors_are_typed_and_name_the_template() {
        let t = ChatTemplate::named("alt.jinja", "{{ raise_exception('roles must alternate') }}", "", "").unwrap();
        let e = t.render(&[], false).unwrap_err();
        assert!(matches!(&e, ChatError::Raised { message, .. } if message == "roles must alternate"), "{e:?}");
        assert_eq!(e.to_string(), "alt.jinja: the template raised an exception: roles must alternate");
        let e = ChatTemplate::named("bad.jinja", "x\n{% if %}", "", "").unwrap_err();
        assert!(matches!(e, ChatError::Syntax { .. }), "{e:?}");
        assert!(e.to_string().starts_with("bad.jinja: does not parse: syntax error"), "{e}");
        assert!(e.to_string().contains("(in bad.jinja:2)"), "{e}");
        let t = ChatTemplate::new("{{ 1 + messages }}", "", "").unwrap();
        let e = t.render(&[], false).unwrap_err();
        assert!(matches!(e, ChatError::Render { .. }), "{e:?}");
        assert!(e.to_string().starts_with("chat template: rendering failed: "), "{e}");
    }

    #[test]
    fn a_rejected_system_message_is_folded_into_the_next_turn() {
        let src = "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}\
                   {% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert!(!t.supports_system_role());
        let convo = [Message::system("S"), Message::user("U"), Message::assistant("A")];
        assert_eq!(t.render(&convo, true).unwrap(), "[user]S\nU[assistant]A");
        // A template that drops the system message silently gets it folded too.
        let t = ChatTemplate::new(
            "{% for m in messages if m.role != 'system' %}[{{ m.role }}]{{ m.content }}{% endfor %}",
            "",
            "",
        )
        .unwrap();
        assert!(!t.supports_system_role());
        assert_eq!(t.render(&convo, true).unwrap(), "[user]S\nU[assistant]A");
        assert_eq!(t.render(&convo[..1], true).unwrap(), "");
        let t = ChatTemplate::new("{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}", "", "").unwrap();
        assert!(t.supports_system_role());
        assert_eq!(t.render(&convo, true).unwrap(), "[system]S[user]U[assistant]A");
    }

    #[test]
    fn generation_blocks_render_their_body() {
        let src = "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}<a>{{ m.content }}</a>{% endgeneration %}\
                   {% else %}<u>{{ m.content }}</u>{% endif %}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert_eq!(t.render(&[Message::user("U"), Message::assistant("A")], false).unwrap(), "<u>U</u><a>A</a>");
    }

    #[test]
    fn undefined_has_length_zero_and_datetime_is_given() {
        let t =
            ChatTemplate::new("{{ tools|length }} {{ tools|count }} {{ [1, 2]|length }} {{ datetime|length }}", "", "")
                .unwrap();
        assert_eq!(t.render(&[], false).unwrap(), "0 0 2 11");
        let t = ChatTemplate::new("{{ 5|length }}", "", "").unwrap();
        assert!(matches!(t.render(&[], false), Err(ChatError::Render { .. })));
    }

    #[test]
    fn limits_stop_rendering_with_their_own_errors() {
        let mut t = ChatTemplate::new("{% for i in range(100) %}{{ i }}{% endfor %}", "", "").unwrap();
        let (text, fuel) = t.render_with_fuel(&[], false).unwrap();
        assert!(text.ends_with("9899") && fuel > 100, "{fuel}");
        t.set_limits(Limits { fuel: fuel - 1, ..Limits::default() });
        assert_eq!(Limits::default().fuel_for(2000), 64_000_000);
        assert_eq!(Limits { fuel_per_message_pair: u64::MAX, ..Limits::default() }.fuel_for(2), u64::MAX);
        assert!(matches!(t.render(&[], false), Err(ChatError::OutOfFuel { fuel: f, .. }) if f == fuel - 1));
        t.set_limits(Limits { fuel, max_output: text.len(), ..Limits::default() });
        assert_eq!(t.render(&[], false).unwrap(), text);
        t.set_limits(Limits { fuel, max_output: text.len() - 1, ..Limits::default() });
        let e = t.render(&[], false).unwrap_err();
        assert!(matches!(e, ChatError::OutputTooLarge { limit, .. } if limit == text.len() - 1), "{e:?}");
    }

    #[test]
    fn long_conversations_get_fuel_for_each_pair_of_messages() {
        let mut t =
            ChatTemplate::new("{% for a in messages %}{% for b in messages %}.{% endfor %}{% endfor %}", "", "")
                .unwrap();
        let convo = vec![Message::user("u"); 40];
        let (_, used) = t.render_with_fuel(&convo, false).unwrap();
        assert!(used > 1600, "{used}");
        t.set_limits(Limits { fuel: 1000, fuel_per_message_pair: used / 1600 + 1, ..Limits::default() });
        assert_eq!(t.render(&convo, false).unwrap().len(), 1600);
        t.set_limits(Limits { fuel: 1000, fuel_per_message_pair: 1, ..Limits::default() });
        assert!(matches!(t.render(&convo, false), Err(ChatError::OutOfFuel { fuel: 1600, .. })));
    }
}
