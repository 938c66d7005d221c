//! `pupil loadgen` against a `pupil serve` of the embedded student, over real loopback HTTP:
//! the test starts and stops its server, and every process it waits for has a deadline.
//! Speed is not checked here (it belongs to scripts/serve-bench.sh); counts and shapes are.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const STUDENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/distill/student-q8_0.gguf");

/// A running `pupil serve` on a free port, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pupil"))
            .args(["serve", "-m", STUDENT, "--port", "0", "-t", "1", "--slots", "4", "--ctx", "512"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pupil serve starts");
        let stderr = BufReader::new(child.stderr.take().expect("piped stderr"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://") {
                    let _ = tx.send(line[at..].split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).expect("the server prints its address");
        Server { child, url }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `pupil loadgen ARGS`, killed if it outlives `limit`.
fn loadgen(args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pupil"))
        .arg("loadgen")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pupil loadgen starts");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("pupil loadgen {args:?} ran past {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn ordered(p: &Value) {
    let (p50, p99, max) = (p["p50"].as_f64().unwrap(), p["p99"].as_f64().unwrap(), p["max"].as_f64().unwrap());
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{p}");
}

#[test]
fn loadgen_against_the_student_has_no_errors_and_sane_json() {
    let server = Server::start();
    let pid = server.child.id().to_string();
    let args = [
        "--url",
        &server.url,
        "-c",
        "4",
        "-n",
        "8",
        "--prompt-tokens",
        "48",
        "--max-tokens",
        "16",
        "--long-prompt",
        "300",
        "--solo",
        "4",
        "--server-pid",
        &pid,
        "--deadline",
        "60",
        "--json",
    ];
    let out = loadgen(&args, Duration::from_secs(90));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let r: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stderr}"));
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["cut"], 0, "{r:#}");
    assert_eq!((r["clients"].as_u64(), r["requests"].as_u64(), r["completed"].as_u64()), (Some(4), Some(8), Some(8)));
    // ignore_eos: every answer is exactly max_tokens long; every prompt exactly its length.
    assert_eq!(r["output_tokens"], 8 * 16, "{r:#}");
    assert_eq!(r["prompt_tokens"], 8 * 48, "{r:#}");
    let (out_s, total_s, wall) =
        (r["output_tok_s"].as_f64().unwrap(), r["total_tok_s"].as_f64().unwrap(), r["wall_s"].as_f64().unwrap());
    assert!(wall > 0.0 && out_s > 0.0 && total_s > out_s, "{r:#}");
    assert!((out_s * wall - 128.0).abs() < 1e-6, "{r:#}");
    ordered(&r["ttft_ms"]);
    ordered(&r["itl_ms"]);
    assert_eq!(r["ttft_ms"]["n"], 8);
    // The long prompt came through and the streams' gaps around it were seen.
    let long = &r["long_prompt"];
    assert_eq!(long["prompt_tokens"], 300, "{long:#}");
    assert!(long["error"].is_null() && long["ttft_ms"].as_f64().unwrap() > 0.0, "{long:#}");
    // pupil's answers do not depend on the load (greedy).
    assert_eq!((r["solo"]["checked"].as_u64(), r["solo"]["identical"].as_u64()), (Some(4), Some(4)), "{r:#}");
    let mem = &r["server_memory"];
    assert_eq!(mem["pid"].to_string(), pid);
    let (rss, peak) = (mem["rss_kib"].as_u64().unwrap(), mem["peak_rss_kib"].as_u64().unwrap());
    assert!(rss > 1024 && peak >= rss, "{mem}");
}

#[test]
fn loadgen_refuses_hosts_off_loopback_and_bad_flags_in_one_line() {
    for args in [
        &["--url", "http://192.0.2.1:8080", "-n", "1"][..],
        &["--url", "https://127.0.0.1:8080"],
        &["--url", "http://127.0.0.1:8080/v1"],
        &["-c", "0"],
        &["--text", "/nonexistent/text.txt"],
    ] {
        let out = loadgen(args, Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn loadgen_stops_by_its_deadline_when_the_server_never_answers() {
    // Accepts connections and reads nothing, answers nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().map_while(Result::ok) {
            held.push(conn);
        }
    });
    let start = Instant::now();
    let out = loadgen(&["--url", &url, "-c", "2", "-n", "2", "--deadline", "2"], Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(start.elapsed() < Duration::from_secs(15), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("deadline"), "{stderr}");
}
