//! The memory-bandwidth ceiling of token generation: how fast this machine streams a buffer
//! far larger than its caches, with a given number of threads.
//!
//! Decoding one token reads every weight once, so `bandwidth / bytes per token` bounds the
//! tokens per second any implementation can reach on this machine (the KV cache adds a little
//! at short contexts, and is left out).

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::BenchError;

/// A measured streaming read bandwidth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bandwidth {
    /// Best run, in decimal gigabytes per second.
    pub gb_s: f64,
    /// Size of the buffer read.
    pub buffer_bytes: usize,
    /// Threads reading it.
    pub threads: usize,
    /// Runs, of which the best counts.
    pub runs: usize,
}

/// Sums a buffer of `bytes` (rounded down to whole `u64`s, at least one) with `threads`
/// threads in contiguous chunks, `runs` times after touching every page, and returns the best
/// rate.
///
/// The buffer is written by the same threads that read it, so on a NUMA machine its pages
/// lie near their readers, as a model's weights do after the first forward pass. Summing
/// `u64`s vectorizes on every target, so the loop is bound by memory, not arithmetic.
///
/// ```
/// let b = pupil::bench::read_bandwidth(1, 1 << 20, 2).unwrap();
/// assert!(b.gb_s > 0.0);
/// ```
pub fn read_bandwidth(threads: usize, bytes: usize, runs: usize) -> Result<Bandwidth, BenchError> {
    let threads = threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| BenchError::Threads { message: e.to_string() })?;
    let n = (bytes / 8).max(1);
    let chunk = n.div_ceil(threads);
    let mut buf = vec![0u64; n];
    pool.install(|| {
        buf.par_chunks_mut(chunk).enumerate().for_each(|(c, part)| {
            for (i, x) in part.iter_mut().enumerate() {
                *x = (c * chunk + i) as u64;
            }
        })
    });
    let mut best = 0.0f64;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let sum = pool.install(|| {
            buf.par_chunks(chunk)
                .map(|part| part.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
                .reduce(|| 0, u64::wrapping_add)
        });
        let secs = start.elapsed().as_secs_f64();
        black_box(sum);
        best = best.max((n * 8) as f64 / secs.max(f64::MIN_POSITIVE) / 1e9);
    }
    Ok(Bandwidth { gb_s: best, buffer_bytes: n * 8, threads, runs: runs.max(1) })
}
