//! The memory-bandwidth ceiling of token generation: how fast this machine streams a buffer
//! far larger than its caches, with a given number of threads.
//!
//! Decoding one token reads every weight once, so `bandwidth / bytes per token` bounds the
//! tokens per second any implementation can reach on this machine (the KV cache adds a little
//! at short contexts, and is left out).
//!
//! On a shared machine the bandwidth left to us moves with the neighbours' load, by ±20% from
//! one second to the next. A ceiling read once, at its best, and set against the median of
//! generation runs taken later under other conditions would mostly measure the neighbours. So
//! the benchmark keeps a [`BandwidthProbe`] and reads the buffer once before every generation
//! run; [`Bandwidth`] reports the median of those reads (the statistic tg is reported with,
//! under the same conditions) and the best.

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::{BenchError, Stats};

/// A measured streaming read bandwidth.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bandwidth {
    /// Median of the reads, in decimal gigabytes per second: the ceiling.
    pub gb_s: f64,
    /// Fastest read.
    pub best_gb_s: f64,
    /// Size of the buffer read.
    pub buffer_bytes: usize,
    /// Threads reading it.
    pub threads: usize,
    /// Reads taken.
    pub runs: usize,
}

impl Bandwidth {
    /// The summary of `samples` (GB/s) taken by `probe`; `None` for no samples.
    pub fn from_samples(probe: &BandwidthProbe, samples: &[f64]) -> Option<Bandwidth> {
        let s = Stats::from_samples(samples.to_vec())?;
        Some(Bandwidth {
            gb_s: s.median,
            best_gb_s: s.max,
            buffer_bytes: probe.bytes(),
            threads: probe.threads,
            runs: samples.len(),
        })
    }
}

/// A buffer and a thread pool kept for repeated bandwidth reads.
#[derive(Debug)]
pub struct BandwidthProbe {
    pool: rayon::ThreadPool,
    buf: Vec<u64>,
    chunk: usize,
    threads: usize,
}

impl BandwidthProbe {
    /// A probe of `bytes` (rounded down to whole `u64`s, at least one) read by `threads`
    /// threads in contiguous chunks. Every page is written here, by the threads that will read
    /// it, so on a NUMA machine its pages lie near their readers, as a model's weights do after
    /// the first forward pass.
    pub fn new(threads: usize, bytes: usize) -> Result<BandwidthProbe, BenchError> {
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
        Ok(BandwidthProbe { pool, buf, chunk, threads })
    }

    /// Bytes one read streams.
    pub fn bytes(&self) -> usize {
        self.buf.len() * 8
    }

    /// Reads the whole buffer once and returns the rate, GB/s. Summing `u64`s vectorizes on
    /// every target, so the loop is bound by memory, not arithmetic.
    pub fn sample(&self) -> f64 {
        let start = Instant::now();
        let sum = self.pool.install(|| {
            self.buf
                .par_chunks(self.chunk)
                .map(|part| part.iter().fold(0u64, |a, &x| a.wrapping_add(x)))
                .reduce(|| 0, u64::wrapping_add)
        });
        let secs = start.elapsed().as_secs_f64();
        black_box(sum);
        self.bytes() as f64 / secs.max(f64::MIN_POSITIVE) / 1e9
    }
}

/// `runs` reads, back to back, of a fresh [`BandwidthProbe`] of `bytes` with `threads`
/// threads.
///
/// ```
/// let b = pupil::bench::read_bandwidth(1, 1 << 20, 3).unwrap();
/// assert!(b.gb_s > 0.0 && b.best_gb_s >= b.gb_s && b.runs == 3);
/// ```
pub fn read_bandwidth(threads: usize, bytes: usize, runs: usize) -> Result<Bandwidth, BenchError> {
    let probe = BandwidthProbe::new(threads, bytes)?;
    let samples: Vec<f64> = (0..runs.max(1)).map(|_| probe.sample()).collect();
    Ok(Bandwidth::from_samples(&probe, &samples).expect("at least one read"))
}
