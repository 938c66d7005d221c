//! Tokens back to bytes: each token's piece (llama.cpp's `token_to_piece`) and whole-sequence
//! detokenization with its space clean-up (`llama_detokenize`).

use super::bytes::char_to_byte;
use super::vocab::{Attr, Vocab};

/// How a vocabulary spells its tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Spelling {
    /// SentencePiece: `▁` for a space, byte tokens `<0xNN>`.
    Spm,
    /// Byte-level BPE: GPT-2's byte characters.
    Bpe,
}

/// The bytes token `id` stands for when special tokens are rendered.
///
/// Control, unknown and user-defined tokens render as their text; normal tokens decoded per
/// spelling; byte tokens as their byte; anything else (unused, undefined) as nothing.
pub(crate) fn piece(vocab: &Vocab, spelling: Spelling, id: u32) -> Vec<u8> {
    let attr = vocab.attr(id);
    let text = vocab.text(id).unwrap_or("");
    if attr.any(Attr::UNKNOWN | Attr::CONTROL | Attr::USER_DEFINED) {
        text.as_bytes().to_vec()
    } else if attr.any(Attr::NORMAL) {
        match spelling {
            Spelling::Spm => text.replace('\u{2581}', " ").into_bytes(),
            Spelling::Bpe => unspell_bytes(text),
        }
    } else if attr.any(Attr::BYTE) {
        vec![byte_of_byte_token(text)]
    } else {
        Vec::new()
    }
}

/// The bytes a BPE token spells. A character outside the byte alphabet makes llama.cpp write
/// `[UNK_BYTE_0x<its UTF-8 in hex><the whole token text>]` in its place; so does this.
fn unspell_bytes(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The byte of a byte token `<0xNN>`: llama.cpp reads the two characters after `<0x` with
/// `strtol`, so leading hex digits count and anything else reads as 0.
fn byte_of_byte_token(text: &str) -> u8 {
    let digits = text.get(3..).unwrap_or("").chars().take(2).map_while(|c| c.to_digit(16));
    digits.fold(0u8, |acc, d| acc.wrapping_mul(16).wrapping_add(d as u8))
}

/// Removes the spaces llama.cpp's `clean_up_tokenization_spaces` removes: before `?!.,`,
/// around a lone `'`, and before the contractions `'s`, `'m`, `'re`, `'ve`.
pub(crate) fn clean_spaces(text: &mut Vec<u8>) {
    // Each pass copies byte by byte and may drop the space just copied.
    let src = std::mem::take(text);
    let mut out = Vec::with_capacity(src.len());
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }

    let src = std::mem::take(&mut out);
    let mut skip_next = false;
    let mut prev_was_skipped = false;
    for (i, &x) in src.iter().enumerate() {
        if skip_next {
            skip_next = false;
            prev_was_skipped = true;
            continue;
        }
        // llama.cpp blanks the dropped space in place, so it no longer reads as a space.
        let prev_space = i > 0 && !prev_was_skipped && src[i - 1] == b' ';
        prev_was_skipped = false;
        if i > 0 && x == b'\'' && i + 1 < src.len() && prev_space && src[i + 1] == b' ' {
            out.pop();
            skip_next = true;
        }
        out.push(x);
    }

    let src = std::mem::take(&mut out);
    for (i, &x) in src.iter().enumerate() {
        if i > 0 && src[i - 1] == b' ' && x == b'\'' && i + 1 < src.len() {
            let x1 = src[i + 1];
            let drop = match x1 {
                b's' | b'm' => true,
                b't' | b'd' => false,
                _ => i + 2 < src.len() && matches!((x1, src[i + 2]), (b'r', b'e') | (b'v', b'e')),
            };
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaned(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_spaces(&mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn clean_spaces_matches_llama_cpp() {
        assert_eq!(cleaned("Hello , world !"), "Hello, world!");
        assert_eq!(cleaned("a ' b"), "a'b");
        assert_eq!(cleaned("it 's I 'm we 're don 't"), "it's I'm we're don 't");
        assert_eq!(cleaned(" ' ' x"), "'' x");
        assert_eq!(cleaned(""), "");
    }

    #[test]
    fn byte_tokens_read_like_strtol() {
        assert_eq!(byte_of_byte_token("<0x0A>"), 10);
        assert_eq!(byte_of_byte_token("<0xF0>"), 0xF0);
        assert_eq!(byte_of_byte_token("<0x4G>"), 4);
        assert_eq!(byte_of_byte_token("<>"), 0);
    }
}
