//! `pupil tokenize`: the token ids of a text under a model's tokenizer, as llama.cpp would
//! produce them.

use super::error::BadInput;
use anyhow::{Context, Result};
use pupil::gguf::GgufFile;
use pupil::tokenizer::Tokenizer;
use serde::Serialize;
use std::io::{Read, Write};
use std::path::PathBuf;

/// Print the token ids of a text.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:\n  pupil tokenize -m models/gemma-3-270m-q4_k_m.gguf 'Hello world'\n  \
    echo '<start_of_turn>user' | pupil tokenize -m model.gguf --parse-special --json -")]
pub struct Args {
    /// The GGUF file whose tokenizer to use.
    #[arg(short, long)]
    model: PathBuf,
    /// Do not add BOS/EOS, even where the model's metadata asks for them.
    #[arg(long)]
    no_bos: bool,
    /// Turn control-token texts such as `<start_of_turn>` into their tokens (otherwise they
    /// are tokenized as plain text).
    #[arg(long)]
    parse_special: bool,
    /// Print `[{"id": .., "piece": ".."}, ...]` instead of space-separated ids.
    #[arg(long)]
    json: bool,
    /// The text, or `-` to read it (as is, trailing newline included) from stdin.
    text: String,
}

#[derive(Serialize)]
struct Token {
    id: u32,
    /// The token's bytes with special tokens rendered; invalid UTF-8 (part of a character)
    /// as U+FFFD.
    piece: String,
}

pub fn run(args: Args) -> Result<()> {
    let file = GgufFile::open(&args.model).map_err(super::output::in_file(&args.model))?;
    let tok = Tokenizer::from_gguf(&file).with_context(|| format!("{}: tokenizer", args.model.display()))?;
    let text = if args.text == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| BadInput::stdin("TEXT", e))?;
        s
    } else {
        args.text
    };
    let ids = tok.encode(&text, !args.no_bos, args.parse_special);

    let mut out = std::io::stdout().lock();
    if args.json {
        let tokens: Vec<Token> = ids
            .iter()
            .map(|&id| Token { id, piece: String::from_utf8_lossy(tok.token_to_piece(id, true)).into_owned() })
            .collect();
        serde_json::to_writer(&mut out, &tokens)?;
        writeln!(out)?;
    } else {
        let line: Vec<String> = ids.iter().map(u32::to_string).collect();
        writeln!(out, "{}", line.join(" "))?;
    }
    out.flush()?;
    Ok(())
}
