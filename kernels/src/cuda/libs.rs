//! The CUDA libraries pupil opens at run time, and a check that each is there before cudarc
//! touches it (cudarc panics on the first call into a library it cannot open).

use super::GpuError;

/// One dynamically opened CUDA library.
#[derive(Debug, Clone, Copy)]
pub struct Library {
    /// As it appears in messages.
    pub name: &'static str,
    /// The stem cudarc builds file names from (`cuda` → `libcuda.so`, `libcuda.so.13`, ...).
    stem: &'static str,
    /// What provides it.
    hint: &'static str,
}

/// The driver: comes with the NVIDIA kernel driver, never from pip.
pub const DRIVER: Library = Library {
    name: "libcuda",
    stem: "cuda",
    hint: "it comes with the NVIDIA driver; is this a machine with an NVIDIA GPU?",
};

/// The run-time compiler of the kernels.
pub const NVRTC: Library = Library {
    name: "libnvrtc",
    stem: "nvrtc",
    hint: "install the CUDA toolkit, or `pip install nvidia-cuda-nvrtc==13.0.88` and put its \
           nvidia/cu13/lib folder on LD_LIBRARY_PATH",
};

/// cuBLAS, for the prompt GEMM.
pub const CUBLAS: Library = Library {
    name: "libcublas",
    stem: "cublas",
    hint: "install the CUDA toolkit, or `pip install nvidia-cublas` (13.0.x) and put its \
           nvidia/cu13/lib folder on LD_LIBRARY_PATH",
};

/// Ok if `lib` can be opened, else the error naming every file name tried.
pub fn require(lib: Library) -> Result<(), GpuError> {
    // SAFETY: each `is_culib_present` only dlopens the candidate names (running the library's
    // initialisers, which for NVIDIA's libraries have no preconditions) and closes them again.
    let present = unsafe {
        match lib.stem {
            "cuda" => cudarc::driver::sys::is_culib_present(),
            "nvrtc" => cudarc::nvrtc::sys::is_culib_present(),
            _ => cudarc::cublas::sys::is_culib_present(),
        }
    };
    if present {
        return Ok(());
    }
    Err(GpuError::MissingLibrary {
        library: lib.name,
        tried: {
            let mut names = cudarc::get_lib_name_candidates(lib.stem);
            let mut seen = std::collections::HashSet::new();
            names.retain(|n| seen.insert(n.clone()));
            names.join(", ")
        },
        path: std::env::var("LD_LIBRARY_PATH").unwrap_or_default(),
        hint: lib.hint,
    })
}
