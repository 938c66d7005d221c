//! The Gemma 3 270M pair the student-versus-teacher tests use: the Q4_K_M test model as the
//! student, and a Q8_0 teacher quantized from it with `pupil::quantize` (close to it, not
//! equal). Included with `#[path]` by the tests that need it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The Q4_K_M test model.
pub fn student() -> PathBuf {
    let p = PathBuf::from(format!("{}/models/gemma-3-270m-q4_k_m.gguf", env!("CARGO_MANIFEST_DIR")));
    assert!(p.exists(), "{} is missing: run models/fetch-gemma3-270m.sh", p.display());
    p
}

/// The Q8_0 teacher, quantized once into the target's test directory (written to a temporary
/// name and renamed, so test binaries running at once never read half a file).
pub fn teacher() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("gemma-3-270m-q8_0-from-q4_k_m.gguf");
        if !out.exists() {
            let ftype = pupil::quantize::parse_type("Q8_0").unwrap();
            let opts = pupil::quantize::Options { allow_requantize: true, ..pupil::quantize::Options::new(ftype) };
            let tmp = out.with_extension(format!("tmp{}", std::process::id()));
            pupil::quantize::Quantizer::open(student(), &opts).unwrap().write(&tmp, |_| {}).unwrap();
            std::fs::rename(&tmp, &out).unwrap();
        }
        out
    })
    .clone()
}
