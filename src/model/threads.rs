//! [`Threads`]: the thread pool a model runs on, as a handle.
//!
//! A forward pass splits its matmuls and attention over a rayon pool. pupil never uses
//! rayon's global pool for this: a program that embeds pupil keeps its own global pool (its
//! size and its threads), and two engines can run on pools of their own. A
//! [`Context`](super::Context) runs every forward pass inside the pool it was given
//! ([`rayon::ThreadPool::install`]), so the kernels' parallel loops split among that pool's
//! workers. The handle is cheap to clone: clones share one pool.
//!
//! ```
//! use pupil::model::Threads;
//! # fn main() -> Result<(), pupil::model::ModelError> {
//! let threads = Threads::new(2)?;
//! assert_eq!(threads.count(), 2);
//! assert_eq!(threads.install(rayon::current_num_threads), 2); // inside the pool
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;

use super::ModelError;

/// A shared rayon pool of a fixed number of worker threads: what a [`Context`](super::Context)
/// runs its forward passes on, instead of rayon's global pool (which a program embedding
/// pupil keeps for itself). Clones share the pool.
#[derive(Clone)]
pub struct Threads {
    pool: Arc<rayon::ThreadPool>,
}

impl Threads {
    /// A new pool of `n` worker threads (named `pupil-0`, `pupil-1`, ...).
    pub fn new(n: usize) -> Result<Threads, ModelError> {
        if n == 0 {
            return Err(ModelError::Threads { n, reason: "a pool needs at least one thread".into() });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .thread_name(|i| format!("pupil-{i}"))
            .build()
            .map_err(|e| ModelError::Threads { n, reason: e.to_string() })?;
        Ok(Threads { pool: Arc::new(pool) })
    }

    /// A pool of one thread per core the operating system lets this process use.
    pub fn available() -> Result<Threads, ModelError> {
        Threads::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Worker threads in the pool.
    pub fn count(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on a worker of the pool and waits for it: rayon's parallel loops inside `f`
    /// split among this pool's workers. Called from inside the pool, runs `f` in place.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

impl fmt::Debug for Threads {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Threads").field("count", &self.count()).finish()
    }
}
