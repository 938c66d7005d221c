//! `pupil compare --generate` (issue 14) on the embedded distilled pair: each model writes its
//! own continuation of each prompt and both score both. A model against itself writes the same
//! text and grades it the same; the distilled student is graded above the control; llama.cpp
//! scores the teacher's text as pupil does; `--fail-below-grade` gates; the SVG has the
//! parting histogram.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pair(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/distill").join(name)
}

/// The first verse of the first `n` held-out chapters, as JSON Lines.
fn prompts(dir: &Path, n: usize) -> PathBuf {
    let text = std::fs::read_to_string(pair("heldout.txt")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    // A heading (`Genesis 20`, `1 Kings 3`: a few words ending in a number), then verse 1.
    let heading = |l: &str| {
        l.split_whitespace().count() <= 4 && l.rsplit(' ').next().is_some_and(|w| w.bytes().all(|b| b.is_ascii_digit()))
    };
    for w in lines.windows(2).filter(|w| heading(w[0]) && w[1].starts_with("1 ")).take(n) {
        out.push_str(&serde_json::json!({ "prompt": format!("{}\n{}\n", w[0], w[1]) }).to_string());
        out.push('\n');
    }
    assert_eq!(out.lines().count(), n);
    let p = dir.join("prompts.jsonl");
    std::fs::write(&p, out).unwrap();
    p
}

/// A short text for the teacher-forced part, so each run takes seconds.
fn short_text(dir: &Path) -> PathBuf {
    let p = dir.join("short.txt");
    let text: String = std::fs::read_to_string(pair("heldout.txt")).unwrap().chars().take(600).collect();
    std::fs::write(&p, text).unwrap();
    p
}

fn compare(teacher: &Path, student: &Path, dir: &Path, extra: &[&str]) -> Output {
    let (text, prompts) = (short_text(dir), dir.join("prompts.jsonl"));
    let mut args =
        vec!["compare", "--generate", "--teacher", teacher.to_str().unwrap(), "--student", student.to_str().unwrap()];
    args.extend(["--text", text.to_str().unwrap(), "--prompts", prompts.to_str().unwrap(), "--reps", "1", "-t", "2"]);
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_pupil")).args(&args).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    })
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn a_model_against_itself_writes_the_same_text_and_grades_it_the_same() {
    let dir = tempfile::tempdir().unwrap();
    prompts(dir.path(), 4);
    let s = pair("student-q4_0.gguf");
    for decoding in [&["-n", "24"][..], &["-n", "24", "--temp", "0.9", "--seed", "7"]] {
        let j = json(&compare(&s, &s, dir.path(), &[decoding, &["--json"]].concat()));
        let q = &j["sequences"];
        assert_eq!(q["prompts"], 4);
        for p in q["per_prompt"].as_array().unwrap() {
            assert_eq!(p["student"]["tokens"], p["teacher"]["tokens"], "{p}");
            assert!(p["part_at"].is_null(), "{p}");
            assert!(!p["student"]["tokens"].as_array().unwrap().is_empty());
            for along in ["on_student", "on_teacher"] {
                let a = &p[along];
                assert_eq!(f(&a["kl"]), 0.0, "{along}: {a}");
                assert_eq!(a["teacher_logp"], a["student_logp"], "{along}: {a}");
                assert_eq!(f(&a["top1_agreement"]), 1.0);
            }
        }
        assert_eq!(f(&q["parting"]["never"]), 1.0);
        assert!(q["parting"]["median"].is_null(), "never parting has no median index: {}", q["parting"]);
        assert_eq!(q["teacher_on_student"], q["teacher_on_teacher"]);
        assert_eq!(f(&q["grade_gap"]["mean"]), 0.0);
        assert_eq!(f(&q["kl_gap"]["mean"]), 0.0);
        assert!(f(&q["teacher_on_student"]["mean"]) < 0.0);
        // The teacher-forced part is reported beside it.
        assert_eq!(f(&j["fidelity"]["mean_kl"]), 0.0);
    }
}

#[test]
fn the_teacher_grades_the_distilled_student_above_the_control() {
    // The control is the student's network, seed and batches trained on the text alone, with
    // no teacher (models/distill/README.md): the teacher must find the distilled student's
    // own writing likelier, and follow it more closely.
    let dir = tempfile::tempdir().unwrap();
    prompts(dir.path(), 32);
    let t = pair("teacher-f16.gguf");
    let svg = dir.path().join("seq.svg");
    let distilled =
        json(&compare(&t, &pair("student-q4_0.gguf"), dir.path(), &["-n", "48", "--json", "--plot", svg.to_str().unwrap()]));
    let control = json(&compare(&t, &pair("control-q4_0.gguf"), dir.path(), &["-n", "48", "--json"]));
    let (d, c) = (&distilled["sequences"], &control["sequences"]);
    eprintln!(
        "grade: distilled {} vs control {}; gap {} vs {}; on-policy KL {} vs {}",
        d["teacher_on_student"], c["teacher_on_student"], d["grade_gap"], c["grade_gap"], d["kl_on_student"], c["kl_on_student"]
    );
    // The same teacher writes the same text in both runs.
    assert_eq!(d["teacher_on_teacher"], c["teacher_on_teacher"]);
    let (md, sed) = (f(&d["teacher_on_student"]["mean"]), f(&d["teacher_on_student"]["se"]));
    let (mc, sec) = (f(&c["teacher_on_student"]["mean"]), f(&c["teacher_on_student"]["se"]));
    assert!(md > mc, "the teacher grades the distilled student at {md:.3} ± {sed:.3}, the control at {mc:.3} ± {sec:.3} nats/token");
    let (kd, kc) = (f(&d["kl_on_student"]["mean"]), f(&c["kl_on_student"]["mean"]));
    assert!(kd < 0.7 * kc, "on-policy KL: distilled {kd:.4}, control {kc:.4}");
    // A student is graded below the teacher's own text, and they part somewhere.
    assert!(f(&d["grade_gap"]["mean"]) < 0.0, "{}", d["grade_gap"]);
    assert!(f(&d["parting"]["never"]) < 1.0);
    for who in ["teacher_cost", "student_cost"] {
        assert!(f(&d[who]["decode_tok_s"]) > 0.0 && d[who]["tokens"].as_u64().unwrap() > 32, "{}", d[who]);
    }
    assert!(distilled["verdict"].as_str().unwrap().contains("on-policy KL"), "{}", distilled["verdict"]);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("first token where student and teacher part") && svg.contains(">never<"), "{svg}");

    // The gate: the distilled student's grade passes a bar below it and fails one above it.
    let pass = format!("{:.3}", md - 0.5);
    let fail = format!("{:.3}", (md + 0.05).min(0.0));
    let o = compare(&t, &pair("student-q4_0.gguf"), dir.path(), &["-n", "48", "--fail-below-grade", &pass]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("sequence level: 32 prompts") && text.contains("grade gap"), "{text}");
    let o = compare(&t, &pair("student-q4_0.gguf"), dir.path(), &["-n", "48", "--fail-below-grade", &fail]);
    assert_eq!(o.status.code(), Some(3), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--fail-below-grade"));
}

#[test]
fn draft_speedup_and_chat_prompts() {
    let dir = tempfile::tempdir().unwrap();
    prompts(dir.path(), 3);
    let (t, s) = (pair("teacher-f16.gguf"), pair("student-q4_0.gguf"));
    let j = json(&compare(&t, &s, dir.path(), &["-n", "32", "--draft", "--draft-max", "3", "--json"]));
    let d = &j["sequences"]["draft"];
    assert_eq!(d["draft_max"], 3);
    assert!((0.0..=1.0).contains(&f(&d["acceptance"])) && f(&d["acceptance"]) > 0.2, "{d}");
    assert!(f(&d["teacher_tok_s"]) > 0.0 && f(&d["speculative_tok_s"]) > 0.0, "{d}");
    // The pair has no chat template: conversations are rendered with ChatML.
    let chats = dir.path().join("chats.jsonl");
    std::fs::write(&chats, "{\"messages\": [{\"role\": \"system\", \"content\": \"Answer.\"}, {\"role\": \"user\", \"content\": \"Who went to Gerar?\"}]}\n").unwrap();
    let text = short_text(dir.path());
    let o = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(["compare", "--generate", "--prompts", chats.to_str().unwrap(), "--text", text.to_str().unwrap()])
        .args(["--teacher", t.to_str().unwrap(), "--student", s.to_str().unwrap(), "-n", "8", "--reps", "1", "--json"])
        .output()
        .unwrap();
    let j = json(&o);
    let p = &j["sequences"]["per_prompt"][0];
    assert!(p["prompt_tokens"].as_u64().unwrap() > 10, "{p}");
    assert_eq!(p["prompt"], "Who went to Gerar?");
}

/// With no arguments but `--generate`, the embedded pair on its built-in prompts: the first
/// verse of each held-out chapter.
#[test]
fn with_no_arguments_the_embedded_pair_on_the_first_verses() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(["compare", "--generate", "-n", "16", "--reps", "1", "--json"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let j = json(&o);
    let q = &j["sequences"];
    assert_eq!(q["prompts"], 59, "one prompt per held-out chapter");
    assert_eq!(q["n_predict"], 16);
    assert!(
        q["per_prompt"][0]["prompt"].as_str().unwrap().starts_with("Genesis 20 1 And Abraham"),
        "{}",
        q["per_prompt"][0]
    );
    assert!(f(&q["kl_on_student"]["mean"]) > 0.0 && f(&q["kl_on_teacher"]["mean"]) > 0.0);
    assert!(j["fidelity"]["positions"].as_u64().unwrap() > 50_000);
}

/// llama.cpp scores the teacher's text as pupil does (issue 14): the same F16 teacher, on
/// each engine, greedy.
#[cfg(feature = "llama")]
#[test]
fn llama_cpp_grades_the_teachers_text_as_pupil_does() {
    let dir = tempfile::tempdir().unwrap();
    prompts(dir.path(), 6);
    let (t, s) = (pair("teacher-f16.gguf"), pair("student-q4_0.gguf"));
    let pupil = json(&compare(&t, &s, dir.path(), &["-n", "32", "--json"]));
    let llama = json(&compare(&t, &s, dir.path(), &["-n", "32", "--json", "--teacher-backend", "llama"]));
    let (pp, lp) =
        (pupil["sequences"]["per_prompt"].as_array().unwrap(), llama["sequences"]["per_prompt"].as_array().unwrap());
    let mut same = 0;
    for (a, b) in pp.iter().zip(lp) {
        // The student runs on pupil in both: its text is the same.
        assert_eq!(a["student"]["tokens"], b["student"]["tokens"]);
        let (x, y) = (f(&a["on_student"]["teacher_logp"]), f(&b["on_student"]["teacher_logp"]));
        assert!((x - y).abs() < 2e-3, "the teacher's grade of the same student text: pupil {x}, llama.cpp {y}");
        if a["teacher"]["tokens"] == b["teacher"]["tokens"] {
            same += 1;
            let (x, y) = (f(&a["on_teacher"]["teacher_logp"]), f(&b["on_teacher"]["teacher_logp"]));
            assert!((x - y).abs() < 2e-3, "the teacher's own text: pupil {x}, llama.cpp {y}");
        }
    }
    // The two engines' logits agree to KL ~1e-7 on this teacher: greedy text parts rarely.
    assert!(same >= 4, "the teacher wrote the same text on both engines for {same} of 6 prompts");
}
