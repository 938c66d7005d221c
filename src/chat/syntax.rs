//! Hugging Face's `{% generation %}` ... `{% endgeneration %}` block, which minijinja does not
//! know.
//!
//! `transformers` uses the block only to mark which characters the assistant wrote (for
//! training masks, its PR #30650); rendering outputs the body as it is. llama.cpp's Jinja
//! parser turns both tags into no-ops (`common/jinja/parser.cpp`). Here each tag is rewritten to
//! `{% if true %}` / `{% endif %}` with the same whitespace control (`-`, `+`), which renders
//! the body exactly as the no-op does. Only real statement tags are rewritten: the text of
//! comments, `{% raw %}` blocks, string literals and expressions is left alone.

use std::borrow::Cow;

/// `source` with every `{% generation %}` and `{% endgeneration %}` tag made a plain block.
pub(super) fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    let mut changed = false;
    while let Some(open) = rest.find('{') {
        let (text, tail) = rest.split_at(open);
        out.push_str(text);
        let end = if tail.starts_with("{#") {
            tail.find("#}").map_or(tail.len(), |i| i + 2)
        } else if tail.starts_with("{{") {
            tag_end(tail, "}}")
        } else if tail.starts_with("{%") {
            let end = tag_end(tail, "%}");
            let tag = &tail[..end];
            match statement(tag) {
                Some(("generation", left, right)) => {
                    out.push_str(&format!("{{%{left} if true {right}%}}"));
                    changed = true;
                    rest = &tail[end..];
                    continue;
                }
                Some(("endgeneration", left, right)) => {
                    out.push_str(&format!("{{%{left} endif {right}%}}"));
                    changed = true;
                    rest = &tail[end..];
                    continue;
                }
                // Everything up to `{% endraw %}` is text, whatever it looks like.
                Some(("raw", ..)) => end + raw_body_end(&tail[end..]),
                _ => end,
            }
        } else {
            1
        };
        out.push_str(&tail[..end]);
        rest = &tail[end..];
    }
    out.push_str(rest);
    if changed { Cow::Owned(out) } else { Cow::Borrowed(source) }
}

/// The length of the tag that opens `tail` up to and including `close`, skipping quoted
/// strings; the whole of `tail` if it never closes (the parser then reports it).
fn tag_end(tail: &str, close: &str) -> usize {
    let bytes = tail.as_bytes();
    let mut i = 2;
    let mut quote = None;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (Some(_), b'\\') => i += 1,
            (Some(q), c) if c == q => quote = None,
            (None, c @ (b'"' | b'\'')) => quote = Some(c),
            (None, _) if bytes[i..].starts_with(close.as_bytes()) => return i + close.len(),
            _ => {}
        }
        i += 1;
    }
    tail.len()
}

/// A statement tag `{%- name -%}` that holds only a name: the name and the whitespace
/// markers (`-`, `+` or nothing) on either side.
fn statement(tag: &str) -> Option<(&str, &str, &str)> {
    let inner = tag.strip_prefix("{%")?.strip_suffix("%}")?;
    let (left, inner) = marker(inner, str::strip_prefix);
    let (right, inner) = marker(inner, str::strip_suffix);
    let name = inner.trim();
    name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_').then_some((name, left, right))
}

fn marker<'a>(s: &'a str, strip: fn(&'a str, char) -> Option<&'a str>) -> (&'a str, &'a str) {
    match (strip(s, '-'), strip(s, '+')) {
        (Some(rest), _) => ("-", rest),
        (_, Some(rest)) => ("+", rest),
        _ => ("", s),
    }
}

/// Where the `{% endraw %}` tag after a raw block's body ends (the whole of `body` if none).
fn raw_body_end(body: &str) -> usize {
    let mut from = 0;
    while let Some(i) = body[from..].find("{%") {
        let start = from + i;
        let end = start + tag_end(&body[start..], "%}");
        if matches!(statement(&body[start..end]), Some(("endraw", ..))) {
            return end;
        }
        from = start + 2;
    }
    body.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_plain_blocks_with_their_whitespace_control() {
        let src = "{%- for m in messages -%}\n  {%- generation -%}\n{{ m }}\n  {%+ endgeneration %}{% endfor %}";
        assert_eq!(
            rewrite_generation_tags(src),
            "{%- for m in messages -%}\n  {%- if true -%}\n{{ m }}\n  {%+ endif %}{% endfor %}"
        );
        assert_eq!(rewrite_generation_tags("{%generation%}x{%endgeneration%}"), "{% if true %}x{% endif %}");
    }

    #[test]
    fn generation_in_text_comments_strings_and_raw_blocks_stays() {
        for src in [
            "add_generation_prompt {{ add_generation_prompt }} {% if add_generation_prompt %}{% endif %}",
            "{# {% generation %} #}",
            "{{ '{% generation %}' }} {% set x = \"%} {% endgeneration %}\" %}",
            "{% raw %}{% generation %}{% endraw %}",
            "{%- raw -%} {% endgeneration %} {%- endraw -%}",
        ] {
            assert!(matches!(rewrite_generation_tags(src), Cow::Borrowed(_)), "{src}");
        }
        assert_eq!(
            rewrite_generation_tags("{% raw %}{% generation %}{% endraw %}{% generation %}"),
            "{% raw %}{% generation %}{% endraw %}{% if true %}"
        );
    }

    #[test]
    fn unclosed_tags_are_left_for_the_parser() {
        for src in
            ["{% generation", "{{ 'generation", "{# generation", "{% raw %}{% generation %}", "{% é generation é"]
        {
            assert_eq!(rewrite_generation_tags(src), src);
        }
    }
}
