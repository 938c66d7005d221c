//! `pupil bench` and `pupil compare` time generation by one definition (`runner::speed`: tg
//! is n single-token decode steps from an empty cache, after one warm-up round, reported as
//! the median of the repetitions). Before they shared it, `compare` decoded after its
//! 128-token prompt, with no warm-up, and took the upper middle value.
//!
//! The first test checks that both report the same measurement, what was run, not how fast:
//! steps, prompt, repetitions, the median of the samples. Whether the two also agree in time
//! is a benchmark, not a test (timings on a shared 2-core machine swing by 20% between runs):
//! `cargo test --release --test speed_agreement -- --ignored` runs it, on a quiet machine.
//!
//! A file of its own, so that no other test of the same binary runs beside it and takes its
//! cores.

use serde_json::Value as Json;
use std::path::Path;
use std::process::Command;

fn pupil_json(args: &[&str]) -> Json {
    let out = Command::new(env!("CARGO_BIN_EXE_pupil")).args(args).output().expect("run pupil");
    assert!(out.status.success(), "pupil {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

/// The median and the fastest repetition of tg in a report (`bench`'s, or one model's side of
/// `compare`'s), tokens/s.
fn tg(r: &Json) -> (f64, f64) {
    let median = r["tg_tok_s"].as_f64().unwrap_or_else(|| panic!("no tg_tok_s in {r}"));
    let max = r["tg_stats"]["max"].as_f64().unwrap_or_else(|| panic!("no tg_stats.max in {r}"));
    assert!(median > 0.0 && median.is_finite() && max >= median, "tg {median}, fastest {max}");
    (median, max)
}

/// `pupil bench` on model `m` as `compare` measures by default (a 128-token prompt, 32 decode
/// steps), on one thread, with `reps` repetitions.
fn bench_json(m: &str, reps: &str) -> Json {
    pupil_json(&["bench", "-m", m, "-p", "128", "-n", "32", "-r", reps, "-t", "1", "--bandwidth-mib", "16", "--json"])
}

/// The embedded pair's paths, and a short text to compare them on (scoring is not what is
/// measured here), kept while this lives.
struct Pair {
    teacher: String,
    student: String,
    text: String,
    _dir: tempfile::TempDir,
}

impl Pair {
    fn new() -> Pair {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/distill");
        let path = |name: &str| dir.join(name).to_str().unwrap().to_owned();
        let tmp = tempfile::tempdir().unwrap();
        let heldout = std::fs::read_to_string(dir.join("heldout.txt")).unwrap();
        let text = tmp.path().join("text.txt");
        std::fs::write(&text, heldout.chars().take(1500).collect::<String>()).unwrap();
        let text = text.to_str().unwrap().to_owned();
        Pair { teacher: path("teacher-f16.gguf"), student: path("student-q4_0.gguf"), text, _dir: tmp }
    }
}

/// Both commands, on the same model and threads, describe the same measurement: the same
/// decode steps, prompt tokens and repetitions, every repetition kept, and the median taken
/// of them.
#[test]
fn bench_and_compare_measure_tg_the_same_way() {
    let pair = Pair::new();
    let (t, s, x) = (pair.teacher.as_str(), pair.student.as_str(), pair.text.as_str());

    let c = pupil_json(&["compare", "--teacher", t, "--student", s, "--text", x, "--reps", "4", "-t", "1", "--json"]);
    for (who, m) in [("teacher", t), ("student", s)] {
        let side = &c[who];
        let (steps, prompt, reps) =
            (side["tg_steps"].as_u64(), side["pp_tokens"].as_u64(), side["repetitions"].as_u64());
        assert_eq!((steps, prompt, reps), (Some(32), Some(128), Some(4)), "{who}: compare's plan in {side}");
        let b = bench_json(m, "4");
        assert_eq!((b["tg"].as_u64(), b["pp"].as_u64(), b["repetitions"].as_u64()), (steps, prompt, reps), "{who}");
        for r in [side, &b] {
            let stats = &r["tg_stats"];
            let mut samples: Vec<f64> =
                stats["samples"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            assert_eq!(samples.len(), 4, "{who}: every repetition kept, the warm-up not: {stats}");
            samples.sort_by(f64::total_cmp);
            let median = (samples[1] + samples[2]) / 2.0;
            let (reported, _) = tg(r);
            assert!((reported - median).abs() <= 1e-9 * median, "{who}: tg {reported} is not the median of {stats}");
        }
    }
}

/// Rounds of runs of each command in the timing benchmark.
const ROUNDS: usize = 5;

/// Each command runs [`ROUNDS`] times, interleaved, each run 10 repetitions after its warm-up.
/// Other processes on a shared machine only ever slow a repetition down, and on a loaded one
/// (measured while writing this: load 4-6 on 2 cores) whole runs of either command come out
/// 2-20× slow, so what is compared is the fastest repetition of each command over all its
/// runs: the least disturbed measurement of the same quantity. `compare` measures 32 decode
/// steps after a 128-token prompt (its defaults), so `bench` runs `-p 128 -n 32`; the
/// medians are printed.
#[test]
#[ignore = "a timing benchmark: run it with --ignored on a quiet machine"]
fn bench_and_compare_report_the_same_tg_for_the_same_model_and_threads() {
    let pair = Pair::new();
    let (t, s, x) = (pair.teacher.as_str(), pair.student.as_str(), pair.text.as_str());

    let bench = |m: &str| tg(&bench_json(m, "10"));
    let (mut from_bench, mut from_compare) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..ROUNDS {
        from_bench[0].push(bench(t));
        from_bench[1].push(bench(s));
        let r =
            pupil_json(&["compare", "--teacher", t, "--student", s, "--text", x, "--reps", "10", "-t", "1", "--json"]);
        from_compare[0].push(tg(&r["teacher"]));
        from_compare[1].push(tg(&r["student"]));
    }
    let fastest = |runs: &[(f64, f64)]| runs.iter().map(|r| r.1).fold(0.0, f64::max);
    let medians = |runs: &[(f64, f64)]| runs.iter().map(|r| format!("{:.0}", r.0)).collect::<Vec<_>>().join(" ");
    for (i, who) in ["teacher", "student"].into_iter().enumerate() {
        let (b, c) = (fastest(&from_bench[i]), fastest(&from_compare[i]));
        eprintln!(
            "{who}: tg32 fastest repetition: bench {b:.0} tok/s, compare {c:.0} tok/s, compare/bench {:.3} \
             (medians of the runs: bench {}, compare {})",
            c / b,
            medians(&from_bench[i]),
            medians(&from_compare[i]),
        );
        assert!((0.85..=1.15).contains(&(c / b)), "{who}: compare's tg {c:.0} tok/s vs bench's {b:.0} tok/s");
    }
}
