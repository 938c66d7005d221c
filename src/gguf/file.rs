//! [`GgufFile`]: a GGUF file memory-mapped read-only, with zero-copy access to tensor data.
//!
//! Mapping rather than reading means opening a multi-GiB model costs only the header parse,
//! pages are loaded on first touch and shared with the page cache, and kernels read the
//! quantized blocks straight out of the file.
//!
//! ```no_run
//! use pupil::gguf::GgufFile;
//! let f = GgufFile::open("models/gemma-3-270m-q4_k_m.gguf")?;
//! println!("{} tensors, architecture {:?}", f.tensors().len(), f.architecture());
//! let emb = f.tensor_bytes("token_embd.weight").expect("present");
//! assert_eq!(emb.len() as u64, f.tensor("token_embd.weight").unwrap().n_bytes());
//! # Ok::<(), pupil::gguf::GgufError>(())
//! ```

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::{Gguf, GgufError, TensorInfo};

/// An open GGUF file: the read-only mapping of its bytes and its parsed, validated header.
///
/// Derefs to [`Gguf`] for metadata and the tensor table.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    gguf: Gguf,
}

impl GgufFile {
    /// Opens, maps and validates the GGUF file at `path`. I/O errors carry the path; a path
    /// that is not a regular file (a directory, `/dev/null`, a FIFO) is
    /// [`GgufError::NotAFile`]; format errors are [`Gguf::parse`]'s.
    ///
    /// # Safety
    ///
    /// This is a safe function, but it memory-maps the file, and Rust cannot protect a mapping
    /// from other processes. If another process truncates the file while it is open, touching
    /// the lost pages raises `SIGBUS` and kills this process; if another process writes to it,
    /// tensor bytes (and in principle the bytes behind already-validated slices) change under
    /// us. Model files are written once and then only read, so pupil accepts this risk for the
    /// speed and memory of zero-copy loading, as ripgrep does for the files it searches; do not
    /// open a file that is still being downloaded or rewritten.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io { path: path.clone(), source };
        // Checked before opening, because opening a FIFO blocks until someone writes to it,
        // and again on the open file, in case the path was swapped in between.
        regular_file(&path, std::fs::metadata(&path).map_err(io)?.file_type())?;
        let file = File::open(&path).map_err(io)?;
        regular_file(&path, file.metadata().map_err(io)?.file_type())?;
        // SAFETY: the mapping is read-only and private to this value, and every slice handed
        // out borrows `self`, so none outlives the mapping. What Rust cannot guarantee is that
        // no other process truncates or rewrites the file meanwhile; that hazard is accepted
        // and documented on this function (see `# Safety` above).
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let gguf = Gguf::parse(&map)?;
        Ok(GgufFile { path, map, gguf })
    }

    /// The path the file was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes (as mapped).
    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The data of tensor `t`, exactly `t.n_bytes()` long, borrowed from the mapping. Its
    /// address is aligned to [`Gguf::alignment`] (the mapping starts on a page boundary).
    ///
    /// # Panics
    ///
    /// If `t` is not one of this file's [`tensors`](Gguf::tensors) and describes bytes past
    /// the end of the file. Infos from this file were range-checked at open and never panic.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let r = self.gguf.tensor_range(t);
        let slice =
            usize::try_from(r.start).ok().zip(usize::try_from(r.end).ok()).and_then(|(s, e)| self.map.get(s..e));
        match slice {
            Some(s) => s,
            None => panic!(
                "tensor '{}' data {}..{} is outside {} ({} bytes)",
                t.name,
                r.start,
                r.end,
                self.path.display(),
                self.map.len()
            ),
        }
    }

    /// The data of the tensor called `name`, if there is one.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.gguf.tensor(name).map(|t| self.tensor_data(t))
    }

    /// Drops the whole pages inside `range` (file bytes) from this process's resident memory,
    /// for data a copy has replaced (weights repacked at load): they stay in the page cache,
    /// and if read again they fault back in from the file, unchanged. Pages only partly in
    /// `range` (in 4 KiB pages) are kept. Returns the bytes released (0 where the kernel
    /// refuses, or off Unix).
    pub fn release(&self, range: std::ops::Range<usize>) -> usize {
        let page = 4096;
        let (start, end) = (range.start.next_multiple_of(page), range.end.min(self.map.len()) / page * page);
        if start >= end {
            return 0;
        }
        // SAFETY: `MADV_DONTNEED` on a private mapping discards its private copies of the
        // pages; this mapping is read-only, so it has none, and the next read of a page maps
        // the file's bytes again: no slice handed out sees a change. `start..end` lies within
        // the mapping (clamped above).
        #[cfg(unix)]
        {
            let done = unsafe { self.map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
            if done.is_ok() { end - start } else { 0 }
        }
        #[cfg(not(unix))]
        0
    }

    /// The parsed header.
    pub fn gguf(&self) -> &Gguf {
        &self.gguf
    }
}

/// `Ok` for a regular file, else [`GgufError::NotAFile`] saying what `path` is instead.
fn regular_file(path: &Path, t: std::fs::FileType) -> Result<(), GgufError> {
    if t.is_file() {
        return Ok(());
    }
    let kind = if t.is_dir() { "a directory" } else { special_kind(t) };
    Err(GgufError::NotAFile { path: path.to_path_buf(), kind })
}

#[cfg(unix)]
fn special_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_: std::fs::FileType) -> &'static str {
    "a special file"
}

impl Deref for GgufFile {
    type Target = Gguf;

    fn deref(&self) -> &Gguf {
        &self.gguf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_not_a_regular_file() {
        let dir = std::env::temp_dir();
        let e = GgufFile::open(&dir).unwrap_err();
        assert!(matches!(&e, GgufError::NotAFile { path, kind: "a directory" } if path == &dir), "{e}");
        assert_eq!(e.to_string(), format!("{}: not a regular file (a directory)", dir.display()));
    }

    #[cfg(unix)]
    #[test]
    fn dev_null_is_a_device_not_no_such_device() {
        let e = GgufFile::open("/dev/null").unwrap_err();
        assert!(matches!(e, GgufError::NotAFile { kind: "a character device", .. }), "{e}");
    }
}
