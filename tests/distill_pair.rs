//! The embedded distilled pair (`models/distill/`): what it is (a llama teacher and its
//! students 3–6× smaller, at most 40 MB together), that `pupil compare` with no arguments
//! scores it, that llama.cpp computes the same logits from the same files, and that the
//! student drafts losslessly for the teacher.

#[cfg(feature = "llama")]
mod support;

use pupil::generate::{Engine, GenerateParams, SessionOptions, SpeculativeSession};
use pupil::gguf::GgufFile;
use pupil::model::{Arch, Model};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn pair(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/distill").join(name);
    assert!(p.exists(), "{} is missing: it is committed (models/distill/make.sh rebuilds it)", p.display());
    p
}

const TEACHER: &str = "teacher-f16.gguf";
const STUDENTS: [&str; 2] = ["student-q8_0.gguf", "student-q4_0.gguf"];

fn params(f: &GgufFile) -> u64 {
    f.tensors().iter().map(|t| t.n_elements()).sum()
}

#[test]
fn the_pair_is_a_llama_teacher_and_students_three_to_six_times_smaller() {
    let t = Model::open(pair(TEACHER)).unwrap();
    let mut bytes = std::fs::metadata(pair(TEACHER)).unwrap().len();
    assert_eq!(t.config().arch, Arch::Llama);
    let pt = params(t.file());
    assert!((10_000_000..=30_000_000).contains(&pt), "teacher has {pt} parameters");
    for s in STUDENTS {
        let m = Model::open(pair(s)).unwrap();
        bytes += std::fs::metadata(pair(s)).unwrap().len();
        let ratio = pt as f64 / params(m.file()) as f64;
        assert!((3.0..=6.0).contains(&ratio), "{s}: teacher/student parameters {ratio:.2}");
        assert_eq!(m.config().arch, Arch::Llama);
    }
    assert!(bytes <= 40_000_000, "the pair takes {bytes} bytes");
}

#[test]
fn pupil_compare_with_no_arguments_scores_the_embedded_pair() {
    // From a directory that is not the checkout: the pair is found all the same.
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(["compare", "--json", "--reps", "1"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &j["fidelity"];
    let (kl, top1, n) =
        (f["mean_kl"].as_f64().unwrap(), f["top1_agreement"].as_f64().unwrap(), f["positions"].as_u64().unwrap());
    // The student follows its teacher (models/distill/README.md: KL 0.28, agreement 68%),
    // closer than the same model trained on the text alone (KL 0.47, 63%) and far closer than
    // an untrained or unrelated one (KL of several nats), but not exactly.
    assert!(n > 50_000, "{n} positions: the whole held-out text is scored");
    assert!(kl > 0.05 && kl < 0.4, "mean KL {kl}");
    assert!(top1 > 0.6 && top1 < 0.9, "top-1 agreement {top1}");
    let accept = f["sampled_acceptance"].as_f64().unwrap();
    assert!(accept > 0.6 && accept < 0.95, "expected acceptance of sampled drafts {accept}");
    let (tb, sb) = (j["teacher"]["weight_bytes"].as_u64().unwrap(), j["student"]["weight_bytes"].as_u64().unwrap());
    assert!(sb * 6 < tb, "student {sb} bytes, teacher {tb}");
    // The text report carries the verdict (on a short text, to keep the test quick).
    let short = dir.path().join("short.txt");
    let text: String = std::fs::read_to_string(pair("heldout.txt")).unwrap().chars().take(2000).collect();
    std::fs::write(&short, text).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(["compare", "--reps", "1", "--text", short.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("student keeps") && out.contains("draft acceptance"), "{out}");
}

#[test]
fn compare_needs_both_models_or_neither() {
    let o = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .args(["compare", "--teacher", pair(TEACHER).to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--student"));
}

#[test]
fn the_student_drafts_losslessly_for_the_teacher() {
    let t = Arc::new(Engine::load(pair(TEACHER)).unwrap());
    let opts = || SessionOptions { n_ctx: Some(256), ..SessionOptions::default() };
    let params = GenerateParams::greedy(48);
    let (mut drafted, mut accepted) = (0, 0);
    // The teacher's own greedy continuations, once per prompt.
    let plain: Vec<_> = ["In the beginning", "And Jesus answered and said unto them,", "Psalms 23\n1 The LORD"]
        .map(|prompt| {
            let tokens = t.tokenizer().encode(prompt, true, false);
            let plain = t.session(opts()).generate(&tokens, &params, |_| true).unwrap();
            (prompt, tokens, plain)
        })
        .into();
    for s in STUDENTS {
        let d = Arc::new(Engine::load(pair(s)).unwrap());
        for (prompt, tokens, plain) in &plain {
            for k in [2, 6] {
                let mut spec = SpeculativeSession::new(t.session(opts()), d.session(opts()), k).unwrap();
                let done = spec.generate(tokens, &params, |_| true).unwrap();
                assert_eq!(done.completion.tokens, plain.tokens, "{s}, K = {k}, {prompt:?}");
                drafted += done.stats.drafted;
                accepted += done.stats.accepted;
            }
        }
    }
    let rate = accepted as f64 / drafted as f64;
    println!("acceptance {accepted}/{drafted} = {rate:.3}");
    assert!(rate > 0.3, "a distilled student's drafts are mostly accepted: {rate}");
}

/// llama.cpp runs the same files: the teacher (F16) to float precision, the students within
/// the rounding their 8-bit activations bring.
#[cfg(feature = "llama")]
#[test]
fn llama_cpp_computes_the_same_logits_from_the_pair() {
    use pupil::model::KvType;
    use pupil::tokenizer::Tokenizer;
    // The first 4 KB of the held-out text (ASCII) are over 512 tokens: enough, without
    // tokenizing all of it twice per file.
    let text = std::fs::read_to_string(pair("heldout.txt")).unwrap();
    let text = &text[..4096];
    for (name, max_kl) in [(TEACHER, 1e-6), (STUDENTS[0], 1e-4), (STUDENTS[1], 1e-4)] {
        let theirs_model = support::load(&pair(name));
        let mut tokens = support::tokenize(&theirs_model, text);
        tokens.truncate(512);
        let theirs = support::logits(&theirs_model, &[&tokens]);
        drop(theirs_model);
        let model = Model::open(pair(name)).unwrap();
        assert_eq!(Tokenizer::from_gguf(model.file()).unwrap().encode(text, true, false)[..512], tokens[..]);
        let ours = support::pupil_logits(&model, &tokens, KvType::F16);
        let nv = model.config().n_vocab;
        let s = support::compare(&theirs, &ours, nv);
        println!(
            "{name}: KL mean {:.3e} max {:.3e}, top-1 {:.2}%, RMS {:.3}%",
            s.kl_mean,
            s.kl_max,
            100.0 * s.top1,
            s.rms_pct()
        );
        assert!(s.kl_mean <= max_kl && s.top1 >= 0.98, "{name}: {s:?}");
    }
}
