//! `pupil serve` over real HTTP on loopback, with the embedded distilled student: each test
//! starts its own server on a free port and stops it.

#[path = "support/server.rs"]
mod server;

use std::io::{BufRead, BufReader};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pupil::generate::{Engine, GenerateParams, SessionOptions};
use serde_json::{Value, json};
use server::{GEMMA, STUDENT, Server, read_stream, response};

fn prompts() -> Vec<String> {
    let verses = [
        "And God said", "In the beginning", "Then said Jesus unto them", "Blessed are the", "And it came to pass",
        "The LORD is my", "And Moses went up", "Now the serpent was", "And he said unto", "For God so loved",
        "Hear, O Israel", "And the children of Israel", "Thus saith the LORD", "And David said", "Praise ye the LORD",
        "And when the day of",
    ];
    verses.iter().map(|v| v.to_string()).collect()
}

fn completion_body(prompt: &str, i: usize, stream: bool) -> Value {
    // Half greedy, half sampled with a seed of their own.
    let mut b = json!({ "prompt": prompt, "max_tokens": 24, "stream": stream, "ignore_eos": true });
    if i % 2 == 0 {
        b["temperature"] = json!(0);
    } else {
        b["temperature"] = json!(0.9);
        b["seed"] = json!(i);
    }
    b
}

#[test]
fn a_completion_is_what_a_session_generates() {
    let server = Server::start(&[]);
    let engine = Arc::new(Engine::load(STUDENT).unwrap());
    let prompt = "And God said";
    let (status, v) = server.post("/v1/completions", &json!({ "prompt": prompt, "max_tokens": 20, "temperature": 0 }));
    assert_eq!(status, 200, "{v}");
    let tokens = engine.tokenizer().encode(prompt, true, true);
    let mut session = engine.session(SessionOptions { n_ctx: Some(512), ..SessionOptions::default() });
    let done = session.generate(&tokens, &GenerateParams::greedy(20), |_| true).unwrap();
    assert_eq!(v["choices"][0]["text"], done.text);
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"], json!({ "prompt_tokens": tokens.len(), "completion_tokens": 20, "total_tokens": tokens.len() + 20 }));
    assert_eq!(server.get("/health").0, 200);
    assert_eq!(server.get("/ready").0, 200);
    let (_, models) = server.get("/v1/models");
    assert!(models.contains("student-q8_0"), "{models}");
}

#[test]
fn thirty_two_streams_on_eight_slots_each_equal_its_solo_run() {
    let server = Server::start(&["--slots", "8", "--batch", "64"]);
    let prompts = prompts();
    let solo: Vec<String> = (0..32)
        .map(|i| {
            let (s, v) = server.post("/v1/completions", &completion_body(&prompts[i % 16], i, false));
            assert_eq!(s, 200, "{v}");
            v["choices"][0]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    let url = server.url.clone();
    let together: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let (body, url) = (completion_body(&prompts[i % 16], i, true), url.clone());
                s.spawn(move || {
                    let r = ureq::post(&format!("{url}/v1/completions")).timeout(Duration::from_secs(300)).send_json(body).unwrap();
                    read_stream(BufReader::new(r.into_reader()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let same = together.iter().zip(&solo).filter(|((t, done), s)| *done && t == *s).count();
    assert_eq!(same, 32, "{together:?}\nvs\n{solo:?}");
}

#[test]
fn a_client_that_disconnects_frees_its_slot() {
    let server = Server::start_with(GEMMA, &["--slots", "1", "--ctx", "4096"]);
    let body = json!({ "prompt": "And God said", "max_tokens": 4000, "stream": true, "ignore_eos": true, "temperature": 0 });
    let r = ureq::post(&format!("{}/v1/completions", server.url)).send_json(body).unwrap();
    let mut reader = BufReader::new(r.into_reader());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("data: "), "{line}");
    assert_eq!(server.metric("pupil_requests_running"), 1.0);
    drop(reader);
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.metric("pupil_requests_running") != 0.0 {
        assert!(Instant::now() < deadline, "the slot is still held after the client left");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The one slot serves the next request.
    let (s, _) = server.post("/v1/completions", &json!({ "prompt": "x", "max_tokens": 2 }));
    assert_eq!(s, 200);
}

#[test]
fn bad_requests_get_4xx_in_openais_shape_and_the_server_keeps_serving() {
    let server = Server::start(&["--slots", "2"]);
    let long = "And God said ".repeat(400);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/v1/completions", b"{not json".to_vec(), 400),
        ("/v1/completions", b"[]".to_vec(), 400),
        ("/v1/completions", b"{\"prompt\": 7}".to_vec(), 400),
        ("/v1/completions", b"{\"prompt\": \"\xff\xfe\"}".to_vec(), 400),
        ("/v1/completions", br#"{"prompt": "x", "max_tokens": -3}"#.to_vec(), 400),
        ("/v1/completions", br#"{"prompt": "x", "max_tokens": "many"}"#.to_vec(), 400),
        ("/v1/completions", br#"{"prompt": "x", "temperature": -1}"#.to_vec(), 400),
        ("/v1/completions", br#"{"prompt": "x", "top_p": 7}"#.to_vec(), 400),
        ("/v1/completions", br#"{"prompt": "x", "logprobs": 1000}"#.to_vec(), 400),
        ("/v1/completions", br#"{"prompt": [1, -2]}"#.to_vec(), 400),
        ("/v1/completions", br#"{"prompt": [999999]}"#.to_vec(), 400),
        ("/v1/completions", json!({ "prompt": "x", "stop": vec!["a"; 5000] }).to_string().into_bytes(), 400),
        ("/v1/completions", json!({ "prompt": long }).to_string().into_bytes(), 400),
        ("/v1/completions", vec![b'['; 100_000], 400),
        ("/v1/chat/completions", br#"{"messages": []}"#.to_vec(), 400),
        ("/v1/chat/completions", br#"{"messages": "hi"}"#.to_vec(), 400),
        ("/v1/chat/completions", br#"{"messages": [{"role": "user", "content": "x"}], "n": 3}"#.to_vec(), 400),
        ("/tokenize", b"{}".to_vec(), 400),
        ("/detokenize", br#"{"tokens": [-1]}"#.to_vec(), 400),
        ("/v1/nothing", b"{}".to_vec(), 404),
    ];
    for (path, body, want) in &cases {
        let r = ureq::post(&format!("{}{path}", server.url)).set("Content-Type", "application/json").send_bytes(body);
        let (status, v) = response(r);
        assert_eq!(status, *want, "{path} {:?}: {v}", String::from_utf8_lossy(&body[..body.len().min(80)]));
        assert!(v["error"]["message"].is_string() && v["error"]["type"].is_string(), "{v}");
    }
    // A body over the limit is refused from its Content-Length, before it is sent (a client
    // that sends it all anyway may find the connection closed under it, as with any server).
    {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
        let head = format!("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{{", 5 << 20);
        c.write_all(head.as_bytes()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = vec![0; 4096];
        let n = c.read(&mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]);
        assert!(answer.starts_with("HTTP/1.1 413") && answer.contains("\"error\""), "{answer}");
    }
    // Thousands of mangled requests: all refused, none kills the server or hangs it.
    let good = br#"{"prompt": "And God said", "max_tokens": 3, "temperature": 0.5, "stop": ["x"]}"#;
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut codes = std::collections::BTreeMap::new();
    let rss_before = server.rss_kib();
    for _ in 0..2000 {
        let mut b = good.to_vec();
        for _ in 0..1 + next() % 4 {
            let at = (next() % b.len() as u64) as usize;
            b[at] = (next() % 256) as u8;
        }
        let r = ureq::post(&format!("{}/v1/completions", server.url)).send_bytes(&b);
        let status = match r {
            Ok(r) => r.status(),
            Err(ureq::Error::Status(code, _)) => code,
            Err(e) => panic!("{e}"),
        };
        assert!(status == 200 || (400..500).contains(&status), "{status} for {:?}", String::from_utf8_lossy(&b));
        *codes.entry(status).or_insert(0) += 1;
    }
    assert!(codes.get(&400).copied().unwrap_or(0) > 100, "{codes:?}");
    let grown = server.rss_kib().saturating_sub(rss_before);
    assert!(grown < 32 << 10, "resident memory grew by {grown} KiB over 2,000 requests");
    let (s, v) = server.post("/v1/completions", &json!({ "prompt": "x", "max_tokens": 2 }));
    assert_eq!(s, 200, "{v}");
}

#[test]
fn an_api_key_guards_the_api_but_not_health() {
    let server = Server::start(&["--api-key", "sesame"]);
    let body = json!({ "prompt": "x", "max_tokens": 1 });
    let (s, v) = server.post("/v1/completions", &body);
    assert_eq!((s, v["error"]["code"].as_str()), (401, Some("invalid_api_key")));
    let r = ureq::post(&format!("{}/v1/completions", server.url)).set("Authorization", "Bearer wrong").send_json(body.clone());
    assert_eq!(response(r).0, 401);
    let r = ureq::post(&format!("{}/v1/completions", server.url)).set("Authorization", "Bearer sesame").send_json(body);
    assert_eq!(response(r).0, 200);
    assert_eq!(server.get("/health").0, 200);
}

#[test]
fn sigterm_finishes_every_admitted_stream_then_exits_0() {
    let mut server = Server::start(&["--slots", "4"]);
    let url = server.url.clone();
    let streams: Vec<_> = (0..6)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let body = json!({ "prompt": "And God said", "max_tokens": 60 + i, "stream": true, "ignore_eos": true, "temperature": 0 });
                let r = ureq::post(&format!("{url}/v1/completions")).send_json(body).unwrap();
                read_stream(BufReader::new(r.into_reader()))
            })
        })
        .collect();
    // Every request is admitted (running or queued) before the signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("pupil_requests_running") + server.metric("pupil_requests_waiting") < 6.0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(5));
    }
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for s in streams {
        let (text, done) = s.join().unwrap();
        assert!(done && !text.is_empty(), "a stream was cut: {text:?}");
    }
    let status = server.child.wait().unwrap();
    assert!(status.success(), "{status}: {:?}", server.log.lock().unwrap());
}

/// The Python environment with the official `openai` client, made by `scripts/test.sh`.
const PYTHON: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/.cache/venv/bin/python");

#[test]
fn the_official_openai_client_works() {
    assert!(
        std::path::Path::new(PYTHON).is_file(),
        "{PYTHON} is missing: scripts/test.sh makes it (python3 -m venv, pip install openai)"
    );
    let server = Server::start(&["--alias", "student", "--api-key", "k"]);
    let out = Command::new(PYTHON)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/openai_client.py"))
        .args([&server.url, "k"])
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.trim() == "ok", "{stdout}\n{stderr}");
}

#[test]
fn a_client_that_never_finishes_its_headers_is_cut_off() {
    use std::io::{Read, Write};
    let server = Server::start(&["--header-timeout", "1"]);
    let mut slow = std::net::TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    slow.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf); // ends when the server closes the connection
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");
    assert_eq!(server.post("/v1/completions", &json!({ "prompt": "x", "max_tokens": 1 })).0, 200);
}
