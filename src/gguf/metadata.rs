//! Reading metadata values (scalars, strings, arrays, nested arrays) from a [`Cursor`].
//!
//! The hostile-input rule: before allocating room for `n` array elements, check that the
//! file still holds at least `n` times the smallest encoding of one element, so a corrupt
//! count can cost at most a small multiple of the file's size in memory, never 2^64 elements.

use super::GgufError;
use super::cursor::Cursor;
use super::value::{Array, Value, type_id, type_name_of};

/// Deepest array nesting accepted (an array directly under a key is depth 1). Real files
/// never nest; the cap bounds recursion on hostile input.
pub const MAX_ARRAY_DEPTH: u32 = 8;

/// Bytes taken by one value of type `id` at minimum: its fixed size, or the length prefix of
/// a string, or the element type and count of a nested array.
fn min_size(id: u32) -> Option<u64> {
    use type_id::*;
    Some(match id {
        U8 | I8 | BOOL => 1,
        U16 | I16 => 2,
        U32 | I32 | F32 => 4,
        U64 | I64 | F64 | STRING => 8,
        ARRAY => 4 + 8,
        _ => return None,
    })
}

/// Reads one value of type `id` belonging to metadata key `key`.
pub(crate) fn read_value(c: &mut Cursor<'_>, id: u32, key: &str) -> Result<Value, GgufError> {
    use type_id::*;
    let what = || format!("value of metadata key '{key}'");
    Ok(match id {
        U8 => Value::U8(u8::from_le_bytes(c.array(what)?)),
        I8 => Value::I8(i8::from_le_bytes(c.array(what)?)),
        U16 => Value::U16(u16::from_le_bytes(c.array(what)?)),
        I16 => Value::I16(i16::from_le_bytes(c.array(what)?)),
        U32 => Value::U32(u32::from_le_bytes(c.array(what)?)),
        I32 => Value::I32(i32::from_le_bytes(c.array(what)?)),
        F32 => Value::F32(f32::from_le_bytes(c.array(what)?)),
        U64 => Value::U64(u64::from_le_bytes(c.array(what)?)),
        I64 => Value::I64(i64::from_le_bytes(c.array(what)?)),
        F64 => Value::F64(f64::from_le_bytes(c.array(what)?)),
        BOOL => Value::Bool(to_bool(c.array::<1>(what)?[0], key)?),
        STRING => Value::String(c.string(u64::MAX, what)?),
        ARRAY => Value::Array(read_array(c, key, 1)?),
        _ => return Err(GgufError::BadValueType { what: what(), id }),
    })
}

fn to_bool(byte: u8, key: &str) -> Result<bool, GgufError> {
    match byte {
        0 => Ok(false),
        1 => Ok(true),
        value => Err(GgufError::BadBool { key: key.to_owned(), value }),
    }
}

/// Reads an array (element type, count, elements) at nesting depth `depth`.
fn read_array(c: &mut Cursor<'_>, key: &str, depth: u32) -> Result<Array, GgufError> {
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::TooLarge {
            what: format!("array nesting depth of metadata key '{key}'"),
            value: depth.into(),
            limit: MAX_ARRAY_DEPTH.into(),
        });
    }
    let id = c.u32(|| format!("element type of array '{key}'"))?;
    let Some(min) = min_size(id) else {
        return Err(GgufError::BadValueType { what: format!("element type of array '{key}'"), id });
    };
    let count = c.u64(|| format!("length of array '{key}'"))?;
    let elem = type_name_of(id).unwrap_or("?");
    let what = || format!("{count} {elem} elements of array '{key}'");
    c.require(count.saturating_mul(min), what)?;
    // The check above bounds `count` by the slice length, so it fits `usize`; keep the
    // conversion checked anyway rather than trusting that chain of reasoning with `as`.
    let n = usize::try_from(count).map_err(|_| c.truncated(what(), u64::MAX))?;

    use type_id::*;
    Ok(match id {
        U8 => Array::U8(c.take(count, what)?.to_vec()),
        I8 => Array::I8(c.take(count, what)?.iter().map(|&b| b as i8).collect()),
        U16 => Array::U16(fixed(c, n, what, u16::from_le_bytes)?),
        I16 => Array::I16(fixed(c, n, what, i16::from_le_bytes)?),
        U32 => Array::U32(fixed(c, n, what, u32::from_le_bytes)?),
        I32 => Array::I32(fixed(c, n, what, i32::from_le_bytes)?),
        F32 => Array::F32(fixed(c, n, what, f32::from_le_bytes)?),
        U64 => Array::U64(fixed(c, n, what, u64::from_le_bytes)?),
        I64 => Array::I64(fixed(c, n, what, i64::from_le_bytes)?),
        F64 => Array::F64(fixed(c, n, what, f64::from_le_bytes)?),
        BOOL => Array::Bool(c.take(count, what)?.iter().map(|&b| to_bool(b, key)).collect::<Result<_, _>>()?),
        STRING => {
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                v.push(c.string(u64::MAX, || format!("string {i} of array '{key}'"))?);
            }
            Array::String(v)
        }
        ARRAY => {
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(v)
        }
        // `min_size` already rejected undefined ids; this arm only keeps the match total.
        _ => return Err(GgufError::BadValueType { what: format!("element type of array '{key}'"), id }),
    })
}

/// Reads `n` fixed-size little-endian elements.
fn fixed<T, const N: usize>(
    c: &mut Cursor<'_>,
    n: usize,
    what: impl FnOnce() -> String,
    decode: fn([u8; N]) -> T,
) -> Result<Vec<T>, GgufError> {
    let bytes = c.take((n as u64).saturating_mul(N as u64), what)?;
    Ok(bytes
        .chunks_exact(N)
        .map(|b| {
            let mut a = [0; N];
            a.copy_from_slice(b);
            decode(a)
        })
        .collect())
}
