//! [`GgufWriter`]: builds a GGUF v3 file from metadata and tensors.
//!
//! Used by tests and tools (fixtures, re-quantized models). Tensors are laid out the way
//! llama.cpp's `gguf_write_to_file` lays them out, packed in the order added, each padded to
//! the alignment, so llama.cpp reads what it writes (one difference: a file without tensors
//! ends right after its metadata, with no padding for the empty data section). Metadata
//! is written as given (an empty key, say, makes a file readers reject), so tests can also
//! build broken files.
//!
//! ```
//! use pupil::gguf::{Gguf, GgufWriter, Value};
//! use pupil::kernels::DType;
//! let weights = vec![0u8; 64 * 4 * 2];
//! let mut w = GgufWriter::new();
//! w.set_alignment(64).add("general.architecture", Value::from("toy"));
//! w.add_tensor("w", DType::F32, &[64, 2], &weights[..])?;
//! let bytes = w.to_bytes();
//! let g = Gguf::parse(&bytes)?;
//! assert_eq!((g.alignment(), g.data_offset() % 64), (64, 0));
//! assert_eq!(g.tensor("w").unwrap().n_bytes(), 512);
//! # Ok::<(), pupil::gguf::GgufError>(())
//! ```

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use pupil_kernels::DType;

use super::tensor::{MAX_NAME_LEN, byte_size};
use super::value::{Array, Value};
use super::{DEFAULT_ALIGNMENT, GgufError, MAGIC, TensorInfo};

/// The GGUF version this writer produces.
const VERSION: u32 = 3;

/// A GGUF v3 file under construction. Tensor data is borrowed (`Cow`) so large weights are
/// not copied before writing.
#[derive(Clone, Debug)]
pub struct GgufWriter<'a> {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    /// Infos (offset filled in at write time) and their data, in the order added.
    tensors: Vec<(TensorInfo, Cow<'a, [u8]>)>,
    names: HashSet<String>,
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty file with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            key_index: HashMap::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Sets the data alignment; a value other than 32 is also recorded as the
    /// `general.alignment` metadata key (a u32), as readers require.
    ///
    /// # Panics
    ///
    /// If `a` is not a power of two that fits `u32`: that is a bug in the calling code, not
    /// a property of any input file.
    pub fn set_alignment(&mut self, a: u64) -> &mut Self {
        let a32 = u32::try_from(a).ok().filter(|a| a.is_power_of_two());
        let Some(a32) = a32 else { panic!("GGUF alignment must be a power of two below 2^32, got {a}") };
        self.alignment = a;
        if a != DEFAULT_ALIGNMENT || self.key_index.contains_key("general.alignment") {
            self.add("general.alignment", Value::U32(a32));
        }
        self
    }

    /// Adds a metadata entry, or replaces the value of an existing key in place (keeping its
    /// position). Setting `general.alignment` to a power-of-two u32 also sets the alignment.
    pub fn add(&mut self, key: impl Into<String>, value: Value) -> &mut Self {
        let key = key.into();
        if key == "general.alignment" {
            if let Value::U32(a) = value {
                if a.is_power_of_two() {
                    self.alignment = a.into();
                }
            }
        }
        match self.key_index.get(&key) {
            Some(&i) => self.metadata[i].1 = value,
            None => {
                self.key_index.insert(key.clone(), self.metadata.len());
                self.metadata.push((key, value));
            }
        }
        self
    }

    /// Adds a tensor with shape `dims` (`ne[0]` first) and its raw data, which must be exactly
    /// the shape's size in `dtype`. Fails on a duplicate or over-long name, 0 or more than 4
    /// dims, a row that is not whole blocks, an overflowing shape, or a wrong data length.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dtype: DType,
        dims: &[u64],
        data: impl Into<Cow<'a, [u8]>>,
    ) -> Result<&mut Self, GgufError> {
        let name = name.into();
        if name.len() as u64 > MAX_NAME_LEN {
            return Err(GgufError::TooLarge {
                what: format!("length of tensor name '{name}'"),
                value: name.len() as u64,
                limit: MAX_NAME_LEN,
            });
        }
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor { name });
        }
        let expected = byte_size(&name, dtype, dims)?;
        let data = data.into();
        if data.len() as u64 != expected {
            return Err(GgufError::DataSize { tensor: name, expected, found: data.len() as u64 });
        }
        self.names.insert(name.clone());
        self.tensors.push((TensorInfo { name, dims: dims.to_vec(), dtype, offset: 0 }, data));
        Ok(self)
    }

    /// Writes the file to `w`; returns the number of bytes written.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<u64> {
        let mut w = Counting { inner: w, written: 0 };
        w.write_all(&MAGIC)?;
        w.write_all(&VERSION.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in &self.metadata {
            write_str(&mut w, key)?;
            w.write_all(&value.type_id().to_le_bytes())?;
            write_value(&mut w, value)?;
        }
        let mut offset = 0u64;
        for (t, data) in &self.tensors {
            write_str(&mut w, &t.name)?;
            w.write_all(&(t.dims.len() as u32).to_le_bytes())?;
            for d in &t.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&t.dtype.id().to_le_bytes())?;
            w.write_all(&offset.to_le_bytes())?;
            offset = (offset + data.len() as u64).next_multiple_of(self.alignment);
        }
        // llama.cpp pads here even with no tensors; an empty data section needs no alignment,
        // and padding it to a large `general.alignment` (up to 2^31) would write gigabytes of
        // zeros (found by fuzzing: a 230-byte file with alignment 2^30 re-written as 1 GiB).
        if !self.tensors.is_empty() {
            w.pad(self.alignment)?;
        }
        for (_, data) in &self.tensors {
            w.write_all(data)?;
            w.pad(self.alignment)?;
        }
        Ok(w.written)
    }

    /// The whole file in memory.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out).expect("writing to a Vec<u8> cannot fail");
        out
    }

    /// Writes the file to `path`, creating or truncating it.
    pub fn write_file(&self, path: impl AsRef<Path>) -> Result<(), GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io { path: path.to_path_buf(), source };
        let mut w = BufWriter::new(File::create(path).map_err(io)?);
        self.write_to(&mut w).map_err(io)?;
        w.into_inner().map_err(|e| io(e.into_error()))?.sync_all().map_err(io)
    }
}

/// A writer that counts bytes, for padding and the returned size.
struct Counting<'w, W: Write> {
    inner: &'w mut W,
    written: u64,
}

impl<W: Write> Counting<'_, W> {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        self.inner.write_all(b)?;
        self.written += b.len() as u64;
        Ok(())
    }

    fn pad(&mut self, alignment: u64) -> io::Result<()> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut n = self.written.next_multiple_of(alignment) - self.written;
        while n > 0 {
            let k = n.min(ZEROS.len() as u64);
            self.write_all(&ZEROS[..k as usize])?;
            n -= k;
        }
        Ok(())
    }
}

fn write_str<W: Write>(w: &mut Counting<'_, W>, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value<W: Write>(w: &mut Counting<'_, W>, v: &Value) -> io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&x.to_le_bytes()),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[u8::from(*x)]),
        Value::String(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
    }
}

/// Element type, count, elements; nested arrays recurse.
fn write_array<W: Write>(w: &mut Counting<'_, W>, a: &Array) -> io::Result<()> {
    w.write_all(&a.elem_type_id().to_le_bytes())?;
    w.write_all(&(a.len() as u64).to_le_bytes())?;
    macro_rules! each {
        ($v:expr) => {{
            for x in $v {
                w.write_all(&x.to_le_bytes())?;
            }
            Ok(())
        }};
    }
    match a {
        Array::U8(v) => w.write_all(v),
        Array::I8(v) => each!(v),
        Array::U16(v) => each!(v),
        Array::I16(v) => each!(v),
        Array::U32(v) => each!(v),
        Array::I32(v) => each!(v),
        Array::F32(v) => each!(v),
        Array::U64(v) => each!(v),
        Array::I64(v) => each!(v),
        Array::F64(v) => each!(v),
        Array::Bool(v) => each!(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().try_for_each(|s| write_str(w, s)),
        Array::Array(v) => v.iter().try_for_each(|inner| write_array(w, inner)),
    }
}
