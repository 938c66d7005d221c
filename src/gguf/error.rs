//! The one error type of the GGUF reader and writer.
//!
//! Every message names the field or tensor at fault, what was expected and what was found, so
//! that a user looking at a broken download can tell a truncated file from a corrupt one from a
//! file written by a newer tool. Parse errors do not carry the file path (a byte slice has
//! none): [`GgufFile::open`](super::GgufFile::open) callers add it, as the CLI does.
//!
//! ```
//! use pupil::gguf::{Gguf, GgufError};
//! let err = Gguf::parse(b"GGML\x03\0\0\0").unwrap_err();
//! assert!(matches!(err, GgufError::BadMagic { found } if &found == b"GGML"));
//! assert!(err.to_string().contains("expected \"GGUF\""));
//! ```

use std::path::PathBuf;

use pupil_kernels::DType;

/// Why a GGUF file could not be read, validated or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The operating system refused to open, map, read or write the file. (The message
    /// names the file; the OS error is the `source()`, so a report of the chain says it once.)
    #[error("{}", path.display())]
    Io {
        /// The file that was being opened or written.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },

    /// The path names something other than a regular file (a directory, a device such as
    /// `/dev/null`, a FIFO): there is nothing to map, and opening a FIFO would block.
    #[error("{}: not a regular file ({kind})", path.display())]
    NotAFile {
        /// The path given.
        path: PathBuf,
        /// What it is instead: `a directory`, `a character device`, `a FIFO`...
        kind: &'static str,
    },

    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: starts with {found:02x?} ({:?}), expected \"GGUF\"", String::from_utf8_lossy(found))]
    BadMagic {
        /// The four bytes found at the start of the file.
        found: [u8; 4],
    },

    /// A GGUF version this reader does not understand (only 2 and 3 are read).
    #[error("unsupported GGUF version {version}: pupil reads versions 2 and 3{}", version_hint(*version))]
    UnsupportedVersion {
        /// The version field as stored.
        version: u32,
    },

    /// The version field is byte-swapped: the file was written for a big-endian machine.
    #[error("GGUF file is big-endian (its version field is byte-swapped); pupil reads little-endian files only")]
    BigEndian,

    /// A field runs past the end of the file, or a count or length promises more bytes than
    /// remain (a truncated download, or a corrupt count).
    #[error("truncated or corrupt file: {what} needs {needed} bytes at offset {offset}, but only {available} remain")]
    Truncated {
        /// The field being read, e.g. `key of metadata entry 12`.
        what: String,
        /// Absolute file offset of the field.
        offset: u64,
        /// Bytes the field needs (a lower bound for counts of variable-size items).
        needed: u64,
        /// Bytes left in the file from `offset`.
        available: u64,
    },

    /// A length, count or nesting depth beyond what this reader accepts.
    #[error("{what} is {value}, more than the limit of {limit}")]
    TooLarge {
        /// The field, e.g. `length of value of metadata key 'tokenizer.chat_template'`.
        what: String,
        /// The value found.
        value: u64,
        /// The largest value accepted.
        limit: u64,
    },

    /// A string field is not valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field, e.g. `name of tensor 3`.
        what: String,
    },

    /// A metadata value type id that GGUF does not define.
    #[error("{what}: unknown GGUF value type {id} (expected 0..=12)")]
    BadValueType {
        /// The field, e.g. `value of metadata key 'general.name'`.
        what: String,
        /// The type id found.
        id: u32,
    },

    /// A bool byte other than 0 or 1.
    #[error("metadata key '{key}': bool byte is {value}, expected 0 or 1")]
    BadBool {
        /// The metadata key holding the bool (or the array of bools).
        key: String,
        /// The byte found.
        value: u8,
    },

    /// A metadata key of length zero (llama.cpp rejects these too).
    #[error("metadata entry {index} has an empty key")]
    EmptyKey {
        /// Zero-based position of the entry in the file.
        index: u64,
    },

    /// The same metadata key twice.
    #[error("metadata key '{key}' appears more than once")]
    DuplicateKey {
        /// The repeated key.
        key: String,
    },

    /// The same tensor name twice.
    #[error("tensor '{name}' appears more than once")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
    },

    /// `general.alignment` is zero or not a power of two.
    #[error("general.alignment is {value}, expected a nonzero power of two")]
    BadAlignment {
        /// The alignment found.
        value: u64,
    },

    /// A tensor with no dimensions or more than four.
    #[error("tensor '{tensor}': {n_dims} dimensions, expected 1 to 4")]
    BadDims {
        /// The tensor name.
        tensor: String,
        /// The dimension count found.
        n_dims: u32,
    },

    /// A tensor's element count, byte size or end offset does not fit 64-bit arithmetic
    /// (element counts must also fit `i64`, as in llama.cpp).
    #[error("tensor '{tensor}': shape, size or offset overflows 64-bit arithmetic")]
    Overflow {
        /// The tensor name.
        tensor: String,
    },

    /// A ggml element type id that [`DType`] does not know.
    #[error("tensor '{tensor}': unknown ggml type id {id}")]
    UnknownType {
        /// The tensor name.
        tensor: String,
        /// The type id found.
        id: u32,
    },

    /// The row length is not a whole number of blocks of the tensor's type.
    #[error("tensor '{tensor}': row of {ne0} elements is not a whole number of {dtype} blocks ({} elements each)", dtype.block_size())]
    PartialBlock {
        /// The tensor name.
        tensor: String,
        /// The tensor's type.
        dtype: DType,
        /// The row length (`ne[0]`) found.
        ne0: u64,
    },

    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error("tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// The tensor name.
        tensor: String,
        /// The offset found (relative to the data section).
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// A tensor's data extends past the end of the file.
    #[error("tensor '{tensor}': data {start}..{end} extends past end of file ({file_size} bytes)")]
    OutOfBounds {
        /// The tensor name.
        tensor: String,
        /// Absolute start offset of the data.
        start: u64,
        /// Absolute end offset (exclusive) of the data.
        end: u64,
        /// Size of the file.
        file_size: u64,
    },

    /// Two tensors' data ranges share bytes.
    #[error("tensors '{first}' and '{second}' have overlapping data")]
    Overlap {
        /// The tensor whose data starts first.
        first: String,
        /// The tensor whose data starts inside `first`'s.
        second: String,
    },

    /// A metadata value exists but has a different type than the caller asked for.
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        /// The metadata key.
        key: String,
        /// What the caller asked for, e.g. `string`.
        expected: &'static str,
        /// What the file holds, e.g. `i32` or `i32 -5`.
        found: String,
    },

    /// [`GgufWriter::add_tensor`](super::GgufWriter::add_tensor) was given the wrong number of
    /// data bytes for the tensor's shape and type.
    #[error("tensor '{tensor}': {found} bytes of data given, its shape and type need {expected}")]
    DataSize {
        /// The tensor name.
        tensor: String,
        /// Bytes the shape and type need.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
}

impl GgufError {
    /// Whose fault it is: the operating system's ([`Io`](GgufError::Io)) or the file's.
    pub fn kind(&self) -> crate::error::ErrorKind {
        match self {
            GgufError::Io { .. } => crate::error::ErrorKind::Io,
            _ => crate::error::ErrorKind::BadInput,
        }
    }
}

/// A short reason for an unsupported version, so the message says what to do.
fn version_hint(version: u32) -> &'static str {
    match version {
        0 => " (version 0 is never valid)",
        1 => " (GGUF v1 is obsolete; convert the file again with a current llama.cpp)",
        _ => " (the file was written by a newer tool)",
    }
}
