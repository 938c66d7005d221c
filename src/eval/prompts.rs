//! Prompts for the sequence-level comparison ([`super::compare_generated`]): read from a file
//! (one per line, or JSON Lines with `{"prompt": ...}` or `{"messages": [...]}` objects), or
//! built in, and turned into tokens once, with the teacher's vocabulary and chat template.

use serde::Deserialize;

use super::EvalError;
use crate::chat::{ChatTemplate, Message};
use crate::tokenizer::Tokenizer;

/// One prompt: text to continue, or a conversation for the assistant to answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// Text, continued as it stands (BOS first where the vocabulary adds one).
    Text(String),
    /// A conversation, rendered with the chat template and a generation prompt.
    Chat(Vec<Message>),
}

impl Prompt {
    /// A short label for tables: the text, or the last message, on one line.
    pub fn label(&self, max_chars: usize) -> String {
        let text = match self {
            Prompt::Text(t) => t.as_str(),
            Prompt::Chat(m) => m.last().map_or("", |m| m.content.as_str()),
        };
        let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        match one_line.char_indices().nth(max_chars) {
            Some((i, _)) => format!("{}…", &one_line[..i]),
            None => one_line,
        }
    }
}

/// A JSON Lines record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    prompt: Option<String>,
    messages: Option<Vec<Message>>,
}

/// Prompts from a file's contents: JSON Lines if `jsonl` (each line an object with `prompt`
/// or `messages`), else one prompt per line (`\n` written as `\\n` gives a line break within
/// one). Blank lines are skipped. `chat` turns text prompts into a one-message conversation
/// from the user. Errors name the line.
pub fn parse(contents: &str, jsonl: bool, chat: bool) -> Result<Vec<Prompt>, EvalError> {
    let mut prompts = Vec::new();
    for (i, line) in contents.lines().enumerate() {
        let bad = |message: String| EvalError::Prompt { line: i + 1, message };
        if line.trim().is_empty() {
            continue;
        }
        let prompt = if jsonl {
            let r: Record = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
            match (r.prompt, r.messages) {
                (Some(p), None) => Prompt::Text(p),
                (None, Some(m)) if m.is_empty() => return Err(bad("\"messages\" is empty".into())),
                (None, Some(m)) => Prompt::Chat(m),
                _ => return Err(bad("expected exactly one of \"prompt\" and \"messages\"".into())),
            }
        } else {
            Prompt::Text(line.replace("\\n", "\n"))
        };
        prompts.push(match prompt {
            Prompt::Text(t) if chat => Prompt::Chat(vec![Message::user(t)]),
            p => p,
        });
    }
    if prompts.is_empty() {
        return Err(EvalError::NoPrompts);
    }
    Ok(prompts)
}

/// The built-in prompt set of a text laid out as the embedded pair's held-out text is
/// (a chapter heading line, then numbered verses one per line): each chapter's heading and
/// first verse, ending with the line break, so that the models write on from verse 2.
/// Other texts give the first sentence of each paragraph instead.
pub fn from_text(text: &str) -> Vec<Prompt> {
    let lines: Vec<&str> = text.lines().collect();
    let verses: Vec<Prompt> = lines
        .windows(2)
        .filter(|w| is_heading(w[0]) && w[1].starts_with("1 "))
        .map(|w| Prompt::Text(format!("{}\n{}\n", w[0], w[1])))
        .collect();
    if !verses.is_empty() {
        return verses;
    }
    text.split("\n\n")
        .filter_map(|para| {
            let para = para.trim();
            let end = para.find(". ").map_or(para.len(), |i| i + 1);
            (!para.is_empty()).then(|| Prompt::Text(para[..end].to_owned()))
        })
        .collect()
}

/// `Genesis 20`, `1 Kings 4`, `Song of Solomon 2`: two to four words, the last a number.
fn is_heading(line: &str) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    (2..=4).contains(&words.len()) && words.last().is_some_and(|w| w.bytes().all(|b| b.is_ascii_digit()))
}

/// The prompt's tokens: text with BOS (where the vocabulary adds one) and no special tokens
/// parsed; a conversation rendered by `template` with the generation prompt, special-token
/// text parsed, and a BOS the template writes not doubled. `index` names the prompt in errors.
pub fn tokens(
    prompt: &Prompt,
    index: usize,
    tok: &Tokenizer,
    template: Option<&ChatTemplate>,
) -> Result<Vec<u32>, EvalError> {
    let tokens = match prompt {
        Prompt::Text(t) => tok.encode(t, true, false),
        Prompt::Chat(m) => {
            let template = template.ok_or(EvalError::NoChatTemplate)?;
            crate::chat::tokens(template, tok, m)
                .map_err(|e| EvalError::Prompt { line: index + 1, message: e.to_string() })?
        }
    };
    if tokens.len() <= usize::from(tok.bos().is_some_and(|b| tokens.first() == Some(&b))) {
        return Err(EvalError::Prompt { line: index + 1, message: "the prompt is empty".into() });
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_json_lines() {
        let p = parse("one\n\n two\\nlines \n", false, false).unwrap();
        assert_eq!(p, vec![Prompt::Text("one".into()), Prompt::Text(" two\nlines ".into())]);
        let p = parse("hi\n", false, true).unwrap();
        assert_eq!(p, vec![Prompt::Chat(vec![Message::user("hi")])]);
        let j = "{\"prompt\": \"a\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"b\"}]}\n";
        let p = parse(j, true, false).unwrap();
        assert_eq!(p, vec![Prompt::Text("a".into()), Prompt::Chat(vec![Message::user("b")])]);
    }

    #[test]
    fn bad_files_name_the_line() {
        for (text, line) in [
            ("{\"prompt\": \"a\"}\n{\"prompt\": 3}\n", 2),
            ("{\"prompt\": \"a\", \"messages\": []}\n", 1),
            ("\n{}\n", 2),
            ("{\"messages\": []}\n", 1),
            ("{\"prompt\": \"a\", \"extra\": 1}\n", 1),
            ("not json\n", 1),
        ] {
            match parse(text, true, false) {
                Err(EvalError::Prompt { line: l, .. }) => assert_eq!(l, line, "{text:?}"),
                other => panic!("{text:?}: {other:?}"),
            }
        }
        assert!(matches!(parse("\n \n", false, false), Err(EvalError::NoPrompts)));
    }

    #[test]
    fn first_verses_of_chapters_or_first_sentences() {
        let text = "Genesis 20\n1 And Abraham journeyed.\n2 And he said.\n1 Kings 3\n1 And Solomon.\n2 Only.\n";
        assert_eq!(
            from_text(text),
            vec![
                Prompt::Text("Genesis 20\n1 And Abraham journeyed.\n".into()),
                Prompt::Text("1 Kings 3\n1 And Solomon.\n".into())
            ]
        );
        let prose = "The keeper kept two books. The first was blue.\n\nA compiler translates. It is circular.";
        assert_eq!(
            from_text(prose),
            vec![Prompt::Text("The keeper kept two books.".into()), Prompt::Text("A compiler translates.".into())]
        );
        assert_eq!(Prompt::Text("a  b\nc".into()).label(3), "a b…");
    }
}
