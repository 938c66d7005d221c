//! Scale-out: two `pupil serve` replicas behind HAProxy (Debian's package) on loopback, with
//! health checks on `/ready` and least-connections balancing. One replica is drained by
//! SIGTERM under load, and no request fails.

#[path = "support/server.rs"]
mod server;

use std::io::BufReader;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use server::{STUDENT, Server, read_stream};

/// HAProxy in the foreground, killed when dropped.
struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_binary() -> &'static str {
    ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("haproxy is missing: scripts/test.sh installs it (apt-get install haproxy)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The configuration the README documents: health checks on /ready every 100 ms, a replica
/// out after one failed check, least connections, and a retry elsewhere for a request a
/// draining replica refused or a connection it closed. A check may take 2 s: with the default
/// (`inter`, 100 ms) a busy replica on a loaded 2-core machine missed it once, and with the
/// other replica draining HAProxy had no server left and answered 503 itself.
fn config(port: u16, backends: &[&str]) -> String {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, url)| format!("    server r{i} {} check\n", url.trim_start_matches("http://")))
        .collect();
    format!(
        "global\n    maxconn 512\n\
         defaults\n    mode http\n    timeout connect 2s\n    timeout client 120s\n    timeout server 120s\n    \
         retries 3\n    option redispatch 1\n    retry-on conn-failure empty-response 503\n    option http-buffer-request\n\
         frontend pupil\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
         backend replicas\n    balance leastconn\n    option httpchk GET /ready\n    \
         default-server inter 100ms fall 1 rise 2\n    timeout check 2s\n{servers}"
    )
}

#[test]
fn a_replica_drained_under_load_fails_no_request() {
    let grace = ["--slots", "2", "--drain-grace", "1"];
    let mut a = Server::start_with(STUDENT, &[&["--ctx", "512"], &grace[..]].concat());
    let b = Server::start_with(STUDENT, &[&["--ctx", "512"], &grace[..]].concat());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    let port = free_port();
    std::fs::write(&cfg, config(port, &[&a.url, &b.url])).unwrap();
    let _proxy = Haproxy(
        Command::new(haproxy_binary()).arg("-db").arg("-f").arg(&cfg).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let front = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ureq::get(&format!("{front}/health")).call().is_err() {
        assert!(Instant::now() < deadline, "haproxy did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Clients send back to back, half streamed, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let (front, stop, ok, failed) = (front.clone(), Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let stream = i % 2 == 0;
                    let body = json!({ "prompt": "And God said", "max_tokens": 40, "ignore_eos": true, "temperature": 0, "stream": stream });
                    let r = ureq::post(&format!("{front}/v1/completions")).timeout(Duration::from_secs(60)).send_json(body);
                    let good = match r {
                        Ok(r) if stream => read_stream(BufReader::new(r.into_reader())).1,
                        Ok(r) => r.into_json::<serde_json::Value>().is_ok_and(|v| v["choices"][0]["text"].is_string()),
                        Err(e) => {
                            errors.push(e.to_string());
                            false
                        }
                    };
                    if good { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
                }
                errors
            })
        })
        .collect();

    std::thread::sleep(Duration::from_secs(2));
    let served_before = ok.load(Ordering::Relaxed);
    let pid = a.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = a.child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = clients.into_iter().flat_map(|c| c.join().unwrap()).collect();

    assert!(status.success(), "the drained replica exited with {status}");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} of {} requests failed: {errors:?}", ok + failed);
    assert!(served_before > 0 && ok > served_before, "load went on through the drain: {served_before} then {ok}");
    assert!(b.metric("pupil_requests_finished_total") > 0.0);
}
