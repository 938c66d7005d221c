//! [`native_check`]: whether the llama.cpp linked in was compiled for this CPU.
//!
//! `llama-cpp-sys-2` compiles ggml for the target features rustc is given: a default build
//! gets x86-64's baseline (SSE2), and only `-C target-cpu=native` (or explicit
//! `target-feature`s) gets AVX2 or AVX-512. ggml picks its kernels at compile time, so such a
//! build runs far below what the CPU can do, and a comparison against it flatters pupil.

use serde::Serialize;

use super::LlamaError;
use super::sys::system_info;

/// What [`native_check`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NativeCheck {
    /// Whether ggml has the host's best ISA among AVX2 and AVX-512 (`true` off x86-64, where
    /// this is not checked).
    pub native: bool,
    /// The host's best ISA: `AVX512`, `AVX2`, `none`, or `unknown` off x86-64.
    pub host_best: &'static str,
    /// The best of them ggml was compiled with.
    pub ggml_best: &'static str,
    /// `llama_print_system_info()` as llama.cpp prints it.
    pub system_info: String,
}

/// Whether `flag` (`AVX2`, `AVX512`) is listed as `= 1` in a system-info string.
fn has_flag(info: &str, flag: &str) -> bool {
    info.split('|').filter_map(|kv| kv.split_once('=')).any(|(k, v)| {
        let k = k.rsplit(':').next().unwrap_or(k).trim();
        k == flag && v.trim() == "1"
    })
}

fn host_best() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some("AVX512");
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some("AVX2");
        }
        Some("none")
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Compares the ISA ggml was compiled with against the host's.
pub fn native_check() -> Result<NativeCheck, LlamaError> {
    let system_info = system_info()?;
    let ggml_best = ["AVX512", "AVX2"].into_iter().find(|f| has_flag(&system_info, f)).unwrap_or("none");
    let (native, host_best) = match host_best() {
        Some(h) => (h == "none" || has_flag(&system_info, h), h),
        None => (true, "unknown"),
    };
    Ok(NativeCheck { native, host_best, ggml_best, system_info })
}

#[cfg(test)]
mod tests {
    use super::has_flag;

    #[test]
    fn flags_are_matched_whole() {
        let info = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512_VNNI = 1 | AVX512 = 0 | LLAMAFILE = 1 | ";
        assert!(has_flag(info, "AVX2"));
        assert!(!has_flag(info, "AVX512"));
        assert!(has_flag(info, "SSE3"));
    }
}
