//! `pupil serve` started and stopped by a test: a child process on a free loopback port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// The embedded distilled student.
pub const STUDENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/distill/student-q8_0.gguf");
/// Gemma 3 270M: slow enough that a stream is still running when its client leaves.
pub const GEMMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");

/// A running `pupil serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(STUDENT, &[&["--ctx", "512"], extra].concat())
    }

    pub fn start_with(model: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pupil"))
            .args(["serve", "-m", model, "--port", "0", "-t", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("pupil serve starts");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://") {
                    let _ = tx.send(line[at..].split_whitespace().next().unwrap_or("").to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).expect("the server prints its address");
        Server { child, url, log }
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = ureq::post(&format!("{}{path}", self.url)).timeout(Duration::from_secs(60)).send_json(body.clone());
        response(r)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{path}", self.url)).timeout(Duration::from_secs(10)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// The text of a streamed completion, and whether it ended with `[DONE]`.
    pub fn stream(&self, path: &str, body: &Value) -> (String, bool) {
        let r = ureq::post(&format!("{}{path}", self.url)).timeout(Duration::from_secs(120)).send_json(body.clone()).expect("stream starts");
        read_stream(BufReader::new(r.into_reader()))
    }

    /// The server process's resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).unwrap().parse().unwrap()
    }

    pub fn metric(&self, name: &str) -> f64 {
        let (_, text) = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn response(r: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    match r {
        Ok(r) => (r.status(), r.into_json().unwrap()),
        Err(ureq::Error::Status(code, r)) => {
            let text = r.into_string().unwrap();
            (code, serde_json::from_str(&text).unwrap_or_else(|_| panic!("a non-JSON error body: {text:?}")))
        }
        Err(e) => panic!("{e}"),
    }
}

pub fn read_stream(reader: impl BufRead) -> (String, bool) {
    let mut text = String::new();
    for line in reader.lines() {
        let line = line.unwrap();
        let Some(data) = line.strip_prefix("data: ") else { continue };
        if data == "[DONE]" {
            return (text, true);
        }
        let v: Value = serde_json::from_str(data).unwrap();
        for c in v["choices"].as_array().unwrap() {
            text.push_str(c["text"].as_str().or(c["delta"]["content"].as_str()).unwrap_or(""));
        }
    }
    (text, false)
}

