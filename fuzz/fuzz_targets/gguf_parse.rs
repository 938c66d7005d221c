//! Fuzz `Gguf::parse`: any bytes must give `Ok` or `Err`, never a panic, an out-of-bounds
//! read or a huge allocation (libFuzzer's `-rss_limit_mb`/`-malloc_limit_mb` catch those).
//! On `Ok`, every tensor's data range is sliced and read, and the parsed header is written
//! back with `GgufWriter` and re-parsed: the metadata and tensor table must survive.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pupil::gguf::{Gguf, GgufWriter};

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::parse(data) else { return };
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        assert!(std::ptr::eq(g.get(k).expect("indexed"), v));
        w.add(k.clone(), v.clone());
    }
    let mut checksum = 0u8;
    for t in g.tensors() {
        let r = g.tensor_range(t);
        // Panics (a finding) if validation let a range escape the input.
        let bytes = &data[r.start as usize..r.end as usize];
        assert_eq!(bytes.len() as u64, t.n_bytes());
        assert_eq!(r.start % g.alignment(), 0);
        checksum ^= bytes.iter().fold(0, |a, &b| a ^ b);
        assert_eq!(g.tensor(&t.name), Some(t));
        w.add_tensor(t.name.clone(), t.dtype, &t.dims, bytes).expect("a parsed tensor is writable");
    }
    std::hint::black_box(checksum);

    let again = Gguf::parse(&w.to_bytes()).expect("written file parses");
    // Debug strings compare NaN payloads as equal, which `PartialEq` on floats would not.
    assert_eq!(format!("{:?}", again.metadata()), format!("{:?}", g.metadata()));
    assert_eq!(again.alignment(), g.alignment());
    for (a, b) in again.tensors().iter().zip(g.tensors()) {
        assert_eq!((&a.name, &a.dims, a.dtype), (&b.name, &b.dims, b.dtype));
    }
    assert_eq!(again.tensors().len(), g.tensors().len());
});
