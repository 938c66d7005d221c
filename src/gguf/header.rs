//! [`Gguf`]: a parsed, validated header (metadata and tensor table) and its typed lookups.
//!
//! ```
//! use pupil::gguf::{Gguf, GgufWriter, Value};
//! let mut w = GgufWriter::new();
//! w.add("general.architecture", Value::from("llama")).add("llama.block_count", Value::U32(2));
//! let g = Gguf::parse(&w.to_bytes())?;
//! assert_eq!(g.architecture(), Some("llama"));
//! assert_eq!(g.get_u64("llama.block_count")?, Some(2));
//! assert!(g.get_str("llama.block_count").is_err(), "present with another type");
//! assert_eq!(g.get_str("general.name")?, None);
//! # Ok::<(), pupil::gguf::GgufError>(())
//! ```

use std::collections::HashMap;
use std::ops::Range;

use super::value::{Array, Value};
use super::{GgufError, TensorInfo};

/// A parsed GGUF header: version, metadata in file order and the tensor table, with every
/// tensor's data range checked against the size of the bytes it was parsed from. Owns its
/// data and borrows nothing, so it outlives the buffer it came from.
#[derive(Clone, Debug)]
pub struct Gguf {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
    pub(crate) file_size: u64,
    pub(crate) metadata: Vec<(String, Value)>,
    pub(crate) key_index: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_index: HashMap<String, usize>,
}

impl Gguf {
    /// GGUF version of the file (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and of every tensor's data (`general.alignment`, 32 by
    /// default).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section; tensor offsets are relative to it.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Size of the bytes the header was parsed from (the whole file).
    pub fn file_size(&self) -> u64 {
        self.file_size
    }

    /// All metadata, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// Looks `key` up and converts it with `f`; a present value `f` rejects is a
    /// [`GgufError::WrongType`].
    fn typed<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        f: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else { return Ok(None) };
        match f(v) {
            Some(t) => Ok(Some(t)),
            None => Err(GgufError::WrongType { key: key.to_owned(), expected, found: describe(v) }),
        }
    }

    /// A string value; `Err(WrongType)` if the key holds something else.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.typed(key, "string", Value::as_str)
    }

    /// An unsigned integer, or a non-negative signed one; `Err(WrongType)` otherwise.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.typed(key, "non-negative integer", Value::as_u64)
    }

    /// Any number, integer or float; `Err(WrongType)` otherwise.
    pub fn get_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        self.typed(key, "number", Value::as_f64)
    }

    /// A bool; `Err(WrongType)` otherwise.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.typed(key, "bool", Value::as_bool)
    }

    /// An array; `Err(WrongType)` otherwise.
    pub fn get_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        self.typed(key, "array", Value::as_array)
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// `general.architecture` (`llama`, `gemma3`, ...), if present and a string.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(Value::as_str)
    }

    /// Absolute byte range of a tensor's data. For a tensor of this header the range was
    /// checked at parse time to lie inside the file; for any other [`TensorInfo`] it is
    /// computed with saturating arithmetic and must be checked by the caller.
    pub fn tensor_range(&self, t: &TensorInfo) -> Range<u64> {
        let start = self.data_offset.saturating_add(t.offset);
        start..start.saturating_add(t.n_bytes())
    }
}

/// How a value appears in a `WrongType` message: its type, plus the number itself when a
/// number of the right kind was rejected for its sign.
fn describe(v: &Value) -> String {
    match v.as_i64() {
        Some(n) if n < 0 => format!("{} {n}", v.type_name()),
        _ => v.type_name().to_owned(),
    }
}
