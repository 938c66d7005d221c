//! [`Gguf::parse`]: header, metadata and tensor table from a byte slice, fully validated.
//!
//! Layout (little-endian): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count,
//! the metadata entries (string key, u32 value type, value), the tensor infos (string name,
//! u32 n_dims, n_dims × u64 dims, u32 ggml type, u64 offset), padding to `general.alignment`,
//! then the data section. Checks follow llama.cpp's `ggml/src/gguf.cpp`
//! (`gguf_init_from_reader`), with every count checked against the bytes left before
//! anything is allocated for it.
//!
//! ```
//! use pupil::gguf::{Gguf, GgufError, GgufWriter};
//! let bytes = GgufWriter::new().to_bytes();
//! assert_eq!(Gguf::parse(&bytes)?.version(), 3);
//! let err = Gguf::parse(&bytes[..10]).unwrap_err();
//! assert!(matches!(err, GgufError::Truncated { .. }), "{err}");
//! # Ok::<(), GgufError>(())
//! ```

use std::collections::{HashMap, HashSet};

use super::cursor::Cursor;
use super::metadata::read_value;
use super::tensor::{MIN_INFO_SIZE, read_info};
use super::value::Value;
use super::{DEFAULT_ALIGNMENT, Gguf, GgufError, MAGIC, layout};

/// Smallest encoding of one metadata entry: key length, value type, a one-byte value. (Empty
/// keys are rejected, but counting them here lets that error, not `Truncated`, name them.)
const MIN_KV_SIZE: u64 = 8 + 4 + 1;

impl Gguf {
    /// Parses and validates a whole GGUF file held in `bytes`: header, metadata, tensor table,
    /// and every tensor's data range against `bytes.len()` (in bounds, aligned, no overlap).
    /// Never panics and never allocates much more than `bytes.len()`, whatever the bytes.
    pub fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
        let mut c = Cursor::new(bytes);
        let magic = c.array::<4>(|| "magic".into())?;
        if magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = c.u32(|| "version".into())?;
        check_version(version)?;
        let n_tensors = c.u64(|| "tensor count".into())?;
        let n_kv = c.u64(|| "metadata entry count".into())?;

        let (metadata, key_index) = read_metadata(&mut c, n_kv)?;
        let alignment = alignment(&metadata, &key_index)?;

        c.require(n_tensors.saturating_mul(MIN_INFO_SIZE), || format!("tensor table of {n_tensors} tensors"))?;
        // Bounded by the check above: at most bytes.len() / 32 infos.
        let cap = usize::try_from(n_tensors).unwrap_or(0);
        let mut tensors = Vec::with_capacity(cap);
        let mut seen = HashSet::with_capacity(cap);
        for i in 0..n_tensors {
            tensors.push(read_info(&mut c, i, &mut seen)?);
        }
        let tensor_index = tensors.iter().enumerate().map(|(i, t)| (t.name.clone(), i)).collect();

        // `pos <= bytes.len()` and `alignment <= 2^31`, so this cannot overflow u64.
        let data_offset = c.pos().next_multiple_of(alignment);
        let file_size = bytes.len() as u64;
        if n_tensors > 0 && data_offset > file_size {
            return Err(c.truncated("padding before the data section".into(), data_offset - c.pos()));
        }
        layout::check(&tensors, data_offset, alignment, file_size)?;

        Ok(Gguf { version, alignment, data_offset, file_size, metadata, key_index, tensors, tensor_index })
    }
}

fn check_version(version: u32) -> Result<(), GgufError> {
    match version {
        2 | 3 => Ok(()),
        // A little-endian reader sees a big-endian version 1..=3 as 0x01000000..=0x03000000.
        v if (1..=3).contains(&v.swap_bytes()) => Err(GgufError::BigEndian),
        v => Err(GgufError::UnsupportedVersion { version: v }),
    }
}

/// Metadata in file order, and an index from key to position.
type Metadata = (Vec<(String, Value)>, HashMap<String, usize>);

/// Reads `n_kv` metadata entries.
fn read_metadata(c: &mut Cursor<'_>, n_kv: u64) -> Result<Metadata, GgufError> {
    c.require(n_kv.saturating_mul(MIN_KV_SIZE), || format!("{n_kv} metadata entries"))?;
    // Bounded by the check above: at most bytes.len() / 13 entries.
    let cap = usize::try_from(n_kv).unwrap_or(0);
    let mut metadata = Vec::with_capacity(cap);
    let mut index = HashMap::with_capacity(cap);
    for i in 0..n_kv {
        let key = c.string(u64::MAX, || format!("key of metadata entry {i}"))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey { index: i });
        }
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey { key });
        }
        let id = c.u32(|| format!("value type of metadata key '{key}'"))?;
        let value = read_value(c, id, &key)?;
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    Ok((metadata, index))
}

/// `general.alignment`: a u32 (llama.cpp insists on the type) that is a power of two.
fn alignment(metadata: &[(String, Value)], index: &HashMap<String, usize>) -> Result<u64, GgufError> {
    const KEY: &str = "general.alignment";
    let Some(&i) = index.get(KEY) else { return Ok(DEFAULT_ALIGNMENT) };
    match metadata[i].1 {
        Value::U32(a) if a.is_power_of_two() => Ok(a.into()),
        Value::U32(a) => Err(GgufError::BadAlignment { value: a.into() }),
        ref v => Err(GgufError::WrongType { key: KEY.into(), expected: "u32", found: v.type_name().into() }),
    }
}
