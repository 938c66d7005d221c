//! Write → map → read: every value type and several tensor types survive a round trip through
//! a real file, tensor data is borrowed from the mapping, and real GGUF files (llama.cpp's
//! vocabulary files, and the Gemma 3 270M model when fetched) open with the facts we know.

use std::path::Path;

use pupil::gguf::{Array, Gguf, GgufError, GgufFile, GgufWriter, TensorInfo, Value};
use pupil::kernels::DType;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

#[path = "support/llama_tree.rs"]
mod llama_tree;

const VOCAB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/.cache/llama.cpp/models");
const GEMMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/models/gemma-3-270m-q4_k_m.gguf");

fn every_value_type() -> Vec<(String, Value)> {
    let nested = Array::Array(vec![
        Array::Array(vec![Array::I64(vec![-1, i64::MAX]), Array::Bool(vec![])]),
        Array::String(vec!["inner".into(), String::new()]),
        Array::F64(vec![f64::MIN_POSITIVE]),
    ]);
    [
        ("general.architecture", Value::from("llama")),
        ("v.u8", Value::U8(u8::MAX)),
        ("v.i8", Value::I8(i8::MIN)),
        ("v.u16", Value::U16(u16::MAX)),
        ("v.i16", Value::I16(i16::MIN)),
        ("v.u32", Value::U32(u32::MAX)),
        ("v.i32", Value::I32(i32::MIN)),
        ("v.f32", Value::F32(f32::INFINITY)),
        ("v.bool", Value::Bool(false)),
        ("v.string", Value::from("ünïcödé ▁ 🦀\n\"quoted\"")),
        ("v.empty_string", Value::from("")),
        ("v.u64", Value::U64(u64::MAX)),
        ("v.i64", Value::I64(i64::MIN)),
        ("v.f64", Value::F64(-1e300)),
        ("a.u8", Value::from(vec![0u8, 255])),
        ("a.i8", Value::from(vec![-128i8, 127])),
        ("a.u16", Value::from(vec![1u16, 65535])),
        ("a.i16", Value::from(vec![-1i16])),
        ("a.u32", Value::from(vec![7u32; 100])),
        ("a.i32", Value::from(vec![-7i32, 0, 7])),
        ("a.f32", Value::from(vec![0.5f32, -0.0, f32::MAX])),
        ("a.bool", Value::from(vec![true, false, true])),
        ("a.string", Value::from(vec!["<s>".to_string(), "</s>".into(), "▁the".into(), String::new()])),
        ("a.u64", Value::from(vec![u64::MAX])),
        ("a.i64", Value::from(vec![i64::MIN])),
        ("a.f64", Value::from(vec![std::f64::consts::PI])),
        ("a.empty", Value::Array(Array::F32(vec![]))),
        ("a.nested", Value::Array(nested)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// (name, type, dims) of tensors with hand-checked sizes.
const TENSORS: &[(&str, DType, &[u64], usize)] = &[
    ("token_embd.weight", DType::Q4_K, &[256, 3], 3 * 144),
    ("blk.0.attn_norm.weight", DType::F32, &[17], 17 * 4),
    ("blk.0.attn_q.weight", DType::Q8_0, &[64, 5], 2 * 34 * 5),
    ("blk.0.ffn_up.weight", DType::Q4_0, &[32, 2, 3], 18 * 6),
    ("blk.0.ffn_down.weight", DType::F16, &[8, 1, 1, 2], 8 * 2 * 2),
    ("empty", DType::F32, &[0, 4], 0),
];

#[test]
fn everything_survives_a_round_trip_through_a_mapped_file() {
    let mut rng = SmallRng::seed_from_u64(3);
    let metadata = every_value_type();
    let data: Vec<Vec<u8>> = TENSORS.iter().map(|t| (0..t.3).map(|_| rng.random()).collect()).collect();

    let mut w = GgufWriter::new();
    w.set_alignment(128);
    for (k, v) in &metadata {
        w.add(k.clone(), v.clone());
    }
    for ((name, dtype, dims, _), d) in TENSORS.iter().zip(&data) {
        w.add_tensor(*name, *dtype, dims, &d[..]).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rt.gguf");
    w.write_file(&path).unwrap();

    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path);
    assert_eq!(f.file_size(), std::fs::metadata(&path).unwrap().len());
    assert_eq!(f.file_size(), w.to_bytes().len() as u64);
    assert_eq!((f.version(), f.alignment()), (3, 128));
    assert_eq!(f.data_offset() % 128, 0);
    assert_eq!(f.architecture(), Some("llama"));

    // Metadata: same keys, same order (general.alignment inserted where it was set), same values.
    let mut expected = metadata.clone();
    expected.insert(0, ("general.alignment".into(), Value::U32(128)));
    assert_eq!(f.metadata(), &expected[..]);
    for (k, v) in &expected {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.get_str("v.string").unwrap(), Some("ünïcödé ▁ 🦀\n\"quoted\""));
    assert_eq!(f.get_u64("v.u64").unwrap(), Some(u64::MAX));
    assert_eq!(f.get_f64("v.i32").unwrap(), Some(f64::from(i32::MIN)));
    assert_eq!(f.get_bool("v.bool").unwrap(), Some(false));
    assert_eq!(f.get_array("a.string").unwrap().unwrap().as_strings().unwrap()[2], "▁the");
    assert_eq!(
        f.get("a.f32").and_then(Value::as_array).and_then(Array::as_f32s).unwrap()[1].to_bits(),
        (-0.0f32).to_bits()
    );
    assert_eq!(f.get("a.i32").and_then(Value::as_array).and_then(Array::as_i32s), Some(&[-7, 0, 7][..]));
    assert_eq!(
        serde_json::to_string(f.get("a.nested").unwrap()).unwrap(),
        r#"[[[-1,9223372036854775807],[]],["inner",""],[2.2250738585072014e-308]]"#
    );

    // Tensors: same table, data equal and borrowed from the mapping, aligned in memory.
    assert_eq!(f.tensors().len(), TENSORS.len());
    let map = f.bytes().as_ptr_range();
    for (((name, dtype, dims, size), d), t) in TENSORS.iter().zip(&data).zip(f.tensors()) {
        assert_eq!((t.name.as_str(), t.dtype, &t.dims[..]), (*name, *dtype, *dims));
        assert_eq!(t.n_bytes(), *size as u64);
        assert_eq!(t.n_elements(), dims.iter().product::<u64>());
        assert_eq!(t.offset % 128, 0);
        let bytes = f.tensor_data(t);
        assert_eq!(bytes, &d[..], "{name}");
        assert!(map.start <= bytes.as_ptr() && bytes.as_ptr_range().end <= map.end, "{name} not in the mapping");
        assert_eq!(bytes.as_ptr() as usize % 128, 0, "{name} misaligned in memory");
        assert_eq!(f.tensor_bytes(name).map(<[u8]>::as_ptr), Some(bytes.as_ptr()));
        assert_eq!(f.tensor(name), Some(t));
    }
    assert_eq!(f.tensor_bytes("missing"), None);

    // Parsing the bytes directly gives the same header.
    let g = Gguf::parse(f.bytes()).unwrap();
    assert_eq!((g.metadata(), g.tensors(), g.data_offset()), (f.metadata(), f.tensors(), f.data_offset()));
}

#[test]
fn io_errors_carry_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/x.gguf");
    let e = GgufWriter::new().write_file(&missing).unwrap_err();
    assert!(matches!(&e, GgufError::Io { path, .. } if path == &missing), "{e}");
    let e = GgufFile::open(dir.path().join("absent.gguf")).unwrap_err();
    assert!(e.to_string().contains("absent.gguf"), "{e}");

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(e, GgufError::Truncated { needed: 4, available: 0, .. }), "{e}");
}

#[test]
#[should_panic(expected = "outside")]
fn tensor_data_of_a_foreign_info_panics_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.gguf");
    GgufWriter::new().write_file(&path).unwrap();
    let f = GgufFile::open(&path).unwrap();
    let foreign = TensorInfo { name: "x".into(), dims: vec![1 << 20], dtype: DType::F32, offset: 0 };
    f.tensor_data(&foreign);
}

fn vocab(name: &str) -> GgufFile {
    GgufFile::open(Path::new(VOCAB_DIR).join(name)).unwrap()
}

#[test]
fn every_llama_cpp_vocab_file_opens() {
    let mut n = 0;
    for path in llama_tree::vocab_files() {
        let f = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tokens = f.get_array("tokenizer.ggml.tokens").unwrap().expect("token list").len();
        assert!(tokens > 30_000, "{}: {tokens} tokens", path.display());
        assert!(f.get_str("tokenizer.ggml.model").unwrap().is_some());
        assert!(f.architecture().is_some());
        assert_eq!(
            f.get_array("tokenizer.ggml.token_type").unwrap().map(Array::len),
            Some(tokens),
            "{}",
            path.display()
        );
        if let Some(scores) = f.get_array("tokenizer.ggml.scores").unwrap() {
            assert_eq!(scores.len(), tokens, "{}", path.display());
        }
        // Every value converts to JSON (what `pupil inspect --json` does).
        for (k, v) in f.metadata() {
            serde_json::to_string(v).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        n += 1;
    }
    // llama-cpp-python 0.3.36's tree (the version models/fetch-llama-cpp.sh pins) holds 19.
    assert_eq!(n, 19, "vocab files in {VOCAB_DIR}");
}

#[test]
fn llama_spm_vocab_facts() {
    let f = vocab("ggml-vocab-llama-spm.gguf");
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), Some("llama"));
    assert_eq!(f.architecture(), Some("llama"));
    let tokens = f.get_array("tokenizer.ggml.tokens").unwrap().and_then(Array::as_strings).unwrap();
    assert_eq!(tokens.len(), 32000);
    assert_eq!(&tokens[..3], ["<unk>", "<s>", "</s>"]);
    let scores = f.get_array("tokenizer.ggml.scores").unwrap().and_then(Array::as_f32s).unwrap();
    assert_eq!(scores.len(), tokens.len());
    assert_eq!(f.get_u64("tokenizer.ggml.bos_token_id").unwrap(), Some(1));
    assert!(f.tensors().is_empty());
}

#[test]
fn gpt2_vocab_facts() {
    let f = vocab("ggml-vocab-gpt-2.gguf");
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), Some("gpt2"));
    let merges = f.get_array("tokenizer.ggml.merges").unwrap().and_then(Array::as_strings).unwrap();
    assert!(merges.len() > 40_000);
    assert_eq!(f.get_array("tokenizer.ggml.tokens").unwrap().map(Array::len), Some(50257));
}

#[test]
fn gemma3_270m_if_fetched() {
    if !Path::new(GEMMA).exists() {
        println!("note: {GEMMA} absent (fetch it with models/fetch-gemma3-270m.sh); skipping");
        return;
    }
    let f = GgufFile::open(GEMMA).unwrap();
    assert_eq!(f.architecture(), Some("gemma3"));
    assert_eq!(f.tensors().len(), 236);
    let mut total = 0;
    for t in f.tensors() {
        assert_eq!(f.tensor_data(t).len() as u64, t.n_bytes());
        total += t.n_bytes();
    }
    assert!(total <= f.file_size() - f.data_offset());
    let emb = f.tensor("token_embd.weight").expect("token embeddings");
    assert_eq!(emb.dims.len(), 2);
    assert_eq!(f.get_u64("gemma3.block_count").unwrap(), Some(18));
}
