//! One GPU: its context, the stream every op runs on, cuBLAS, and the loaded kernels.

use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::sys::CUdevice_attribute as Attr;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DeviceRepr, ValidAsZeroBits,
};
use cudarc::nvrtc::Ptx;

use super::{GpuError, compile, libs};

/// What the device is, for reports (`pupil bench`) and checks.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    /// The driver's ordinal.
    pub ordinal: usize,
    /// The product name (`NVIDIA H200`).
    pub name: String,
    /// Compute capability `(major, minor)`.
    pub compute: (i32, i32),
    /// Device memory, bytes.
    pub memory: usize,
    /// Theoretical memory bandwidth, bytes per second (memory clock × bus width × 2).
    pub bandwidth: f64,
    /// Streaming multiprocessors.
    pub sms: u32,
}

impl DeviceInfo {
    /// `sm_XY` as the number `XY`.
    pub fn sm(&self) -> u32 {
        (self.compute.0 * 10 + self.compute.1) as u32
    }
}

/// Finds device `ordinal` without compiling anything: fails with a [`GpuError`] naming the
/// missing library, or saying how many devices there are.
pub fn probe(ordinal: usize) -> Result<DeviceInfo, GpuError> {
    context(ordinal).map(|(_, info)| info)
}

/// Device `ordinal`'s primary context and what it is.
fn context(ordinal: usize) -> Result<(Arc<CudaContext>, DeviceInfo), GpuError> {
    libs::require(libs::DRIVER)?;
    let count = CudaContext::device_count()? as usize;
    if ordinal >= count {
        return Err(GpuError::NoDevice { ordinal, count });
    }
    let ctx = CudaContext::new(ordinal)?;
    let info = info(&ctx, ordinal)?;
    Ok((ctx, info))
}

fn info(ctx: &Arc<CudaContext>, ordinal: usize) -> Result<DeviceInfo, GpuError> {
    let clock_khz = f64::from(ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)?);
    let bus_bits = f64::from(ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?);
    Ok(DeviceInfo {
        ordinal,
        name: ctx.name()?,
        compute: ctx.compute_capability()?,
        memory: ctx.total_mem()?,
        bandwidth: 2.0 * clock_khz * 1e3 * bus_bits / 8.0,
        sms: ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
    })
}

macro_rules! kernels {
    ($($name:ident),* $(,)?) => {
        /// Every kernel of the program, loaded once.
        pub(crate) struct Kernels { $(pub(crate) $name: CudaFunction,)* }

        impl Kernels {
            /// The entry points, by name.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($name)),*];

            fn load(m: &Arc<CudaModule>) -> Result<Kernels, GpuError> {
                Ok(Kernels { $($name: m.load_function(stringify!($name))?,)* })
            }
        }
    };
}

kernels!(
    quantize_q8_1,
    mmvq_q4_0,
    mmvq_q5_0,
    mmvq_q8_0,
    mmvq_q4_k,
    mmvq_q5_k,
    mmvq_q6_k,
    mv_f16,
    mv_bf16,
    mv_f32,
    dequant_q4_0_f16,
    dequant_q5_0_f16,
    dequant_q8_0_f16,
    dequant_q4_k_f16,
    dequant_q5_k_f16,
    dequant_q6_k_f16,
    dequant_bf16_f16,
    dequant_f32_f16,
    convert_f32_f16,
    rms_norm,
    rope,
    silu,
    gelu_tanh,
    mul,
    add,
    scale,
    softcap,
    add_bias,
    kv_write,
    attend_split,
    attend_merge,
    argmax,
);

/// An open GPU with the kernels loaded. Every op is queued on one stream, in call order;
/// [`Gpu::sync`] waits for them. `Send + Sync`: share it with an `Arc`.
pub struct Gpu {
    pub(crate) ctx: Arc<CudaContext>,
    pub(crate) stream: Arc<CudaStream>,
    pub(crate) blas: CudaBlas,
    pub(crate) k: Kernels,
    info: DeviceInfo,
    /// Prompts through the f16 cuBLAS GEMM (`PUPIL_GPU_GEMM=1`) rather than the
    /// batch-invariant mat-vec kernels.
    pub(crate) gemm_prompts: bool,
    /// Decode steps recorded and replayed as CUDA graphs (`PUPIL_GPU_GRAPHS=0`: not).
    pub(crate) graphs: bool,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Gpu {
    /// Opens device `ordinal`: checks the driver, NVRTC and cuBLAS are there, compiles the
    /// kernels for the device (or takes them from the cache) and loads them.
    pub fn open(ordinal: usize) -> Result<Gpu, GpuError> {
        let (ctx, info) = context(ordinal)?;
        if info.compute.0 < 8 {
            return Err(GpuError::TooOld { name: info.name, major: info.compute.0, minor: info.compute.1 });
        }
        libs::require(libs::NVRTC)?;
        libs::require(libs::CUBLAS)?;
        // SAFETY: pupil queues all work on one stream, so cudarc's cross-stream events (which
        // this turns off) are never needed, and every buffer is used in stream order.
        unsafe { ctx.disable_event_tracking() };
        let module = ctx.load_module(Ptx::from_binary(compile::cubin(info.sm())?))?;
        let k = Kernels::load(&module)?;
        let stream = ctx.new_stream()?;
        let blas = CudaBlas::new(stream.clone()).map_err(|e| GpuError::Cublas(format!("{e:?}")))?;
        let flag = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(|v| v != "0");
        let gemm_prompts = flag("PUPIL_GPU_GEMM").unwrap_or(false);
        let graphs = flag("PUPIL_GPU_GRAPHS").unwrap_or(true);
        Ok(Gpu { ctx, stream, blas, k, info, gemm_prompts, graphs })
    }

    /// Whether prompts go through the f16 cuBLAS GEMM (`PUPIL_GPU_GEMM=1`) rather than the
    /// batch-invariant mat-vec kernels (the default).
    pub fn gemm_prompts(&self) -> bool {
        self.gemm_prompts
    }

    /// The device.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// Device memory `(free, total)`, bytes.
    pub fn memory(&self) -> Result<(usize, usize), GpuError> {
        Ok(self.ctx.mem_get_info()?)
    }

    /// Waits for every op queued so far.
    pub fn sync(&self) -> Result<(), GpuError> {
        Ok(self.stream.synchronize()?)
    }

    /// A zeroed device buffer of `len` elements.
    pub fn zeros<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>, GpuError> {
        Ok(self.stream.alloc_zeros(len.max(1))?)
    }

    /// A device copy of `host`.
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>, GpuError> {
        if host.is_empty() {
            // SAFETY: a one-element allocation that no kernel reads (its length says 0 is used).
            return Ok(unsafe { self.stream.alloc(1) }?);
        }
        Ok(self.stream.clone_htod(host)?)
    }

    /// Copies `host` into the start of `dev`.
    pub fn write<T: DeviceRepr>(&self, host: &[T], dev: &mut CudaSlice<T>) -> Result<(), GpuError> {
        check("write", "device buffer", host.len(), dev.len())?;
        let mut view = dev.slice_mut(..host.len());
        Ok(self.stream.memcpy_htod(host, &mut view)?)
    }

    /// Copies the start of `dev` into `host`, waiting for the queued ops first.
    pub fn read<T: DeviceRepr>(&self, dev: &CudaSlice<T>, host: &mut [T]) -> Result<(), GpuError> {
        check("read", "device buffer", host.len(), dev.len())?;
        let view = dev.slice(..host.len());
        self.stream.memcpy_dtoh(&view, host)?;
        self.sync()
    }

    /// Queues `f` with `params`, pointers to its arguments in order.
    pub(crate) fn launch(
        &self,
        f: &CudaFunction,
        grid: (u32, u32, u32),
        block: (u32, u32, u32),
        shared: u32,
        params: &mut [*mut std::ffi::c_void],
    ) -> Result<(), GpuError> {
        if grid.0 == 0 || grid.1 == 0 || grid.2 == 0 {
            return Ok(());
        }
        // The raw driver calls below use the calling thread's current context.
        self.ctx.bind_to_thread()?;
        // SAFETY: callers (the launchers in `ops`, through `launch!`) pass pointers to live
        // values of exactly the kernel's parameter types, in order, and have checked every
        // buffer against the shapes they pass, so the kernel stays inside its buffers.
        unsafe {
            cudarc::driver::result::launch_kernel(f.cu_function(), grid, block, shared, self.stream.cu_stream(), params)
        }?;
        Ok(())
    }

    /// Copies `src[src_at..src_at + len]` to `dst[dst_at..]` (two buffers), in stream order.
    pub fn copy<T: DeviceRepr>(
        &self,
        src: &CudaSlice<T>,
        src_at: usize,
        dst: &mut CudaSlice<T>,
        dst_at: usize,
        len: usize,
    ) -> Result<(), GpuError> {
        check("copy", "source", src_at + len, src.len())?;
        check("copy", "destination", dst_at + len, dst.len())?;
        let size = std::mem::size_of::<T>();
        let (s, d) = (self.ptr(src) + (src_at * size) as u64, self.ptr(dst) + (dst_at * size) as u64);
        self.copy_raw(d, s, len * size)
    }

    /// Moves `buf[from]` to start at `to`, as `slice::copy_within` does: overlapping ranges
    /// are copied in pieces that do not overlap (the driver's copy does not promise to
    /// handle overlap), front to back when moving down, back to front when moving up.
    pub fn copy_within<T: DeviceRepr>(
        &self,
        buf: &mut CudaSlice<T>,
        from: std::ops::Range<usize>,
        to: usize,
    ) -> Result<(), GpuError> {
        let len = from.len();
        check("copy_within", "buffer", from.end.max(to + len), buf.len())?;
        if len == 0 || from.start == to {
            return Ok(());
        }
        let size = std::mem::size_of::<T>();
        let base = self.ptr(buf);
        let at = |i: usize| base + (i * size) as u64;
        let step = from.start.abs_diff(to).min(len);
        let mut done = 0;
        while done < len {
            let n = step.min(len - done);
            // Moving down, the front piece goes first; moving up, the back piece.
            let off = if to < from.start { done } else { len - done - n };
            self.copy_raw(at(to + off), at(from.start + off), n * size)?;
            done += n;
        }
        Ok(())
    }

    /// `bytes` from device address `src` to `dst`, queued on the stream.
    fn copy_raw(&self, dst: u64, src: u64, bytes: usize) -> Result<(), GpuError> {
        if bytes == 0 {
            return Ok(());
        }
        self.ctx.bind_to_thread()?;
        // SAFETY: both callers checked that `[src, src + bytes)` and `[dst, dst + bytes)` lie
        // inside live allocations of this context and do not overlap.
        unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }?;
        Ok(())
    }

    /// The raw address of `s`, for a kernel argument.
    pub(crate) fn ptr<T>(&self, s: &CudaSlice<T>) -> u64 {
        s.device_ptr(&self.stream).0
    }
}

/// Ok if `found >= expected`.
pub(crate) fn check(op: &'static str, what: &'static str, expected: usize, found: usize) -> Result<(), GpuError> {
    if found < expected {
        return Err(GpuError::Shape { op, what, expected, found });
    }
    Ok(())
}
