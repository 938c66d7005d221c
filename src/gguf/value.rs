//! Metadata values: the thirteen GGUF value types, and arrays of them.
//!
//! Arrays are stored typed (`Vec<f32>`, `Vec<String>`, ...) rather than as `Vec<Value>`, so a
//! 256k-entry token score array costs 1 MiB, not 8 MiB, and can be borrowed as a slice.
//! Values serialize to plain JSON (numbers, strings, bools, arrays) for `pupil inspect --json`.
//!
//! ```
//! use pupil::gguf::{Array, Value};
//! let v = Value::Array(Array::String(vec!["<s>".into(), "</s>".into()]));
//! assert_eq!(v.type_name(), "array");
//! assert_eq!(v.as_array().and_then(Array::as_strings).map(<[String]>::len), Some(2));
//! assert_eq!(Value::I32(7).as_u64(), Some(7));
//! assert_eq!(Value::I32(-7).as_u64(), None);
//! assert_eq!(serde_json::to_string(&v).unwrap(), r#"["<s>","</s>"]"#);
//! ```

use serde::{Serialize, Serializer};

/// GGUF value type ids (`enum gguf_type`), as stored before each value and array.
pub(crate) mod type_id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// The name of a GGUF value type id, or `None` for ids GGUF does not define.
pub(crate) fn type_name_of(id: u32) -> Option<&'static str> {
    const NAMES: [&str; 13] =
        ["u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"];
    NAMES.get(usize::try_from(id).ok()?).copied()
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // the variants are the GGUF types of the same names
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array. All elements share one type; an array of arrays may mix inner types,
/// as the GGUF spec allows.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)] // the variants are the element types of the same names
pub enum Array {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Array(Vec<Array>),
}

impl Value {
    /// The GGUF type id written before this value.
    pub(crate) fn type_id(&self) -> u32 {
        use type_id::*;
        match self {
            Value::U8(_) => U8,
            Value::I8(_) => I8,
            Value::U16(_) => U16,
            Value::I16(_) => I16,
            Value::U32(_) => U32,
            Value::I32(_) => I32,
            Value::F32(_) => F32,
            Value::Bool(_) => BOOL,
            Value::String(_) => STRING,
            Value::Array(_) => ARRAY,
            Value::U64(_) => U64,
            Value::I64(_) => I64,
            Value::F64(_) => F64,
        }
    }

    /// The GGUF type name: `u8`, `i32`, `f32`, `bool`, `string`, `array`, ...
    pub fn type_name(&self) -> &'static str {
        type_name_of(self.type_id()).unwrap_or("?")
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Any unsigned integer, or a signed one that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer that fits `i64` (a `u64` above `i64::MAX` does not).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => None,
        }
    }

    /// Any number, integer or float (64-bit integers beyond 2^53 round).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            // Cast, not `From`: u64/i64 have no lossless conversion and rounding is documented.
            Value::U64(v) => Some(v as f64),
            Value::I64(v) => Some(v as f64),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// The bool, if this is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The array, if this is an array.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl Array {
    /// The GGUF type id of the elements.
    pub(crate) fn elem_type_id(&self) -> u32 {
        use type_id::*;
        match self {
            Array::U8(_) => U8,
            Array::I8(_) => I8,
            Array::U16(_) => U16,
            Array::I16(_) => I16,
            Array::U32(_) => U32,
            Array::I32(_) => I32,
            Array::F32(_) => F32,
            Array::Bool(_) => BOOL,
            Array::String(_) => STRING,
            Array::U64(_) => U64,
            Array::I64(_) => I64,
            Array::F64(_) => F64,
            Array::Array(_) => ARRAY,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
            Array::Array(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The GGUF type name of the elements (`string` for the token list, `array` for nested).
    pub fn type_name(&self) -> &'static str {
        type_name_of(self.elem_type_id()).unwrap_or("?")
    }

    /// The strings, if this is an array of strings.
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            Array::String(v) => Some(v),
            _ => None,
        }
    }

    /// The floats, if this is an array of `f32`.
    pub fn as_f32s(&self) -> Option<&[f32]> {
        match self {
            Array::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The integers, if this is an array of `i32`.
    pub fn as_i32s(&self) -> Option<&[i32]> {
        match self {
            Array::I32(v) => Some(v),
            _ => None,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::U8(v) => s.serialize_u8(*v),
            Value::I8(v) => s.serialize_i8(*v),
            Value::U16(v) => s.serialize_u16(*v),
            Value::I16(v) => s.serialize_i16(*v),
            Value::U32(v) => s.serialize_u32(*v),
            Value::I32(v) => s.serialize_i32(*v),
            Value::F32(v) => s.serialize_f32(*v),
            Value::Bool(v) => s.serialize_bool(*v),
            Value::String(v) => s.serialize_str(v),
            Value::Array(v) => v.serialize(s),
            Value::U64(v) => s.serialize_u64(*v),
            Value::I64(v) => s.serialize_i64(*v),
            Value::F64(v) => s.serialize_f64(*v),
        }
    }
}

impl Serialize for Array {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `Vec<u8>` serializes as a sequence of numbers (not bytes), which is what JSON wants.
        match self {
            Array::U8(v) => v.serialize(s),
            Array::I8(v) => v.serialize(s),
            Array::U16(v) => v.serialize(s),
            Array::I16(v) => v.serialize(s),
            Array::U32(v) => v.serialize(s),
            Array::I32(v) => v.serialize(s),
            Array::F32(v) => v.serialize(s),
            Array::Bool(v) => v.serialize(s),
            Array::String(v) => v.serialize(s),
            Array::U64(v) => v.serialize(s),
            Array::I64(v) => v.serialize(s),
            Array::F64(v) => v.serialize(s),
            Array::Array(v) => v.serialize(s),
        }
    }
}

macro_rules! from_impls {
    ($($t:ty => $variant:ident),*) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Value { Value::$variant(v) }
        }
        impl From<Vec<$t>> for Array {
            fn from(v: Vec<$t>) -> Array { Array::$variant(v) }
        }
        impl From<Vec<$t>> for Value {
            fn from(v: Vec<$t>) -> Value { Value::Array(Array::$variant(v)) }
        }
    )*};
}

from_impls!(u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32, f32 => F32,
    bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64);

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_owned())
    }
}

impl From<Array> for Value {
    fn from(v: Array) -> Value {
        Value::Array(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_accessors_convert_only_when_lossless() {
        assert_eq!(Value::U64(u64::MAX).as_u64(), Some(u64::MAX));
        assert_eq!(Value::U64(u64::MAX).as_i64(), None);
        assert_eq!(Value::I64(-1).as_i64(), Some(-1));
        assert_eq!(Value::I8(-1).as_u64(), None);
        assert_eq!(Value::F32(1.5).as_u64(), None);
        assert_eq!(Value::U16(3).as_f64(), Some(3.0));
        assert_eq!(Value::I64(-3).as_f64(), Some(-3.0));
        assert_eq!(Value::Bool(true).as_u64(), None);
        assert_eq!(Value::from("x").as_f64(), None);
    }

    #[test]
    fn type_names_match_ids() {
        assert_eq!(Value::Bool(true).type_name(), "bool");
        assert_eq!(Value::F64(0.0).type_name(), "f64");
        assert_eq!(Array::Array(vec![]).type_name(), "array");
        assert_eq!(Array::I16(vec![1, 2]).type_name(), "i16");
        assert_eq!(type_name_of(13), None);
    }

    #[test]
    fn nested_arrays_serialize_as_plain_json() {
        let v = Value::Array(Array::Array(vec![Array::U8(vec![1, 2]), Array::Bool(vec![true])]));
        assert_eq!(serde_json::to_string(&v).unwrap(), "[[1,2],[true]]");
        assert_eq!(serde_json::to_string(&Value::F64(0.5)).unwrap(), "0.5");
    }
}
