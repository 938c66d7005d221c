//! Run-time dispatch: the fastest kernels this CPU can run, behind the same [`Ops`] table as
//! the reference tier.
//!
//! Kernels come in tiers ([`Tier`]): the portable reference ([`quant::ops`]), then SIMD
//! versions with the same signatures (`avx2`, `avx512` here; `neon` reserved). The host is
//! probed once (`is_x86_feature_detected!`), and for every [`DType`] a table is built from the
//! reference entries with each function replaced by the best tier that has one (an AVX-512 host
//! gets AVX-512 dots where they exist, AVX2 ones elsewhere, the reference for the rest), like
//! ggml's `type_traits_cpu`. [`ops`] hands out the table of the chosen tier; the forward-pass
//! ops ([`crate::ops::matmul`]) go through it, so a model never picks a tier itself.
//!
//! The tiers agree with the reference as follows (checked by `kernels/tests/tiers.rs`):
//! - `activate` (the activation quantizers `Q8_0`, `Q8_1`, `Q8_K`): the same bytes, so a
//!   model produces the same activations, and the same tokens up to dot-product rounding,
//!   whatever the tier; and those bytes are ggml's CPU backend's on x86 (whose `Q8_0` and
//!   `Q8_1` quantizers round differently from their `_ref`s), so pupil's matmuls start from
//!   llama.cpp's activations. `quantize` (weights) is the reference's in every tier;
//! - `dequantize`: the same bits;
//! - `dot`: the same integer sums for any block bytes (no saturating or sign-trick shortcut
//!   that breaks on `-128`), the float sums in another order.
//! - `dot_x4` (one weight row, four activation rows) and `dot_rows` (consecutive weight rows,
//!   one activation row): each output bit for bit the same tier's `dot`.
//! - `gemm` (many weight rows, many activation rows: the register-tiled prefill kernel of
//!   `gemm.rs`, with `avx512/gemm.rs` and `avx2/gemm.rs`): the same integer sums per weight
//!   sub-block, and, for every type it covers, the same float operations in the same order as
//!   the tier's `dot` (the canonical order of `gemm.rs`, which the dots of those types in
//!   `avx2/canon.rs` follow; for the floats on AVX-512, the one 16-lane order of
//!   `avx512/float.rs`): each output bit for bit the tier's `dot`, whatever the other
//!   tokens of the call and the token's place among them.
//!
//! So within a tier a (row, token) output has the same bits whatever path its batch takes
//! (decode, small batch, GEMM) and whatever else is in the batch: the batch invariance the
//! server's determinism rests on, checked for every type, tier and batch size 1..=64 by
//! `kernels/tests/batch_invariance.rs`.
//!
//! # Choosing a tier
//!
//! [`tier`] is the best tier the host supports, unless the environment variable
//! `PUPIL_FORCE_TIER` (`scalar`, `avx2`, `avx512` or `amx`, read once) asks for another: a lower one
//! is used as asked; one the host lacks is clamped down to the best tier below it, with a
//! warning on stderr (a forced tier is for comparing, and a run that fails because a tier is
//! missing would compare nothing); an unknown value is ignored with a warning.
//!
//! Tier `avx2` needs AVX2, FMA and F16C (Haswell, Zen 1 and later). Tier `avx512` needs
//! AVX-512 F, BW, VL and VNNI (Ice Lake, Cascade Lake, Zen 4 and later); a Skylake-X, which
//! lacks VNNI, runs the `avx2` tier. Tier `amx` is `avx512` with the prompt GEMM on AMX
//! tiles (`amx`): it needs AMX-TILE and AMX-INT8 (Sapphire Rapids and later) and Linux's
//! permission to use them, asked for once.
//!
//! ```
//! use pupil_kernels::{DType, cpu};
//! let ops = cpu::ops(DType::Q4_K).unwrap();
//! assert_eq!(ops.act, DType::Q8_K);
//! assert!(cpu::available_tiers().contains(&cpu::tier()));
//! ```

use crate::DType;
use crate::quant::{self, Ops};
use std::fmt;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
#[macro_use]
mod entry;
#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod gemm;
#[cfg(target_arch = "x86_64")]
mod nibble;

/// The environment variable that forces a lower tier.
pub const FORCE_TIER_VAR: &str = "PUPIL_FORCE_TIER";

/// A family of kernels, from portable to ISA-specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Tier {
    /// The reference kernels of [`quant`]: portable Rust, bit-exact with ggml.
    Scalar,
    /// x86-64 with AVX2, FMA and F16C.
    Avx2,
    /// x86-64 with AVX-512 F, BW, VL and VNNI (and everything `Avx2` needs).
    Avx512,
    /// `Avx512` with the prompt GEMM on AMX tiles (AMX-TILE and AMX-INT8, and the OS's
    /// permission): Sapphire Rapids and later.
    Amx,
    /// aarch64 NEON. Reserved: no kernels yet, so never available.
    Neon,
}

impl Tier {
    /// Every tier, in the order [`available_tiers`] lists them.
    pub const ALL: [Tier; 5] = [Tier::Scalar, Tier::Avx2, Tier::Avx512, Tier::Amx, Tier::Neon];

    /// The name `PUPIL_FORCE_TIER` and the benches use.
    pub const fn name(self) -> &'static str {
        match self {
            Tier::Scalar => "scalar",
            Tier::Avx2 => "avx2",
            Tier::Avx512 => "avx512",
            Tier::Amx => "amx",
            Tier::Neon => "neon",
        }
    }

    /// The tier named `s` (as [`Tier::name`] writes it, any case; `reference` also means
    /// `Scalar`).
    pub fn parse(s: &str) -> Option<Tier> {
        let s = s.trim().to_ascii_lowercase();
        if s == "reference" {
            return Some(Tier::Scalar);
        }
        Tier::ALL.into_iter().find(|t| t.name() == s)
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tiers this host supports, worst first (`Scalar` always).
pub fn available_tiers() -> Vec<Tier> {
    host().available.clone()
}

/// The tier [`ops`] uses: the best available, or the one `PUPIL_FORCE_TIER` asks for.
pub fn tier() -> Tier {
    host().chosen
}

/// The kernels of the chosen [`tier`] for `dtype`, or `None` if pupil has none for it.
pub fn ops(dtype: DType) -> Option<&'static Ops> {
    ops_for(tier(), dtype)
}

/// The kernels of `tier` for `dtype` (for tests and benches comparing tiers): `None` if the host
/// does not support `tier` or pupil has no kernels for `dtype`. A function the tier has no
/// version of is the next tier down's (down to the reference).
pub fn ops_for(tier: Tier, dtype: DType) -> Option<&'static Ops> {
    let h = host();
    let i = h.available.iter().position(|&t| t == tier)?;
    h.tables[i].get(dtype.id() as usize)?.as_ref()
}

/// Resolves a `PUPIL_FORCE_TIER` value against the available tiers (worst first, as
/// [`available_tiers`] gives them): the tier to use and, if the request could not be met
/// exactly, the warning to print.
pub fn choose_tier(request: Option<&str>, available: &[Tier]) -> (Tier, Option<String>) {
    let best = *available.last().unwrap_or(&Tier::Scalar);
    let Some(request) = request.filter(|r| !r.trim().is_empty()) else {
        return (best, None);
    };
    let Some(wanted) = Tier::parse(request) else {
        let names: Vec<&str> = Tier::ALL.iter().map(|t| t.name()).collect();
        return (
            best,
            Some(format!(
                "{FORCE_TIER_VAR}={request:?} is not a tier (expected one of {}); using {best}",
                names.join(", ")
            )),
        );
    };
    if available.contains(&wanted) {
        return (wanted, None);
    }
    // Clamp down along this architecture's ladder; a tier of another architecture has no
    // place on it and is ignored.
    match LADDER.iter().position(|&t| t == wanted) {
        Some(rank) => {
            let got = LADDER[..rank].iter().rev().copied().find(|t| available.contains(t)).unwrap_or(Tier::Scalar);
            (got, Some(format!("{FORCE_TIER_VAR}={wanted}: this CPU lacks {}; using {got}", requirements(wanted))))
        }
        None => (best, Some(format!("{FORCE_TIER_VAR}={wanted}: not a tier of this architecture; using {best}"))),
    }
}

/// This architecture's tiers, worst to best.
#[cfg(target_arch = "x86_64")]
const LADDER: &[Tier] = &[Tier::Scalar, Tier::Avx2, Tier::Avx512, Tier::Amx];
#[cfg(target_arch = "aarch64")]
const LADDER: &[Tier] = &[Tier::Scalar, Tier::Neon];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const LADDER: &[Tier] = &[Tier::Scalar];

fn requirements(t: Tier) -> &'static str {
    match t {
        Tier::Scalar => "nothing",
        Tier::Avx2 => "AVX2, FMA or F16C",
        Tier::Avx512 => "AVX-512 F, BW, VL or VNNI (or AVX2, FMA, F16C)",
        Tier::Amx => "AMX-TILE, AMX-INT8 or the OS's permission to use them (or what AVX-512 needs)",
        Tier::Neon => "NEON kernels (none are written yet)",
    }
}

/// The kernels of attention over a KV cache, per cache element type: `dot(q, k)` is
/// `Σ q[i] · k[i]` and `axpy(o, p, v)` is `o[i] += p · v[i]`, both over the common length.
/// The reference tier's are [`crate::ops::kv_reference`]'s plain loops.
#[derive(Clone, Copy, Debug)]
pub struct KvOps {
    /// `q · k` with an f16 `k`.
    pub dot_f16: fn(&[f32], &[half::f16]) -> f32,
    /// `q · k` with an f32 `k`.
    pub dot_f32: fn(&[f32], &[f32]) -> f32,
    /// `o += p · v` with an f16 `v`.
    pub axpy_f16: fn(&mut [f32], f32, &[half::f16]),
    /// `o += p · v` with an f32 `v`.
    pub axpy_f32: fn(&mut [f32], f32, &[f32]),
    /// Several heads' scores over a run of f16 key rows, `(q, k, stride, n, scale, out)`, as
    /// [`kv_reference::scores`](crate::ops::kv_reference::scores) defines them.
    pub scores_f16: ScoresFn<half::f16>,
    /// The same over f32 keys.
    pub scores_f32: ScoresFn<f32>,
    /// Several heads' probability-weighted sums of a run of f16 value rows, `(p, v, stride, n,
    /// out)`, as [`kv_reference::mix`](crate::ops::kv_reference::mix) defines them.
    pub mix_f16: MixFn<half::f16>,
    /// The same over f32 values.
    pub mix_f32: MixFn<f32>,
    /// [`scores_f16`](Self::scores_f16), the same bits, for key rows that come from memory (a
    /// decode step's cache), `(q, k, stride, n, scale, out, reach)`: the tier asks for the
    /// `reach` elements of each row from the head's on (the heads the caller takes next, on
    /// this thread, too) ahead of its sums where that pays.
    pub scores_streamed_f16: ScoresStreamedFn<half::f16>,
    /// The same over f32 keys.
    pub scores_streamed_f32: ScoresStreamedFn<f32>,
    /// [`mix_f16`](Self::mix_f16), the same bits, for value rows that come from memory, `(p,
    /// v, stride, n, out, reach)`, `reach` as for the scores.
    pub mix_streamed_f16: MixStreamedFn<half::f16>,
    /// The same over f32 values.
    pub mix_streamed_f32: MixStreamedFn<f32>,
    /// [`mix_f16`](Self::mix_f16) adding to `out` (the sums go on from its values, as
    /// [`kv_reference::mix_acc`](crate::ops::kv_reference::mix_acc) defines them).
    pub mix_acc_f16: MixFn<half::f16>,
    /// The same over f32 values.
    pub mix_acc_f32: MixFn<f32>,
    /// Rounds each value to f16 and back, to nearest even (as `f16::from_f32`).
    pub round_f16: fn(&mut [f32]),
    /// `out[i] = x[i]` widened to f32 (exactly), over the common length.
    pub widen_f16: fn(&[half::f16], &mut [f32]),
    /// Softmax in place, bit for bit [`crate::ops::softmax`] (attention's probabilities).
    pub softmax: fn(&mut [f32]),
}

/// [`KvOps::scores_f16`]'s shape: `(q, k, stride, n, scale, out)`.
pub type ScoresFn<T> = fn(&[f32], &[T], usize, usize, f32, &mut [f32]);
/// [`KvOps::mix_f16`]'s shape: `(p, v, stride, n, out)`.
pub type MixFn<T> = fn(&[f32], &[T], usize, usize, &mut [f32]);
/// [`KvOps::scores_streamed_f16`]'s shape: `(q, k, stride, n, scale, out, reach)`.
pub type ScoresStreamedFn<T> = fn(&[f32], &[T], usize, usize, f32, &mut [f32], usize);
/// [`KvOps::mix_streamed_f16`]'s shape: `(p, v, stride, n, out, reach)`.
pub type MixStreamedFn<T> = fn(&[f32], &[T], usize, usize, &mut [f32], usize);

/// The attention kernels of the chosen [`tier`].
pub fn kv_ops() -> &'static KvOps {
    let h = host();
    let i = h.available.iter().position(|&t| t == h.chosen).unwrap_or(0);
    &h.kv[i]
}

/// The attention kernels of `tier`, or `None` if the host does not support it.
pub fn kv_ops_for(tier: Tier) -> Option<&'static KvOps> {
    let h = host();
    let i = h.available.iter().position(|&t| t == tier)?;
    Some(&h.kv[i])
}

fn build_kv(tier: Tier) -> KvOps {
    use crate::ops::kv_reference as r;
    #[allow(unused_mut)]
    let mut ops = KvOps {
        dot_f16: r::dot::<half::f16>,
        dot_f32: r::dot::<f32>,
        axpy_f16: r::axpy::<half::f16>,
        axpy_f32: r::axpy::<f32>,
        scores_f16: r::scores::<half::f16>,
        scores_f32: r::scores::<f32>,
        mix_f16: r::mix::<half::f16>,
        mix_f32: r::mix::<f32>,
        mix_acc_f16: r::mix_acc::<half::f16>,
        mix_acc_f32: r::mix_acc::<f32>,
        scores_streamed_f16: |q, k, stride, n, scale, out, _| r::scores(q, k, stride, n, scale, out),
        scores_streamed_f32: |q, k, stride, n, scale, out, _| r::scores(q, k, stride, n, scale, out),
        mix_streamed_f16: |p, v, stride, n, out, _| r::mix(p, v, stride, n, out),
        mix_streamed_f32: |p, v, stride, n, out, _| r::mix(p, v, stride, n, out),
        round_f16: r::round_f16,
        widen_f16: r::widen_f16,
        softmax: crate::ops::softmax,
    };
    #[cfg(target_arch = "x86_64")]
    if matches!(tier, Tier::Avx2 | Tier::Avx512 | Tier::Amx) {
        // SAFETY: `build_kv` runs only for tiers `detect` found on this host, and both imply
        // the AVX2 tier's features.
        unsafe { avx2::patch_kv(&mut ops) };
    }
    #[cfg(target_arch = "x86_64")]
    if matches!(tier, Tier::Avx512 | Tier::Amx) {
        // SAFETY: as above; both imply the AVX-512 tier's features.
        unsafe { avx512::patch_kv(&mut ops) };
    }
    let _ = tier;
    ops
}

/// What was detected, once per process.
struct Host {
    /// Supported tiers, worst first.
    available: Vec<Tier>,
    /// `tables[i]` is tier `available[i]`'s table, indexed by ggml type id.
    tables: Vec<Vec<Option<Ops>>>,
    /// `kv[i]` is tier `available[i]`'s attention kernels.
    kv: Vec<KvOps>,
    chosen: Tier,
}

fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| {
        let available = detect();
        let tables = available.iter().map(|&t| build(t)).collect();
        let kv = available.iter().map(|&t| build_kv(t)).collect();
        let request = std::env::var(FORCE_TIER_VAR).ok();
        let (chosen, warning) = choose_tier(request.as_deref(), &available);
        if let Some(w) = warning {
            eprintln!("warning: {w}");
        }
        Host { available, tables, kv, chosen }
    })
}

fn detect() -> Vec<Tier> {
    #[allow(unused_mut)]
    let mut tiers = vec![Tier::Scalar];
    #[cfg(target_arch = "x86_64")]
    if avx2::supported() {
        tiers.push(Tier::Avx2);
        if avx512::supported() {
            tiers.push(Tier::Avx512);
            if amx::supported() {
                tiers.push(Tier::Amx);
            }
        }
    }
    tiers
}

/// The reference table with `tier`'s functions patched in, lower tiers first so that the
/// best version of each function wins. Only called for detected tiers.
fn build(tier: Tier) -> Vec<Option<Ops>> {
    let len = DType::ALL.iter().map(|t| t.id() as usize + 1).max().unwrap_or(0);
    let mut table = vec![None; len];
    for &t in DType::ALL {
        let Some(reference) = quant::ops(t) else { continue };
        let mut ops = *reference;
        // SAFETY: `build` runs only for tiers `detect` found on this host.
        unsafe { patch(tier, &mut ops) };
        table[t.id() as usize] = Some(ops);
    }
    table
}

/// Patches `tier`'s functions into `ops`.
///
/// # Safety
/// The host must support `tier` (as `detect` found it).
#[cfg(target_arch = "x86_64")]
unsafe fn patch(tier: Tier, ops: &mut Ops) {
    // SAFETY: the caller vouches for `tier`; the AVX-512 tier is only detected where the AVX2
    // one is, and the patched entries need nothing more.
    unsafe {
        match tier {
            Tier::Avx2 => avx2::patch(ops),
            Tier::Avx512 => {
                avx2::patch(ops);
                avx512::patch(ops);
            }
            Tier::Amx => {
                avx2::patch(ops);
                avx512::patch(ops);
                amx::patch(ops);
            }
            Tier::Scalar | Tier::Neon => {}
        }
    }
}

/// Patches `tier`'s functions into `ops`: nothing yet off x86-64.
///
/// # Safety
/// None needed; `unsafe` to match the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
unsafe fn patch(_tier: Tier, _ops: &mut Ops) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in Tier::ALL {
            assert_eq!(Tier::parse(t.name()), Some(t));
            assert_eq!(Tier::parse(&t.name().to_uppercase()), Some(t));
        }
        assert_eq!(Tier::parse(" reference "), Some(Tier::Scalar));
        assert_eq!(Tier::parse("sse2"), None);
    }

    #[test]
    fn table_has_every_reference_type() {
        for &t in DType::ALL {
            for tier in available_tiers() {
                let ops = ops_for(tier, t);
                assert_eq!(ops.is_some(), quant::ops(t).is_some(), "{t} {tier}");
                if let Some(ops) = ops {
                    assert_eq!((ops.dtype, ops.act), (t, quant::ops(t).unwrap().act));
                }
            }
        }
    }
}
