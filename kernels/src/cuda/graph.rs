//! Recorded op sequences (CUDA graphs): a decode step queues a few hundred small kernels,
//! each costing microseconds of launch latency; recorded once and replayed, the step is one
//! launch. The launches and their arguments are recorded as they are, so a replay reads the
//! buffers the recording named: the values in them may change between replays (the caller
//! writes the step's inputs first), the buffers and shapes may not.

use std::sync::Mutex;

use cudarc::driver::CudaGraph;
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};

use super::{Gpu, GpuError};

/// The ops queued inside one [`Gpu::record`], ready to be replayed with [`Gpu::replay`].
/// `Send + Sync`: replays from several threads take turns.
pub struct GpuGraph(Mutex<Recorded>);

struct Recorded(CudaGraph);

// SAFETY: a CUDA graph may be used from any thread as long as no two threads use it at once
// (the driver's graph thread-safety rules); `GpuGraph` reaches it only through its mutex.
unsafe impl Send for Recorded {}

impl std::fmt::Debug for GpuGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GpuGraph")
    }
}

impl Gpu {
    /// Whether forward passes should record and replay their decode steps (default on;
    /// `PUPIL_GPU_GRAPHS=0` turns it off, for comparison).
    pub fn graphs(&self) -> bool {
        self.graphs
    }

    /// Records the ops `queue` puts on the stream instead of running them. Nothing runs:
    /// [`Gpu::replay`] the result. `queue` must only queue ops (no copies from or to the host,
    /// no waiting, no allocation, which the recording refuses). If `queue` fails, its error is
    /// returned and the stream is back to normal.
    pub fn record<E: From<GpuError>>(&self, queue: impl FnOnce() -> Result<(), E>) -> Result<GpuGraph, E> {
        let mode = CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        self.stream.begin_capture(mode).map_err(GpuError::from)?;
        let queued = queue();
        // Always end the recording, so that the stream runs ops again whatever happened.
        let ended = self.stream.end_capture(CUgraphInstantiate_flags(0));
        queued?;
        match ended.map_err(GpuError::from)? {
            Some(graph) => Ok(GpuGraph(Mutex::new(Recorded(graph)))),
            None => Err(GpuError::Graph("the recording holds no ops").into()),
        }
    }

    /// Queues every op of `graph`, in its order, as one launch.
    pub fn replay(&self, graph: &GpuGraph) -> Result<(), GpuError> {
        let recorded = graph.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(recorded.0.launch()?)
    }
}
