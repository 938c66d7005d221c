//! Pre-tokenizers of BPE vocabularies: the splits of text into words that BPE merges never
//! cross, chosen by `tokenizer.ggml.pre` (for model `gemma4`, always Gemma 4's).
//!
//! Implemented, by llama.cpp's names: `default`; the Llama 3 pattern (`llama3`, `llama-bpe`,
//! `falcon3`, `pixtral`, `dbrx`, `smaug-bpe`, ...); Qwen 2's (`qwen2`, `deepseek-r1-qwen`,
//! `stablelm2`, `megrez`, `hunyuan`, ...); Qwen 3.5's (`qwen35`); GPT-2's (`gpt-2`, `mpt`,
//! `olmo`, `phi-2`, `jais`, ...); StarCoder's (`starcoder`, `refact`, `command-r`, `smollm`,
//! ...); `falcon`; `deepseek-llm`; `deepseek-coder`; and the newline split of SentencePiece-style
//! BPE (`gemma4`, `granite-embed-multi-311m`, `sarvam-moe`). [`PreConfig::from_name`] has the
//! full list; other names are an error.
//!
//! Each pre-tokenizer is a list of steps applied in turn, each step splitting every piece the
//! previous one left (pieces a pattern does not match are kept, as pieces of their own).
//! llama.cpp hand-codes the common patterns (GPT-2's, Llama 3's, Qwen 2's, Qwen 3.5's, and
//! Gemma 4's split at newlines; see `split_custom.rs`) and runs the others through
//! `std::regex`, either on the text with non-ASCII whitespace replaced by `\x0B` ("wide"), or,
//! for patterns with Unicode classes, on a "collapsed" text where every non-ASCII codepoint
//! becomes one stand-in per category (see [`Flags::collapse`]). The patterns below are
//! llama.cpp's, rewritten for those two views so that `\s` and `\p{..}` mean exactly what they
//! mean there: `\s` is ASCII whitespace plus `\x0B`, `\p{L}` is `A-Za-z` plus the letter
//! stand-in, and so on.

use regex::Regex;

use super::TokenizerError;
use super::split_custom::{self, Llama3Style};
use super::unicode::Flags;

/// The behaviour a `tokenizer.ggml.pre` value selects, beside its split steps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreConfig {
    /// Which steps split the text.
    kind: Kind,
    /// A word that is itself a token is emitted whole, without merges (Llama 3).
    pub(crate) ignore_merges: bool,
    /// Detokenizing tidies spaces before punctuation (`clean_up_tokenization_spaces`).
    pub(crate) clean_spaces: bool,
    /// The default of `tokenizer.ggml.add_bos_token`.
    pub(crate) add_bos: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Default,
    Llama3,
    Qwen2,
    Gpt2,
    Starcoder,
    Falcon,
    DeepseekLlm,
    DeepseekCoder,
    /// Qwen 2's pattern with combining marks joining letters.
    Qwen35,
    /// SentencePiece-style BPE over raw UTF-8, split only at newlines.
    Gemma4,
    /// As Gemma 4, without its whole-token newline runs and forced BOS.
    SarvamMoe,
}

impl PreConfig {
    /// The configuration for a `tokenizer.ggml.pre` value (absent: llama.cpp's `default`).
    /// Names follow llama.cpp's `llama_vocab::impl::load`; the ones it maps to pre-tokenizers
    /// not implemented here are [`TokenizerError::UnknownPreTokenizer`].
    pub(crate) fn from_name(name: Option<&str>) -> Result<PreConfig, TokenizerError> {
        let cfg = |kind, ignore_merges, clean_spaces, add_bos| PreConfig { kind, ignore_merges, clean_spaces, add_bos };
        Ok(match name.unwrap_or("default") {
            "default" => cfg(Kind::Default, false, true, false),
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2"
            | "jina-v5-nano" => cfg(Kind::Llama3, true, true, true),
            // Same pattern as Llama 3, without its shortcut for whole-token words.
            "dbrx" | "smaug-bpe" => cfg(Kind::Llama3, false, true, false),
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => cfg(Kind::Qwen2, false, false, false),
            "qwen35" => cfg(Kind::Qwen35, false, false, false),
            "megrez" | "stablelm2" => cfg(Kind::Qwen2, false, true, false),
            "hunyuan" | "solar-open" => cfg(Kind::Qwen2, false, false, false),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de" | "a.x-4.0"
            | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => cfg(Kind::Gpt2, false, true, false),
            "trillion" | "granite-docling" => cfg(Kind::Gpt2, false, false, false),
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                cfg(Kind::Starcoder, false, true, false)
            }
            "smollm" | "command-r" => cfg(Kind::Starcoder, false, false, false),
            "falcon" => cfg(Kind::Falcon, false, true, false),
            "deepseek-llm" => cfg(Kind::DeepseekLlm, false, false, false),
            "deepseek-coder" => cfg(Kind::DeepseekCoder, false, false, false),
            "gemma4" | "granite-embed-multi-311m" => PreConfig::gemma4(),
            "sarvam-moe" => cfg(Kind::SarvamMoe, false, false, false),
            other => return Err(TokenizerError::UnknownPreTokenizer { name: other.to_owned() }),
        })
    }

    /// Gemma 4's configuration, which llama.cpp uses for tokenizer model `gemma4` whatever
    /// `tokenizer.ggml.pre` says.
    pub(crate) fn gemma4() -> PreConfig {
        PreConfig { kind: Kind::Gemma4, ignore_merges: false, clean_spaces: true, add_bos: true }
    }

    /// Whether words are spelt in GPT-2's byte characters. Otherwise (Gemma 4) they are raw
    /// UTF-8 with spaces escaped as `▁`, and bytes without a token fall back to `<0xNN>`.
    pub(crate) fn byte_level(&self) -> bool {
        !matches!(self.kind, Kind::Gemma4 | Kind::SarvamMoe)
    }

    /// Whether a word made only of newlines is emitted whole when it is a token, as llama.cpp
    /// does for Gemma 4 (its PR #21343): its merges would build other newline tokens.
    pub(crate) fn whole_newline_runs(&self) -> bool {
        self.kind == Kind::Gemma4
    }

    /// Whether BOS is added whatever `tokenizer.ggml.add_bos_token` says (llama.cpp's
    /// workaround for Gemma 4 files that say false, its PR #21500).
    pub(crate) fn force_bos(&self) -> bool {
        self.kind == Kind::Gemma4
    }
}

/// `\s` as llama.cpp's `std::regex` sees it: ASCII whitespace (non-ASCII whitespace has
/// been replaced by `\x0B` in both views).
macro_rules! ws {
    () => {
        r"[\t\n\x0B\x0C\r ]"
    };
}
/// `\p{N}`, `\p{L}`, `\p{P}` in the collapsed view: the ASCII members and the stand-in.
macro_rules! num {
    () => {
        "\u{E0D1}0-9"
    };
}
macro_rules! letter {
    () => {
        "\u{E0D2}A-Za-z"
    };
}
macro_rules! punct {
    () => {
        r"\x{E0D3}!-#%-*,-/:-;?-@\[-\]_\{\}"
    };
}
/// DeepSeek's CJK and Hangul ranges.
const DEEPSEEK_CJK: &str = "[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+";
/// DeepSeek LLM's letters: the Latin, Greek, Cyrillic, ... ranges of its `tokenizer.json`.
const DEEPSEEK_LETTERS: &str = concat!(
    ws!(),
    "?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}\u{295}\
    -\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}\u{38C}\
    \u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}\u{10A0}-\u{10C5}\
    \u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}\u{1D00}-\u{1D2B}\
    \u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}\u{1F20}-\u{1F45}\
    \u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-\u{1F7D}\u{1F80}-\u{1FB4}\
    \u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}\u{1FD0}-\u{1FD3}\u{1FD6}-\
    \u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}\u{2102}\u{2107}\u{210A}-\u{2113}\
    \u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\
    \u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\
    \u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}\
    -\u{A787}\u{A78B}-\u{A78E}\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}\
    -\u{FF3A}\u{FF41}-\u{FF5A}\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}\
    -\u{10CB2}\u{10CC0}-\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+"
);

/// Which text a regex step runs on.
#[derive(Clone, Copy, Debug)]
enum View {
    /// The text, non-ASCII whitespace as `\x0B` (llama.cpp's `std::wregex` path).
    Wide,
    /// One character per codepoint class (llama.cpp's collapsed `std::regex` path).
    Collapsed,
}

impl View {
    fn map(self, c: char) -> char {
        match self {
            View::Wide if !c.is_ascii() && Flags::of(c).is_whitespace() => '\x0B',
            View::Wide => c,
            View::Collapsed => Flags::collapse(c),
        }
    }
}

#[derive(Debug)]
enum Step {
    Gpt2,
    /// Llama 3's pattern and its variants (Qwen 2, Qwen 3.5).
    Llama3(Llama3Style),
    /// Runs of newlines and runs of anything else.
    Newlines,
    Regex(Regex, View),
}

/// A compiled pre-tokenizer.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

impl PreTokenizer {
    /// Compiles the steps of `cfg`.
    pub(crate) fn new(cfg: &PreConfig) -> PreTokenizer {
        let wide = |p: &str| Step::Regex(compile(p), View::Wide);
        let collapsed = |p: &str| Step::Regex(compile(p), View::Collapsed);
        let steps = match cfg.kind {
            Kind::Default => vec![
                collapsed(concat!("[", punct!(), r"\$\+<=>\^~\|]+")),
                Step::Gpt2,
                collapsed(concat!("[", num!(), "]+")),
                wide("[0-9][0-9][0-9]"),
            ],
            Kind::Llama3 => vec![Step::Llama3(Llama3Style { max_digits: 3, marks_are_letters: false })],
            Kind::Qwen2 => vec![Step::Llama3(Llama3Style { max_digits: 1, marks_are_letters: false })],
            Kind::Qwen35 => vec![Step::Llama3(Llama3Style { max_digits: 1, marks_are_letters: true })],
            Kind::Gemma4 | Kind::SarvamMoe => vec![Step::Newlines],
            Kind::Gpt2 => vec![Step::Gpt2],
            Kind::Starcoder => vec![collapsed(concat!("[", num!(), "]")), Step::Gpt2],
            Kind::Falcon => vec![
                collapsed(concat!("[", punct!(), r"\$\+<=>\^~\|`]+")),
                Step::Gpt2,
                wide("[0-9][0-9][0-9]"),
            ],
            Kind::DeepseekLlm => vec![
                wide("[\r\n]"),
                wide(DEEPSEEK_LETTERS),
                wide(concat!(ws!(), "?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+")),
                wide(concat!(ws!(), "+$")),
                wide(DEEPSEEK_CJK),
                collapsed(concat!("[", num!(), "]+")),
            ],
            Kind::DeepseekCoder => vec![
                wide("[\r\n]"),
                collapsed(concat!(ws!(), "?[", letter!(), "]+")),
                collapsed(concat!(ws!(), "?[", punct!(), "]+")),
                wide(DEEPSEEK_CJK),
                collapsed(concat!("[", num!(), "]")),
            ],
        };
        PreTokenizer { steps }
    }

    /// Splits `text` into words; returns their byte ranges, in order, covering `text`.
    pub(crate) fn split(&self, text: &str) -> Vec<std::ops::Range<usize>> {
        let chars: Vec<char> = text.chars().collect();
        // Piece lengths in codepoints, as llama.cpp's `bpe_offsets`.
        let mut pieces = vec![chars.len()];
        for step in &self.steps {
            pieces = match step {
                Step::Gpt2 => split_custom::gpt2(&chars, &pieces),
                Step::Llama3(style) => split_custom::llama3(&chars, &pieces, *style),
                Step::Newlines => split_custom::newlines(&chars, &pieces),
                Step::Regex(re, view) => split_regex(re, *view, &chars, &pieces),
            };
        }
        let mut ranges = Vec::with_capacity(pieces.len());
        let mut bytes = 0;
        let mut at = 0;
        for len in pieces {
            let n: usize = chars[at..at + len].iter().map(|c| c.len_utf8()).sum();
            ranges.push(bytes..bytes + n);
            bytes += n;
            at += len;
        }
        ranges
    }
}

fn compile(pattern: &str) -> Regex {
    match Regex::new(pattern) {
        Ok(re) => re,
        // The patterns are constants of this file, covered by its tests.
        Err(e) => panic!("pre-tokenizer pattern {pattern:?} does not compile: {e}"),
    }
}

/// One regex step: each piece is cut into the matches of `re` and the gaps between them.
fn split_regex(re: &Regex, view: View, chars: &[char], pieces: &[usize]) -> Vec<usize> {
    let mapped: String = chars.iter().map(|&c| view.map(c)).collect();
    // Byte offset in `mapped` of each codepoint, and of the end.
    let mut offsets = Vec::with_capacity(chars.len() + 1);
    let mut o = 0;
    for c in mapped.chars() {
        offsets.push(o);
        o += c.len_utf8();
    }
    offsets.push(o);
    let to_index = |byte: usize| offsets.partition_point(|&x| x < byte);

    let mut out = Vec::with_capacity(pieces.len());
    let mut start = 0;
    for &len in pieces {
        let (lo, hi) = (offsets[start], offsets[start + len]);
        let mut done = start;
        for m in re.find_iter(&mapped[lo..hi]) {
            let (s, e) = (to_index(lo + m.start()), to_index(lo + m.end()));
            if s > done {
                out.push(s - done);
            }
            out.push(e - s);
            done = e;
        }
        if start + len > done {
            out.push(start + len - done);
        }
        start += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words<'a>(name: &str, text: &'a str) -> Vec<&'a str> {
        let cfg = PreConfig::from_name(Some(name)).unwrap();
        PreTokenizer::new(&cfg).split(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn every_pre_tokenizer_compiles_and_covers_the_text() {
        let text = "Hello, y'all! 3333 ½ 我想在 \u{3000}x\u{A0} \r\n\n  end  ";
        let names = [
            "default",
            "llama-bpe",
            "qwen2",
            "qwen35",
            "gpt-2",
            "starcoder",
            "falcon",
            "deepseek-llm",
            "deepseek-coder",
            "gemma4",
            "sarvam-moe",
        ];
        for name in names {
            assert_eq!(words(name, text).concat(), text, "{name}");
        }
    }

    #[test]
    fn splits_like_llama_cpp() {
        assert_eq!(words("gpt-2", "Hello world  x"), ["Hello", " world", " ", " x"]);
        assert_eq!(words("llama-bpe", "12345 don't\n\n"), ["123", "45", " don", "'t", "\n\n"]);
        assert_eq!(words("qwen2", "123"), ["1", "2", "3"]);
        // A combining mark joins the letters before it in Qwen 3.5, not in Qwen 2.
        assert_eq!(words("qwen35", "ne\u{301}e 12"), ["ne\u{301}e", " ", "1", "2"]);
        assert_eq!(words("qwen2", "ne\u{301}e"), ["ne", "\u{301}e"]);
        assert_eq!(words("gemma4", "a b\n\n c\n"), ["a b", "\n\n", " c", "\n"]);
        assert_eq!(words("starcoder", "ab12"), ["ab", "1", "2"]);
        assert_eq!(words("deepseek-coder", "a1!\nb"), ["a", "1", "!", "\n", "b"]);
        assert_eq!(words("deepseek-llm", "x  "), ["x", "  "]);
    }

    #[test]
    fn unknown_name_is_an_error() {
        let err = PreConfig::from_name(Some("no-such-pre")).unwrap_err();
        assert!(matches!(err, TokenizerError::UnknownPreTokenizer { ref name } if name == "no-such-pre"), "{err}");
    }
}
