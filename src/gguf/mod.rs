//! The GGUF file format: read zero-copy from a memory map, validated, and written.
//!
//! GGUF (llama.cpp's `docs/gguf.md`) is a little-endian header (magic, version, counts),
//! typed key/value metadata (hyperparameters, tokenizer), a table of tensor infos (name,
//! shape, ggml type, offset) and an aligned data section holding the tensors' raw blocks.
//!
//! - [`Gguf`] is the parsed header. [`Gguf::parse`] validates everything a later slice or
//!   kernel relies on (lengths, counts, shapes, types, alignment, data ranges, overlap) and
//!   never panics or over-allocates on hostile bytes: see `tests/gguf_hostile.rs` and the
//!   fuzz target in `fuzz/`.
//! - [`GgufFile`] maps a file and hands out tensor data as `&[u8]` borrowed from the map.
//! - [`GgufWriter`] writes v3 files (test fixtures, tools).
//! - [`Value`] / [`Array`] are metadata values; [`TensorInfo`] a tensor table entry;
//!   element types are [`DType`](crate::kernels::DType) from `pupil-kernels`.
//!
//! Versions 2 and 3 are read (they share a layout); v1 and big-endian files are rejected with
//! errors that say so.
//!
//! ```
//! use pupil::gguf::{GgufFile, GgufWriter, Value};
//! use pupil::kernels::DType;
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("toy.gguf");
//! let mut w = GgufWriter::new();
//! w.add("general.architecture", Value::from("toy"));
//! w.add_tensor("w", DType::F32, &[4], &[0u8; 16][..])?;
//! w.write_file(&path)?;
//!
//! let f = GgufFile::open(&path)?;
//! assert_eq!(f.architecture(), Some("toy"));
//! assert_eq!(f.tensor_bytes("w").map(<[u8]>::len), Some(16));
//! # Ok::<(), pupil::gguf::GgufError>(())
//! ```

mod cursor;
mod error;
mod file;
mod ftype;
mod header;
mod layout;
mod metadata;
mod reader;
mod tensor;
mod value;
mod writer;

pub use error::GgufError;
pub use file::GgufFile;
pub use ftype::FileType;
pub use header::Gguf;
pub use metadata::MAX_ARRAY_DEPTH;
pub use tensor::{MAX_DIMS, MAX_NAME_LEN, TensorInfo};
pub use value::{Array, Value};
pub use writer::GgufWriter;

pub use cursor::MAX_STRING_LEN;

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;

#[cfg(test)]
mod tests;
