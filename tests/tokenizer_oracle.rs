//! pupil's tokenizer against llama.cpp's (through `llama-cpp-2`) on the same GGUF files:
//! every vocabulary of `models/.cache/llama.cpp/models`, Gemma 3 270M and the embedded pair.
//! A vocabulary of that directory without a test here fails
//! `every_test_vocabulary_has_an_oracle_test`, unless it is named in
//! `llama_tree::UNSUPPORTED` (a tokenizer model pupil lacks; the list is printed).
//!
//! Per vocabulary: the pieces of every token (special rendered and not), the special ids and
//! end-of-generation set, then thousands of generated strings (words, whitespace runs, numbers,
//! punctuation, code, CJK, Cyrillic, Arabic, Devanagari, emoji sequences, combining marks,
//! special-token texts, random vocabulary pieces and codepoints) encoded with all four
//! combinations of `add_special` and `parse_special`, and the ids detokenized with all four
//! combinations of `remove_special` and `unparse_special`. Every comparison must agree.
#![cfg(feature = "llama")]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use pupil::gguf::GgufFile;
use pupil::llama::{LlamaModel, LlamaVocab};
use pupil::tokenizer::Tokenizer;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[path = "support/llama_tree.rs"]
mod llama_tree;

const GEMMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");
/// The embedded distilled pair's vocabulary (byte-level BPE trained on the KJV).
const PAIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/distill/teacher-f16.gguf");

/// Generated strings per vocabulary.
const N_STRINGS: usize = 10_000;

/// Mismatch counter that keeps the first few cases for the failure message.
#[derive(Default)]
struct Mismatches {
    count: usize,
    shown: String,
}

impl Mismatches {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: impl FnOnce() -> String, ours: T, theirs: T) {
        if ours != theirs {
            self.count += 1;
            if self.count <= 8 {
                let _ = writeln!(self.shown, "{}\n  pupil:     {ours:?}\n  llama.cpp: {theirs:?}", what());
            }
        }
    }
}

fn run_oracle(path: &str, seed: u64) {
    let start = Instant::now();
    let name = Path::new(path).file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        Path::new(path).exists(),
        "{path} is missing: the vocabulary files come from models/fetch-llama-cpp.sh, Gemma comes from models/fetch-gemma3-270m.sh"
    );
    let file = GgufFile::open(path).unwrap();
    let ours = Tokenizer::from_gguf(&file).unwrap_or_else(|e| panic!("{name}: {e}"));
    let model = LlamaModel::load_vocab(Path::new(path)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let theirs = model.vocab();
    let mut bad = Mismatches::default();

    check_vocabulary(&ours, &theirs, &mut bad);

    let mut strings = vector_strings(path);
    let n_vectors = strings.len();
    let mut rng = SmallRng::seed_from_u64(seed);
    strings.extend((0..N_STRINGS).map(|_| generate(&mut rng, &ours)));
    let mut compared = 0;
    let (mut t_ours, mut t_theirs) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for s in &strings {
        let mut theirs_plain = Vec::new();
        let mut theirs_special = Vec::new();
        for (add_special, parse_special) in [(false, false), (false, true), (true, false), (true, true)] {
            let t0 = Instant::now();
            let got = ours.encode(s, add_special, parse_special);
            let t1 = Instant::now();
            let want = theirs.tokenize(s.as_bytes(), add_special, parse_special).expect("llama.cpp tokenizes");
            t_ours += t1 - t0;
            t_theirs += t1.elapsed();
            bad.check(
                || format!("encode({s:?}, add_special={add_special}, parse_special={parse_special})"),
                &got,
                &want,
            );
            compared += 1;
            match (add_special, parse_special) {
                (false, false) => theirs_plain = want,
                (true, true) => theirs_special = want,
                _ => {}
            }
        }
        check_detokenize(&ours, &theirs, &theirs_special, &mut bad);
        // Text round trip: our ids and decoding against theirs.
        let back = ours.decode(&ours.encode(s, false, false));
        let theirs_back = theirs.detokenize(&theirs_plain, false, false).expect("llama.cpp detokenizes");
        bad.check(|| format!("decode(encode({s:?}))"), back, String::from_utf8_lossy(&theirs_back).into_owned());
    }
    eprintln!(
        "{name}: {} strings ({n_vectors} from the .inp file, {N_STRINGS} generated), {compared} encodings, {} mismatches; \
         encoding took {t_ours:.1?} in pupil, {t_theirs:.1?} in llama.cpp; {:.1?} in all",
        strings.len(),
        bad.count,
        start.elapsed()
    );
    assert!(bad.count == 0, "{name}: {} mismatches with llama.cpp, first ones:\n{}", bad.count, bad.shown);
}

/// Size, special ids, end-of-generation set and every token's piece.
fn check_vocabulary(ours: &Tokenizer, theirs: &LlamaVocab<'_>, bad: &mut Mismatches) {
    bad.check(|| "n_vocab".into(), ours.n_vocab(), theirs.n_tokens());
    bad.check(|| "bos".into(), ours.bos(), theirs.bos());
    bad.check(|| "eos".into(), ours.eos(), theirs.eos());
    bad.check(|| "add_bos".into(), ours.add_bos(), theirs.add_bos());
    bad.check(|| "add_eos".into(), ours.add_eos(), theirs.add_eos());
    let their_eog: Vec<u32> = (0..ours.n_vocab() as u32).filter(|&i| theirs.is_eog(i)).collect();
    bad.check(|| "end-of-generation ids".into(), ours.eog_ids().to_vec(), their_eog);
    for id in 0..ours.n_vocab() as u32 {
        for special in [false, true] {
            let want = theirs.token_to_piece(id, special);
            bad.check(
                || format!("token_to_piece({id}, special={special})"),
                ours.token_to_piece(id, special),
                &want[..],
            );
        }
        let control = theirs.is_control(id);
        bad.check(|| format!("is_control({id})"), ours.is_control(id), control);
    }
}

fn check_detokenize(ours: &Tokenizer, theirs: &LlamaVocab<'_>, ids: &[u32], bad: &mut Mismatches) {
    for (remove_special, unparse_special) in [(false, false), (false, true), (true, false), (true, true)] {
        // llama-cpp-2 sizes its buffer as `2 * len - remove_special`, which underflows at 0.
        if ids.is_empty() && remove_special {
            continue;
        }
        let want = theirs.detokenize(ids, remove_special, unparse_special).expect("llama.cpp detokenizes");
        let got = ours.detokenize(ids, remove_special, unparse_special);
        bad.check(
            || format!("detokenize({ids:?}, remove_special={remove_special}, unparse_special={unparse_special})"),
            got,
            want,
        );
    }
}

/// The strings of the vocabulary's `.inp` file, if it has one.
fn vector_strings(path: &str) -> Vec<String> {
    let inp = format!("{path}.inp");
    if Path::new(&inp).exists() { llama_tree::vector_inputs(Path::new(&inp)) } else { Vec::new() }
}

const WORDS: &[&str] = &[
    "Hello",
    "hello",
    "HELLO",
    "world",
    "The",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "don't",
    "I'm",
    "y'all",
    "we're",
    "they've",
    "she'll",
    "he'd",
    "IT'S",
    "'S",
    "'ll",
    "'RE",
    "'t",
    "'",
    "apple",
    "tokenization",
    "unbelievable",
    "a",
    "I",
    "x",
    "Zebra",
    "naïve",
    "discards",
    "era",
    "supercalifragilistic",
    "GGUF",
    "llama",
];
const SPACES: &[&str] = &[
    " ", " ", " ", "  ", "   ", "    ", "\t", "\n", "\r\n", "\n\n", "\n\n\n", " \n ", "\t \t", "\r", "\u{A0}",
    "\u{3000}", "\u{2003}", "\u{85}", "\u{0B}", "\u{0C}", "\u{2028}", "\u{200B}", "\u{FEFF}", "\u{180E}", "\u{2060}",
    " \u{A0} ",
];
const PUNCT: &[&str] = &[
    ".", ",", "!", "?", "...", "—", "–", "«", "»", "“", "”", "'", "\"", "(", ")", "[", "]", "{", "}", "<", ">", "#",
    "@", "$", "%", "^", "&", "*", "~", "`", "|", "\\", "/", ":", ";", "¿", "¡", "…", "、", "。", "，", "！", "？",
    "：", "～", "!!!!!!", " ?", " !", " ,", " .", " ' ", " 's", "-", "_", "+", "=", "€", "£", "©", "°", "±", "§",
];
const CODE: &[&str] = &[
    "fn main() {}",
    "for (int i = 0; i < n; ++i) {",
    "def f(x):\n    return x**2",
    "<div class=\"a\">",
    "</div>",
    "x => x + 1",
    "#include <stdio.h>",
    "SELECT * FROM t WHERE id = 42;",
    "    if x:\n\treturn",
    "a_b_c",
    "camelCaseName",
    "__init__",
    "std::vector<int>",
    "0x1F",
    "1e-9",
    "{\"key\": [1, 2.5, null]}",
    "$HOME/.cargo",
    "a->b",
    "i += 1;",
    "// comment",
    "/* block */",
    "```rust\n",
    "\tindent\n\t\tmore",
];
const SCRIPTS: &[&str] = &[
    "我想在apple工作1314151天～",
    "你好世界",
    "日本語のテキスト",
    "カタカナ",
    "ひらがな",
    "한국어 텍스트",
    "中文，标点。",
    "Привет мир",
    "нещо на Български",
    "ЁЖЗ",
    "Україна",
    "مرحبا بالعالم",
    "السلام عليكم",
    "٣٤٥",
    "नमस्ते दुनिया",
    "हिन्दी",
    "१२३",
    "กาน่า",
    "កាន់តែពិសេសអាចខលចេញ",
    "Ελληνικά",
    "עברית",
    "ქართული",
    "Հայերեն",
    "ᏣᎳᎩ",
    "𐐷𐐸",
];
const EMOJI: &[&str] = &["🦙", "🚀", "😀", "👍🏽", "👩‍👩‍👧‍👦", "🏳️‍🌈", "❤️", "✅", "😶‍🌫️", "🇺🇸", "👨🏿‍💻", "🤷‍♀️", "🫠", "☕", "🧑🏻‍🤝‍🧑🏿"];
const ACCENTED: &[&str] = &[
    "café",
    "naïve",
    "Cửa Việt",
    "e\u{301}",
    "a\u{308}\u{304}",
    "Ångström",
    "ß",
    "Œuvre",
    "ﬁ",
    "Ǆ",
    "ǅ",
    "İstanbul",
    "ſ",
    "Ω",
    "K",
    "µ",
    "n\u{303}",
    "\u{301}",
    "Zürich",
    "façade",
];
const SPECIALS: &[&str] = &[
    "<start_of_turn>",
    "<end_of_turn>",
    "<|im_start|>",
    "<|im_end|>",
    "<bos>",
    "<eos>",
    "<s>",
    "</s>",
    "<unk>",
    "<pad>",
    "<mask>",
    "<unused0>",
    "<unused99>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|eot_id|>",
    "<|end|>",
    "<|user|>",
    "<|system|>",
    "<|assistant|>",
    "<fim_prefix>",
    "<fim_middle>",
    "<｜fim▁begin｜>",
    "<｜end▁of▁sentence｜>",
    "<table>",
    "<h1>",
    "</td>",
    "[multimodal]",
    "<start_of_image>",
    ">>TITLE<<",
    "<|im_",
    "start|>",
    "<<s>>",
    "<s><s>",
    "<|",
];

fn pick<'a>(rng: &mut SmallRng, list: &[&'a str]) -> &'a str {
    list[rng.random_range(0..list.len())]
}

/// One random atom of text.
fn atom(rng: &mut SmallRng, tok: &Tokenizer, out: &mut String) {
    match rng.random_range(0..13) {
        0 | 1 => out.push_str(pick(rng, WORDS)),
        2 | 3 => out.push_str(pick(rng, SPACES)),
        4 => {
            let n = rng.random_range(1..40);
            out.extend(std::iter::repeat_n(if rng.random_bool(0.8) { ' ' } else { '\n' }, n));
        }
        5 => {
            let n = rng.random_range(1..16);
            out.extend((0..n).map(|_| char::from(b'0' + rng.random_range(0..10u8))));
        }
        6 => out.push_str(pick(rng, PUNCT)),
        7 => out.push_str(pick(rng, CODE)),
        8 => out.push_str(pick(rng, SCRIPTS)),
        9 => out.push_str(pick(rng, EMOJI)),
        10 => out.push_str(pick(rng, ACCENTED)),
        11 => out.push_str(pick(rng, SPECIALS)),
        _ => {
            if rng.random_bool(0.5) {
                // A piece of the vocabulary itself, to exercise long merges.
                let id = rng.random_range(0..tok.n_vocab() as u32);
                out.push_str(&String::from_utf8_lossy(tok.token_to_piece(id, true)));
            } else {
                // A codepoint from assorted ranges, assigned or not (surrogates skipped).
                const RANGES: &[(u32, u32)] = &[
                    (0x00, 0x7F),
                    (0x80, 0x2FF),
                    (0x300, 0x36F),
                    (0x370, 0x1FFF),
                    (0x2000, 0x206F),
                    (0x2070, 0x2BFF),
                    (0x2E80, 0x9FFF),
                    (0xAC00, 0xD7FF),
                    (0xE000, 0xFFFF),
                    (0x10000, 0x1FFFF),
                    (0x20000, 0x10FFFF),
                ];
                let (lo, hi) = RANGES[rng.random_range(0..RANGES.len())];
                if let Some(c) = char::from_u32(rng.random_range(lo..=hi)) {
                    out.push(c);
                }
            }
        }
    }
}

fn generate(rng: &mut SmallRng, tok: &Tokenizer) -> String {
    let n = if rng.random_bool(0.1) { rng.random_range(12..60) } else { rng.random_range(1..12) };
    let mut s = String::new();
    for _ in 0..n {
        atom(rng, tok, &mut s);
        if rng.random_bool(0.3) {
            s.push(' ');
        }
    }
    s
}

#[test]
fn gemma3_270m() {
    run_oracle(GEMMA, 1);
}

#[test]
fn kjv_pair() {
    run_oracle(PAIR, 9);
}

/// One test per vocabulary of llama.cpp's tree (so they run in parallel), and `COVERED`, the
/// names they test.
macro_rules! vocab_oracle {
    ($($test:ident: $name:literal, $seed:expr;)*) => {
        $(
            #[test]
            fn $test() {
                run_oracle(llama_tree::vocab($name).to_str().expect("UTF-8 path"), $seed);
            }
        )*
        const COVERED: &[&str] = &[$($name),*];
    };
}

vocab_oracle! {
    llama_spm: "llama-spm", 2;
    phi_3: "phi-3", 3;
    gpt_2: "gpt-2", 4;
    deepseek_llm: "deepseek-llm", 5;
    deepseek_coder: "deepseek-coder", 6;
    falcon: "falcon", 7;
    starcoder: "starcoder", 8;
    llama_bpe: "llama-bpe", 10;
    qwen2: "qwen2", 11;
    qwen35: "qwen35", 12;
    gemma_4: "gemma-4", 13;
    command_r: "command-r", 14;
    mpt: "mpt", 15;
    refact: "refact", 16;
    aquila: "aquila", 17;
    baichuan: "baichuan", 18;
    gpt_neox: "gpt-neox", 19;
}

#[test]
fn every_test_vocabulary_has_an_oracle_test() {
    llama_tree::print_unsupported();
    let names: Vec<String> = llama_tree::vocab_files().iter().map(|p| llama_tree::vocab_name(p)).collect();
    for name in &names {
        let covered = COVERED.contains(&name.as_str());
        let unsupported = llama_tree::is_unsupported(name);
        assert!(covered || unsupported, "ggml-vocab-{name}.gguf has no oracle test and is not listed as unsupported");
        assert!(!(covered && unsupported), "{name} is both tested and listed as unsupported");
    }
    for name in COVERED.iter().chain(llama_tree::UNSUPPORTED.iter().map(|(n, _, _)| n)) {
        assert!(names.iter().any(|n| n == name), "{name} is named here but not in llama.cpp's tree");
    }
}
