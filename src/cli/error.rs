//! How the binary reports failure: one line on stderr and an exit status that says whose
//! fault it was.
//!
//! - 0: done, or stdout was closed early (`pupil run ... | head -c1` is not a failure);
//! - 1: failed while running (a disk error, a bug);
//! - 2: bad input the user can fix, with the flag or file to change: an argument clap
//!   rejects, a value out of range, a file that cannot be read or written, a malformed or
//!   unsupported model, a prompt that does not fit;
//! - 3: a `pupil compare --fail-*` gate failed.

use std::fmt::Display;
use std::io;
use std::path::Path;

/// Exit status for input the user can fix: a malformed model file, a bad argument.
pub const EXIT_BAD_INPUT: i32 = 2;

/// Exit status of a quality gate that failed (`pupil compare --fail-below-agreement`).
pub const EXIT_GATE: i32 = 3;

/// Input the user can fix, found by the command line itself: a flag out of range, a file
/// named on the command line that cannot be read or written. The message names the flag;
/// exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BadInput {
    message: String,
    #[source]
    source: Option<io::Error>,
}

impl BadInput {
    /// A flag whose value is wrong, e.g. `BadInput::new("--stop is empty ...")`.
    pub fn new(message: impl Into<String>) -> Self {
        BadInput { message: message.into(), source: None }
    }

    /// Standard input, read for `what` (`-p -`), that could not be read (not UTF-8).
    pub fn stdin(what: &str, source: io::Error) -> Self {
        BadInput { message: format!("{what} - (stdin)"), source: Some(source) }
    }

    /// A file the user named (`what` is the flag or argument, e.g. `--chat-template`) that
    /// the operating system would not let us read or write; the OS error is the source.
    pub fn file(what: impl Display, path: &Path, source: io::Error) -> Self {
        BadInput { message: format!("{what} {}", path.display()), source: Some(source) }
    }
}

/// Whether writing `path` failed because of the path itself (missing directory, no
/// permission, a directory in the way), which the user fixes by naming another, rather than
/// because the disk failed or filled up.
pub fn is_bad_path(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        NotFound
            | PermissionDenied
            | IsADirectory
            | NotADirectory
            | ReadOnlyFilesystem
            | InvalidFilename
            | InvalidInput
    )
}

/// The whole error chain on one line: each cause after the last, except causes the line
/// already says (libraries that print their source in their own message too), and with any
/// line breaks inside a message (template errors, clap) folded into spaces.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let text = text.split('\n').map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// The flag to change for an error the library reports in its own terms (it knows no
/// flags): appended to the one-line message.
pub fn hint(e: &anyhow::Error) -> Option<&'static str> {
    use pupil::engine::EngineError;
    use pupil::generate::{GenerateError, SpeculativeError};
    e.chain().find_map(|c| {
        if let Some(EngineError::NoChatTemplate) = c.downcast_ref::<EngineError>() {
            return Some("give one with --chat-template FILE");
        }
        let generate = c.downcast_ref::<GenerateError>().or_else(|| match c.downcast_ref::<SpeculativeError>() {
            Some(SpeculativeError::Generate(g)) => Some(g),
            _ => None,
        });
        match (generate, c.downcast_ref::<SpeculativeError>()) {
            (Some(GenerateError::PromptTooLong { .. }), _) => Some("raise --ctx or shorten the prompt"),
            (_, Some(SpeculativeError::NoDrafts)) => Some("--draft-max"),
            (_, Some(SpeculativeError::PenaltiesWithSampling)) => Some("--temp 0, or no penalty flags"),
            _ => None,
        }
    })
}

/// A clap error (an unknown flag, a value that does not parse, a missing argument) as one
/// line: its message, the arguments it lists and its tips, without the usage block.
pub fn clap_one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let mut line = String::new();
    let mut tips = Vec::new();
    for l in rendered.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if l.starts_with("Usage:") || l.starts_with("For more information") {
            break;
        }
        match l.strip_prefix("tip: ") {
            Some(tip) => tips.push(tip),
            None if line.is_empty() => line.push_str(l),
            // Missing required arguments are listed one per line after the message.
            None => {
                line.push(' ');
                line.push_str(l);
            }
        }
    }
    if line.is_empty() {
        line.push_str("error: invalid arguments");
    }
    if !tips.is_empty() {
        line.push_str(&format!(" (tip: {})", tips.join("; ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_that_repeats_its_source_is_said_once() {
        let io = io::Error::new(io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        #[derive(Debug, thiserror::Error)]
        #[error("writing /x/y.gguf: {source}")]
        struct Repeats {
            source: io::Error,
        }
        let e = anyhow::Error::new(Repeats { source: io });
        assert_eq!(one_line(&e), "writing /x/y.gguf: No such file or directory (os error 2)");
        let e = anyhow::Error::new(BadInput::file(
            "--plot",
            Path::new("/x/k.svg"),
            io::Error::from(io::ErrorKind::NotFound),
        ));
        assert_eq!(one_line(&e), "--plot /x/k.svg: entity not found");
        let e = anyhow::anyhow!("line one\n  line two\n").context("file.jinja");
        assert_eq!(one_line(&e), "file.jinja: line one line two");
    }
}
