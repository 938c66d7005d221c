//! Small helpers for printing: human-readable sizes and closed pipes.

use std::io;

/// Whether an error is a closed stdout (`pupil inspect x | head`): not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            // serde_json's error does not give its I/O error as its source.
            || c.downcast_ref::<serde_json::Error>().is_some_and(|j| j.io_error_kind() == Some(io::ErrorKind::BrokenPipe))
    })
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

/// A file a command writes when it is done (`compare --plot`), opened when it starts, so that
/// a path that cannot be written fails in a second rather than after minutes of work. If
/// the command fails before writing it, a file this created is removed again.
pub struct LateFile {
    path: std::path::PathBuf,
    file: std::fs::File,
    /// Whether the file did not exist before (and so is removed if never written).
    created: bool,
    written: bool,
}

impl LateFile {
    /// Opens `path` for writing without truncating it; `flag` names it in errors.
    pub fn open(flag: &str, path: &std::path::Path) -> Result<LateFile, super::error::BadInput> {
        let bad = |e| super::error::BadInput::file(flag, path, e);
        let created = !path.exists();
        let file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path).map_err(bad)?;
        Ok(LateFile { path: path.to_path_buf(), file, created, written: false })
    }

    /// Replaces the file's contents with `bytes`.
    pub fn write(mut self, bytes: &[u8]) -> io::Result<()> {
        use std::io::Write;
        self.written = true;
        // Not for a device or a FIFO (`--plot /dev/stdout`), which cannot be truncated.
        if self.file.metadata()?.is_file() {
            self.file.set_len(0)?;
        }
        self.file.write_all(bytes)?;
        self.file.flush()
    }
}

impl Drop for LateFile {
    fn drop(&mut self) {
        if self.created && !self.written {
            // Best effort: the error being reported is the one that matters.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
