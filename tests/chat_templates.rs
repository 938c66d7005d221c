//! The real chat templates of the families pupil runs render as their publishers' tooling
//! renders them (Hugging Face `apply_chat_template`).

use pupil::chat::{ChatTemplate, Message};

fn template(name: &str, bos: &str, eos: &str) -> ChatTemplate {
    let path = format!("{}/tests/data/chat_templates/{name}", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    ChatTemplate::new(source, bos, eos).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn conversation() -> Vec<Message> {
    vec![
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("Hello!"),
        Message::user("What is 2+2?"),
    ]
}

#[test]
fn gemma3_folds_the_system_prompt_into_the_first_user_turn() {
    let t = template("gemma3.jinja", "<bos>", "<eos>");
    assert_eq!(
        t.render(&conversation(), true).unwrap(),
        "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n\
         <start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(t.render(&[Message::user("  padded  ")], false).unwrap(), "<bos><start_of_turn>user\npadded<end_of_turn>\n");
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
    assert!(text.ends_with(
        "\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    ), "{text}");
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
