//! `pupil run` and `pupil tokenize` end to end on Gemma 3 270M.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn gemma() -> String {
    let p = format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&p).exists(), "{p} is missing: run models/fetch-gemma3-270m.sh");
    p
}

fn pupil(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pupil");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "pupil failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn tokenize_prints_ids_with_bos_as_the_metadata_says() {
    let m = gemma();
    assert_eq!(stdout(&pupil(&["tokenize", "-m", &m, "Hello world"], None)).trim(), "2 9259 1902");
    assert_eq!(stdout(&pupil(&["tokenize", "-m", &m, "--no-bos", "Hello world"], None)).trim(), "9259 1902");
    // Special-token text is plain text unless asked for.
    let plain = stdout(&pupil(&["tokenize", "-m", &m, "--no-bos", "<start_of_turn>"], None));
    let special = stdout(&pupil(&["tokenize", "-m", &m, "--no-bos", "--parse-special", "<start_of_turn>"], None));
    assert_eq!(special.trim(), "105");
    assert!(plain.split_whitespace().count() > 1, "{plain}");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&pupil(&["tokenize", "-m", &m, "--json", "Hi"], None))).unwrap();
    assert_eq!(json[0]["id"], 2);
    assert_eq!(json[1]["piece"], "Hi");
    assert_eq!(stdout(&pupil(&["tokenize", "-m", &m, "--no-bos", "-"], Some("Hello world"))).trim(), "9259 1902");
}

#[test]
fn run_streams_only_the_continuation_and_reports_timings_on_stderr() {
    let m = gemma();
    let o = pupil(&["run", "-m", &m, "-p", "The capital of France is", "-n", "8", "--temp", "0", "-t", "2"], None);
    let text = stdout(&o);
    assert!(!text.contains("The capital of France"), "the prompt is not echoed: {text:?}");
    assert!(text.trim().len() > 3, "{text:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("generation: 8 tokens") && err.contains("time to first token"), "{err}");
    assert!(err.contains("| load: ") && !err.contains("--no-repack"), "{err}");
    // Greedy is deterministic; `-p -` reads the same prompt from stdin.
    let again =
        stdout(&pupil(&["run", "-m", &m, "-p", "-", "-n", "8", "--temp", "0"], Some("The capital of France is")));
    assert_eq!(text, again);
    // The weights as stored in the map give the same bits as the copy repacked at load.
    let o = pupil(&["run", "-m", &m, "-p", "The capital of France is", "-n", "8", "--temp", "0", "--no-repack"], None);
    assert_eq!(text, stdout(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("(--no-repack)"));
}

#[test]
fn the_same_seed_gives_the_same_text() {
    let m = gemma();
    let run = |seed: &str| {
        stdout(&pupil(&["run", "-m", &m, "-p", "Once upon a time", "-n", "12", "--temp", "1.0", "--seed", seed], None))
    };
    let a = run("7");
    assert_eq!(a, run("7"));
    assert!((1..6).map(|s| run(&s.to_string())).any(|b| b != a), "different seeds should differ somewhere");
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error_saying_by_how_much() {
    let m = gemma();
    let long = "word ".repeat(40);
    let o = pupil(&["run", "-m", &m, "-p", &long, "--ctx", "16", "-n", "4"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("more than the context of 16"), "{err}");
}

#[test]
fn chat_needs_a_template_and_uses_one_given() {
    let m = gemma();
    let o = pupil(&["run", "-m", &m, "--chat"], Some("Hi\n"));
    assert_eq!(o.status.code(), Some(2), "the base 270M model has no chat template");
    assert!(String::from_utf8_lossy(&o.stderr).contains("--chat-template"));

    let tpl = format!("{}/tests/data/chat_templates/gemma3.jinja", env!("CARGO_MANIFEST_DIR"));
    let o = pupil(
        &["run", "-m", &m, "--chat", "--chat-template", &tpl, "-n", "6", "--temp", "0"],
        Some("Hi\nWhat is 2+2?\n"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert_eq!(err.matches("generation:").count(), 2, "two turns: {err}");
}

/// The packed copies of the weights (`Q8_0` and `Q5_0` on AVX-512, read by batches of two
/// tokens or more: this prompt's prefill, and speculative verification) give the text the
/// mapped weights give: the same bits, by the kernels' canonical order.
#[test]
fn packed_weights_give_the_text_the_mapped_ones_give() {
    let m = gemma();
    let prompt = "The history of the lighthouse on the northern cape begins in 1887, when";
    let run = |no_repack: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_pupil"))
            .args(["run", "-m", &m, "-p", prompt, "-n", "24", "--temp", "0"])
            .env("PUPIL_NO_REPACK", no_repack)
            .output()
            .unwrap();
        stdout(&o)
    };
    let (packed, mapped) = (run("0"), run("1"));
    assert!(!packed.is_empty());
    assert_eq!(packed, mapped);
}
