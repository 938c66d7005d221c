//! The output file, written front to back: header, then each tensor's data as it is made.
//!
//! [`GgufWriter`] writes a whole file from tensors it holds, which would keep the whole
//! quantized model in memory. So the header comes from a writer given placeholder data (one
//! zeroed buffer, borrowed by every tensor and never read), of which only the bytes before the
//! data section are kept; the data then follows tensor by tensor with the same padding the
//! writer uses, and the offsets in that header match because both lay tensors out packed in
//! order, each padded to the alignment. A header-only API on the writer would remove the
//! placeholder.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{QuantizeError, TensorPlan};
use crate::gguf::{GgufWriter, Value};

/// An output file being written.
pub(crate) struct Output {
    path: PathBuf,
    file: BufWriter<File>,
    alignment: u64,
    written: u64,
}

impl Output {
    /// Creates `path` and writes the header for `metadata` and `tensors`.
    pub(crate) fn create(
        path: &Path,
        metadata: &[(String, Value)],
        tensors: &[TensorPlan],
    ) -> Result<Output, QuantizeError> {
        let zeros = vec![0u8; tensors.iter().map(|t| t.out_bytes()).max().unwrap_or(0) as usize];
        let mut w = GgufWriter::new();
        for (k, v) in metadata {
            w.add(k.clone(), v.clone());
        }
        for t in tensors {
            w.add_tensor(t.name.clone(), t.to, &t.dims, &zeros[..t.out_bytes() as usize])?;
        }
        let alignment = metadata
            .iter()
            .find_map(|(k, v)| match v {
                Value::U32(a) if k == "general.alignment" && a.is_power_of_two() => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(crate::gguf::DEFAULT_ALIGNMENT);
        let data: u64 = tensors.iter().map(|t| t.out_bytes().next_multiple_of(alignment)).sum();
        let total = w.write_to(&mut io::sink()).expect("writing to a sink cannot fail");
        let header = total - data;

        let io_err = |source| QuantizeError::Output { path: path.to_path_buf(), source };
        let mut file = BufWriter::with_capacity(1 << 20, File::create(path).map_err(io_err)?);
        if let Err(e) = w.write_to(&mut Prefix { inner: &mut file, left: header }) {
            let _ = std::fs::remove_file(path);
            return Err(io_err(e));
        }
        Ok(Output { path: path.to_path_buf(), file, alignment, written: header })
    }

    /// Appends part of the current tensor's data.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), QuantizeError> {
        self.file.write_all(bytes).map_err(|e| self.err(e))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Pads the current tensor's data to the alignment.
    pub(crate) fn end_tensor(&mut self) -> Result<(), QuantizeError> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut n = self.written.next_multiple_of(self.alignment) - self.written;
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.write(&ZEROS[..k as usize])?;
            n -= k;
        }
        Ok(())
    }

    /// Flushes and syncs the file; returns its size.
    pub(crate) fn finish(self) -> Result<u64, QuantizeError> {
        let path = self.path;
        let err = |source| QuantizeError::Output { path: path.clone(), source };
        self.file.into_inner().map_err(|e| err(e.into_error()))?.sync_all().map_err(err)?;
        Ok(self.written)
    }

    fn err(&self, source: io::Error) -> QuantizeError {
        QuantizeError::Output { path: self.path.clone(), source }
    }
}

/// Passes on the first `left` bytes written to it and drops the rest (without reading them).
struct Prefix<'w, W: Write> {
    inner: &'w mut W,
    left: u64,
}

impl<W: Write> Write for Prefix<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = (buf.len() as u64).min(self.left) as usize;
        if k > 0 {
            self.inner.write_all(&buf[..k])?;
            self.left -= k as u64;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
