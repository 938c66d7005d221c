//! `pupil compare` end to end on Gemma 3 270M: a model against itself, a Q8_0 teacher (made
//! from the Q4_K_M file with `pupil::quantize`) against the Q4_K_M student, the quality
//! gates' exit status, and a vocabulary mismatch.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

#[path = "support/gemma_pair.rs"]
mod gemma_pair;
use gemma_pair::{student, teacher};

/// A short text (about 60 tokens), so each comparison takes a few seconds.
fn text() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let p = Path::new(env!("CARGO_TARGET_TMPDIR")).join("compare-text.txt");
        std::fs::write(
            &p,
            "The old bridge over the river was built in 1887 from stone cut in the hills to the north. \
             For a century it carried carts, then cars, then lorries far heavier than its builders \
             imagined. When engineers finally measured it, they found it had barely moved.",
        )
        .unwrap();
        p
    })
    .clone()
}

fn compare(t: &Path, s: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["compare", "--teacher", t.to_str().unwrap(), "--student", s.to_str().unwrap()];
    let text = text();
    args.extend(["--text", text.to_str().unwrap(), "--ctx", "128", "--reps", "1"]);
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_pupil")).args(&args).output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    })
}

#[test]
fn a_model_against_itself_has_zero_kl_and_full_agreement() {
    let o = compare(&student(), &student(), &["--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&o);
    let f = &j["fidelity"];
    assert!(f["mean_kl"].as_f64().unwrap().abs() < 1e-9, "{f}");
    assert_eq!(f["top1_agreement"].as_f64(), Some(1.0));
    assert_eq!(f["top5_overlap"].as_f64(), Some(1.0));
    assert!((f["ppl_ratio"].as_f64().unwrap() - 1.0).abs() < 1e-9);
    assert!(f["positions"].as_u64().unwrap() > 40);
}

#[test]
fn q8_0_teacher_against_q4_k_m_student_is_close_but_not_equal() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("p.svg");
    let o = compare(&teacher(), &student(), &["--json", "--plot", svg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j = json(&o);
    let f = &j["fidelity"];
    let (kl, agree) = (f["mean_kl"].as_f64().unwrap(), f["top1_agreement"].as_f64().unwrap());
    assert!(kl > 0.0 && kl < 0.5, "mean KL {kl}");
    assert!((0.5..=1.0).contains(&agree), "agreement {agree}");
    for key in [
        "kl_stderr",
        "max_kl",
        "top1_stderr",
        "top5_overlap",
        "delta_p_mean",
        "delta_p_rms",
        "teacher_ppl",
        "student_ppl",
        "ppl_ratio",
        "logprob_pearson",
    ] {
        assert!(f[key].is_number(), "fidelity.{key} missing: {f}");
    }
    assert!(f["kl_percentiles"]["p99.9"].is_number() && f["kl_percentiles"]["p50"].is_number(), "{f}");
    for side in ["teacher", "student"] {
        for key in ["tg_tok_s", "pp_tok_s", "ttft_s", "load_s", "weight_bytes", "parameters"] {
            assert!(j[side][key].as_f64().is_some_and(|v| v > 0.0), "{side}.{key}: {}", j[side]);
        }
    }
    assert!(j["student"]["weight_bytes"].as_u64() < j["teacher"]["weight_bytes"].as_u64());
    assert!(j["verdict"].as_str().unwrap().starts_with("student keeps"));
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>") && svg.contains("<polyline"), "{svg}");

    // The gates: beyond the measured values they fail with status 3, report still printed;
    // short of them they pass.
    let gate = |a: f64, k: f64| {
        let o = compare(
            &teacher(),
            &student(),
            &["--json", "--fail-below-agreement", &a.to_string(), "--fail-above-kl", &k.to_string()],
        );
        (o.status.code(), json(&o)["gates"]["passed"].as_bool(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, passed, err) = gate(agree + 1e-3, kl * 2.0);
    assert_eq!((code, passed), (Some(3), Some(false)), "{err}");
    assert!(err.contains("below --fail-below-agreement"), "{err}");
    let (code, _, err) = gate(agree - 0.05, kl / 2.0);
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("above --fail-above-kl"), "{err}");
    let (code, passed, err) = gate(agree - 0.05, kl * 2.0);
    assert_eq!((code, passed), (Some(0), Some(true)), "{err}");
}

#[test]
fn human_and_markdown_reports() {
    let o = compare(&student(), &student(), &["--md"]);
    let md = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && md.contains("| mean KL (nats) |") && md.contains("| generation tok/s |"), "{md}");
    let o = compare(&student(), &student(), &[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("top-1 agreement") && text.contains("student keeps 100.0% top-1 agreement"), "{text}");
}

#[test]
fn mismatched_vocabularies_exit_2_naming_the_difference() {
    use pupil::kernels::DType;
    use pupil::model::{
        Arch,
        synth::{Synth, SynthModel},
    };
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("synth.gguf");
    SynthModel::build(&Synth { n_layer: 1, ..Synth::new(Arch::Llama, DType::Q8_0) }, None)
        .unwrap()
        .write(&other)
        .unwrap();
    let o = compare(&student(), &other, &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("the teacher has 262144 tokens, the student 1024"), "{err}");
    assert!(err.contains("first differing ids: 0: "), "{err}");
}

/// `--teacher-backend llama`: the teacher's logits and cost from llama.cpp, the student on
/// pupil. One thread: ggml's thread pool spins at every op, which crawls when other
/// processes share the cores.
#[cfg(feature = "llama")]
mod llama_teacher {
    use super::{compare, json, student};
    use std::path::Path;

    const LLAMA: &[&str] = &["--teacher-backend", "llama", "-t", "1"];

    fn with_llama<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        LLAMA.iter().copied().chain(extra.iter().copied()).collect()
    }

    /// Exit status 2 and a single line on stderr.
    fn bad_input(teacher: &Path) -> String {
        let o = compare(teacher, &student(), &with_llama(&[]));
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        eprint!("{err}");
        err
    }

    /// The same Q4_K_M file on both engines: llama.cpp's own one-token and one-batch paths
    /// differ by a mean KL of about 5e-3 on it, and pupil against llama.cpp measured 6.8e-3
    /// (top-1 52/58) on this text; over the 631 positions of the built-in text, 6.5e-3 and 95%.
    #[test]
    fn llama_cpp_teacher_against_the_same_file_on_pupil_is_close() {
        let pupil = json(&compare(&student(), &student(), &["--json"]));
        let o = compare(&student(), &student(), &with_llama(&["--json"]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j = json(&o);
        let f = &j["fidelity"];
        let (kl, agree) = (f["mean_kl"].as_f64().unwrap(), f["top1_agreement"].as_f64().unwrap());
        eprintln!("llama.cpp teacher vs pupil student: mean KL {kl:.6}, top-1 {agree:.4}, {}", f["positions"]);
        // Close, but not zero: a KL of 0 would mean the teacher was scored on pupil after all
        // (llama.cpp and pupil round differently: 6.8e-3 measured on this file).
        assert!((1e-4..=0.02).contains(&kl), "mean KL {kl}");
        assert!(agree >= 0.85, "top-1 agreement {agree}");
        assert_eq!(f["positions"], pupil["fidelity"]["positions"], "the same windows, the same tokens");
        assert_eq!(j["teacher"]["backend"], "llama.cpp");
        assert_eq!(j["student"]["backend"], "pupil");
        assert_eq!(pupil["teacher"]["backend"], "pupil");
        for key in ["tg_tok_s", "pp_tok_s", "ttft_s", "load_s", "weight_bytes", "parameters"] {
            assert!(j["teacher"][key].as_f64().is_some_and(|v| v > 0.0), "teacher.{key}: {}", j["teacher"]);
        }
        for key in ["weight_bytes", "parameters"] {
            assert_eq!(j["teacher"][key], j["student"][key], "{key}: llama.cpp and pupil count the same tensors");
        }

        let o = compare(&student(), &student(), &with_llama(&[]));
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success() && text.contains("teacher on llama.cpp"), "{text}");
        assert!(text.lines().any(|l| l.split_whitespace().eq(["engine", "llama.cpp", "pupil"])), "{text}");
    }

    #[test]
    fn a_bad_teacher_file_on_llama_cpp_exits_2_in_one_line() {
        use pupil::gguf::{GgufFile, GgufWriter, Value};
        let dir = tempfile::tempdir().unwrap();

        // A file that is not GGUF fails in pupil's reader, which reads the teacher's
        // vocabulary, before llama.cpp is asked: the message must still name it.
        let junk = dir.path().join("junk.gguf");
        std::fs::write(&junk, b"GGUF but not really a model file").unwrap();
        let err = bad_input(&junk);
        assert!(err.contains("junk.gguf"), "{err}");

        // The student's vocabulary under an architecture neither engine knows: pupil reads the
        // vocabulary without knowing the architecture, llama.cpp refuses the file.
        let unknown = dir.path().join("unknown-arch.gguf");
        let s = GgufFile::open(student()).unwrap();
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("no-such-arch".into()));
        for (k, v) in s.metadata().iter().filter(|(k, _)| k.starts_with("tokenizer.")) {
            w.add(k.clone(), v.clone());
        }
        w.write_file(&unknown).unwrap();
        let err = bad_input(&unknown);
        assert!(err.contains("llama.cpp cannot load") && err.contains("(architecture \"no-such-arch\")"), "{err}");

        // A model llama.cpp runs, with another vocabulary: the check still applies.
        use pupil::kernels::DType;
        use pupil::model::{
            Arch,
            synth::{Synth, SynthModel},
        };
        let other = dir.path().join("synth.gguf");
        SynthModel::build(&Synth { n_layer: 1, ..Synth::new(Arch::Llama, DType::Q8_0) }, None)
            .unwrap()
            .write(&other)
            .unwrap();
        let err = bad_input(&other);
        assert!(err.contains("the teacher has 1024 tokens, the student 262144"), "{err}");
    }
}

#[cfg(not(feature = "llama"))]
#[test]
fn the_llama_teacher_backend_without_the_feature_exits_2_in_one_line() {
    let o = compare(&student(), &student(), &["--teacher-backend", "llama"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("built without the llama feature; rebuild with --features llama"), "{err}");
}
