//! Bad input to every subcommand gives one line on stderr naming the problem (and the flag
//! or file to change) and exit status 2, never a panic (issue 10). And a closed stdout is
//! not an error.
//!
//! Each row runs the binary on the embedded distilled pair (`models/distill/`), so the whole
//! table takes seconds.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longer than any row needs (each fails before doing real work): a row that blocks (a FIFO
/// opened as a model) fails instead of hanging the suite.
const TIMEOUT: Duration = Duration::from_secs(60);

fn distill(name: &str) -> String {
    format!("{}/models/distill/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs pupil with `args` and `stdin`, killing it after [`TIMEOUT`].
fn pupil(args: &[String], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pupil");
    let mut input = child.stdin.take().expect("stdin");
    // A command that fails before reading stdin closes it: not this test's concern.
    let _ = input.write_all(stdin);
    drop(input);
    wait(child, args)
}

fn wait(mut child: Child, args: &[String]) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("wait for pupil").is_none() {
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            panic!("pupil {args:?} still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("pupil's output")
}

/// One kind of bad input: the arguments, the stdin, and a piece of the one-line message.
struct Row {
    args: Vec<String>,
    stdin: Vec<u8>,
    says: String,
    /// Where the message may say something else instead.
    or_says: Option<String>,
}

fn row(args: &[impl AsRef<str>], says: &str) -> Row {
    Row {
        args: args.iter().map(|a| a.as_ref().to_owned()).collect(),
        stdin: Vec::new(),
        says: says.to_owned(),
        or_says: None,
    }
}

fn row_stdin(args: &[&str], stdin: &[u8], says: &str) -> Row {
    Row { stdin: stdin.to_vec(), ..row(args, says) }
}

/// Files the rows point at: a directory, a FIFO, an empty and a broken chat template, a
/// truncated model, a copy of the teacher (to quantize onto itself), invalid UTF-8.
struct Fixtures {
    dir: tempfile::TempDir,
}

impl Fixtures {
    fn new() -> Fixtures {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = dir.path();
        std::fs::write(p.join("empty.jinja"), " \n").unwrap();
        std::fs::write(p.join("broken.jinja"), "{% if %}").unwrap();
        std::fs::write(p.join("not-utf8.txt"), b"\xff\xfe text").unwrap();
        std::fs::write(p.join("prompts.jsonl"), "{\"prompt\": \"In the beginning\"}\n{\"prompt\": 7}\n").unwrap();
        std::fs::write(p.join("blank-prompts.txt"), "\n  \n").unwrap();
        let student = std::fs::read(distill("student-q4_0.gguf")).unwrap();
        std::fs::write(p.join("truncated.gguf"), &student[..100]).unwrap();
        std::fs::copy(distill("teacher-f16.gguf"), p.join("teacher.gguf")).unwrap();
        let fifo = p.join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
        assert!(made.success(), "mkfifo {}", fifo.display());
        Fixtures { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().expect("UTF-8 temp path").to_owned()
    }
}

fn rows(f: &Fixtures) -> Vec<Row> {
    let student = distill("student-q4_0.gguf");
    let teacher = distill("teacher-f16.gguf");
    let heldout = distill("heldout.txt");
    let (s, t, h) = (student.as_str(), teacher.as_str(), heldout.as_str());
    let dir = f.path("");
    let dir = dir.trim_end_matches('/');
    let (fifo, truncated, teacher_copy) = (f.path("fifo"), f.path("truncated.gguf"), f.path("teacher.gguf"));
    let (empty, broken, not_utf8) = (f.path("empty.jinja"), f.path("broken.jinja"), f.path("not-utf8.txt"));
    let out = f.path("out.gguf");
    let base = ["run", "-m", s, "-p", "Hello", "-n", "2"];
    let run = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|a| a.to_string()).collect() };
    let mut rows = vec![
        // run: numbers out of range, named by their flag.
        row(&run(&["-t", "0"]), "--threads"),
        row(&run(&["--ctx", "0"]), "--ctx"),
        row(&run(&["-n", "-5"]), "--n-predict"),
        row(&run(&["-n", "lots"]), "--n-predict"),
        row(&run(&["--temp", "-1"]), "--temp is -1, expected"),
        row(&run(&["--temp", "NaN"]), "--temp is NaN"),
        row(&run(&["--temp", "inf"]), "--temp is inf"),
        row(&run(&["--top-p", "7"]), "--top-p is 7, expected a number from 0 to 1"),
        row(&run(&["--top-p", "-0.5"]), "--top-p is -0.5"),
        row(&run(&["--top-p", "nan"]), "--top-p is NaN"),
        row(&run(&["--min-p", "-1"]), "--min-p is -1"),
        row(&run(&["--min-p", "2"]), "--min-p is 2"),
        row(&run(&["--top-k", "-1"]), "--top-k"),
        row(&run(&["--top-k", "many"]), "--top-k"),
        row(&run(&["--repeat-penalty", "0"]), "--repeat-penalty is 0"),
        row(&run(&["--repeat-penalty", "-1.5"]), "--repeat-penalty is -1.5"),
        row(&run(&["--presence-penalty", "NaN"]), "--presence-penalty is NaN"),
        row(&run(&["--frequency-penalty", "-inf"]), "--frequency-penalty is -inf"),
        // Once a panic: the window's buffer is allocated up front.
        row(&run(&["--repeat-last-n", "18446744073709551615"]), "--repeat-last-n is 18446744073709551615"),
        row(&run(&["--repeat-last-n", "-1"]), "--repeat-last-n"),
        row(&run(&["--seed", "-1"]), "--seed"),
        row(&run(&["--ctx", "-4"]), "--ctx"),
        row(&run(&["--kv-type", "f8"]), "--kv-type"),
        row(&run(&["--draft", s, "--draft-max", "0"]), "--draft-max"),
        row(&run(&["--stop", ""]), "--stop"),
        row(&run(&["--topp", "0.5"]), "--top-p"),
        // run: prompts.
        row(&["run", "-m", s, "-n", "2"], "give a prompt with -p"),
        row(&["run", "-m", s, "-p", "", "--no-bos"], "the prompt is empty"),
        row(&["run", "-m", s, "-p", &"word ".repeat(40), "--ctx", "8"], "more than the context of 8"),
        row_stdin(&["run", "-m", s, "-p", "-"], b"\xff\xfe", "-p - (stdin)"),
        // run: flags that do not go together.
        row(&run(&["--chat", "--draft", s]), "--draft"),
        row(&run(&["--system", "Be brief."]), "--chat"),
        row(&["run", "-m", s, "--chat"], "no chat template"),
        // run: model files that are not.
        row(&["run", "-m", "/dev/null", "-p", "Hi"], "/dev/null: not a regular file (a character device)"),
        row(&["run", "-m", dir, "-p", "Hi"], "not a regular file (a directory)"),
        row(&["run", "-m", &fifo, "-p", "Hi"], "not a regular file (a FIFO)"),
        row(&["run", "-m", "/nonexistent/model.gguf", "-p", "Hi"], "/nonexistent/model.gguf: No such file"),
        row(&["run", "-m", &truncated, "-p", "Hi"], "truncated"),
        row(&["run", "-m", h, "-p", "Hi"], "not a GGUF file"),
        row(&run(&["--draft", "/dev/null"]), "/dev/null: not a regular file"),
        row(&run(&["--draft", h]), "not a GGUF file"),
        row(&run(&["--draft", "/nonexistent/draft.gguf"]), "/nonexistent/draft.gguf: No such file"),
        // run: chat templates.
        row(
            &["run", "-m", s, "--chat", "--chat-template", "/nonexistent/t.jinja"],
            "--chat-template /nonexistent/t.jinja",
        ),
        row(&["run", "-m", s, "--chat", "--chat-template", dir], "--chat-template"),
        row(&["run", "-m", s, "--chat", "--chat-template", &empty], "is empty"),
        row(&["run", "-m", s, "--chat", "--chat-template", &broken], "--chat-template"),
        // tokenize.
        row(&["tokenize", "-m", s], "<TEXT>"),
        row(&["tokenize", "-m", "/dev/null", "Hi"], "not a regular file"),
        row(&["tokenize", "-m", dir, "Hi"], "not a regular file (a directory)"),
        row(&["tokenize", "-m", h, "Hi"], "not a GGUF file"),
        row_stdin(&["tokenize", "-m", s, "-"], b"\xff", "TEXT - (stdin)"),
        // inspect.
        row(&["inspect", "/dev/null"], "not a regular file (a character device)"),
        row(&["inspect", dir], "not a regular file (a directory)"),
        row(&["inspect", &fifo], "not a regular file (a FIFO)"),
        row(&["inspect", "/nonexistent/model.gguf"], "No such file"),
        row(&["inspect", &truncated], "truncated"),
        row(&["inspect", s, "--max-tensors", "-1"], "--max-tensors"),
        // quantize.
        row(&["quantize", t, "/nonexistent/x.gguf", "Q8_0"], "output /nonexistent/x.gguf: No such file"),
        row(&["quantize", t, dir, "Q8_0"], "output"),
        row(&["quantize", t, &out, "Q9_9"], "unknown quantization type 'Q9_9'"),
        row(&["quantize", t, &out, "Q8_0", "-t", "0"], "--threads"),
        row(&["quantize", s, &out, "Q8_0"], "--allow-requantize"),
        row(&["quantize", &teacher_copy, &teacher_copy, "Q8_0"], "is the input file"),
        row(&["quantize", "/dev/null", &out, "Q8_0"], "not a regular file"),
        row(&["quantize", t, &out], "<TYPE>"),
        // compare.
        row(&["compare", "--ctx", "1"], "--ctx"),
        row(&["compare", "--batch", "0"], "--batch"),
        row(&["compare", "--reps", "0"], "--reps"),
        row(&["compare", "-t", "0"], "--threads"),
        row(&["compare", "--fail-below-agreement", "1.5"], "--fail-below-agreement"),
        row(&["compare", "--fail-below-agreement", "NaN"], "--fail-below-agreement"),
        row(&["compare", "--fail-above-kl", "-1"], "--fail-above-kl"),
        row(&["compare", "--fail-above-kl", "-inf"], "--fail-above-kl"),
        row(&["compare", "--text", "/nonexistent/text.txt"], "--text /nonexistent/text.txt: No such file"),
        row(&["compare", "--text", dir], "--text"),
        row(&["compare", "--text", &not_utf8], "--text"),
        row(&["compare", "--plot", "/nonexistent/k.svg"], "--plot /nonexistent/k.svg: No such file"),
        row(&["compare", "--plot", dir], "--plot"),
        row(&["compare", "--teacher", s], "--student"),
        // compare --generate.
        row(&["compare", "--prompts", &f.path("prompts.jsonl")], "--generate"),
        row(&["compare", "--chat"], "--generate"),
        row(&["compare", "--draft"], "--generate"),
        row(&["compare", "--generate", "--prompts", "/nonexistent/p.txt"], "--prompts /nonexistent/p.txt: No such file"),
        row(&["compare", "--generate", "--prompts", &f.path("prompts.jsonl")], "prompt 2: invalid type"),
        row(&["compare", "--generate", "--prompts", &f.path("blank-prompts.txt")], "no prompts"),
        row(&["compare", "--generate", "--prompts", &f.path("not-utf8.txt")], "--prompts"),
        row(&["compare", "--generate", "--temp", "-1"], "--temp"),
        row(&["compare", "--generate", "--temp", "NaN"], "--temp"),
        row(&["compare", "--generate", "-n", "0"], "--n-predict"),
        row(&["compare", "--generate", "--teacher", t, "--student", s, "-n", "100000"], "lower -n"),
        row(&["compare", "--generate", "--draft-max", "0"], "--draft-max"),
        row(&["compare", "--generate", "--fail-below-grade", "0.5"], "--fail-below-grade"),
        row(&["compare", "--teacher", "/dev/null", "--student", s], "not a regular file"),
        row(&["compare", "--teacher", t, "--student", h], "not a GGUF file"),
        // bench.
        row(&["bench", "-m", s, "-p", "0", "-n", "0"], "nothing to measure"),
        row(&["bench", "-m", s, "-r", "0"], "--repetitions"),
        row(&["bench", "-m", s, "-t", "0"], "--threads"),
        row(&["bench", "-m", s, "-n", "-1"], "--n-gen"),
        row(&["bench", "-m", s, "--bandwidth-mib", "0"], "--bandwidth-mib"),
        row(&["bench", "-m", s, "--bandwidth-mib", "18446744073709551615"], "--bandwidth-mib"),
        row(&["bench", "-m", "/dev/null"], "not a regular file"),
        row(&["bench", "-m", dir], "not a regular file (a directory)"),
        // --gpu-layers on a machine with no GPU (or a build without CUDA): one line saying why.
        row(&run(&["--gpu-layers", "1"]), "--gpu-layers 1: "),
        row(&run(&["-ngl", "99"]), "--gpu-layers 99: "),
        row(&run(&["--gpu-layers", "-1"]), "--gpu-layers"),
        row(&["bench", "-m", s, "--gpu-layers", "2", "-p", "8", "-n", "0"], "--gpu-layers 2: "),
        row(&["serve", "-m", s, "--gpu-layers", "1", "--port", "0"], "--gpu-layers 1: "),
        row(&["compare", "--gpu-layers", "3"], "--gpu-layers 3: "),
        // No subcommand of that name.
        row(&["serve-me"], "unrecognized subcommand"),
    ];
    // Built without llama.cpp, these say so; with it, the input after the flag is bad too.
    // (Either way: a build with `--features llama` may have replaced the binary under test.)
    let mut no_llama =
        row(&["bench", "-m", s, "--against-llama", "-p", "0", "-n", "0"], "--against-llama needs llama.cpp");
    no_llama.or_says = Some("nothing to measure".to_owned());
    rows.push(no_llama);
    let mut no_llama =
        row(&["compare", "--teacher-backend", "llama", "--text", "/nonexistent/t.txt"], "--features llama");
    no_llama.or_says = Some("--text /nonexistent/t.txt".to_owned());
    rows.push(no_llama);
    rows
}

#[test]
fn every_kind_of_bad_input_is_one_line_and_exit_status_2() {
    let f = Fixtures::new();
    let mut failures = Vec::new();
    for r in rows(&f) {
        let o = pupil(&r.args, &r.stdin);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        let ok = o.status.code() == Some(2)
            && lines.len() == 1
            && lines[0].starts_with("error: ")
            && (lines[0].contains(&r.says) || r.or_says.as_ref().is_some_and(|o| lines[0].contains(o)))
            && !stderr.contains("panicked");
        if !ok {
            failures.push(format!(
                "pupil {:?}\n  want: exit 2, one line containing {:?}\n  got:  {:?}, stderr {stderr:?}",
                r.args, r.says, o.status
            ));
        }
    }
    // The quantize rows leave nothing behind; the one onto its own input leaves it whole.
    assert!(!Path::new(&f.path("out.gguf")).exists());
    assert_eq!(std::fs::read(f.path("teacher.gguf")).unwrap(), std::fs::read(distill("teacher-f16.gguf")).unwrap());
    assert!(failures.is_empty(), "{} rows failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn a_plot_path_that_cannot_be_written_fails_before_the_comparison_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let plot: PathBuf = dir.path().join("kl.svg");
    // The text is rejected after the plot file is opened: the new, empty file goes again.
    let args: Vec<String> = ["compare", "--plot", plot.to_str().unwrap(), "--text", "/nonexistent/text.txt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let o = pupil(&args, b"");
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!plot.exists(), "{} was left behind", plot.display());
}

/// Runs pupil with its stdout closed before it writes anything.
fn with_stdout_closed(args: &[&str]) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pupil");
    // Loading the model takes longer than this: its first write finds the pipe closed.
    drop(child.stdout.take());
    wait(child, &args)
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let s = distill("student-q4_0.gguf");
    let cases: [&[&str]; 4] = [
        // Streaming stops at the first piece.
        &["run", "-m", &s, "-p", "In the beginning", "-n", "64", "--temp", "0"],
        // No piece at all: only the final newline meets the closed pipe (once a panic in
        // `println!`).
        &["run", "-m", &s, "-p", "In the beginning", "-n", "0"],
        &["inspect", &s, "--json"],
        &["tokenize", "-m", &s, "In the beginning"],
    ];
    for args in cases {
        let o = with_stdout_closed(args);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(0), "pupil {args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && !stderr.contains("error"), "pupil {args:?}: {stderr}");
    }
}
