//! The token table: text, score and attributes per id, and the text → id index.

use std::collections::HashMap;

use super::TokenizerError;

/// Token attributes, as llama.cpp's `llama_token_attr` bits (several may be set at once).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attr(u16);

impl Attr {
    pub(crate) const UNDEFINED: Attr = Attr(0);
    pub(crate) const UNKNOWN: Attr = Attr(1 << 0);
    pub(crate) const UNUSED: Attr = Attr(1 << 1);
    pub(crate) const NORMAL: Attr = Attr(1 << 2);
    pub(crate) const CONTROL: Attr = Attr(1 << 3);
    pub(crate) const USER_DEFINED: Attr = Attr(1 << 4);
    pub(crate) const BYTE: Attr = Attr(1 << 5);
    pub(crate) const LSTRIP: Attr = Attr(1 << 7);
    pub(crate) const RSTRIP: Attr = Attr(1 << 8);

    /// The attribute of a GGUF `tokenizer.ggml.token_type` value (1 normal, 2 unknown,
    /// 3 control, 4 user-defined, 5 unused, 6 byte; anything else undefined).
    pub(crate) fn from_token_type(t: i32) -> Attr {
        match t {
            1 => Attr::NORMAL,
            2 => Attr::UNKNOWN,
            3 => Attr::CONTROL,
            4 => Attr::USER_DEFINED,
            5 => Attr::UNUSED,
            6 => Attr::BYTE,
            _ => Attr::UNDEFINED,
        }
    }

    /// Whether any bit of `other` is set.
    pub(crate) fn any(self, other: Attr) -> bool {
        self.0 & other.0 != 0
    }

    /// `self` with `other`'s bits set or cleared.
    pub(crate) fn with(self, other: Attr, on: bool) -> Attr {
        if on { Attr(self.0 | other.0) } else { Attr(self.0 & !other.0) }
    }
}

impl std::ops::BitOr for Attr {
    type Output = Attr;

    fn bitor(self, rhs: Attr) -> Attr {
        Attr(self.0 | rhs.0)
    }
}

/// Text, score and attributes of every token, and the reverse index.
#[derive(Debug)]
pub(crate) struct Vocab {
    texts: Vec<Box<str>>,
    scores: Vec<f32>,
    attrs: Vec<Attr>,
    ids: HashMap<Box<str>, u32>,
}

impl Vocab {
    /// Builds the table; `texts`, `scores` and `attrs` have one entry per token. Ids are
    /// `u32` because the loader caps the count below `i32::MAX`, llama.cpp's token type.
    pub(crate) fn new(texts: Vec<Box<str>>, scores: Vec<f32>, attrs: Vec<Attr>) -> Result<Vocab, TokenizerError> {
        let mut ids = HashMap::with_capacity(texts.len());
        for (i, t) in texts.iter().enumerate() {
            if let Some(first) = ids.insert(t.clone(), i as u32) {
                return Err(TokenizerError::DuplicateToken { text: t.to_string(), first, second: i as u32 });
            }
        }
        Ok(Vocab { texts, scores, attrs, ids })
    }

    /// Number of tokens.
    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    /// The id of the token spelt `text`.
    pub(crate) fn id(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    /// The text of token `id`.
    pub(crate) fn text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(|t| &**t)
    }

    /// The score of token `id` (0 when out of range).
    pub(crate) fn score(&self, id: u32) -> f32 {
        self.scores.get(id as usize).copied().unwrap_or(0.0)
    }

    /// The attributes of token `id` (undefined when out of range).
    pub(crate) fn attr(&self, id: u32) -> Attr {
        self.attrs.get(id as usize).copied().unwrap_or(Attr::UNDEFINED)
    }

    /// Sets or clears `bits` on token `id`; ids out of range are ignored.
    pub(crate) fn set_attr(&mut self, id: u32, bits: Attr, on: bool) {
        if let Some(a) = self.attrs.get_mut(id as usize) {
            *a = a.with(bits, on);
        }
    }

    /// Replaces the attributes of token `id`; ids out of range are ignored.
    pub(crate) fn replace_attr(&mut self, id: u32, attr: Attr) {
        if let Some(a) = self.attrs.get_mut(id as usize) {
            *a = attr;
        }
    }

    /// All `(id, text)` pairs in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &str)> {
        self.texts.iter().enumerate().map(|(i, t)| (i as u32, &**t))
    }
}
