//! Small helpers for printing: human-readable sizes and closed pipes.

use std::io;

/// Whether an error is a closed stdout (`pupil inspect x | head`): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
}

/// `253.11 MB`, decimal units as llama.cpp prints file sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.2} {}", UNITS[unit]) }
}

/// `268.10M`: a parameter count in the unit llama.cpp's size labels use.
pub fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.2}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}M", n as f64 / 1e6),
        _ => format!("{:.2}B", n as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_read_like_llama_cpp() {
        assert_eq!(super::bytes(999), "999 B");
        assert_eq!(super::bytes(253_113_024), "253.11 MB");
        assert_eq!(super::count(268_098_176), "268.10M");
        assert_eq!(super::count(1_500_000_000), "1.50B");
    }
}

/// Name `path` in an error, unless the error already does (I/O errors of the GGUF reader
/// carry their path).
pub fn in_file<E>(path: &std::path::Path) -> impl FnOnce(E) -> anyhow::Error + '_
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| {
        let name = path.display().to_string();
        if e.to_string().contains(&name) { anyhow::Error::new(e) } else { anyhow::Error::new(e).context(name) }
    }
}
