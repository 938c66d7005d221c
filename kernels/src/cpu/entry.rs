//! The byte-level entry points of the tier tables: check the buffers as the reference table
//! does, then call a typed SIMD kernel.
//!
//! The entries are safe `fn`s (the shape of [`Ops`](crate::quant::Ops)) wrapping `unsafe`
//! `#[target_feature]` kernels. They are defined inside the macros below, so they can be
//! named nowhere else: the only way to reach one is through a table that `cpu::build` made
//! for a tier `cpu::detect` found on this host.

use crate::KernelError;
use crate::quant::Block;

/// A row of blocks from bytes; unaligned or partial blocks are an error.
pub(super) fn blocks<B: Block>(bytes: &[u8]) -> Result<&[B], KernelError> {
    bytemuck::try_cast_slice(bytes).map_err(|_| bad_buffer::<B>(bytes.len()))
}

/// A mutable row of blocks from bytes.
pub(super) fn blocks_mut<B: Block>(bytes: &mut [u8]) -> Result<&mut [B], KernelError> {
    let len = bytes.len();
    bytemuck::try_cast_slice_mut(bytes).map_err(|_| bad_buffer::<B>(len))
}

fn bad_buffer<B: Block>(len: usize) -> KernelError {
    KernelError::BadBuffer { dtype: B::DTYPE, len, block_bytes: std::mem::size_of::<B>() }
}

/// `Ok` if the lengths agree, else the reference table's error.
pub(super) fn check_len(what: &'static str, expected: usize, found: usize) -> Result<(), KernelError> {
    if expected == found { Ok(()) } else { Err(KernelError::Length { what, expected, found }) }
}

/// The weight and activation rows of a dot product, of equal block counts.
pub(super) fn dot_args<'a, B: Block>(w: &'a [u8], a: &'a [u8]) -> Result<(&'a [B], &'a [B::Act]), KernelError> {
    let w = blocks::<B>(w)?;
    let a = blocks::<B::Act>(a)?;
    check_len("activation blocks", w.len(), a.len())?;
    Ok((w, a))
}

/// A `dot` entry for kernel `$k: unsafe fn(&[$b], &[<$b as Block>::Act]) -> f32`.
macro_rules! dot_entry {
    ($b:ty, $k:path) => {{
        fn entry(w: &[u8], a: &[u8]) -> Result<f32, $crate::KernelError> {
            let (w, a) = $crate::cpu::entry::dot_args::<$b>(w, a)?;
            // SAFETY: this entry is reachable only through a table built for a tier the host
            // was detected to support (see `cpu::entry`), which gives the kernel its features;
            // `dot_args` checked that both rows hold the same number of blocks.
            Ok(unsafe { $k(w, a) })
        }
        entry as fn(&[u8], &[u8]) -> Result<f32, $crate::KernelError>
    }};
}

/// A `quantize` entry for kernel `$k: unsafe fn(&[f32], &mut [$b])`.
macro_rules! quantize_entry {
    ($b:ty, $k:path) => {{
        fn entry(x: &[f32], out: &mut [u8]) -> Result<(), $crate::KernelError> {
            let out = $crate::cpu::entry::blocks_mut::<$b>(out)?;
            $crate::cpu::entry::check_len("quantize input", out.len() * <$b as $crate::quant::Block>::SIZE, x.len())?;
            // SAFETY: reachable only through a detected tier's table (see `cpu::entry`); `x`
            // holds exactly `SIZE` values per output block.
            unsafe { $k(x, out) };
            Ok(())
        }
        Some(entry as fn(&[f32], &mut [u8]) -> Result<(), $crate::KernelError>)
    }};
}

/// A `dot_rows` entry for kernel `$k: unsafe fn(&[$b], &[<$b as Block>::Act], &mut [f32])`,
/// which takes `out.len()` weight rows back to back, each as long as the activation row.
macro_rules! dot_rows_entry {
    ($b:ty, $k:path) => {{
        fn entry(w: &[u8], a: &[u8], out: &mut [f32]) -> Result<(), $crate::KernelError> {
            let w = $crate::cpu::entry::blocks::<$b>(w)?;
            let a = $crate::cpu::entry::blocks::<<$b as $crate::quant::Block>::Act>(a)?;
            $crate::cpu::entry::check_len("weight blocks (rows x activation blocks)", out.len() * a.len(), w.len())?;
            // SAFETY: reachable only through a detected tier's table (see `cpu::entry`); `w`
            // holds `out.len()` rows of exactly `a.len()` blocks.
            unsafe { $k(w, a, out) };
            Ok(())
        }
        Some(entry as fn(&[u8], &[u8], &mut [f32]) -> Result<(), $crate::KernelError>)
    }};
}

/// Defines `$name: unsafe fn(&[$b], &[Act], &mut [f32])`, a `dot_rows` kernel that runs the
/// tier's `$dot` kernel (compiled with the same `$feat`) over consecutive weight rows. Each
/// output is `$dot` of its row, so bit for bit the tier's `dot`; what it saves is the per-row
/// entry (dispatch, byte-to-block casts, length checks). No software prefetch: the rows are
/// one sequential stream, which the hardware prefetcher follows, and explicit prefetches of
/// the rows ahead measured slower (Zen 4, Q8_0 262144 x 640).
macro_rules! dot_rows_kernel {
    ($name:ident, $b:ty, $dot:path, $feat:literal) => {
        /// Consecutive weight rows against one activation row (`out.len()` rows of
        /// `a.len()` blocks in `w`): each output is this tier's `dot` of its row.
        #[target_feature(enable = $feat)]
        pub(in crate::cpu) unsafe fn $name(w: &[$b], a: &[<$b as $crate::quant::Block>::Act], out: &mut [f32]) {
            let nb = a.len();
            for (r, o) in out.iter_mut().enumerate() {
                // SAFETY: the caller's features are `$dot`'s (same `$feat`); the row and `a`
                // hold the same number of blocks.
                *o = unsafe { $dot(&w[r * nb..(r + 1) * nb], a) };
            }
        }
    };
}

/// A `gemm` entry for kernel `$k: unsafe fn(&[$b], &[<$b as Block>::Act], usize, &mut [f32],
/// usize)`: checks that `a` is `n` rows of whole blocks, `w` whole rows of that length, and
/// `out` long enough for `n` rows of stride `ldo >= rows`.
macro_rules! gemm_entry {
    ($b:ty, $k:path) => {{
        fn entry(w: &[u8], a: &[u8], n: usize, out: &mut [f32], ldo: usize) -> Result<(), $crate::KernelError> {
            let (w, a) = $crate::cpu::entry::gemm_args::<$b>(w, a, n, out.len(), ldo)?;
            if !a.is_empty() {
                // SAFETY: reachable only through a detected tier's table (see `cpu::entry`);
                // `gemm_args` checked the shapes the kernel relies on.
                unsafe { $k(w, a, n, out, ldo) };
            }
            Ok(())
        }
        Some(entry as $crate::quant::Gemm)
    }};
}

/// The float types' `dot`, `dot_rows` and `gemm` from a tier's module `$m` (its `dot`,
/// `dot_rows` and `gemm_float`, generic over the element type), written into `$ops` when its
/// type is `F32`, `F16` or `BF16`.
macro_rules! float_entries {
    ($ops:expr, $m:ident) => {{
        macro_rules! float {
            ($x:ty) => {{
                $ops.dot = dot_entry!($x, $m::dot::<$x>);
                $ops.dot_rows = dot_rows_entry!($x, $m::dot_rows::<$x>);
                $ops.gemm = gemm_entry!($x, $m::gemm_float::<$x>);
            }};
        }
        match $ops.dtype {
            $crate::DType::F32 => float!(f32),
            $crate::DType::F16 => float!(half::f16),
            $crate::DType::BF16 => float!(half::bf16),
            _ => {}
        }
    }};
}

/// A `pack` entry: the layout `$pack(blocks, blocks per row)` makes of whole rows of `$b`.
macro_rules! pack_entry {
    ($b:ty, $pack:expr) => {{
        fn entry(w: &[u8], cols: usize) -> Result<Vec<u32>, $crate::KernelError> {
            let w = $crate::cpu::entry::blocks::<$b>(w)?;
            let nb = cols / <$b as $crate::quant::Block>::SIZE;
            $crate::cpu::entry::check_len("columns (whole blocks)", nb * <$b as $crate::quant::Block>::SIZE, cols)?;
            if nb == 0 {
                return Ok(Vec::new());
            }
            $crate::cpu::entry::check_len("weight blocks (whole rows)", w.len() / nb * nb, w.len())?;
            let pack: fn(&[$b], usize) -> Vec<u32> = $pack;
            Ok(pack(w, nb))
        }
        Some(entry as $crate::quant::Pack)
    }};
}

/// A `gemm_packed` entry for kernel `$k: unsafe fn(&[u32], usize, usize, &[<$b as
/// Block>::Act], usize, &mut [f32], usize)` over `$L`-row panels: checks the panels' length
/// for `rows` and `cols`, and `a` and `out` as [`gemm_args`] does.
macro_rules! gemm_packed_entry {
    ($b:ty, $L:literal, $k:path, $words:expr) => {{
        fn entry(
            p: &[u32],
            rows: usize,
            cols: usize,
            a: &[u8],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) -> Result<(), $crate::KernelError> {
            let words = $words(cols);
            $crate::cpu::entry::check_len("packed words (rows, cols)", rows.div_ceil($L) * words, p.len())?;
            let a = $crate::cpu::entry::packed_args::<$b>(cols, rows, a, n, out.len(), ldo)?;
            if !a.is_empty() && rows > 0 {
                // SAFETY: reachable only through a detected tier's table (see `cpu::entry`);
                // the panels hold `rows` rows of `cols`, `a` `n` rows of `cols`, and `out`
                // room for `n` rows of stride `ldo >= rows` (checked above).
                unsafe { $k(p, rows, cols, a, n, out, ldo) };
            }
            Ok(())
        }
        Some(entry as $crate::quant::GemmPacked)
    }};
}

/// The activation blocks of a `gemm_packed` call, with its shapes checked as [`gemm_args`]
/// checks them, for weights of `rows` rows of `cols` columns.
pub(super) fn packed_args<B: Block>(
    cols: usize,
    rows: usize,
    a: &[u8],
    n: usize,
    out_len: usize,
    ldo: usize,
) -> Result<&[B::Act], KernelError> {
    let a = blocks::<B::Act>(a)?;
    if n == 0 || a.is_empty() {
        check_len("activation blocks (n rows)", 0, a.len())?;
        return Ok(&[]);
    }
    let nb = cols / B::SIZE;
    check_len("activation blocks (n rows of the weights' columns)", n * nb, a.len())?;
    if ldo < rows {
        return Err(KernelError::Length { what: "gemm output stride (rows)", expected: rows, found: ldo });
    }
    let need = (n - 1) * ldo + rows;
    if out_len < need {
        return Err(KernelError::Length { what: "gemm output", expected: need, found: out_len });
    }
    Ok(a)
}

/// The weight and activation blocks of a `gemm` call, with its shapes checked: `a` is `n`
/// rows of equal block counts, `w` whole rows of that count, `ldo` at least the row count and
/// `out_len` room for `n` output rows. Empty when there is nothing to compute.
pub(super) fn gemm_args<'a, B: Block>(
    w: &'a [u8],
    a: &'a [u8],
    n: usize,
    out_len: usize,
    ldo: usize,
) -> Result<(&'a [B], &'a [B::Act]), KernelError> {
    let w = blocks::<B>(w)?;
    let a = blocks::<B::Act>(a)?;
    if n == 0 || a.is_empty() {
        check_len("activation blocks (n rows)", 0, a.len())?;
        return Ok((w, &[]));
    }
    check_len("activation blocks (n equal rows)", a.len() / n * n, a.len())?;
    let nb = a.len() / n;
    check_len("weight blocks (whole rows)", w.len() / nb * nb, w.len())?;
    let rows = w.len() / nb;
    if ldo < rows {
        return Err(KernelError::Length { what: "gemm output stride (rows)", expected: rows, found: ldo });
    }
    let need = (n - 1) * ldo + rows;
    if out_len < need {
        return Err(KernelError::Length { what: "gemm output", expected: need, found: out_len });
    }
    Ok((w, a))
}

/// Four activation bytes as the little-endian word `vpdpbusd`/`maddubs` broadcast (a plain
/// function, not `[i8; 4]::map` with a closure: see [`arr!`]).
#[inline(always)]
pub(super) fn word(y: [i8; 4]) -> i32 {
    i32::from_le_bytes([y[0] as u8, y[1] as u8, y[2] as u8, y[3] as u8])
}

/// `body` once for each listed value of `j` (a constant in each copy): the GEMM micro-kernels'
/// loop over the tokens of a tile, written out so that their accumulators stay in registers.
macro_rules! unroll {
    ($j:ident in [$($n:literal),*] $body:block) => {
        $({
            let $j: usize = $n;
            $body
        })*
    };
}

/// `[e(0), e(1), .., e(N - 1)]` for `e = |$i| $e`, built by a loop in the calling function
/// from `[$zero; N]`: the SIMD tiers' replacement for `std::array::from_fn` and an array's
/// `map`. Those take `$e` as a closure, and a closure in a `#[target_feature]` function has the
/// function's features, which the generic, featureless `from_fn` lacks, so LLVM cannot inline
/// the closure into it: without `-C target-cpu` (a plain `cargo build`) every element costs a
/// call with its vectors through memory. The small-batch kernels ran at 0.57–0.87× of a
/// native build's speed that way (`packed_batch`, `Q4_0`/`Q8_0`, one and eight tokens,
/// AVX-512 EPYC).
macro_rules! arr {
    ($zero:expr; $n:expr, |$i:ident| $e:expr) => {{
        let mut a = [$zero; $n];
        for ($i, x) in a.iter_mut().enumerate() {
            *x = $e;
        }
        a
    }};
}

/// Every panel (`$words` words, `L` rows; `$rows` in all) against each of `$n` tokens, in
/// groups of `$group` tokens (at most 8), then of 4, 2 and 1 for the rest: `$tile` (with `$panel`, the first
/// token `$t0` and the group's size as the constant `$T` in scope) gives the panel's outputs
/// for each token of the group (one accumulator each), which `$store(dst, &acc)` writes to
/// `dst = out[t * ldo + r0..]`, as many as there are rows left (the small-batch kernels over
/// packed panels, `cpu::nibble`).
macro_rules! each_panel {
    ($store:expr, $p:expr, $words:expr, $rows:expr, $n:expr, $out:expr, $ldo:expr, $group:literal,
     |$panel:ident, $t0:ident, $T:ident| $tile:expr) => {{
        use $crate::cpu::nibble::L;
        let (rows, n, ldo, out): (usize, usize, usize, &mut [f32]) = ($rows, $n, $ldo, $out);
        for (pi, $panel) in $p.chunks_exact($words).enumerate().take(rows.div_ceil(L)) {
            let r0 = pi * L;
            let live = L.min(rows - r0);
            let mut store = |t: usize, accs: &[_]| {
                for (i, acc) in accs.iter().enumerate() {
                    $store(&mut out[(t + i) * ldo + r0..][..live], acc);
                }
            };
            let mut $t0 = 0;
            while $t0 + $group <= n {
                const $T: usize = $group;
                store($t0, &$tile);
                $t0 += $T;
            }
            if $group > 4 && $t0 + 4 <= n {
                const $T: usize = 4;
                store($t0, &$tile);
                $t0 += $T;
            }
            if $group > 2 && $t0 + 2 <= n {
                const $T: usize = 2;
                store($t0, &$tile);
                $t0 += $T;
            }
            if $t0 < n {
                const $T: usize = 1;
                store($t0, &$tile);
            }
        }
    }};
}

/// Defines a tier's small-batch drivers over nibble panels (`cpu::nibble`), compiled for
/// `$feat`: `legacy_tokens::<FIFTH>` (`Q4_0`, or `Q5_0`) and `q4_k_tokens`, which run the
/// tier's `panel_legacy::<T, FIFTH>` and `panel_q4_k::<T>` over every panel in groups of
/// `$legacy` and `$k` tokens and write each token's outputs with the tier's `store`.
macro_rules! nibble_drivers {
    ($feat:literal, $legacy:literal, $k:literal) => {
        /// A small batch over `Q4_0` (or, `FIFTH`, `Q5_0`) nibble panels.
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = $feat)]
        fn legacy_tokens<const FIFTH: bool>(
            p: &[u32],
            rows: usize,
            cols: usize,
            a: &[BlockQ8_0],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            let nb = cols / 32;
            let (words, off) = if FIFTH { (panel_words_q5_0(cols), 16) } else { (panel_words_q4_0(cols), 8) };
            with_legacy_terms(a, off, |offs, das| {
                each_panel!(store, p, words, rows, n, out, ldo, $legacy, |panel, t0, T| {
                    let (quants, rest) = panel.split_at(nb * 64);
                    let (planes, scales) = if FIFTH { rest.split_at(nb * L) } else { (&rest[..0], rest) };
                    let (quants, scales): (&[u8], &[u16]) =
                        (bytemuck::cast_slice(quants), bytemuck::cast_slice(scales));
                    panel_legacy::<T, FIFTH>(
                        quants,
                        planes,
                        scales,
                        rows_of(a, nb, t0),
                        rows_of(offs, nb, t0),
                        rows_of(das, nb, t0),
                    )
                })
            });
        }

        /// A small batch over `Q4_K` nibble panels.
        #[target_feature(enable = $feat)]
        fn q4_k_tokens(p: &[u32], rows: usize, cols: usize, a: &[BlockQ8_K], n: usize, out: &mut [f32], ldo: usize) {
            let nb = cols / 256;
            with_sub_sums(a, |dys| {
                each_panel!(store, p, panel_words_q4_k(cols), rows, n, out, ldo, $k, |panel, t0, T| {
                    let (quants, rest) = panel.split_at(nb * 512);
                    let (halves, bytes) = rest.split_at(nb * 16);
                    let (quants, halves, bytes): (&[u8], &[u16], &[u8]) =
                        (bytemuck::cast_slice(quants), bytemuck::cast_slice(halves), bytemuck::cast_slice(bytes));
                    panel_q4_k::<T>(quants, halves, bytes, rows_of(a, nb, t0), rows_of(dys, nb * 8, t0))
                })
            });
        }
    };
}

/// Writes into `$ops` the nibble panels of `$b` (`cpu::nibble`'s `$pack`, `$words` and
/// `$row`) with the tier's kernel over them, `$kernel`: the copy is the file's size and every
/// batch size and row lookup reads it, so the mapped pages are released.
macro_rules! nibble_entries {
    ($ops:expr, $b:ty, $pack:ident, $kernel:path, $words:ident, $row:ident) => {{
        use $crate::cpu::nibble as n;
        $ops.pack = pack_entry!($b, n::$pack);
        $ops.gemm_packed = gemm_packed_entry!($b, 16, $kernel, n::$words);
        $ops.panel_rows = n::L;
        $ops.packed_decode = true;
        $ops.packed_row = Some(n::$row);
    }};
}

/// Defines, compiled for `$feat`, each `$name(p, rows, cols, a, n, out, ldo)`: `out[t * ldo
/// + r] = dot(row r, a row t)` for the `rows` rows held in nibble panels `p` and the `n`
/// activation rows of `a`, each bit for bit the canonical `dot`: from the tier's `TILE_FROM`
/// tokens through its tiled GEMM (`$tiles`), below per panel in small groups of tokens
/// (`$tokens`).
macro_rules! packed_kernels {
    ($feat:literal: $($name:ident($act:ty, $tiles:path, $tokens:expr);)*) => {$(
        #[target_feature(enable = $feat)]
        pub(in crate::cpu) unsafe fn $name(
            p: &[u32],
            rows: usize,
            cols: usize,
            a: &[$act],
            n: usize,
            out: &mut [f32],
            ldo: usize,
        ) {
            if n >= TILE_FROM {
                // SAFETY: the caller's contract (this kernel's tier, on its host) is the tiles'.
                unsafe { $tiles(p, rows, cols, a, n, out, ldo) }
            } else {
                $tokens(p, rows, cols, a, n, out, ldo)
            }
        }
    )*};
}
