//! The kernels' source, compiled by NVRTC for the GPU that is present and cached on disk.
//!
//! All `.cu` files form one program, `prelude.cu` first: NVRTC's pip wheels ship no CUDA
//! headers, so the kernels include none and share what they need through the prelude. The
//! result is a cubin for the device's exact `sm_XY` (no PTX JIT at load, and no PTX version
//! for the driver to refuse), kept under the cache directory by a key of source, target and
//! NVRTC version.

use std::ffi::{CString, c_char};
use std::path::PathBuf;

use cudarc::nvrtc::{result, sys};

use super::GpuError;

/// The kernel sources, in compile order.
pub const FILES: [(&str, &str); 11] = [
    ("prelude.cu", include_str!("prelude.cu")),
    ("quantize.cu", include_str!("quantize.cu")),
    ("mmvq.cu", include_str!("mmvq.cu")),
    ("matvec_float.cu", include_str!("matvec_float.cu")),
    ("dequant.cu", include_str!("dequant.cu")),
    ("norm.cu", include_str!("norm.cu")),
    ("rope.cu", include_str!("rope.cu")),
    ("elementwise.cu", include_str!("elementwise.cu")),
    ("kv.cu", include_str!("kv.cu")),
    ("attention.cu", include_str!("attention.cu")),
    ("argmax.cu", include_str!("argmax.cu")),
];

/// The whole program, each file behind a `#line` so that NVRTC's messages name it.
pub fn program() -> String {
    let mut src = String::new();
    for (name, text) in FILES {
        src.push_str(&format!("#line 1 \"{name}\"\n{text}\n"));
    }
    src
}

/// NVRTC's version as `(major, minor)`; the library must be present ([`super::libs::NVRTC`]).
pub fn nvrtc_version() -> Result<(i32, i32), GpuError> {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }.result().map_err(|e| GpuError::Nvrtc(format!("{e:?}")))?;
    Ok((major, minor))
}

/// Register and spill figures ptxas gave one kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelStats {
    /// The entry point.
    pub name: String,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of spill stores.
    pub spill_stores: u32,
    /// Bytes of spill loads.
    pub spill_loads: u32,
}

/// A created NVRTC program, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: the handle came from `create_program` and is destroyed only here.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

const OPTIONS: [&str; 2] = ["--std=c++17", "-default-device"];

/// Compiles the program for `arch` (`sm_90`, `compute_80`) with `extra` options; returns the
/// program and NVRTC's log.
fn compile(arch: &str, extra: &[&str]) -> Result<(Program, String), GpuError> {
    let src = CString::new(program()).map_err(|_| GpuError::Nvrtc("a NUL byte in the kernel source".into()))?;
    let prog = Program(result::create_program(&src, Some(c"pupil.cu")).map_err(|e| GpuError::Nvrtc(format!("{e:?}")))?);
    let target = format!("--gpu-architecture={arch}");
    let opts: Vec<&str> = OPTIONS.iter().copied().chain([target.as_str()]).chain(extra.iter().copied()).collect();
    // SAFETY: `prog` is a live program from `create_program`.
    let compiled = unsafe { result::compile_program(prog.0, &opts) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog.0) }.map(|l| c_string(&l)).unwrap_or_default();
    if compiled.is_err() {
        let (major, minor) = nvrtc_version()?;
        return Err(GpuError::Compile { arch: arch.into(), version: format!("{major}.{minor}"), log });
    }
    Ok((prog, log))
}

fn c_string(chars: &[c_char]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The program as PTX for a virtual target (`compute_80`), for checks of the PTX version.
pub fn ptx(arch: &str) -> Result<String, GpuError> {
    let (prog, _) = compile(arch, &[])?;
    // SAFETY: `prog` was compiled successfully.
    let ptx = unsafe { result::get_ptx(prog.0) }.map_err(|e| GpuError::Nvrtc(format!("{e:?}")))?;
    Ok(c_string(&ptx))
}

/// The program as a cubin for `sm_XY` (`sm` = 10·major + minor), and NVRTC's log.
fn cubin_and_log(sm: u32, extra: &[&str]) -> Result<(Vec<u8>, String), GpuError> {
    let (prog, log) = compile(&format!("sm_{sm}"), extra)?;
    let mut size = 0usize;
    // SAFETY: `prog` was compiled for a real architecture, so it has a cubin; `size` is a
    // valid out-pointer, and the buffer below has exactly the size NVRTC reported.
    let cubin = unsafe {
        sys::nvrtcGetCUBINSize(prog.0, &mut size).result().map_err(|e| GpuError::Nvrtc(format!("{e:?}")))?;
        let mut buf = vec![0u8; size];
        sys::nvrtcGetCUBIN(prog.0, buf.as_mut_ptr().cast()).result().map_err(|e| GpuError::Nvrtc(format!("{e:?}")))?;
        buf
    };
    Ok((cubin, log))
}

/// ptxas's figures for every kernel, compiled for `sm_XY`.
pub fn ptxas_report(sm: u32) -> Result<Vec<KernelStats>, GpuError> {
    let (_, log) = cubin_and_log(sm, &["--ptxas-options=-v"])?;
    Ok(parse_ptxas(&log))
}

/// Reads `Compiling entry function 'k'`, `N bytes spill stores, M bytes spill loads` and
/// `Used R registers` lines, in that order per kernel.
fn parse_ptxas(log: &str) -> Vec<KernelStats> {
    let mut out: Vec<KernelStats> = Vec::new();
    let number_before = |line: &str, word: &str| -> Option<u32> {
        let at = line.find(word)?;
        line[..at].split_whitespace().last()?.parse().ok()
    };
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let name = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(KernelStats { name, registers: 0, spill_stores: 0, spill_loads: 0 });
        } else if let Some(k) = out.last_mut() {
            if let Some(n) = number_before(line, "bytes spill stores") {
                k.spill_stores = n;
            }
            if let Some(n) = number_before(line, "bytes spill loads") {
                k.spill_loads = n;
            }
            if let Some(n) = number_before(line, "registers") {
                k.registers = n;
            }
        }
    }
    out
}

/// FNV-1a, 64 bits: a cache key stable across Rust versions (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Where compiled kernels are kept: `$PUPIL_CUDA_CACHE`, else `$XDG_CACHE_HOME/pupil/cuda`,
/// else `~/.cache/pupil/cuda`, else the temporary directory.
pub fn cache_dir() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("PUPIL_CUDA_CACHE")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("pupil/cuda")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/pupil/cuda")))
        .unwrap_or_else(|| std::env::temp_dir().join("pupil-cuda"))
}

/// The cubin for `sm_XY`, from the cache or compiled now and cached (written to a temporary
/// file and renamed, so concurrent processes never read half a file).
pub fn cubin(sm: u32) -> Result<Vec<u8>, GpuError> {
    let (major, minor) = nvrtc_version()?;
    let key = fnv1a(program().as_bytes());
    let path = cache_dir().join(format!("pupil-{key:016x}-sm_{sm}-nvrtc{major}.{minor}.cubin"));
    if let Ok(bytes) = std::fs::read(&path) {
        return Ok(bytes);
    }
    let (bin, _) = cubin_and_log(sm, &[])?;
    let cache = |source| GpuError::Cache { path: path.clone(), source };
    std::fs::create_dir_all(path.parent().unwrap_or(&path)).map_err(cache)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bin).and_then(|()| std::fs::rename(&tmp, &path)).map_err(cache)?;
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptxas_log_is_read_per_kernel() {
        let log = "ptxas info    : 0 bytes gmem\n\
                   ptxas info    : Compiling entry function 'a' for 'sm_90'\n\
                   ptxas info    : Function properties for a\n\
                   ptxas         .     0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n\
                   ptxas info    : Used 40 registers, used 0 barriers\n\
                   ptxas info    : Compiling entry function 'b' for 'sm_90'\n\
                   ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
                   ptxas info    : Used 8 registers, used 1 barriers, 64 bytes smem\n";
        let k = parse_ptxas(log);
        assert_eq!(k.len(), 2);
        assert_eq!(k[0], KernelStats { name: "a".into(), registers: 40, spill_stores: 8, spill_loads: 4 });
        assert_eq!(k[1], KernelStats { name: "b".into(), registers: 8, spill_stores: 0, spill_loads: 0 });
    }

    #[test]
    fn every_file_is_in_the_program_once() {
        let p = program();
        for (name, _) in FILES {
            assert_eq!(p.matches(&format!("#line 1 \"{name}\"")).count(), 1);
        }
    }
}
