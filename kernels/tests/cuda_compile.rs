//! Every CUDA kernel compiles through NVRTC for sm_80 and sm_90 with no register spills, on
//! any machine: no GPU or driver needed, only libnvrtc (scripts/test.sh installs NVIDIA's
//! PyPI wheel, pinned to 13.0 so that its output loads on a CUDA 13.0 driver, and sets
//! `PUPIL_REQUIRE_NVRTC=1`; without that variable a machine lacking NVRTC skips, saying so).

use pupil_kernels::cuda::{self, compile, libs};

/// NVRTC, or `None` (and why) where it may be absent.
fn nvrtc() -> Option<(i32, i32)> {
    let required = std::env::var_os("PUPIL_REQUIRE_NVRTC").is_some_and(|v| !v.is_empty() && v != "0");
    match libs::require(libs::NVRTC) {
        Ok(()) => Some(compile::nvrtc_version().expect("NVRTC's version")),
        Err(e) if required => panic!("PUPIL_REQUIRE_NVRTC is set: {e}"),
        Err(e) => {
            eprintln!("skipped: {e}");
            None
        }
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    let Some((major, minor)) = nvrtc() else { return };
    println!("NVRTC {major}.{minor}");
    let mut problems = Vec::new();
    for sm in [80, 90] {
        let report = compile::ptxas_report(sm).unwrap_or_else(|e| panic!("sm_{sm}: {e}"));
        for name in cuda::kernel_names() {
            match report.iter().find(|k| k.name == *name) {
                None => problems.push(format!("sm_{sm}: no entry point {name}")),
                Some(k) if k.spill_stores + k.spill_loads > 0 => problems.push(format!(
                    "sm_{sm}: {name} spills ({} bytes stored, {} loaded, {} registers)",
                    k.spill_stores, k.spill_loads, k.registers
                )),
                Some(k) => println!("sm_{sm} {name:>20}: {:>3} registers", k.registers),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A CUDA 13.0 driver loads PTX up to ISA 9.0; NVRTC 13.5 writes 9.5, which it refuses. The
/// kernels ship as cubins, but the pin is what makes a PTX fallback possible at all.
#[test]
fn ptx_is_an_isa_a_cuda_13_0_driver_loads() {
    let Some(_) = nvrtc() else { return };
    let ptx = compile::ptx("compute_80").expect("PTX for compute_80");
    let version = ptx.lines().find_map(|l| l.trim().strip_prefix(".version ")).expect("a .version line");
    let (major, minor) = version.trim().split_once('.').expect("major.minor");
    let v = (major.parse::<u32>().unwrap(), minor.parse::<u32>().unwrap());
    assert!(v <= (9, 0), "PTX ISA {version}: newer than a CUDA 13.0 driver loads");
}

#[test]
fn compiled_kernels_are_cached_by_source_target_and_nvrtc() {
    let Some(_) = nvrtc() else { return };
    let dir = std::env::temp_dir().join(format!("pupil-cuda-cache-test-{}", std::process::id()));
    // SAFETY (of the environment): this test binary reads PUPIL_CUDA_CACHE nowhere else.
    unsafe { std::env::set_var("PUPIL_CUDA_CACHE", &dir) };
    let first = compile::cubin(80).expect("a cubin for sm_80");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].to_string_lossy().into_owned();
    assert!(name.contains("sm_80") && name.contains("nvrtc") && name.ends_with(".cubin"), "{name}");
    // The second call reads the file: change it and the change comes back.
    let path = dir.join(&name);
    std::fs::write(&path, b"cached").unwrap();
    assert_eq!(compile::cubin(80).unwrap(), b"cached");
    assert!(first.starts_with(b"\x7fELF"), "a cubin is an ELF image");
    std::fs::remove_dir_all(&dir).unwrap();
}
