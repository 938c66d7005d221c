//! [`GpuModel`]: the offloaded blocks' (and head's) weights on the device, uploaded once.

use std::sync::{Arc, Mutex};

use pupil_kernels::cuda::{CudaSlice, Gpu, GpuWeight};

use super::Offload;
use crate::gguf::GgufFile;
use crate::model::Config;
use crate::model::arch::Role;
use crate::model::weights::{Tensor, Tensors, Weights};

/// One block's (or the head's) tensors on the device, by role.
#[derive(Debug, Default)]
pub(crate) struct GpuTensors {
    mats: Vec<(Role, GpuWeight)>,
    vecs: Vec<(Role, CudaSlice<f32>)>,
}

impl GpuTensors {
    /// The matrix for `role`; the host table loaded the same roles, so a miss is a bug.
    pub fn matrix(&self, role: Role) -> Result<&GpuWeight, String> {
        self.mats.iter().find(|(r, _)| *r == role).map(|(_, m)| m).ok_or_else(|| format!("{role:?} not on the GPU"))
    }

    /// The vector for `role`.
    pub fn vector(&self, role: Role) -> Result<&CudaSlice<f32>, String> {
        self.optional(role).ok_or_else(|| format!("{role:?} not on the GPU"))
    }

    /// The vector for `role`, if the model has it.
    pub fn optional(&self, role: Role) -> Option<&CudaSlice<f32>> {
        self.vecs.iter().find(|(r, _)| *r == role).map(|(_, v)| v)
    }

    fn upload(gpu: &Gpu, file: &GgufFile, t: &Tensors, roles: Option<&[Role]>) -> Result<GpuTensors, String> {
        let mut out = GpuTensors::default();
        for (role, tensor) in t.iter() {
            if roles.is_some_and(|r| !r.contains(&role)) {
                continue;
            }
            match tensor {
                Tensor::Matrix(m) => {
                    let w = gpu.upload_weight(&m.weight(file)).map_err(|e| format!("{role:?}: {e}"))?;
                    out.mats.push((role, w));
                }
                Tensor::Vector(v) => out.vecs.push((role, gpu.upload(v).map_err(|e| e.to_string())?)),
            }
        }
        Ok(out)
    }
}

/// The GPU part of a [`Model`]: the device, and the weights of the blocks from
/// `offload.first` on (and of the head if `offload.head`).
#[derive(Debug)]
pub(crate) struct GpuModel {
    pub gpu: Arc<Gpu>,
    pub offload: Offload,
    /// `[n_layer - first]`, block `first + i` at `i`.
    pub layers: Vec<GpuTensors>,
    /// The output norm and matrix, when the head is offloaded.
    pub head: Option<GpuTensors>,
    /// The device has one stream and one cuBLAS handle: one pass at a time uses them.
    pub busy: Mutex<()>,
}

impl GpuModel {
    /// Opens GPU 0 and uploads the offloaded weights; `Err` says why not, in a phrase.
    pub fn load(file: &GgufFile, cfg: &Config, weights: &Weights, offload: Offload) -> Result<GpuModel, String> {
        if cfg.head_dim > 256 || !cfg.head_dim.is_multiple_of(32) {
            return Err(format!(
                "head size {} has no GPU attention kernel (a multiple of 32, at most 256)",
                cfg.head_dim
            ));
        }
        let gpu = Arc::new(Gpu::open(0).map_err(|e| e.to_string())?);
        let layers = weights.layers[offload.first..]
            .iter()
            .map(|t| GpuTensors::upload(&gpu, file, t, None))
            .collect::<Result<_, _>>()?;
        let head = if offload.head {
            let output = weights.output().map_err(|e| e.to_string())?.weight(file);
            let mut t = GpuTensors::upload(&gpu, file, &weights.model, Some(&[Role::OutputNorm, Role::OutputBias]))?;
            t.mats.push((Role::Output, gpu.upload_weight(&output).map_err(|e| format!("the output matrix: {e}"))?));
            Some(t)
        } else {
            None
        };
        Ok(GpuModel { gpu, offload, layers, head, busy: Mutex::new(()) })
    }

    /// The tensors of block `il` (which must be offloaded).
    pub fn layer(&self, il: usize) -> &GpuTensors {
        &self.layers[il - self.offload.first]
    }

    /// The largest matrix offloaded, in elements (sizes the GEMM's f16 scratch).
    pub fn largest_matrix(&self) -> usize {
        let all = self.layers.iter().chain(&self.head);
        all.flat_map(|t| t.mats.iter().map(|(_, w)| w.rows * w.cols)).max().unwrap_or(0)
    }
}
