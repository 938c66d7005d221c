//! `pupil bench` end to end on a small synthetic model: the JSON it prints, its exit codes, and
//! (with feature `llama`) llama.cpp's side. No speed is asserted here: speed targets live in
//! the benchmarks.

use pupil::kernels::DType;
use pupil::model::Arch;
use pupil::model::synth::{Synth, SynthModel};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn pupil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pupil")).args(args).output().expect("run pupil")
}

/// A 2-layer Llama in Q4_0, small enough that a whole benchmark takes well under a second.
fn tiny_model(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-llama-q4_0.gguf");
    SynthModel::build(&Synth::new(Arch::Llama, DType::Q4_0), None).unwrap().write(&path).unwrap();
    path
}

/// `pupil bench -p P -n 4 -r 1 -t 1 --json` on `model`, parsed; panics with pupil's stderr
/// if it fails.
fn bench_json(model: &Path, p: &str, extra: &[&str]) -> Json {
    let mut args = vec![
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        p,
        "-n",
        "4",
        "-r",
        "1",
        "-t",
        "1",
        "--bandwidth-mib",
        "16",
        "--json",
    ];
    args.extend_from_slice(extra);
    let out = pupil(&args);
    assert!(out.status.success(), "pupil bench failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench --json prints one JSON object")
}

fn positive(r: &Json, key: &str) -> f64 {
    let v = r[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {r}"));
    assert!(v > 0.0 && v.is_finite(), "{key} = {v}");
    v
}

#[test]
fn json_has_every_required_key_with_positive_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_json(&tiny_model(dir.path()), "16", &[]);
    for key in ["pp_tok_s", "tg_tok_s", "bandwidth_gb_s", "tg_ceiling_tok_s", "model_bytes", "tg_fraction_of_ceiling"] {
        positive(&r, key);
    }
    assert_eq!((r["pp"].as_u64(), r["tg"].as_u64(), r["threads"].as_u64()), (Some(16), Some(4), Some(1)));
    assert!(r["tier"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(r["pp_stats"]["samples"].as_array().map(Vec::len), Some(1));
    // The ceiling is bandwidth over bytes per token, and an untied model reads all but its
    // embedding table.
    let per_token = positive(&r, "bytes_per_token");
    assert!(per_token < positive(&r, "model_bytes"));
    let ceiling = positive(&r, "bandwidth_gb_s") * 1e9 / per_token;
    assert!((ceiling / positive(&r, "tg_ceiling_tok_s") - 1.0).abs() < 1e-9);
    assert!(r.get("llama_pp_tok_s").is_none(), "no llama keys without --against-llama");
    // One bandwidth read before the one tg run; the ceiling is their median, here that read.
    assert_eq!(r["bandwidth_runs"].as_u64(), Some(1));
    assert_eq!(positive(&r, "bandwidth_best_gb_s"), positive(&r, "bandwidth_gb_s"));
    assert!((positive(&r, "tg_fraction_of_best_ceiling") / positive(&r, "tg_fraction_of_ceiling") - 1.0).abs() < 1e-9);
}

#[test]
fn human_output_is_a_table_with_both_tests_and_the_ceiling() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = pupil(&[
        "bench",
        "-m",
        model.to_str().unwrap(),
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "-t",
        "1",
        "--bandwidth-mib",
        "16",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["| model", "pp8", "tg2", "ceiling:", "| llama "] {
        assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
    }
}

#[test]
fn zero_tokens_skips_a_test() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_json(&tiny_model(dir.path()), "0", &[]);
    assert!(r["pp_tok_s"].is_null());
    positive(&r, "tg_tok_s");
    // Without tg, the bandwidth is read back to back, and the ceiling is still there.
    let model = tiny_model(dir.path());
    let m = model.to_str().unwrap();
    let out = pupil(&["bench", "-m", m, "-p", "8", "-n", "0", "-r", "3", "-t", "1", "--bandwidth-mib", "16", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["tg_tok_s"].is_null() && r["tg_fraction_of_ceiling"].is_null());
    assert_eq!(r["bandwidth_runs"].as_u64(), Some(5));
    assert!(positive(&r, "bandwidth_best_gb_s") >= positive(&r, "bandwidth_gb_s"));
}

#[test]
fn malformed_model_exits_with_2_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"GGUF\x03\x00\x00\x00not really a model").unwrap();
    let out = pupil(&["bench", "-m", path.to_str().unwrap(), "-p", "4", "-n", "1", "-r", "1"]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.gguf"));
}

#[test]
fn a_prompt_longer_than_the_context_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out =
        pupil(&["bench", "-m", model.to_str().unwrap(), "-p", "5000", "-n", "1", "-r", "1", "--bandwidth-mib", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("4096"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[cfg(not(feature = "llama"))]
#[test]
fn against_llama_without_the_feature_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_model(dir.path());
    let out = pupil(&["bench", "-m", model.to_str().unwrap(), "--against-llama"]);
    assert_eq!(out.status.code(), Some(2), "a flag this build cannot honour is the user's to change");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features llama") && err.contains("scripts/bench.sh"), "{err}");
}

#[cfg(feature = "llama")]
#[test]
fn against_llama_adds_llama_cpp_numbers_and_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_json(&tiny_model(dir.path()), "16", &["--against-llama"]);
    for key in ["pp_tok_s", "tg_tok_s", "llama_pp_tok_s", "llama_tg_tok_s", "pp_ratio", "tg_ratio"] {
        positive(&r, key);
    }
    assert!(r["llama_native"].is_boolean());
    assert!(r["llama_system_info"].as_str().is_some_and(|s| s.contains("CPU")), "{}", r["llama_system_info"]);
    let ratio = positive(&r, "pp_tok_s") / positive(&r, "llama_pp_tok_s");
    assert!((ratio / positive(&r, "pp_ratio") - 1.0).abs() < 1e-9);
    // A bandwidth read before each engine's tg run.
    assert_eq!(r["bandwidth_runs"].as_u64(), Some(2));
}

/// `--sequences 3`: three sequences at the depth of the prompt decode together; the report
/// gives the aggregate rate beside one sequence's, and their ratio.
#[test]
fn sequences_reports_the_aggregate_beside_one_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_json(&tiny_model(dir.path()), "16", &["--sequences", "3"]);
    let q = &r["sequences"];
    assert_eq!((q["n_seq"].as_u64(), q["depth"].as_u64(), q["n_gen"].as_u64()), (Some(3), Some(16), Some(4)));
    let (one, many) = (positive(&q["one"], "median"), positive(&q["many"], "median"));
    assert!((many / one / positive(q, "gain") - 1.0).abs() < 1e-9);
    assert!(q["llama_many"].is_null(), "no llama.cpp figure without --against-llama");
    let out = pupil(&["bench", "-m", tiny_model(dir.path()).to_str().unwrap(), "--sequences", "999"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let out = pupil(&["bench", "-m", tiny_model(dir.path()).to_str().unwrap(), "--sequences", "2", "-n", "0"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[cfg(feature = "llama")]
#[test]
fn sequences_against_llama_gives_llama_cpp_one_decode_per_step() {
    let dir = tempfile::tempdir().unwrap();
    let r = bench_json(&tiny_model(dir.path()), "16", &["--sequences", "4", "--against-llama"]);
    let q = &r["sequences"];
    for key in ["one", "many", "llama_one", "llama_many"] {
        positive(&q[key], "median");
    }
    let ratio = positive(&q["many"], "median") / positive(&q["llama_many"], "median");
    assert!((ratio / positive(q, "ratio") - 1.0).abs() < 1e-9);
}

/// `--synth`: the smallest stand-in (Gemma 3 270M's shape, every layer, llama-quantize's
/// `Q8_0`) is written once into `--synth-dir` and measured; a second run reuses the file. With
/// `-m` too, `--json` prints an array, in order, each with pupil's load time.
#[test]
fn synth_models_are_written_once_and_measured_with_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let tiny = tiny_model(dir.path());
    let args = |json: bool| {
        let mut a = vec!["bench", "--synth", "gemma3-270m:q8_0", "--synth-dir", cache.to_str().unwrap()];
        a.extend(["-m", tiny.to_str().unwrap(), "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--bandwidth-mib", "16"]);
        if json {
            a.push("--json");
        }
        pupil(&a)
    };
    let first = args(true);
    let err = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success() && err.contains("writing gemma3-270m:Q8_0"), "{err}");
    let files: Vec<_> = std::fs::read_dir(&cache).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "one file, no partial left: {files:?}");
    let r: Json = serde_json::from_slice(&first.stdout).expect("JSON");
    let rows = r.as_array().expect("several models: an array");
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["model"].as_str().unwrap().ends_with("tiny-llama-q4_0.gguf"), "-m first: {}", rows[0]["model"]);
    let synth = &rows[1];
    assert_eq!(synth["description"], "gemma3 268M Q8_0", "{synth}");
    assert!(synth["params"].as_u64().unwrap() > 260_000_000, "every layer written");
    for row in rows {
        positive(row, "load_s");
        positive(row, "tg_tok_s");
    }
    let written = std::fs::metadata(cache.join(&files[0])).unwrap().modified().unwrap();

    let second = args(false);
    let (out, err) = (String::from_utf8_lossy(&second.stdout), String::from_utf8_lossy(&second.stderr));
    assert!(second.status.success(), "{err}");
    assert!(!err.contains("writing"), "the cached file is reused: {err}");
    assert_eq!(std::fs::metadata(cache.join(&files[0])).unwrap().modified().unwrap(), written);
    assert!(out.contains("gemma3-270m:Q8_0") && out.contains("vs llama.cpp"), "a summary table: {out}");
}

#[test]
fn an_unknown_synth_model_exits_with_2_naming_the_known_ones() {
    for (spec, says) in [("llama-7b:Q4_0", "qwen2.5-1.5b"), ("llama-1b:Q9_9", "Q4_K_M"), ("llama-1b", "NAME:TYPE")] {
        let out = pupil(&["bench", "--synth", spec]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {err}");
        assert!(err.contains(says) && err.lines().count() == 1, "{spec}: {err}");
    }
}
