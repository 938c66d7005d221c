//! Hostile input for `Gguf::parse`: truncation at every offset, random byte flips, rewrites
//! of every length and count field with extreme values, and splices. Whatever the bytes, the
//! parser must return `Ok` or `Err` (a panic fails the test), must not allocate much more
//! than the input's size, and on `Ok` every tensor range must lie inside the input.
//!
//! Field positions come from `Fields::walk`, a deliberately separate walker over a valid file,
//! so the test does not trust the parser to tell it where the fields are.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pupil::gguf::{Array, Gguf, GgufError, GgufWriter, Value};
use pupil::kernels::DType;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------
// Per-thread allocation tracking, so parallel tests do not disturb each other's numbers.

struct Tracking;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn track(delta: isize) {
    // `try_with`: allocations during thread teardown must not touch a destroyed slot.
    let _ = LIVE.try_with(|live| {
        let now = live.get().saturating_add_signed(delta);
        live.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: forwards to `System` unchanged; the bookkeeping only touches thread-local cells
// (const-initialized, so it never allocates and cannot recurse into the allocator).
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        track(l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        track(-(l.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        track(new as isize - l.size() as isize);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Tracking = Tracking;

/// Most bytes the parser may hold at once per input byte, plus a fixed allowance. Measured
/// worst case is about 10x (many 14-byte metadata entries, each an owned key, a `Value`
/// and an index slot); anything like 2^64 elements blows far past this.
const MAX_ALLOC_PER_BYTE: usize = 24;
const ALLOC_ALLOWANCE: usize = 64 << 10;

/// Parses `bytes`, checks the allocation bound and, on success, every tensor range.
/// Returns the parse result for callers that check the error kind.
fn parse_checked(bytes: &[u8]) -> Result<Gguf, GgufError> {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let r = Gguf::parse(bytes);
    let peak = PEAK.with(Cell::get) - base;
    assert!(
        peak <= MAX_ALLOC_PER_BYTE * bytes.len() + ALLOC_ALLOWANCE,
        "parsing {} bytes allocated {peak} bytes at peak ({:?})",
        bytes.len(),
        r.as_ref().err()
    );
    if let Ok(g) = &r {
        for t in g.tensors() {
            let range = g.tensor_range(t);
            assert!(range.end <= bytes.len() as u64, "tensor '{}' {range:?} outside {} bytes", t.name, bytes.len());
            assert_eq!(range.end - range.start, t.n_bytes());
            assert_eq!(range.start % g.alignment(), 0);
            assert_eq!(g.tensor(&t.name), Some(t));
        }
        for (k, v) in g.metadata() {
            assert!(std::ptr::eq(g.get(k).unwrap(), v));
        }
    }
    r
}

// ---------------------------------------------------------------------------------------
// The sample file and an independent walker over its fields.

/// A small file with every value type, nested and empty arrays, and four tensors.
fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::from("llama"))
        .set_alignment(64)
        .add("u8", Value::U8(1))
        .add("i8", Value::I8(-2))
        .add("u16", Value::U16(3))
        .add("i16", Value::I16(-4))
        .add("u32", Value::U32(5))
        .add("i32", Value::I32(-6))
        .add("f32", Value::F32(7.5))
        .add("bool", Value::Bool(true))
        .add("string", Value::from("héllo"))
        .add("u64", Value::U64(8))
        .add("i64", Value::I64(-9))
        .add("f64", Value::F64(10.25))
        .add("tokens", Value::from(vec!["<s>".to_string(), "</s>".into(), "▁a".into()]))
        .add("scores", Value::from(vec![0.0f32, -1.0, -2.0]))
        .add("types", Value::from(vec![1i32, 3, 1]))
        .add("flags", Value::from(vec![true, false]))
        .add("bytes", Value::from(vec![1u8, 2, 3]))
        .add("empty", Value::Array(Array::U64(vec![])))
        .add("nested", Value::Array(Array::Array(vec![Array::U16(vec![1, 2]), Array::String(vec!["x".into()])])));
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
    w.add_tensor("a.f32", DType::F32, &[4, 2], f32s).unwrap();
    w.add_tensor("b.f16", DType::F16, &[8], vec![0x3c; 16]).unwrap();
    w.add_tensor("c.q4_0", DType::Q4_0, &[32, 2], vec![0x11; 36]).unwrap();
    w.add_tensor("d.q8_0", DType::Q8_0, &[32], vec![0x22; 34]).unwrap();
    w.to_bytes()
}

/// Positions of the header's, metadata's and tensor infos' integer fields in a valid file.
#[derive(Default)]
struct Fields {
    /// Lengths, counts, dims and offsets.
    u64s: Vec<usize>,
    /// Value types, element types, n_dims and tensor types.
    u32s: Vec<usize>,
    /// First byte after the tensor infos.
    infos_end: usize,
}

impl Fields {
    fn walk(b: &[u8]) -> Fields {
        let u32_at = |p: usize| u32::from_le_bytes(b[p..p + 4].try_into().unwrap());
        let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
        let mut f = Fields { u64s: vec![8, 16], ..Fields::default() };
        let mut pos = 24;
        let string = |f: &mut Fields, pos: &mut usize| {
            f.u64s.push(*pos);
            *pos += 8 + u64_at(*pos);
        };
        fn value(f: &mut Fields, b: &[u8], pos: &mut usize, ty: u32) {
            let u64_at = |p: usize| u64::from_le_bytes(b[p..p + 8].try_into().unwrap()) as usize;
            match ty {
                0 | 1 | 7 => *pos += 1,
                2 | 3 => *pos += 2,
                4..=6 => *pos += 4,
                10..=12 => *pos += 8,
                8 => {
                    f.u64s.push(*pos);
                    *pos += 8 + u64_at(*pos);
                }
                9 => {
                    f.u32s.push(*pos);
                    let elem = u32::from_le_bytes(b[*pos..*pos + 4].try_into().unwrap());
                    f.u64s.push(*pos + 4);
                    let n = u64_at(*pos + 4);
                    *pos += 12;
                    for _ in 0..n {
                        value(f, b, pos, elem);
                    }
                }
                _ => panic!("walker met type {ty}"),
            }
        }
        let (n_tensors, n_kv) = (u64_at(8), u64_at(16));
        for _ in 0..n_kv {
            string(&mut f, &mut pos);
            f.u32s.push(pos);
            let ty = u32_at(pos);
            pos += 4;
            value(&mut f, b, &mut pos, ty);
        }
        for _ in 0..n_tensors {
            string(&mut f, &mut pos);
            f.u32s.push(pos);
            let n_dims = u32_at(pos) as usize;
            pos += 4;
            for _ in 0..n_dims {
                f.u64s.push(pos);
                pos += 8;
            }
            f.u32s.push(pos);
            f.u64s.push(pos + 4);
            pos += 12;
        }
        f.infos_end = pos;
        f
    }
}

// ---------------------------------------------------------------------------------------

#[test]
fn sample_parses_and_walker_agrees() {
    let b = sample();
    let g = parse_checked(&b).unwrap();
    let f = Fields::walk(&b);
    assert_eq!(g.data_offset(), (f.infos_end as u64).next_multiple_of(64));
    assert_eq!(g.tensors().len(), 4);
    assert_eq!(g.metadata().len(), 21);
    assert!(f.u64s.len() > 40 && f.u32s.len() > 25, "{} u64 and {} u32 fields", f.u64s.len(), f.u32s.len());
}

#[test]
fn truncation_at_every_offset_is_an_error() {
    let b = sample();
    let g = Gguf::parse(&b).unwrap();
    let infos_end = Fields::walk(&b).infos_end as u64;
    let data_end = g.tensors().iter().map(|t| g.tensor_range(t).end).max().unwrap();
    for cut in 0..b.len() {
        let r = parse_checked(&b[..cut]);
        let cut = cut as u64;
        match r {
            Err(GgufError::Truncated { offset, needed, available, .. }) if cut < g.data_offset() => {
                assert!(offset + available == cut && needed > available, "cut {cut}: {offset} {needed} {available}");
                assert!(offset <= infos_end, "cut {cut}: error at {offset}, past the tensor infos");
            }
            Err(GgufError::OutOfBounds { end, file_size, .. }) if (g.data_offset()..data_end).contains(&cut) => {
                assert!(end > file_size && file_size == cut);
            }
            // Only the padding after the last tensor may go.
            Ok(_) if cut >= data_end => {}
            other => panic!("cut at {cut} of {}: {:?}", b.len(), other.map(|_| ())),
        }
    }
}

#[test]
fn random_byte_flips_never_panic() {
    let b = sample();
    let mut rng = SmallRng::seed_from_u64(0x6767_7566);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..20_000 {
        let mut m = b.clone();
        for _ in 0..rng.random_range(1..=4) {
            let i = rng.random_range(0..m.len());
            m[i] = if rng.random_bool(0.5) { m[i] ^ (1 << rng.random_range(0..8)) } else { rng.random() };
        }
        match parse_checked(&m) {
            Ok(_) => ok += 1,
            Err(_) => err += 1,
        }
    }
    // Both outcomes must be common, or the corruption is not reaching the checks.
    assert!(ok > 1000 && err > 1000, "{ok} ok, {err} err");
}

/// Values that break naive arithmetic: zero, boundaries of u32/i64/u64, the file size.
fn extreme_u64(rng: &mut SmallRng, old: u64, len: u64) -> u64 {
    let choices = [
        0,
        1,
        2,
        old.wrapping_add(1),
        old.wrapping_sub(1),
        old.wrapping_mul(2),
        len,
        len - 1,
        len + 1,
        31,
        32,
        64,
        u32::MAX as u64,
        1 << 32,
        i64::MAX as u64,
        1 << 63,
        u64::MAX,
        u64::MAX - 1,
        u64::MAX / 2 + 1,
        1 << rng.random_range(0..64),
        rng.random(),
    ];
    choices[rng.random_range(0..choices.len())]
}

fn extreme_u32(rng: &mut SmallRng, old: u32) -> u32 {
    let choices = [0, 1, 4, 5, 9, 12, 13, 31, 39, 43, 1000, old.wrapping_add(1), u32::MAX, 1 << 31, rng.random()];
    choices[rng.random_range(0..choices.len())]
}

#[test]
fn length_and_count_fields_with_extreme_values_never_panic() {
    let b = sample();
    let f = Fields::walk(&b);
    let mut rng = SmallRng::seed_from_u64(42);
    let mut errors = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20_000 {
        let mut m = b.clone();
        for _ in 0..rng.random_range(1..=2) {
            if rng.random_bool(0.7) {
                let p = f.u64s[rng.random_range(0..f.u64s.len())];
                let old = u64::from_le_bytes(m[p..p + 8].try_into().unwrap());
                let v = extreme_u64(&mut rng, old, b.len() as u64);
                m[p..p + 8].copy_from_slice(&v.to_le_bytes());
            } else {
                let p = f.u32s[rng.random_range(0..f.u32s.len())];
                let old = u32::from_le_bytes(m[p..p + 4].try_into().unwrap());
                m[p..p + 4].copy_from_slice(&extreme_u32(&mut rng, old).to_le_bytes());
            }
        }
        let kind = match parse_checked(&m) {
            Ok(_) => "Ok".to_string(),
            Err(e) => format!("{e:?}").split([' ', '(', '{']).next().unwrap().to_string(),
        };
        *errors.entry(kind).or_default() += 1;
    }
    // The rewrites must reach deep checks, not just the first length field.
    for kind in
        ["Truncated", "TooLarge", "BadValueType", "BadDims", "UnknownType", "Misaligned", "OutOfBounds", "Overflow"]
    {
        assert!(errors.get(kind).copied().unwrap_or(0) > 0, "no {kind} in {errors:?}");
    }
}

#[test]
fn random_splices_never_panic() {
    let b = sample();
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..10_000 {
        let mut m = b.clone();
        let src = rng.random_range(0..b.len());
        let n = rng.random_range(1..=64.min(b.len() - src));
        let dst = rng.random_range(0..m.len());
        let chunk = b[src..src + n].to_vec();
        match rng.random_range(0..3) {
            0 => drop(m.splice(dst..dst, chunk)),
            1 => drop(m.splice(dst..(dst + n).min(m.len()), chunk)),
            _ => drop(m.drain(dst..(dst + n).min(m.len()))),
        }
        let _ = parse_checked(&m);
    }
}

#[test]
fn absurd_counts_fail_before_allocating() {
    let mut w = GgufWriter::new();
    w.add("a", Value::from(vec![0u32; 4])).add("s", Value::from(vec!["x".to_string()]));
    let good = w.to_bytes();
    let f = Fields::walk(&good);
    // Every u64 field (counts, array lengths, string lengths) set to huge values.
    for &p in &f.u64s {
        for v in [u64::MAX, u64::MAX / 4, 1 << 40, good.len() as u64 + 1] {
            let mut m = good.clone();
            m[p..p + 8].copy_from_slice(&v.to_le_bytes());
            let e = parse_checked(&m).expect_err("count past the end");
            assert!(matches!(e, GgufError::Truncated { .. } | GgufError::TooLarge { .. }), "field at {p} = {v}: {e}");
        }
    }
}

/// Writes small valid files for the fuzz corpus:
/// `cargo test --release --test gguf_hostile -- --ignored write_fuzz_seeds`.
#[test]
#[ignore = "writes the fuzz seed corpus"]
fn write_fuzz_seeds() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/gguf_parse");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(format!("{dir}/seed-sample.gguf"), sample()).unwrap();
    std::fs::write(format!("{dir}/seed-empty.gguf"), GgufWriter::new().to_bytes()).unwrap();
    let mut w = GgufWriter::new();
    w.add("tokenizer.ggml.tokens", Value::from(vec!["a".to_string(), "b".into()]));
    w.add_tensor("t", DType::Q4_K, &[256], vec![0; 144]).unwrap();
    w.add_tensor("e", DType::F32, &[0, 3], vec![]).unwrap();
    std::fs::write(format!("{dir}/seed-qk.gguf"), w.to_bytes()).unwrap();
}

// ---------------------------------------------------------------------------------------
// Regressions found by `fuzz/` (see fuzz/README.md), named for what broke.

/// fuzz finding 1: a 230-byte file with no tensors and `general.alignment = 2^30` parsed
/// fine, but writing it back padded the empty data section to 1 GiB (libFuzzer
/// out-of-memory). The writer no longer pads an empty data section.
#[test]
fn fuzz1_huge_alignment_without_tensors_is_not_padded_on_write() {
    let mut w = GgufWriter::new();
    w.add("general.architecture", Value::from("llama")).add("general.alignment", Value::U32(1 << 30));
    let b = w.to_bytes();
    assert!(b.len() < 200, "{} bytes", b.len());
    let g = parse_checked(&b).unwrap();
    assert_eq!(g.alignment(), 1 << 30);
    assert!(g.tensors().is_empty());
    // With a tensor, the data section must really be there, so the parser rejects the file
    // instead of a reader trusting the alignment.
    w.add_tensor("t", DType::F32, &[1], vec![0; 4]).unwrap();
    let mut head = Head(Vec::new());
    assert!(w.write_to(&mut head).is_err(), "stopped after the first 4 KiB");
    assert!(matches!(parse_checked(&head.0), Err(GgufError::Truncated { .. })));
}

/// A writer that keeps the first 4 KiB and then fails, to look at the start of huge files.
struct Head(Vec<u8>);

impl std::io::Write for Head {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = b.len().min(4096 - self.0.len());
        if n == 0 {
            return Err(std::io::Error::other("head full"));
        }
        self.0.extend_from_slice(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
