//! The tiled GEMM of the SIMD tiers (prompt processing): many weight rows against many
//! activation rows, each decoded weight reused across a tile of tokens and each activation
//! across a tile of rows, the products summed exactly in i32 registers.
//!
//! # Layout
//!
//! A tier's micro-kernel computes a tile of `L` weight rows (the lanes of one vector) by `T`
//! tokens. The weight rows are decoded, a panel of `L` at a time, into unsigned bytes
//! interleaved by row: per group of four columns, `L` × 4 bytes, so that one vector holds the
//! same four columns of `L` rows. The activation's four bytes of those columns are broadcast
//! to every lane, and one `vpdpbusd` (AVX2: `maddubs` then `madd`) adds the four products into
//! each row's i32 lane. The sums are per *sub-block* of `S` columns (the span of one weight
//! scale: 32, or 16 for `Q6_K`); each sub-block's i32 lanes are converted and scaled into one
//! float accumulator per token, which is a whole output row segment (`L` outputs) at the end.
//!
//! Activations (rows of `Q8_0` or `Q8_K` blocks) are packed per tile of `T` tokens: their
//! quants sub-block by sub-block (`[sub-block][token][S]`), with per token and sub-block the
//! scale, the offset term and, for types with mins, the scaled sum (below). Packing and panel
//! decoding are portable code, inlined into each tier's `#[target_feature]` entry; both are
//! done once per call and reused across every tile (the panel across all the tokens of the
//! call, the packed activations across all the panels).
//!
//! # Arithmetic
//!
//! A weight sub-block is `s1 · (q - OFF) (+ s2)` with unsigned quants `q` (see
//! [`GemmWeight`]), an activation sub-block `d · y`. Per sub-block, with
//! `Σ (q - OFF) y = Σ q y - OFF Σ y` exactly in i32 (the i32 lane starts at `-OFF Σ y`,
//! precomputed per token), the output gains `s1 · d · Σ (q - OFF) y (+ s2 · d · Σ y)`, one FMA
//! into the token's accumulator per sub-block, in sub-block order. For the legacy types the
//! integer and the scale product (`d_w · d_a`) are the reference's; the float sums come in
//! another order, so the result agrees with the reference `dot` within float rounding, not bit
//! for bit. Mins use the activation's stored sums (`Q8_K`'s `bsums`), as the reference does.
//!
//! The tokens past the last whole tile go through one-token tiles that form each output the
//! same way, so an output's bits depend on its row and token only, not on the other tokens of
//! the call or on where the token sits among them.
//!
//! # The canonical order
//!
//! That sequence is *the* float order of every output of a type the GEMM covers, in every
//! SIMD tier (the tiers' micro-kernels do the same lane operations, so they agree too): one
//! accumulator from `0.0`; per sub-block in column order, `acc = fma(f32(Σ (q - OFF) y),
//! s1 · d, acc)`, then, with mins, `acc = fma(s2, d · f32(Σ y as stated), acc)`. The tiers'
//! `dot`, `dot_rows` (decode) and every small-batch path form their outputs the same way
//! ([`accumulate`] over exact sub-block sums), so a (row, token) output has the same bits in
//! a batch of any size, at any place in it, as alone: the batch invariance the server's
//! determinism rests on (`kernels/tests/batch_invariance.rs`).

use crate::quant::{
    Block, BlockQ4_0, BlockQ4_K, BlockQ5_0, BlockQ5_K, BlockQ6_K, BlockQ8_0, BlockQ8_K, QK_K, unpack_5bit,
    unpack_nibbles,
};
use std::cell::RefCell;

/// A weight block type the tiled GEMM takes: unsigned quants per sub-block of `S` elements,
/// each weight `s1 · (q - OFF)`, plus `s2` where the type has mins.
pub(in crate::cpu) trait GemmWeight: Block<Act: GemmAct> {
    /// Elements per weight scale (sub-block); divides `SIZE`, a multiple of 4.
    const S: usize;
    /// What the unsigned quants are offset by.
    const OFF: i32;
    /// Whether a sub-block has a min term `s2`.
    const MINS: bool;
    /// The largest unsigned quant (bounds the AVX2 tier's i16 sums).
    const QMAX: i32;
    /// The unsigned quants (`SIZE` of them, in element order), and per sub-block the scale
    /// `s1` and the min `s2` (left alone without mins); `fp16` converts an f16.
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], s2: &mut [f32], fp16: impl Fn(half::f16) -> f32);
    /// Per sub-block the scale `s1` and the min `s2` (left alone without mins), as
    /// [`unpack`](Self::unpack) gives them.
    fn scales(&self, s1: &mut [f32], s2: &mut [f32], fp16: impl Fn(half::f16) -> f32);
}

/// An activation block type (`Q8_0`, `Q8_K`).
pub(in crate::cpu) trait GemmAct: Block {
    /// The scale (`fp16` converts an f16).
    fn scale(&self, fp16: impl Fn(half::f16) -> f32) -> f32;
    /// The `SIZE` quants.
    fn quants(&self) -> &[i8];
    /// The sum of quants `from..from + len` as the block states it (`Q8_K`: its `bsums`,
    /// which the reference reads for the min terms, whether or not they match the quants).
    fn stated_sum(&self, from: usize, len: usize) -> i32;
}

impl GemmAct for BlockQ8_0 {
    #[inline(always)]
    fn scale(&self, fp16: impl Fn(half::f16) -> f32) -> f32 {
        fp16(self.d)
    }
    #[inline(always)]
    fn quants(&self) -> &[i8] {
        &self.qs
    }
    #[inline(always)]
    fn stated_sum(&self, from: usize, len: usize) -> i32 {
        sum_i8(&self.qs[from..from + len])
    }
}

impl GemmAct for BlockQ8_K {
    #[inline(always)]
    fn scale(&self, _: impl Fn(half::f16) -> f32) -> f32 {
        self.d
    }
    #[inline(always)]
    fn quants(&self) -> &[i8] {
        &self.qs
    }
    #[inline(always)]
    fn stated_sum(&self, from: usize, len: usize) -> i32 {
        self.bsums[from / 16..(from + len) / 16].iter().map(|&s| i32::from(s)).sum()
    }
}

#[inline(always)]
fn sum_i8(q: &[i8]) -> i32 {
    q.iter().map(|&y| i32::from(y)).sum()
}

impl GemmWeight for BlockQ4_0 {
    const S: usize = 32;
    const OFF: i32 = 8;
    const MINS: bool = false;
    const QMAX: i32 = 15;
    #[inline(always)]
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        q[..32].copy_from_slice(&unpack_nibbles(&self.qs));
        s1[0] = fp16(self.d);
    }
    #[inline(always)]
    fn scales(&self, s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        s1[0] = fp16(self.d);
    }
}

impl GemmWeight for BlockQ5_0 {
    const S: usize = 32;
    const OFF: i32 = 16;
    const MINS: bool = false;
    const QMAX: i32 = 31;
    #[inline(always)]
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        q[..32].copy_from_slice(&unpack_5bit(&self.qs, self.qh));
        s1[0] = fp16(self.d);
    }
    #[inline(always)]
    fn scales(&self, s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        s1[0] = fp16(self.d);
    }
}

impl GemmWeight for BlockQ8_0 {
    const S: usize = 32;
    const OFF: i32 = 128;
    const MINS: bool = false;
    const QMAX: i32 = 255;
    #[inline(always)]
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        for (q, &x) in q[..32].iter_mut().zip(&self.qs) {
            *q = (x as u8) ^ 0x80;
        }
        s1[0] = fp16(self.d);
    }
    #[inline(always)]
    fn scales(&self, s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        s1[0] = fp16(self.d);
    }
}

/// Scales and mins of a `Q4_K`/`Q5_K` block as `s1 = d · sc`, `s2 = -dmin · m` (exact: an
/// f16 times a 6-bit integer).
#[inline(always)]
fn scales_k4(d: f32, dmin: f32, scales: &[u8; 12], s1: &mut [f32], s2: &mut [f32]) {
    let sm = super::avx2::scales_mins_k4(scales);
    for j in 0..8 {
        s1[j] = d * f32::from(sm[j]);
        s2[j] = -dmin * f32::from(sm[8 + j]);
    }
}

impl GemmWeight for BlockQ4_K {
    const S: usize = 32;
    const OFF: i32 = 0;
    const MINS: bool = true;
    const QMAX: i32 = 15;
    #[inline(always)]
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], s2: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        // Each 32 bytes of `qs`: 32 elements in the low nibbles, the next 32 in the high.
        for (c, qs) in self.qs.chunks_exact(32).enumerate() {
            for i in 0..32 {
                q[64 * c + i] = qs[i] & 0x0f;
                q[64 * c + 32 + i] = qs[i] >> 4;
            }
        }
        scales_k4(fp16(self.d), fp16(self.dmin), &self.scales, s1, s2);
    }
    #[inline(always)]
    fn scales(&self, s1: &mut [f32], s2: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        scales_k4(fp16(self.d), fp16(self.dmin), &self.scales, s1, s2);
    }
}

impl GemmWeight for BlockQ5_K {
    const S: usize = 32;
    const OFF: i32 = 0;
    const MINS: bool = true;
    const QMAX: i32 = 31;
    #[inline(always)]
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], s2: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        // As Q4_K; element `32 k + i` has its fifth bit in bit `k` of `qh[i]`.
        for (c, qs) in self.qs.chunks_exact(32).enumerate() {
            for i in 0..32 {
                let h = self.qh[i] >> (2 * c);
                q[64 * c + i] = (qs[i] & 0x0f) | (h & 1) << 4;
                q[64 * c + 32 + i] = (qs[i] >> 4) | (h & 2) << 3;
            }
        }
        scales_k4(fp16(self.d), fp16(self.dmin), &self.scales, s1, s2);
    }
    #[inline(always)]
    fn scales(&self, s1: &mut [f32], s2: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        scales_k4(fp16(self.d), fp16(self.dmin), &self.scales, s1, s2);
    }
}

impl GemmWeight for BlockQ6_K {
    const S: usize = 16;
    const OFF: i32 = 32;
    const MINS: bool = false;
    const QMAX: i32 = 63;
    #[inline(always)]
    fn unpack(&self, q: &mut [u8], s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        // Element `128 h + 32 k + i` (see `quant::k_quants::q6_k`).
        for h in 0..2 {
            let (ql, qh) = (&self.ql[64 * h..][..64], &self.qh[32 * h..][..32]);
            for i in 0..32 {
                let e = 128 * h + i;
                q[e] = (ql[i] & 0x0f) | (qh[i] & 3) << 4;
                q[e + 32] = (ql[32 + i] & 0x0f) | ((qh[i] >> 2) & 3) << 4;
                q[e + 64] = (ql[i] >> 4) | ((qh[i] >> 4) & 3) << 4;
                q[e + 96] = (ql[32 + i] >> 4) | ((qh[i] >> 6) & 3) << 4;
            }
        }
        self.scales(s1, &mut [], fp16);
    }
    #[inline(always)]
    fn scales(&self, s1: &mut [f32], _: &mut [f32], fp16: impl Fn(half::f16) -> f32) {
        let d = fp16(self.d);
        for (s, &sc) in s1[..QK_K / 16].iter_mut().zip(&self.scales) {
            *s = d * f32::from(sc);
        }
    }
}

/// `acc` carried over one weight block `x` against its activation block `y` in the canonical
/// order (see the module docs): `isum[j]` is sub-block `j`'s exact `Σ (q - OFF) y`. Bit for
/// bit what the micro-kernels do in each lane: `f32(i32)` rounds to nearest as
/// `cvtepi32_ps` does, `mul_add` is the fused multiply-add (inlined into a caller compiled
/// with FMA, one instruction).
#[inline(always)]
pub(in crate::cpu) fn accumulate<W: GemmWeight>(
    mut acc: f32,
    x: &W,
    y: &W::Act,
    isum: &[i32],
    fp16: impl Fn(half::f16) -> f32 + Copy,
) -> f32 {
    let per = W::SIZE / W::S;
    let (mut s1, mut s2) = ([0f32; QK_K / 16], [0f32; QK_K / 16]);
    x.scales(&mut s1[..per], &mut s2[..per], fp16);
    let d = y.scale(fp16);
    for j in 0..per {
        acc = (isum[j] as f32).mul_add(s1[j] * d, acc);
        if W::MINS {
            acc = s2[j].mul_add(d * y.stated_sum(j * W::S, W::S) as f32, acc);
        }
    }
    acc
}

/// One tile's inputs, as a micro-kernel reads them: `nsb` sub-blocks of `S` columns, `L`
/// weight rows, `T` tokens.
pub(in crate::cpu) struct Tile<'a> {
    /// Sub-blocks.
    pub nsb: usize,
    /// Weight quants, `[nsb][S / 4][L][4]` unsigned bytes.
    pub wq: &'a [u8],
    /// Weight scales `s1`, `[nsb][L]`.
    pub s1: &'a [f32],
    /// Weight mins `s2`, `[nsb][L]` (zeros without mins).
    pub s2: &'a [f32],
    /// Activation quants, `[nsb][T][S]`.
    pub aq: &'a [i8],
    /// Where each i32 sum starts: `-OFF · Σ y`, `[nsb][T]`.
    pub off: &'a [i32],
    /// Activation scales `d`, `[nsb][T]`.
    pub da: &'a [f32],
    /// `d · Σ y` from the stated sums, `[nsb][T]` (zeros without mins).
    pub dys: &'a [f32],
}

/// Activations packed for tiles of `T` tokens: quants `[tile][nsb][T][S]`, and per tile,
/// sub-block and token the offset term, the scale and the scaled sum (see [`Tile`]).
#[derive(Default)]
struct Packed {
    aq: Lines,
    off: Vec<i32>,
    da: Vec<f32>,
    dys: Vec<f32>,
}

impl Packed {
    /// Packs the token rows of `a` (`nb` blocks each) for tiles of `T` tokens; the tokens
    /// past the last in the last tile are zeros.
    #[inline(always)]
    fn pack<W: GemmWeight, const T: usize>(&mut self, a: &[W::Act], nb: usize, fp16: impl Fn(half::f16) -> f32 + Copy) {
        let (s, per) = (W::S, W::SIZE / W::S);
        let nsb = nb * per;
        let tiles = (a.len() / nb.max(1)).div_ceil(T);
        let aq = self.aq.zeroed::<i8>(tiles * nsb * T * s);
        zeroed(&mut self.off, tiles * nsb * T);
        zeroed(&mut self.da, tiles * nsb * T);
        zeroed(&mut self.dys, tiles * nsb * T);
        for (tok, row) in a.chunks_exact(nb).enumerate() {
            let (g, t) = (tok / T, tok % T);
            for (b, blk) in row.iter().enumerate() {
                let (d, qs) = (blk.scale(fp16), blk.quants());
                for j in 0..per {
                    let at = (g * nsb + b * per + j) * T + t;
                    let q = &qs[j * s..][..s];
                    aq[at * s..][..s].copy_from_slice(q);
                    self.off[at] = -W::OFF * sum_i8(q);
                    self.da[at] = d;
                    if W::MINS {
                        self.dys[at] = d * blk.stated_sum(j * s, s) as f32;
                    }
                }
            }
        }
    }

    /// Tile `g` against the decoded panel `(wq, s1, s2)`.
    #[allow(clippy::too_many_arguments)]
    fn tile<'a>(
        &'a self,
        g: usize,
        nsb: usize,
        t: usize,
        s: usize,
        wq: &'a [u8],
        s1: &'a [f32],
        s2: &'a [f32],
    ) -> Tile<'a> {
        let span = g * nsb * t..(g + 1) * nsb * t;
        Tile {
            nsb,
            wq,
            s1,
            s2,
            aq: &self.aq.get::<i8>()[g * nsb * t * s..][..nsb * t * s],
            off: &self.off[span.clone()],
            da: &self.da[span.clone()],
            dys: &self.dys[span],
        }
    }
}

/// Per-thread buffers: packed activations and one decoded group of panels, grown to the
/// largest call and kept (nothing is allocated once they have grown).
#[derive(Default)]
struct Scratch {
    /// The tokens of the `T`-token tiles ([`tiled_tokens`]; a padded last tile's extra tokens
    /// are zeros).
    main: Packed,
    /// The tokens after them, one to a tile.
    tail: Packed,
    /// A group of panels ([`group_panels`]): per panel its quants as `[cols / 4][L]` groups
    /// of four bytes, its scales `[nsb][L]` and mins `[nsb][L]`.
    wq: Lines,
    s1: Vec<f32>,
    s2: Vec<f32>,
    /// The panel's rows, decoded (`[L][cols]`), for tiers that transpose them.
    row_q: Vec<u8>,
}

impl Scratch {
    /// Packs the `n` token rows of `a` (`nb` blocks each) into `main` and `tail`.
    #[inline(always)]
    fn pack<W: GemmWeight, const T: usize>(
        &mut self,
        a: &[W::Act],
        nb: usize,
        n: usize,
        fp16: impl Fn(half::f16) -> f32 + Copy,
    ) {
        let tiled = tiled_tokens::<T>(n).min(n);
        self.main.pack::<W, T>(&a[..tiled * nb], nb, fp16);
        self.tail.pack::<W, 1>(&a[tiled * nb..], nb, fp16);
    }

    /// Sizes the group buffers for panels of `L` of `rows` rows of `cols` columns (`nsb`
    /// sub-blocks) and returns the panels in a group.
    #[inline(always)]
    fn group<const L: usize>(&mut self, rows: usize, cols: usize, nsb: usize) -> usize {
        let group = group_panels(cols, L).min(rows.div_ceil(L));
        self.wq.zeroed::<u32>(group * cols / 4 * L);
        zeroed(&mut self.s1, group * nsb * L);
        zeroed(&mut self.s2, group * nsb * L);
        group
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A buffer of 64-byte lines seen as a slice of `u8`, `i8`, `u32`...: the scratch the
/// micro-kernels load whole vectors and AMX tiles from, aligned so that none of their 64-byte
/// rows straddles two cache lines (a `Vec<u8>` of this size starts 16 bytes into a page,
/// and every tile row would be split).
#[derive(Default)]
struct Lines {
    lines: Vec<Line>,
    /// The bytes in use.
    len: usize,
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

impl Default for Line {
    fn default() -> Line {
        Line([0; 64])
    }
}

impl Lines {
    /// `len` zeros of `T` (no reallocation once it has grown).
    #[inline(always)]
    fn zeroed<T: bytemuck::Pod>(&mut self, len: usize) -> &mut [T] {
        self.len = len * size_of::<T>();
        zeroed(&mut self.lines, self.len.div_ceil(64));
        bytemuck::cast_slice_mut(&mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..self.len])
    }

    /// The slice [`zeroed`](Self::zeroed) gave, as it is now.
    #[inline(always)]
    fn get<T: bytemuck::Pod>(&self) -> &[T] {
        bytemuck::cast_slice(&bytemuck::cast_slice::<Line, u8>(&self.lines)[..self.len])
    }

    /// The same, mutable.
    #[inline(always)]
    fn get_mut<T: bytemuck::Pod>(&mut self) -> &mut [T] {
        bytemuck::cast_slice_mut(&mut bytemuck::cast_slice_mut::<Line, u8>(&mut self.lines)[..self.len])
    }
}

/// `v` cleared and refilled with `len` zeros (no reallocation once it has grown).
#[inline(always)]
fn zeroed<T: Copy + Default>(v: &mut Vec<T>, len: usize) {
    v.clear();
    v.resize(len, T::default());
}

/// `out[t * ldo + r] = w_r · a_t` for every row `r` of `w` and token `t < n` of `a`, where
/// `a` holds `n` rows of equal length and `w` whole rows of that length (the caller checked).
///
/// The tier supplies `fp16` (its f16 conversion), `decode(rows, width, scratch, wq, s1, s2)`
/// (the panel of the `width <= L` rows of blocks `rows`: the unsigned quants as `[cols /
/// 4][L][4]` bytes, the scales and mins as `[nsb][L]`, the rows past `width` zeros:
/// [`unpack_transpose`] with the tier's transpose, or a decoder of its own) and two
/// micro-kernels over a [`Tile`], `kernel` for `T` tokens and
/// `kernel1` for one (the last `n % T` tokens), which must form each output the same way:
/// then a (row, token) output has the same bits whatever the other tokens of the call, its
/// place among them, and `n`.
///
/// Inlined into each tier's `#[target_feature]` entry, so that the packing and decoding loops
/// are compiled for the tier too (hence no closure around them: a closure is a function of
/// its own, compiled for the baseline).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(in crate::cpu) fn gemm<W: GemmWeight, const L: usize, const T: usize>(
    w: &[W],
    a: &[W::Act],
    n: usize,
    out: &mut [f32],
    ldo: usize,
    fp16: impl Fn(half::f16) -> f32 + Copy,
    decode: impl Fn(&[W], usize, &mut [u8], &mut [u32], &mut [f32], &mut [f32]),
    kernel: impl Fn(&Tile<'_>, &mut [[f32; L]; T]),
    kernel1: impl Fn(&Tile<'_>, &mut [[f32; L]; 1]),
) {
    if n == 0 || a.is_empty() {
        return;
    }
    let nb = a.len() / n;
    let rows = w.len() / nb;
    let (s, per) = (W::S, W::SIZE / W::S);
    let (nsb, cols) = (nb * per, nb * W::SIZE);
    let mut sc = SCRATCH.with_borrow_mut(std::mem::take);
    sc.pack::<W, T>(a, nb, n, fp16);

    let group = sc.group::<L>(rows, cols, nsb);
    zeroed(&mut sc.row_q, L * cols);
    for g0 in (0..rows).step_by(group * L) {
        let panels = (rows - g0).div_ceil(L).min(group);
        for p in 0..panels {
            // The panel of rows `r0..r0 + L` (rows past the end are zeros), by the tier.
            let r0 = g0 + p * L;
            let width = L.min(rows - r0);
            let (s1, s2) = (&mut sc.s1[p * nsb * L..][..nsb * L], &mut sc.s2[p * nsb * L..][..nsb * L]);
            let wq = &mut sc.wq.get_mut::<u32>()[p * cols / 4 * L..][..cols / 4 * L];
            decode(&w[r0 * nb..][..width * nb], width, &mut sc.row_q, wq, s1, s2);
        }
        let group = Group { wq: sc.wq.get(), s1: &sc.s1, s2: &sc.s2, panels };
        group_tiles::<L, T>(&sc.main, &sc.tail, &group, (nsb, s, n), (g0, rows), out, ldo, &kernel, &kernel1);
    }
    SCRATCH.with_borrow_mut(|s| *s = sc);
}

/// Bytes of decoded weights in a group of panels: a token tile is run against every panel
/// of a group before the next tile (its activations stay in L1, the group in L2), so that
/// the outputs of one token come out in runs of `group · L` consecutive floats rather than
/// `L` (measured, AMX, 2048 rows × 256 columns, 512 tokens, one thread: storing 16 floats per
/// token and panel across a 4 MB output took 3.5× the time of the products).
const GROUP_BYTES: usize = 256 << 10;

/// Panels of `L` rows of `cols` columns in a group (one to 16).
#[inline(always)]
fn group_panels(cols: usize, l: usize) -> usize {
    (GROUP_BYTES / (cols * l).max(1)).clamp(1, 16)
}

/// Decoded panels of `L` weight rows, `panels` of them, as [`Tile`] reads each.
struct Group<'a> {
    /// `[panel][nsb][S / 4][L][4]` unsigned bytes.
    wq: &'a [u8],
    /// `[panel][nsb][L]`.
    s1: &'a [f32],
    /// `[panel][nsb][L]` (zeros without mins).
    s2: &'a [f32],
    panels: usize,
}

impl Group<'_> {
    /// Panel `p`'s quants, scales and mins, for panels of `nsb` sub-blocks of `s` columns.
    #[inline(always)]
    fn panel<const L: usize>(&self, p: usize, nsb: usize, s: usize) -> (&[u8], &[f32], &[f32]) {
        let (wq_len, s_len) = (nsb * s * L, nsb * L);
        (&self.wq[p * wq_len..][..wq_len], &self.s1[p * s_len..][..s_len], &self.s2[p * s_len..][..s_len])
    }
}

/// Every token of `main` (whole tiles) and `tail` (one-token tiles) against every panel of
/// `group`, whose first row is `g0` of `rows` (`out[t * ldo + r]`); `shape` is `(nsb, S, n)`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn group_tiles<const L: usize, const T: usize>(
    main: &Packed,
    tail: &Packed,
    group: &Group<'_>,
    (nsb, s, n): (usize, usize, usize),
    (g0, rows): (usize, usize),
    out: &mut [f32],
    ldo: usize,
    kernel: &impl Fn(&Tile<'_>, &mut [[f32; L]; T]),
    kernel1: &impl Fn(&Tile<'_>, &mut [[f32; L]; 1]),
) {
    // A multiple of `T`, past `n` when the last tile is padded.
    let tiled = tiled_tokens::<T>(n);
    // Panel `p`'s first row and width.
    let span = |p: usize| (g0 + p * L, L.min(rows - (g0 + p * L)));
    let mut acc = [[0f32; L]; T];
    for g in 0..tiled / T {
        for p in 0..group.panels {
            let (wq, s1, s2) = group.panel::<L>(p, nsb, s);
            kernel(&main.tile(g, nsb, T, s, wq, s1, s2), &mut acc);
            let (r0, width) = span(p);
            // A padded last tile's zero tokens are computed and dropped.
            for (t, acc) in acc.iter().enumerate().take(n - g * T) {
                put(&mut out[(g * T + t) * ldo + r0..][..width], acc);
            }
        }
    }
    let mut acc1 = [[0f32; L]; 1];
    for t in tiled.min(n)..n {
        for p in 0..group.panels {
            let (wq, s1, s2) = group.panel::<L>(p, nsb, s);
            kernel1(&tail.tile(t - tiled, nsb, 1, s, wq, s1, s2), &mut acc1);
            let (r0, width) = span(p);
            put(&mut out[t * ldo + r0..][..width], &acc1[0]);
        }
    }
}

/// Tokens that go through `T`-token tiles, the rest one at a time: a remainder of at least
/// [`PAD_FROM`] tokens is padded with zero tokens into one more tile (whose outputs for them
/// are dropped). Every token's outputs have the same bits either way; only the cost differs.
#[inline(always)]
fn tiled_tokens<const T: usize>(n: usize) -> usize {
    if n % T >= PAD_FROM.min(T) { n.next_multiple_of(T) } else { n / T * T }
}

/// See [`tiled_tokens`]: a one-token tile reads the whole decoded panel for one token's
/// multiply-adds, so a few of them cost as much as a full tile. Gemma 3 270M, a server's
/// 255-token prompt (its first token reused from the cache), 16-token AVX-512 tiles: the 15
/// one-token tiles took 7.2% of the prompt's time (0.48% each) and a full tile 3.1%, so
/// padding pays from about seven; the prompt ran 1603 -> 1759 t/s padded.
const PAD_FROM: usize = 7;

/// A panel's outputs for one token into `dst` (its first `dst.len() <= L`): a whole panel as
/// one fixed-size copy, which compiles to vector moves, where a copy of a length known only
/// at run time calls `memmove` (1.8-3% of a Gemma 3 270M prompt's time, AVX-512 EPYC).
#[inline(always)]
fn put<const L: usize>(dst: &mut [f32], src: &[f32; L]) {
    match <&mut [f32; L]>::try_from(&mut *dst) {
        Ok(whole) => *whole = *src,
        Err(_) => dst.copy_from_slice(&src[..dst.len()]),
    }
}

/// `len` zero words, whose memory the kernel is asked to back with transparent huge pages
/// where it can: packed weights are streamed from end to end at every step, as the mapped
/// file they replace is (whose page cache may use huge pages), and with 4 KiB pages the
/// page walks slow the stream down (measured: the packed output head of Gemma 3 270M read at
/// 36 GB/s against the map's 46).
pub(in crate::cpu) fn huge_zeroed(len: usize) -> Vec<u32> {
    // Zeroed by the allocator (fresh pages from the kernel for a large buffer, untouched
    // until written), so the first writes, spread over the packing threads, fault them in.
    let mut v: Vec<u32> = vec![0; len];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let start = v.as_mut_ptr() as usize;
        let (from, to) = (start.next_multiple_of(HUGE), (start + len * 4) / HUGE * HUGE);
        if from < to {
            // SAFETY: `from..to` lies within `v`'s allocation; `MADV_HUGEPAGE` only changes
            // how its pages are backed, not what they hold (zeros here). A failure (no THP
            // support) leaves ordinary pages, so it is ignored.
            unsafe { libc::madvise(from as *mut libc::c_void, to - from, libc::MADV_HUGEPAGE) };
        }
    }
    v
}

/// Runs `fill(p, panel)` for every panel (`words` words each) of `out`, spread over the
/// machine's cores for a large matrix (scoped threads of its own: packing happens at load,
/// before any pool of the caller's exists, and must not borrow one).
pub(in crate::cpu) fn par_panels(out: &mut [u32], words: usize, fill: impl Fn(usize, &mut [u32]) + Sync) {
    const PER_THREAD_BYTES: usize = 4 << 20;
    let panels = if words == 0 { 0 } else { out.len() / words };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let threads = cores.min(out.len() * 4 / PER_THREAD_BYTES).max(1);
    let per = panels.div_ceil(threads).max(1);
    let run = |first: usize, part: &mut [u32]| {
        for (i, panel) in part.chunks_exact_mut(words).enumerate() {
            fill(first + i, panel);
        }
    };
    std::thread::scope(|s| {
        let mut parts = out.chunks_mut(per * words.max(1)).enumerate();
        let mine = parts.next();
        for (c, part) in parts {
            s.spawn(move || run(c * per, part));
        }
        if let Some((_, part)) = mine {
            run(0, part);
        }
    });
}

/// [`gemm`] over weights packed in a layout of the tier's own (`words`: whole panels of
/// `per_panel` words, holding `rows` rows of `cols` columns), which `unpack(panel, wq, s1, s2)`
/// turns into the panel [`gemm`] decodes from blocks (`wq` `[nsb][S / 4][L][4]` bytes, `s1`
/// and `s2` `[nsb][L]`): once per panel per call, for the `T`-token tiles of a prompt. The
/// same bits as [`gemm`] when `unpack` gives the same panel.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(in crate::cpu) fn gemm_unpacking<W: GemmWeight, const L: usize, const T: usize>(
    (words, per_panel): (&[u32], usize),
    rows: usize,
    cols: usize,
    a: &[W::Act],
    n: usize,
    out: &mut [f32],
    ldo: usize,
    fp16: impl Fn(half::f16) -> f32 + Copy,
    unpack: impl Fn(&[u32], &mut [u8], &mut [f32], &mut [f32]),
    kernel: impl Fn(&Tile<'_>, &mut [[f32; L]; T]),
    kernel1: impl Fn(&Tile<'_>, &mut [[f32; L]; 1]),
) {
    if n == 0 || a.is_empty() {
        return;
    }
    let (nb, s, per) = (a.len() / n, W::S, W::SIZE / W::S);
    let nsb = nb * per;
    let mut sc = SCRATCH.with_borrow_mut(std::mem::take);
    sc.pack::<W, T>(a, nb, n, fp16);
    let total = rows.div_ceil(L);
    let group = sc.group::<L>(rows, cols, nsb);
    for first in (0..total).step_by(group) {
        let panels = (total - first).min(group);
        for p in 0..panels {
            let (wq, s_len) = (&mut sc.wq.get_mut::<u8>()[p * cols * L..][..cols * L], nsb * L);
            unpack(
                &words[(first + p) * per_panel..][..per_panel],
                wq,
                &mut sc.s1[p * s_len..][..s_len],
                &mut sc.s2[p * s_len..][..s_len],
            );
        }
        let group = Group { wq: sc.wq.get(), s1: &sc.s1, s2: &sc.s2, panels };
        group_tiles::<L, T>(&sc.main, &sc.tail, &group, (nsb, s, n), (first * L, rows), out, ldo, &kernel, &kernel1);
    }
    SCRATCH.with_borrow_mut(|s| *s = sc);
}

/// The portable panel decoding of [`gemm`]: the `width` rows of blocks `rows` unpacked one
/// by one, the quants into `scratch` (`[L][cols]` bytes, the rows past `width` zeros), then
/// interleaved by `transpose(src, m, dst)` (`dst[c * L + l] = src[l * m + c]`: `L` rows of
/// `m` words to `m` rows of `L`) into `wq`; the scales and mins into `s1`, `s2` (`[nsb][L]`).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(in crate::cpu) fn unpack_transpose<W: GemmWeight, const L: usize>(
    rows: &[W],
    width: usize,
    scratch: &mut [u8],
    wq: &mut [u32],
    s1: &mut [f32],
    s2: &mut [f32],
    fp16: impl Fn(half::f16) -> f32 + Copy,
    transpose: impl Fn(&[u32], usize, &mut [u32]),
) {
    let cols = wq.len() * 4 / L;
    let (nb, per) = (cols / W::SIZE, W::SIZE / W::S);
    let scratch = &mut scratch[..L * cols];
    scratch[width * cols..].fill(0);
    if width < L {
        s1.fill(0.0);
        s2.fill(0.0);
    }
    let (mut b1, mut b2) = ([0f32; QK_K / 16], [0f32; QK_K / 16]);
    for (l, row) in rows.chunks_exact(nb.max(1)).take(width).enumerate() {
        for (b, blk) in row.iter().enumerate() {
            blk.unpack(&mut scratch[l * cols + b * W::SIZE..][..W::SIZE], &mut b1, &mut b2, fp16);
            for j in 0..per {
                s1[(b * per + j) * L + l] = b1[j];
                s2[(b * per + j) * L + l] = b2[j];
            }
        }
    }
    transpose(bytemuck::cast_slice(scratch), cols / 4, wq);
}
