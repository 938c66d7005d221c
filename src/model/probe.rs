//! A forward pass that shows its work: [`Model::forward_probed`] runs [`Model::forward`] and
//! hands each op's output to a callback, under the name llama.cpp's graph gives the same
//! tensor (`attn_norm`, `Kcur`, `kqv_out`, `ffn_out`, `l_out`, ...; see
//! [`crate::llama::Tracer`]), to find the first op where two engines part.

use pupil_kernels::ops::KvScalar;

use super::arch::{FfnAct, Role};
use super::block::{Buf, Device, Job};
use super::cpu::Cpu;
use super::{Batch, KvCache, Model, ModelError, Scratch};

/// Called with (layer, name, the op's output `[n, width]` for the batch's `n` tokens).
pub type ProbeFn<'a> = dyn FnMut(usize, &'static str, &[f32]) + Send + 'a;

/// The CPU device, reporting every op's output as it goes.
pub(super) struct Probed<'d, 'p, T: KvScalar> {
    pub cpu: Cpu<'d, T>,
    pub on: &'p mut ProbeFn<'p>,
    /// The layer of the last op that named one (the gated activation names none).
    pub layer: usize,
}

impl<T: KvScalar> Probed<'_, '_, T> {
    fn show(&mut self, il: usize, name: &'static str, buf: Buf, n: usize) {
        self.layer = il;
        let cfg = &self.cpu.model.config;
        let width = match buf {
            Buf::X | Buf::Xn | Buf::Out => cfg.n_embd,
            Buf::Q | Buf::Attn => cfg.q_dim(),
            Buf::K | Buf::V => cfg.kv_dim(),
            Buf::Gate | Buf::Up => cfg.n_ff,
        };
        let (bufs, _) = self.cpu.s.bufs();
        (self.on)(il, name, &bufs[buf as usize][..n * width]);
    }
}

/// llama.cpp's name for the output of a projection by `role`.
fn product_name(role: Role) -> &'static str {
    match role {
        Role::AttnQ => "Qcur_proj",
        Role::AttnK => "Kcur_proj",
        Role::AttnV => "Vcur",
        Role::AttnOut => "attn_out",
        Role::FfnGate => "ffn_gate",
        Role::FfnUp => "ffn_up",
        Role::FfnDown => "ffn_out",
        _ => "product",
    }
}

impl<T: KvScalar> Device for Probed<'_, '_, T> {
    fn norm(&mut self, il: usize, role: Role, from: Buf, to: Buf, n: usize) -> Result<(), ModelError> {
        self.cpu.norm(il, role, from, to, n)?;
        let name = if role == Role::AttnNorm { "attn_norm" } else { "ffn_norm" };
        self.show(il, name, to, n);
        Ok(())
    }

    fn project<const N: usize>(&mut self, il: usize, from: Buf, n: usize, jobs: [Job; N]) -> Result<(), ModelError> {
        self.cpu.project(il, from, n, jobs)?;
        for (role, _, to) in jobs {
            self.show(il, product_name(role), to, n);
        }
        Ok(())
    }

    fn position(&mut self, il: usize, n: usize) -> Result<(), ModelError> {
        self.cpu.position(il, n)?;
        // Queries after RoPE and, where the architecture scales queries (Gemma), the scale.
        self.show(il, "Qcur", Buf::Q, n);
        self.show(il, "Kcur", Buf::K, n);
        Ok(())
    }

    fn attend(&mut self, il: usize, n: usize) -> Result<(), ModelError> {
        self.cpu.attend(il, n)?;
        self.show(il, "kqv_out", Buf::Attn, n);
        Ok(())
    }

    fn glu(&mut self, n: usize) -> Result<(), ModelError> {
        self.cpu.glu(n)?;
        let name = match self.cpu.model.config.arch.spec().ffn_act {
            FfnAct::Silu => "ffn_swiglu",
            FfnAct::GeluTanh => "ffn_geglu",
        };
        self.show(self.layer, name, Buf::Gate, n);
        Ok(())
    }

    fn residual(&mut self, il: usize, post_norm: Role, n: usize) -> Result<(), ModelError> {
        self.cpu.residual(il, post_norm, n)?;
        let name = if post_norm == Role::PostAttnNorm { "sa_out" } else { "l_out" };
        self.show(il, name, Buf::X, n);
        Ok(())
    }
}

impl Model {
    /// [`Model::forward`], calling `on(layer, name, output)` after each op of each block
    /// with the op's output for the batch's tokens (`[n, width]`, token after token). Names
    /// follow llama.cpp's graph: `attn_norm`, `Qcur_proj`, `Kcur_proj`, `Vcur`, `Qcur` (after
    /// RoPE and, on Gemma, the query scale), `Kcur`, `kqv_out`, `attn_out`, `sa_out`
    /// (residual stream after attention, post-norm included), `ffn_norm`, `ffn_gate`,
    /// `ffn_up`, `ffn_geglu`/`ffn_swiglu` (the gated activation), `ffn_out`, `l_out`. Blocks
    /// offloaded to a GPU are not probed.
    pub fn forward_probed(
        &self,
        batch: &Batch,
        cache: &mut KvCache,
        s: &mut Scratch,
        logits: &mut [f32],
        on: &mut ProbeFn<'_>,
    ) -> Result<(), ModelError> {
        rayon::join(|| self.run_probed(batch, cache, s, logits, Some(on)), || ()).0
    }
}
