//! Whether two models share a vocabulary: same size, same text for every id, same number of
//! logits. Comparing distributions, or drafting for another model, needs all three.

use super::VocabMismatch;
use crate::model::Model;
use crate::tokenizer::Tokenizer;

/// `Ok` if the two models and their tokenizers share a vocabulary; otherwise how they
/// differ, the sides called by `names` (`("teacher", "student")`).
///
/// ```no_run
/// use pupil::{eval, model::Model, tokenizer::Tokenizer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (a, b) = (Model::open("a.gguf")?, Model::open("b.gguf")?);
/// let (ta, tb) = (Tokenizer::from_gguf(a.file())?, Tokenizer::from_gguf(b.file())?);
/// eval::check_vocab((&a, &ta), (&b, &tb), ("teacher", "student"))?;
/// # Ok(()) }
/// ```
pub fn check_vocab(
    a: (&Model, &Tokenizer),
    b: (&Model, &Tokenizer),
    names: (&'static str, &'static str),
) -> Result<(), VocabMismatch> {
    check_tokenizers((a.1, a.0.config().n_vocab), (b.1, b.0.config().n_vocab), names)
}

/// [`check_vocab`] for models known by their tokenizer and the number of logits they output
/// (`(tokenizer, n_logits)`): a model llama.cpp runs, whose architecture pupil may not know,
/// still has its tokenizer read from the GGUF file by pupil.
///
/// ```no_run
/// use pupil::{eval, gguf::GgufFile, model::Model, tokenizer::Tokenizer};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let teacher = Tokenizer::from_gguf(&*GgufFile::open("teacher.gguf")?)?;
/// let s = Model::open("student.gguf")?;
/// let student = Tokenizer::from_gguf(s.file())?;
/// let n_logits = teacher.n_vocab(); // as the engine running the teacher reports it
/// eval::check_tokenizers((&teacher, n_logits), (&student, s.config().n_vocab), ("teacher", "student"))?;
/// # Ok(()) }
/// ```
pub fn check_tokenizers(
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
    use super::super::VocabMismatch;

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
