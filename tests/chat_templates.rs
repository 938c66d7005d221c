//! The real chat templates of the families pupil runs render as their publishers' tooling
//! renders them (Hugging Face `apply_chat_template`); every template in llama.cpp's tree
//! renders a standard conversation; hostile templates stop at pupil's limits.

#[path = "support/llama_tree.rs"]
mod llama_tree;

use std::time::{Duration, Instant};

use pupil::chat::{ChatError, ChatTemplate, Limits, Message};

fn template(name: &str, bos: &str, eos: &str) -> ChatTemplate {
    let path = format!("{}/tests/data/chat_templates/{name}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    ChatTemplate::new(source, bos, eos).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn conversation() -> Vec<Message> {
    vec![Message::system("Be brief."), Message::user("Hi"), Message::assistant("Hello!"), Message::user("What is 2+2?")]
}

#[test]
fn gemma3_folds_the_system_prompt_into_the_first_user_turn() {
    let t = template("gemma3.jinja", "<bos>", "<eos>");
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(
        t.render(&[Message::user("  padded  ")], false).unwrap(),
        "<bos><start_of_turn>user\npadded<end_of_turn>\n"
    );
    let err = t.render(&[Message::user("a"), Message::user("b")], true).unwrap_err().to_string();
    assert!(err.contains("Conversation roles must alternate"), "{err}");
}

#[test]
fn qwen25_is_chatml_with_a_default_system_prompt() {
    let t = template("qwen2.5.jinja", "", "<|im_end|>");
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n\
         <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert_eq!(
        t.render(&[Message::user("Hi")], false).unwrap(),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn llama32_has_headers_and_todays_date() {
    let t = template("llama3.2.jinja", "<|begin_of_text|>", "<|eot_id|>");
    let text = t.render(&conversation(), true).unwrap();
    let prefix = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: ";
    assert!(text.starts_with(prefix), "{text}");
    let date = &text[prefix.len()..text[prefix.len()..].find('\n').unwrap() + prefix.len()];
    assert_eq!(date.split(' ').count(), 3, "a date like '21 Nov 2026': {date}");
    assert!(
        text.ends_with(
            "\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
        ),
        "{text}"
    );
}

#[test]
fn deepseek_r1_distill_drops_the_thinking_of_past_turns() {
    let t = template("deepseek-r1-distill-qwen.jinja", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>");
    let messages = vec![
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("<think>The user greets me.</think>Hello!"),
        Message::user("What is 2+2?"),
    ];
    let text = t.render(&messages, true).unwrap();
    // trim_blocks/lstrip_blocks leave the newlines of the lines holding only `{{ }}`.
    assert_eq!(
        text,
        "<｜begin▁of▁sentence｜>\nBe brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜>\n"
    );
    assert!(!text.contains("greets"));
}

// ---- every template in llama.cpp's tree -------------------------------------------------------

/// System, user, assistant, user: contents that no template's own text contains.
fn standard_conversation() -> Vec<Message> {
    vec![
        Message::system("Reply tersely (s-41)."),
        Message::user("Name a colour (u-17)."),
        Message::assistant("Teal (a-88)."),
        Message::user("And a fruit (u-29)?"),
    ]
}

/// Where each message's content starts and ends in `text`, searched in order.
fn spans(text: &str, messages: &[Message]) -> Result<Vec<(usize, usize)>, String> {
    let mut from = 0;
    let mut out = Vec::new();
    for m in messages {
        let start = text[from..]
            .find(&m.content)
            .ok_or_else(|| format!("{} message {:?} missing or out of order", m.role, m.content))?
            + from;
        from = start + m.content.len();
        out.push((start, from));
    }
    Ok(out)
}

fn common_prefix<'a>(a: &'a str, b: &str) -> &'a str {
    let n = a
        .char_indices()
        .zip(b.chars())
        .take_while(|((_, x), y)| x == y)
        .last()
        .map_or(0, |((i, c), _)| i + c.len_utf8());
    &a[..n]
}

/// `prefix` without a token it ends inside of: "<|end|>\n<" of "<|end|>\n<|user|>" and
/// "<|end|>\n<|assistant|>" is "<|end|>\n".
fn whole_tokens(prefix: &str) -> &str {
    match prefix.rfind('<') {
        Some(open) if !prefix[open..].contains('>') => &prefix[..open],
        _ => prefix,
    }
}

fn marked(s: &str) -> bool {
    !s.trim().is_empty()
}

/// Exchanges added to the standard conversation to check that long conversations fit the fuel.
const LONG_EXCHANGES: usize = 1000;

/// Render the standard conversation with `template`; check what can be checked without
/// llama.cpp's Jinja engine (`llama-cpp-2` exposes only llama.cpp's built-in, non-Jinja
/// formats): the messages in order, every turn boundary marked, the generation prompt and the
/// end-of-turn marker. Returns the line to print.
fn check_rendering(t: &ChatTemplate) -> Result<(String, u64), String> {
    let convo = standard_conversation();
    let (with_prompt, fuel) = t.render_with_fuel(&convo, true).map_err(|e| e.to_string())?;
    let without_prompt = t.render(&convo, false).map_err(|e| e.to_string())?;
    let folded = !t.supports_system_role();
    let (system, turns) = convo.split_first().expect("a system message");
    let s = spans(&with_prompt, turns)?;
    let (u1, a, u2) = (s[0], s[1], s[2]);
    // The system message opens the conversation, or the first user turn it is folded into,
    // or (Mistral's templates) the last user turn.
    if !with_prompt[..u2.0].contains(&system.content) {
        return Err(format!("the system message {:?} is missing before the last user turn", system.content));
    }
    let after_user = &with_prompt[u1.1..a.0];
    let after_assistant = &with_prompt[a.1..u2.0];
    if !marked(after_user) || !marked(after_assistant) {
        return Err(format!(
            "a turn boundary is unmarked: {after_user:?} after the user, {after_assistant:?} after the assistant"
        ));
    }
    // The generation prompt: what add_generation_prompt adds (Phi-3.5 writes EOS instead of
    // it, firefunction v2 always adds it).
    let prompt = if with_prompt == without_prompt {
        let after_last = &with_prompt[u2.1..];
        if !marked(after_last) {
            return Err(format!("nothing but {after_last:?} follows the last user turn"));
        }
        format!("{after_last:?} (always added)")
    } else {
        let kept = whole_tokens(common_prefix(&with_prompt, &without_prompt)).len();
        let (added, replaced) = (&with_prompt[kept..], &without_prompt[kept..]);
        if kept < u2.1 || !marked(added) {
            return Err(format!("add_generation_prompt writes {added:?} instead of {replaced:?}"));
        }
        if replaced.is_empty() { format!("{added:?}") } else { format!("{added:?} instead of {replaced:?}") }
    };
    // The end-of-turn marker: what follows every finished turn (the last user turn rendered
    // without the generation prompt).
    let closed_last = spans(&without_prompt, turns)?[2].1;
    let eot = whole_tokens(common_prefix(common_prefix(after_user, after_assistant), &without_prompt[closed_last..]));
    let eot = if marked(eot) { format!("{:?}", eot.trim_end()) } else { "differs by role".to_owned() };
    // A long conversation fits the default fuel too: what each further message costs.
    let mut long = convo.clone();
    for i in 0..LONG_EXCHANGES {
        long.push(Message::assistant(format!("Reply {i}.")));
        long.push(Message::user(format!("Question {i}?")));
    }
    let (_, long_fuel) = t.render_with_fuel(&long, true).map_err(|e| format!("{} messages: {e}", long.len()))?;
    let line = format!(
        "renders ({} bytes; fuel {fuel}, {long_fuel} for {} messages){}; end of turn {eot}; generation prompt {prompt}",
        with_prompt.len(),
        long.len(),
        if folded { ", system folded into the first user turn" } else { "" }
    );
    Ok((line, fuel))
}

#[test]
fn every_template_in_llama_cpp_s_tree_renders_the_standard_conversation() {
    let paths = llama_tree::templates();
    assert!(paths.len() >= 70, "{} templates: is the tree complete?", paths.len());
    let mut failures = Vec::new();
    let mut max_fuel = (String::new(), 0);
    for path in &paths {
        let name = path.file_stem().expect("file name").to_string_lossy();
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let result = ChatTemplate::named(name.as_ref(), source, "<BOS>", "<EOS>")
            .map_err(|e| e.to_string())
            .and_then(|t| check_rendering(&t));
        match result {
            Ok((line, fuel)) => {
                println!("{name}: {line}");
                if fuel > max_fuel.1 {
                    max_fuel = (name.into_owned(), fuel);
                }
            }
            Err(e) => {
                println!("{name}: FAILED: {e}");
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    println!("most fuel: {} ({}), of the default limit {}", max_fuel.1, max_fuel.0, Limits::default().fuel);
    assert!(failures.is_empty(), "{} of {} templates fail:\n{}", failures.len(), paths.len(), failures.join("\n"));
}

// ---- hostile templates -------------------------------------------------------------------------

/// Render `source` with the default limits: the error, and how long it took to come.
fn hostile(source: &str) -> (ChatError, Duration) {
    let t = ChatTemplate::named("hostile.jinja", source, "<s>", "</s>").expect("parses");
    let start = Instant::now();
    let result = t.render(&standard_conversation(), true);
    let took = start.elapsed();
    let e = result.expect_err("a hostile template must not render");
    println!("{source}\n  -> {e} ({took:.2?})");
    (e, took)
}

/// Fast even on a loaded two-core machine; an unbounded render would take hours or all memory.
const FAST: Duration = Duration::from_secs(5);

#[test]
fn a_template_that_loops_forever_runs_out_of_fuel() {
    // 10^10 iterations: ranges are capped at 100,000 items, so nest two.
    let (e, took) = hostile("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
    assert!(matches!(e, ChatError::OutOfFuel { fuel, .. } if fuel == Limits::default().fuel), "{e:?}");
    assert!(e.to_string().starts_with("hostile.jinja: rendering stopped after 10000000 instructions"), "{e}");
    assert!(took < FAST, "{took:?}");
    // Recursion stops at minijinja's depth limit.
    for src in [
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    ] {
        let (e, took) = hostile(src);
        assert!(matches!(&e, ChatError::Render { .. }) && e.to_string().contains("recursion"), "{e:?}");
        assert!(took < FAST, "{took:?}");
    }
}

#[test]
fn a_template_that_builds_a_gigabyte_string_stops_at_the_output_limit() {
    let limit = Limits::default().max_output;
    // Written piece by piece: stopped at the limit, long before a gigabyte.
    let (e, took) = hostile("{% for i in range(100000) %}{{ 'x' * 10000 }}{% endfor %}");
    assert!(matches!(e, ChatError::OutputTooLarge { limit: l, .. } if l == limit), "{e:?}");
    assert!(e.to_string().starts_with("hostile.jinja: rendering stopped at 67108864 bytes of output"), "{e}");
    assert!(took < FAST, "{took:?}");
    // Built in a variable by doubling (2^8 MB) and then written: refused whole at the limit.
    // (minijinja cannot bound values that are never written: this one is built in memory.)
    let (e, took) = hostile(
        "{% set ns = namespace(s='x' * 1000000) %}{% for i in range(8) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    );
    assert!(matches!(e, ChatError::OutputTooLarge { .. }), "{e:?}");
    assert!(took < FAST, "{took:?}");
    // In one piece: minijinja refuses repeated strings over 100 MB.
    let (e, took) = hostile("{{ 'x' * 1000000000 }}");
    assert!(matches!(&e, ChatError::Render { .. }) && e.to_string().contains("too large"), "{e:?}");
    assert!(took < FAST, "{took:?}");
}

#[test]
fn a_template_nested_beyond_reason_is_a_syntax_error_not_a_stack_overflow() {
    let deep = 100_000;
    for source in [
        format!("{{{{ {}1{} }}}}", "(".repeat(deep), ")".repeat(deep)),
        format!("{}x{}", "{% if true %}".repeat(deep), "{% endif %}".repeat(deep)),
        format!("{}x{}", "{% generation %}".repeat(deep), "{% endgeneration %}".repeat(deep)),
    ] {
        let e = ChatTemplate::named("deep.jinja", source, "", "").expect_err("too deep to parse");
        assert!(matches!(e, ChatError::Syntax { .. }), "{e:?}");
        assert!(e.to_string().starts_with("deep.jinja: does not parse: "), "{e}");
    }
}
