//! The AMX tier: the AVX-512 tier with the prompt GEMM's products on Advanced Matrix Extensions
//! tiles (Sapphire Rapids and later). Every other function is the AVX-512 tier's.
//!
//! One `tdpbsud` multiplies a tile of 16 tokens' activation bytes (signed) by a tile of 16
//! weight rows' quants (unsigned) over one weight sub-block and adds the products into 16 × 16
//! exact i32 sums: what the AVX-512 micro-kernel's 16 tokens × `S / 4` `vpdpbusd`s compute, in
//! one instruction the matrix unit runs beside the vector units. The tiled GEMM's layouts
//! (`cpu::gemm`) are already the tiles' layouts: a sub-block's packed activations are 16 rows
//! of `S` bytes (tile A) and its decoded weight panel `S / 4` rows of 16 × 4 bytes (tile B,
//! four consecutive columns of a weight row side by side, as AMX pairs them). The sums then go
//! through the AVX-512 tier's epilogue unchanged: the same integers, the same float operations
//! in the same order, so every output has the bits of the AVX-512 tier's `dot` (checked by
//! `kernels/tests/tiers.rs` and `batch_invariance.rs` like any tier).
//!
//! Linux gives a process the AMX state only once asked (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
//! [`supported`] asks, and the tier exists only where the CPU has AMX-TILE and AMX-INT8 and the
//! kernel said yes. Tiles are configured per call (`Tiles`), and the thread's previous
//! configuration put back after it, so that other AMX code in the process (llama.cpp's, in
//! `pupil bench --against-llama`) finds its tiles as it left them.

pub(in crate::cpu) mod tile;

use crate::DType;
use crate::cpu::avx512::{gemm, nibble};
use crate::quant::*;
use std::sync::OnceLock;

/// Whether the CPU has AMX-TILE and AMX-INT8 and the OS lets this process use them (asked
/// once).
pub(super) fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| cpu_has_amx_int8() && permission())
}

/// CPUID leaf 7: EDX bit 24 is AMX-TILE, bit 25 AMX-INT8.
fn cpu_has_amx_int8() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 24) != 0 && edx & (1 << 25) != 0
}

/// Asks Linux for the tile data state (`XFEATURE_XTILEDATA`); refused on kernels before 5.16
/// or where a thread's signal stack is too small for it.
#[cfg(target_os = "linux")]
fn permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this `arch_prctl` only asks for a permission; it reads and writes none of our
    // memory, and its failure is an error code.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn permission() -> bool {
    false
}

/// The tile configuration of one GEMM call for sub-blocks of `s` bytes, in force until
/// dropped, when the thread's previous one comes back.
///
/// Tiles 0–3 hold sums (16 tokens × 16 rows of i32), 4–5 activations (16 tokens × `s`
/// bytes), 6–7 weights (`s / 4` rows of 16 weight rows × 4 bytes).
pub(in crate::cpu) struct Tiles {
    previous: Config,
}

/// A 64-byte `ldtilecfg` operand: palette, start row, then per tile its bytes per row
/// (`u16` at 16 + 2t) and rows (`u8` at 48 + t).
#[repr(C, align(64))]
struct Config([u8; 64]);

impl Tiles {
    /// Configures this thread's tiles for sub-blocks of `s` bytes (16 or 32).
    ///
    /// # Safety
    /// The host must support the AMX tier ([`supported`]).
    #[inline]
    pub(in crate::cpu) unsafe fn configure(s: usize) -> Tiles {
        debug_assert!(s == 16 || s == 32);
        let mut c = Config([0; 64]);
        c.0[0] = 1;
        let mut set = |t: usize, rows: usize, bytes: usize| {
            c.0[16 + 2 * t..][..2].copy_from_slice(&(bytes as u16).to_le_bytes());
            c.0[48 + t] = rows as u8;
        };
        for t in 0..4 {
            set(t, 16, 64);
        }
        for t in 4..6 {
            set(t, 16, s);
        }
        for t in 6..8 {
            set(t, s / 4, 64);
        }
        let mut previous = Config([0; 64]);
        // SAFETY: the host has AMX and the process its permission (the caller's contract);
        // both operands are 64 aligned bytes of ours, and `c` is a valid palette-1
        // configuration (every tile's rows and bytes within palette 1's 16 × 64).
        unsafe {
            std::arch::asm!("sttilecfg [{0}]", in(reg) previous.0.as_mut_ptr(), options(nostack));
            std::arch::asm!("ldtilecfg [{0}]", in(reg) c.0.as_ptr(), options(nostack));
        }
        Tiles { previous }
    }
}

impl Drop for Tiles {
    fn drop(&mut self) {
        // SAFETY: a `Tiles` exists only where `configure` ran, so the host has AMX; the saved
        // configuration is what `sttilecfg` wrote (all zeros, palette 0, when the thread had
        // none, which `tilerelease` restores).
        unsafe {
            if self.previous.0[0] == 0 {
                std::arch::asm!("tilerelease", options(nostack, nomem));
            } else {
                std::arch::asm!("ldtilecfg [{0}]", in(reg) self.previous.0.as_ptr(), options(nostack));
            }
        }
    }
}

/// Replaces `ops`' GEMMs with this tier's (the rest stays the AVX-512 tier's).
///
/// # Safety
/// The host must satisfy [`supported`] and the AVX-512 tier's `supported`.
pub(super) unsafe fn patch(ops: &mut Ops) {
    match ops.dtype {
        DType::Q4_0 => ops.gemm = gemm_entry!(BlockQ4_0, gemm::amx_gemm_q4_0),
        DType::Q5_0 => ops.gemm = gemm_entry!(BlockQ5_0, gemm::amx_gemm_q5_0),
        DType::Q8_0 => ops.gemm = gemm_entry!(BlockQ8_0, gemm::amx_gemm_q8_0),
        DType::Q4_K => ops.gemm = gemm_entry!(BlockQ4_K, gemm::amx_gemm_q4_k),
        DType::Q5_K => ops.gemm = gemm_entry!(BlockQ5_K, gemm::amx_gemm_q5_k),
        DType::Q6_K => ops.gemm = gemm_entry!(BlockQ6_K, gemm::amx_gemm_q6_k),
        _ => {}
    }
    use crate::cpu::nibble as n;
    match ops.dtype {
        DType::Q4_0 => {
            ops.gemm_packed = gemm_packed_entry!(BlockQ4_0, 16, nibble::amx_gemm_packed_q4_0, n::panel_words_q4_0)
        }
        DType::Q5_0 => {
            ops.gemm_packed = gemm_packed_entry!(BlockQ5_0, 16, nibble::amx_gemm_packed_q5_0, n::panel_words_q5_0)
        }
        DType::Q8_0 => {
            ops.gemm_packed = gemm_packed_entry!(BlockQ8_0, 16, nibble::amx_gemm_packed_q8_0, n::panel_words_q8_0)
        }
        DType::Q4_K => {
            ops.gemm_packed = gemm_packed_entry!(BlockQ4_K, 16, nibble::amx_gemm_packed_q4_k, n::panel_words_q4_k)
        }
        DType::Q6_K => {
            ops.gemm_packed = gemm_packed_entry!(BlockQ6_K, 16, nibble::amx_gemm_packed_q6_k, n::panel_words_q6_k)
        }
        _ => {}
    }
}
