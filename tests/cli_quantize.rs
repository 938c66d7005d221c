//! `pupil quantize` end to end on a small synthetic model: the output loads and says what it
//! is, re-quantizing warns or is refused, and mistakes get clear errors and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pupil::kernels::DType;
use pupil::model::synth::{Synth, SynthModel};
use pupil::model::{Arch, Model};

fn pupil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pupil")).args(args).output().expect("run pupil")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A 2-layer F32 Llama.
fn f32_model(dir: &Path) -> PathBuf {
    let path = dir.join("f32.gguf");
    SynthModel::build(&Synth::new(Arch::Llama, DType::F32), None).unwrap().write(&path).unwrap();
    path
}

fn inspect_file_type(path: &Path) -> String {
    let out = pupil(&["inspect", "--json", s(path)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    r["file_type"]["name"].as_str().unwrap().to_owned()
}

#[test]
fn q4_k_m_output_loads_and_inspect_names_its_file_type() {
    let dir = tempfile::tempdir().unwrap();
    let input = f32_model(dir.path());
    let output = dir.path().join("q4_k_m.gguf");
    let out = pupil(&["quantize", s(&input), s(&output), "q4_k_m"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(summary.contains("Q4_K_M") && summary.contains("bpw"), "{summary}");
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));

    let m = Model::open(&output).unwrap();
    assert_eq!(m.config().n_layer, 2);
    assert_eq!(inspect_file_type(&output), "Q4_K_M");
    assert!(std::fs::metadata(&output).unwrap().len() < std::fs::metadata(&input).unwrap().len() / 4);
}

#[test]
fn requantizing_is_refused_without_the_flag_and_warns_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = f32_model(dir.path());
    let q8 = dir.path().join("q8_0.gguf");
    assert!(pupil(&["quantize", s(&input), s(&q8), "Q8_0"]).status.success());

    let q4 = dir.path().join("q4_0.gguf");
    let refused = pupil(&["quantize", s(&q8), s(&q4), "Q4_0"]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("--allow-requantize"), "{}", stderr(&refused));
    assert!(!q4.exists(), "nothing is written when refused");

    let done = pupil(&["quantize", s(&q8), s(&q4), "Q4_0", "--allow-requantize"]);
    assert!(done.status.success(), "{}", stderr(&done));
    assert!(stderr(&done).contains("warning:") && stderr(&done).contains("loses precision"), "{}", stderr(&done));
    assert_eq!(inspect_file_type(&q4), "Q4_0");
    Model::open(&q4).unwrap();
}

#[test]
fn mistakes_exit_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = f32_model(dir.path());
    let output = dir.path().join("out.gguf");

    let bad_type = pupil(&["quantize", s(&input), s(&output), "Q4_K_X"]);
    assert_eq!(bad_type.status.code(), Some(2));
    let e = stderr(&bad_type);
    assert!(e.contains("unknown quantization type 'Q4_K_X'") && e.contains("Q4_K_M") && e.contains("Q8_0"), "{e}");

    let iq = pupil(&["quantize", s(&input), s(&output), "IQ2_XXS"]);
    assert_eq!(iq.status.code(), Some(2), "{}", stderr(&iq));

    let missing = dir.path().join("missing.gguf");
    let no_input = pupil(&["quantize", s(&missing), s(&output), "Q8_0"]);
    assert_eq!(no_input.status.code(), Some(2));
    assert!(stderr(&no_input).contains("missing.gguf"), "{}", stderr(&no_input));

    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"not a gguf file at all").unwrap();
    assert_eq!(pupil(&["quantize", s(&junk), s(&output), "Q8_0"]).status.code(), Some(2));

    let unwritable = dir.path().join("no/such/dir/out.gguf");
    let no_output = pupil(&["quantize", s(&input), s(&unwritable), "Q8_0"]);
    // A path the user can fix is bad input (issue 10), not a failure while running.
    assert_eq!(no_output.status.code(), Some(2));
    assert!(stderr(&no_output).contains("no/such/dir/out.gguf"), "{}", stderr(&no_output));

    let same = pupil(&["quantize", s(&input), s(&input), "Q8_0"]);
    assert_eq!(same.status.code(), Some(2));
    assert!(stderr(&same).contains("is the input file"), "{}", stderr(&same));
    assert!(!output.exists());
}

#[test]
fn help_shows_an_example_and_the_types() {
    let out = pupil(&["quantize", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("pupil quantize model-f16.gguf model-q4_k_m.gguf Q4_K_M") && help.contains("Q5_K_S"),
        "{help}"
    );
}
