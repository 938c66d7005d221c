//! One transformer block, written once as a sequence of operations on named buffers. A
//! [`Device`] carries them out: the CPU ([`super::cpu`]) with its kernels and the host KV
//! cache, or a GPU with its own buffers, weights and cache. Either way the block is this
//! function, so a second device is a second implementation of a dozen ops, not a second
//! forward pass.
//!
//! Per block, as llama.cpp builds it (`src/models/{llama,qwen2,qwen3,gemma2,gemma3,phi3}.cpp`):
//!
//! ```text
//! h   = rms_norm(x) * attn_norm
//! q,k,v = h·Wq (+bq), h·Wk (+bk), h·Wv (+bv)   (row ranges of one fused Wqkv on Phi-3)
//! q,k = per-head rms_norm (Qwen 3, Gemma 3), then RoPE at each token's position
//! cache[seq][pos] = k, v
//! a   = softmax(q·kᵀ · scale, soft-capped) · v over the sequence's rows ≤ pos (within the
//!       window on sliding layers), then a·Wo (+bo), post-norm (Gemma)
//! x  += a
//! h   = rms_norm(x) * ffn_norm
//! x  += post-norm(Wdown · (act(h·Wgate) * h·Wup))
//! ```

use super::ModelError;
use super::arch::Role;

/// The activation buffers of a pass, each `[n, width]` for the batch's `n` tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Buf {
    /// `[n, n_embd]` the residual stream.
    X,
    /// `[n, n_embd]` the normed block input.
    Xn,
    /// `[n, n_embd]` the attention or FFN output.
    Out,
    /// `[n, n_head · head_dim]` queries.
    Q,
    /// `[n, n_head_kv · head_dim]` keys.
    K,
    /// `[n, n_head_kv · head_dim]` values.
    V,
    /// `[n, n_head · head_dim]` attention output.
    Attn,
    /// `[n, n_ff]` FFN gate, then the gated activation.
    Gate,
    /// `[n, n_ff]` FFN up projection.
    Up,
}

impl Buf {
    /// How many there are.
    pub const COUNT: usize = 9;
}

/// One product of [`Device::project`]: the weight's role, its bias's role (skipped when the
/// layer has none), and the buffer written.
pub(crate) type Job = (Role, Option<Role>, Buf);

/// The operations of a block, on one device's buffers, weights and cache. `il` names the
/// layer whose tensors (and cache) an op uses; `n` is the batch's token count.
pub(crate) trait Device {
    /// `to[t] = rms_norm(from[t]) * w` with `w` the layer's `role` vector.
    fn norm(&mut self, il: usize, role: Role, from: Buf, to: Buf, n: usize) -> Result<(), ModelError>;

    /// `out[t] = W · from[t] (+ bias)` for every job; all read `from`.
    fn project<const N: usize>(&mut self, il: usize, from: Buf, n: usize, jobs: [Job; N]) -> Result<(), ModelError>;

    /// Queries and keys in place: per-head RMS norms where the layer has them, RoPE at each
    /// token's position, and the query scale where the architecture scales queries.
    fn position(&mut self, il: usize, n: usize) -> Result<(), ModelError>;

    /// Keys and values into the layer's cache at each token's row, then attention of each
    /// token's queries over its sequence's rows into [`Buf::Attn`].
    fn attend(&mut self, il: usize, n: usize) -> Result<(), ModelError>;

    /// `gate = act(gate) * up`, with the architecture's activation.
    fn glu(&mut self, n: usize) -> Result<(), ModelError>;

    /// `x += norm(out)` with the layer's `post_norm` vector if it has one, else `x += out`.
    fn residual(&mut self, il: usize, post_norm: Role, n: usize) -> Result<(), ModelError>;
}

/// The error for an op that names one buffer twice (a bug in [`block`], not in any input).
pub(crate) fn aliased() -> ModelError {
    ModelError::Mismatch { what: "block buffers (one named twice)" }
}

/// Runs block `il` on the `n` tokens in `d`'s [`Buf::X`].
pub(crate) fn block<D: Device>(d: &mut D, il: usize, n: usize) -> Result<(), ModelError> {
    use Role::*;
    d.norm(il, AttnNorm, Buf::X, Buf::Xn, n)?;
    d.project(
        il,
        Buf::Xn,
        n,
        [(AttnQ, Some(AttnQBias), Buf::Q), (AttnK, Some(AttnKBias), Buf::K), (AttnV, Some(AttnVBias), Buf::V)],
    )?;
    d.position(il, n)?;
    d.attend(il, n)?;
    d.project(il, Buf::Attn, n, [(AttnOut, Some(AttnOutBias), Buf::Out)])?;
    d.residual(il, PostAttnNorm, n)?;
    d.norm(il, FfnNorm, Buf::X, Buf::Xn, n)?;
    d.project(il, Buf::Xn, n, [(FfnGate, Some(FfnGateBias), Buf::Gate), (FfnUp, Some(FfnUpBias), Buf::Up)])?;
    d.glu(n)?;
    d.project(il, Buf::Gate, n, [(FfnDown, Some(FfnDownBias), Buf::Out)])?;
    d.residual(il, PostFfnNorm, n)
}
