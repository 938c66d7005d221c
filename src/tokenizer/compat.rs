//! Whether two vocabularies are the same: same size, same text for every id, and models that
//! output the same number of logits. Comparing two models' distributions (`pupil compare`),
//! or drafting tokens for another model (speculative decoding), needs all three.
//!
//! A side is a tokenizer and the number of logits its model outputs, whatever engine runs
//! the model: a model pupil cannot run still has its vocabulary read by pupil.
//!
//! ```no_run
//! use pupil::gguf::GgufFile;
//! use pupil::tokenizer::{Tokenizer, check_vocab};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let teacher = Tokenizer::from_gguf(&*GgufFile::open("teacher.gguf")?)?;
//! let student = Tokenizer::from_gguf(&*GgufFile::open("student.gguf")?)?;
//! // The logits each model outputs, as the engine running it reports them.
//! let (n_teacher, n_student) = (teacher.n_vocab(), student.n_vocab());
//! check_vocab((&teacher, n_teacher), (&student, n_student), ("teacher", "student"))?;
//! # Ok(()) }
//! ```

use super::Tokenizer;

/// Two vocabularies that differ: in size, in the number of logits their models output, or
/// in the text of some token ids.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct VocabMismatch {
    /// What the two sides are called (`("teacher", "student")`, `("target", "draft")`).
    pub names: (&'static str, &'static str),
    /// Token counts of the two tokenizers.
    pub n_vocab: (usize, usize),
    /// Logit rows of the two models.
    pub n_logits: (usize, usize),
    /// The first few ids (up to [`VocabMismatch::SHOWN`]) whose texts differ, with both
    /// texts (`None`: the id is past that side's vocabulary).
    pub first_differing: Vec<(u32, Option<String>, Option<String>)>,
    /// How many ids below the smaller size have different texts.
    pub n_differing: usize,
}

impl VocabMismatch {
    /// How many differing ids are kept and shown.
    pub const SHOWN: usize = 5;

    fn describe(&self) -> String {
        let (a, b) = self.names;
        let mut parts = Vec::new();
        if self.n_vocab.0 != self.n_vocab.1 {
            parts.push(format!("the {a} has {} tokens, the {b} {}", self.n_vocab.0, self.n_vocab.1));
        }
        if self.n_logits.0 != self.n_logits.1 {
            parts.push(format!("the {a} model outputs {} logits, the {b} model {}", self.n_logits.0, self.n_logits.1));
        }
        if self.n_differing > 0 {
            parts.push(format!("{} of the ids both have differ in text", self.n_differing));
        }
        if !self.first_differing.is_empty() {
            let shown: Vec<String> = self
                .first_differing
                .iter()
                .map(|(id, x, y)| format!("{id}: {} vs {}", quoted(x.as_deref()), quoted(y.as_deref())))
                .collect();
            parts.push(format!("first differing ids: {}", shown.join(", ")));
        }
        format!("the {a} and {b} vocabularies differ: {}", parts.join("; "))
    }
}

fn quoted(s: Option<&str>) -> String {
    s.map_or_else(|| "(none)".to_owned(), |s| format!("{s:?}"))
}

/// `Ok` if the two sides, each `(tokenizer, logits its model outputs)`, share a vocabulary;
/// otherwise how they differ, the sides called by `names` (`("teacher", "student")`).
pub fn check_vocab(
    a: (&Tokenizer, usize),
    b: (&Tokenizer, usize),
    names: (&'static str, &'static str),
) -> Result<(), VocabMismatch> {
    let ((ta, la), (tb, lb)) = (a, b);
    let n_vocab = (ta.n_vocab(), tb.n_vocab());
    let n_logits = (la, lb);
    let mut m = VocabMismatch { names, n_vocab, n_logits, first_differing: Vec::new(), n_differing: 0 };
    for id in 0..n_vocab.0.min(n_vocab.1) as u32 {
        let (x, y) = (ta.token_text(id), tb.token_text(id));
        if x != y {
            m.n_differing += 1;
            if m.first_differing.len() < VocabMismatch::SHOWN {
                m.first_differing.push((id, x.map(str::to_owned), y.map(str::to_owned)));
            }
        }
    }
    if n_vocab.0 != n_vocab.1 && m.first_differing.len() < VocabMismatch::SHOWN {
        // The first ids only one side has.
        let (longer, first) = if n_vocab.0 > n_vocab.1 { (ta, n_vocab.1) } else { (tb, n_vocab.0) };
        for id in (first as u32..).take(VocabMismatch::SHOWN - m.first_differing.len()) {
            let t = longer.token_text(id).map(str::to_owned);
            if t.is_none() {
                break;
            }
            let pair = if n_vocab.0 > n_vocab.1 { (id, t, None) } else { (id, None, t) };
            m.first_differing.push(pair);
        }
    }
    if n_vocab.0 == n_vocab.1 && n_logits.0 == n_logits.1 && m.n_differing == 0 { Ok(()) } else { Err(m) }
}

#[cfg(test)]
mod tests {
    use super::VocabMismatch;

    #[test]
    fn the_message_names_sizes_and_the_first_differing_ids() {
        let m = VocabMismatch {
            names: ("teacher", "student"),
            n_vocab: (262144, 1024),
            n_logits: (262144, 1024),
            first_differing: vec![(0, Some("<pad>".into()), Some("<unk>".into()))],
            n_differing: 1,
        };
        let s = m.to_string();
        assert!(s.contains("the teacher has 262144 tokens, the student 1024"), "{s}");
        assert!(s.contains("0: \"<pad>\" vs \"<unk>\""), "{s}");
    }
}
