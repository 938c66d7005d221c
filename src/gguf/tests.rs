//! One hand-built file per error: written with [`GgufWriter`], then specific bytes corrupted.

use pupil_kernels::DType;

use super::*;

/// Offset of the first occurrence of `needle` (a key or tensor name) in `bytes`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).expect("needle present")
}

fn put_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(bytes: &mut [u8], at: usize, v: u64) {
    bytes[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// A file with two tensors, `t.first` (F32 [8, 4], 128 bytes) and `t.second` (Q4_0 [32, 2],
/// 36 bytes), and one key. Tensor names are unique byte strings, so fields can be found.
fn two_tensors() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::from("toy"));
    w.add_tensor("t.first", DType::F32, &[8, 4], vec![1u8; 128]).unwrap();
    w.add_tensor("t.second", DType::Q4_0, &[32, 2], vec![2u8; 36]).unwrap();
    w.to_bytes()
}

/// Offset of the n_dims field of the tensor named `name`.
fn n_dims_at(bytes: &[u8], name: &str) -> usize {
    find(bytes, name.as_bytes()) + name.len()
}

/// Offsets of (type, offset) fields of a tensor named `name` with `n_dims` dims.
fn type_and_offset_at(bytes: &[u8], name: &str, n_dims: usize) -> (usize, usize) {
    let t = n_dims_at(bytes, name) + 4 + 8 * n_dims;
    (t, t + 4)
}

fn err(bytes: &[u8]) -> GgufError {
    Gguf::parse(bytes).expect_err("corrupt file must be rejected")
}

#[test]
fn valid_file_parses() {
    let bytes = two_tensors();
    let g = Gguf::parse(&bytes).unwrap();
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.tensor("t.second").unwrap().n_bytes(), 36);
    assert_eq!(g.tensor("t.second").unwrap().offset, 128);
    assert_eq!(g.data_offset() % 32, 0);
    assert_eq!(bytes.len() as u64, g.data_offset() + 128 + 64, "each tensor padded to 32");
}

#[test]
fn io_error_names_the_path() {
    let e = GgufFile::open("/nonexistent/dir/model.gguf").unwrap_err();
    assert!(matches!(&e, GgufError::Io { path, .. } if path.ends_with("model.gguf")));
    // The message is the path; the OS error is the source, so a chain report says each once.
    assert_eq!(e.to_string(), "/nonexistent/dir/model.gguf");
    let source = std::error::Error::source(&e).expect("the OS error").to_string();
    assert!(source.contains("No such file"), "{source}");
}

#[test]
fn bad_magic() {
    let mut b = two_tensors();
    b[..4].copy_from_slice(b"GGML");
    assert!(matches!(err(&b), GgufError::BadMagic { found } if &found == b"GGML"));
    assert!(matches!(err(b"GG"), GgufError::Truncated { needed: 4, available: 2, .. }));
}

#[test]
fn versions() {
    let mut b = two_tensors();
    for (v, ok) in [(2, true), (3, true), (0, false), (1, false), (4, false)] {
        put_u32(&mut b, 4, v);
        match Gguf::parse(&b) {
            Ok(g) => assert!(ok && g.version() == v),
            Err(GgufError::UnsupportedVersion { version }) => assert!(!ok && version == v),
            Err(e) => panic!("version {v}: {e}"),
        }
    }
    put_u32(&mut b, 4, 1);
    assert!(err(&b).to_string().contains("v1 is obsolete"));
    put_u32(&mut b, 4, 0x0300_0000);
    assert!(matches!(err(&b), GgufError::BigEndian));
}

#[test]
fn truncated_header_and_absurd_counts() {
    let b = two_tensors();
    let e = err(&b[..20]);
    assert!(
        matches!(&e, GgufError::Truncated { what, offset: 16, needed: 8, available: 4 } if what == "metadata entry count"),
        "{e}"
    );

    let mut b = two_tensors();
    put_u64(&mut b, 16, u64::MAX);
    let e = err(&b);
    assert!(matches!(&e, GgufError::Truncated { needed: u64::MAX, offset: 24, .. }), "{e}");

    let mut b = two_tensors();
    put_u64(&mut b, 8, 1 << 40);
    let e = err(&b);
    assert!(matches!(&e, GgufError::Truncated { what, .. } if what.contains("tensor table")), "{e}");
}

#[test]
fn string_length_too_large_or_past_the_end() {
    let mut b = two_tensors();
    let key_len = find(&b, b"general.architecture") - 8;
    put_u64(&mut b, key_len, MAX_STRING_LEN + 1);
    assert!(matches!(err(&b), GgufError::TooLarge { limit: MAX_STRING_LEN, .. }));
    let len = b.len() as u64;
    put_u64(&mut b, key_len, len);
    let e = err(&b);
    assert!(matches!(&e, GgufError::Truncated { what, .. } if what == "key of metadata entry 0"), "{e}");
}

#[test]
fn invalid_utf8_key() {
    let mut b = two_tensors();
    let at = find(&b, b"general.architecture");
    b[at] = 0xff;
    assert!(matches!(err(&b), GgufError::InvalidUtf8 { what } if what == "key of metadata entry 0"));
}

#[test]
fn unknown_value_types() {
    let mut w = GgufWriter::new();
    w.add("scalar", Value::U8(1)).add("arr", Value::from(vec![1u8, 2]));
    let good = w.to_bytes();
    let mut b = good.clone();
    let at = find(&b, b"scalar") + 6;
    put_u32(&mut b, at, 13);
    let e = err(&b);
    assert!(matches!(&e, GgufError::BadValueType { id: 13, what } if what.contains("'scalar'")), "{e}");
    let mut b = good;
    let at = find(&b, b"arr") + 3 + 4;
    put_u32(&mut b, at, 99);
    let e = err(&b);
    assert!(matches!(&e, GgufError::BadValueType { id: 99, what } if what == "element type of array 'arr'"), "{e}");
}

#[test]
fn bools_must_be_0_or_1() {
    let mut w = GgufWriter::new();
    w.add("flag", Value::Bool(true)).add("flags", Value::from(vec![true, false]));
    let good = w.to_bytes();
    let mut b = good.clone();
    let at = find(&b, b"flag") + 4 + 4;
    b[at] = 2;
    assert!(matches!(err(&b), GgufError::BadBool { key, value: 2 } if key == "flag"));
    let mut b = good;
    let at = find(&b, b"flags") + 5 + 4 + 4 + 8 + 1;
    b[at] = 0x80;
    assert!(matches!(err(&b), GgufError::BadBool { key, value: 0x80 } if key == "flags"));
}

#[test]
fn empty_and_duplicate_keys() {
    let mut w = GgufWriter::new();
    w.add("a", Value::U8(0)).add("", Value::U8(0));
    assert!(matches!(err(&w.to_bytes()), GgufError::EmptyKey { index: 1 }));

    let mut w = GgufWriter::new();
    w.add("key.aa", Value::U8(0)).add("key.ab", Value::U8(1));
    let mut b = w.to_bytes();
    let at = find(&b, b"key.ab") + 5;
    b[at] = b'a';
    assert!(matches!(err(&b), GgufError::DuplicateKey { key } if key == "key.aa"));
}

#[test]
fn duplicate_tensor() {
    let mut w = GgufWriter::new();
    w.add_tensor("t.aa", DType::F32, &[8], vec![0u8; 32]).unwrap();
    w.add_tensor("t.ab", DType::F32, &[8], vec![0u8; 32]).unwrap();
    let mut b = w.to_bytes();
    let at = find(&b, b"t.ab") + 3;
    b[at] = b'a';
    assert!(matches!(err(&b), GgufError::DuplicateTensor { name } if name == "t.aa"));
    assert!(matches!(w.add_tensor("t.aa", DType::F32, &[8], vec![0u8; 32]), Err(GgufError::DuplicateTensor { .. })));
}

#[test]
fn alignment_must_be_a_u32_power_of_two() {
    for bad in [0u32, 48] {
        let mut w = GgufWriter::new();
        w.add("general.alignment", Value::U32(bad));
        assert!(matches!(err(&w.to_bytes()), GgufError::BadAlignment { value } if value == u64::from(bad)));
    }
    let mut w = GgufWriter::new();
    w.add("general.alignment", Value::U64(32));
    let e = err(&w.to_bytes());
    assert!(matches!(&e, GgufError::WrongType { expected: "u32", found, .. } if found == "u64"), "{e}");
}

#[test]
fn tensor_dims() {
    for n in [0, 5, u32::MAX] {
        let mut b = two_tensors();
        let at = n_dims_at(&b, "t.first");
        put_u32(&mut b, at, n);
        let e = err(&b);
        assert!(matches!(&e, GgufError::BadDims { tensor, n_dims } if tensor == "t.first" && *n_dims == n), "{e}");
    }
    let mut b = two_tensors();
    let at = n_dims_at(&b, "t.first") + 4;
    put_u64(&mut b, at, u64::MAX);
    assert!(matches!(err(&b), GgufError::TooLarge { value: u64::MAX, .. }));
    let mut b = two_tensors();
    let at = n_dims_at(&b, "t.first") + 4;
    put_u64(&mut b, at, 1 << 40);
    put_u64(&mut b, at + 8, 1 << 40);
    assert!(matches!(err(&b), GgufError::Overflow { tensor } if tensor == "t.first"));
}

#[test]
fn tensor_types() {
    let mut b = two_tensors();
    let (ty, _) = type_and_offset_at(&b, "t.first", 2);
    put_u32(&mut b, ty, 4); // Q4_2, removed from ggml
    assert!(matches!(err(&b), GgufError::UnknownType { tensor, id: 4 } if tensor == "t.first"));

    let mut b = two_tensors();
    let at = n_dims_at(&b, "t.second") + 4;
    put_u64(&mut b, at, 33);
    let e = err(&b);
    assert!(matches!(&e, GgufError::PartialBlock { dtype: DType::Q4_0, ne0: 33, .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "tensor 't.second': row of 33 elements is not a whole number of Q4_0 blocks (32 elements each)"
    );
}

#[test]
fn tensor_offsets() {
    let mut b = two_tensors();
    let (_, off) = type_and_offset_at(&b, "t.second", 2);
    put_u64(&mut b, off, 130);
    assert!(matches!(err(&b), GgufError::Misaligned { offset: 130, alignment: 32, .. }));

    put_u64(&mut b, off, 96);
    let e = err(&b);
    assert!(matches!(&e, GgufError::Overlap { first, second } if first == "t.first" && second == "t.second"), "{e}");

    put_u64(&mut b, off, 1 << 20);
    let e = err(&b);
    assert!(matches!(&e, GgufError::OutOfBounds { tensor, .. } if tensor == "t.second"), "{e}");

    put_u64(&mut b, off, u64::MAX - 31);
    assert!(matches!(err(&b), GgufError::Overflow { .. }));

    // Cutting into the data section leaves the last tensor out of bounds.
    let b = two_tensors();
    let e = err(&b[..b.len() - 40]);
    assert!(matches!(e, GgufError::OutOfBounds { .. }), "{e}");
}

#[test]
fn padding_before_data_must_exist_when_there_are_tensors() {
    let mut w = GgufWriter::new();
    w.add_tensor("empty", DType::F32, &[0], Vec::new()).unwrap();
    let b = w.to_bytes();
    let g = Gguf::parse(&b).unwrap();
    assert_eq!(g.tensor("empty").unwrap().n_bytes(), 0);
    let infos_end = n_dims_at(&b, "empty") + 4 + 8 + 4 + 8;
    let e = err(&b[..infos_end]);
    assert!(matches!(&e, GgufError::Truncated { what, .. } if what.contains("padding")), "{e}");
}

#[test]
fn nesting_depth_is_capped() {
    fn nest(depth: u32) -> Array {
        (1..depth).fold(Array::U8(vec![7]), |a, _| Array::Array(vec![a]))
    }
    let mut w = GgufWriter::new();
    w.add("ok", Value::Array(nest(MAX_ARRAY_DEPTH)));
    let g = Gguf::parse(&w.to_bytes()).unwrap();
    assert_eq!(g.get("ok"), Some(&Value::Array(nest(MAX_ARRAY_DEPTH))));
    w.add("deep", Value::Array(nest(MAX_ARRAY_DEPTH + 1)));
    assert!(matches!(err(&w.to_bytes()), GgufError::TooLarge { value: 9, limit: 8, .. }));
}

#[test]
fn typed_getters() {
    let mut w = GgufWriter::new();
    w.add("s", Value::from("x")).add("n", Value::I32(-5)).add("b", Value::Bool(true)).add("f", Value::F32(0.5));
    let g = Gguf::parse(&w.to_bytes()).unwrap();
    assert_eq!(g.get_str("s").unwrap(), Some("x"));
    assert_eq!(g.get_f64("n").unwrap(), Some(-5.0));
    assert_eq!(g.get_bool("b").unwrap(), Some(true));
    assert_eq!(g.get_f64("f").unwrap(), Some(0.5));
    assert_eq!(g.get_u64("missing").unwrap(), None);
    let e = g.get_u64("n").unwrap_err();
    assert_eq!(e.to_string(), "metadata key 'n': expected non-negative integer, found i32 -5");
    assert!(matches!(g.get_array("s"), Err(GgufError::WrongType { expected: "array", .. })));
    assert!(matches!(g.get_bool("f"), Err(GgufError::WrongType { .. })));
}

#[test]
fn writer_checks_tensors() {
    let mut w = GgufWriter::new();
    let e = w.add_tensor("t", DType::F32, &[4], vec![0u8; 15]).err().unwrap();
    assert_eq!(e.to_string(), "tensor 't': 15 bytes of data given, its shape and type need 16");
    assert!(matches!(w.add_tensor("t", DType::F32, &[], vec![]), Err(GgufError::BadDims { n_dims: 0, .. })));
    assert!(matches!(w.add_tensor("t", DType::F32, &[1; 5], vec![0; 4]), Err(GgufError::BadDims { n_dims: 5, .. })));
    assert!(matches!(w.add_tensor("t", DType::Q8_0, &[16], vec![]), Err(GgufError::PartialBlock { .. })));
    assert!(matches!(
        w.add_tensor("x".repeat(64), DType::F32, &[1], vec![0; 4]),
        Err(GgufError::TooLarge { value: 64, .. })
    ));
    w.add_tensor("x".repeat(63), DType::F32, &[1], vec![0; 4]).unwrap();
}

#[test]
fn writer_alignment_and_key_replacement() {
    let mut w = GgufWriter::new();
    w.add("a", Value::U8(1)).set_alignment(256).add("b", Value::U8(2)).add("a", Value::U8(3));
    w.add_tensor("t", DType::F32, &[1], vec![0; 4]).unwrap();
    let b = w.to_bytes();
    let g = Gguf::parse(&b).unwrap();
    let keys: Vec<_> = g.metadata().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "general.alignment", "b"]);
    assert_eq!(g.get("a"), Some(&Value::U8(3)));
    assert_eq!((g.alignment(), g.data_offset() % 256, b.len() % 256), (256, 0, 0));
    assert_eq!(w.write_to(&mut Vec::new()).unwrap(), b.len() as u64);
}

#[test]
#[should_panic(expected = "power of two")]
fn writer_rejects_bad_alignment() {
    GgufWriter::new().set_alignment(48);
}
