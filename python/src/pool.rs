//! Rayon pools that survive `fork`.
//!
//! rayon's global pool hangs in a forked child (its worker threads do not
//! exist there). Every computation of the binding runs inside
//! `pool.install(..)` on a pool held by a [`ForkSafePool`], which builds a
//! new pool the first time it is used in a process with a different pid.

use std::sync::{Arc, Mutex, PoisonError};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// A lazily built rayon pool, rebuilt after `fork`.
#[derive(Debug)]
pub struct ForkSafePool {
    /// Worker threads; 0 = rayon's default (`RAYON_NUM_THREADS` or the
    /// number of CPUs).
    threads: usize,
    /// The pool and the pid of the process that built it.
    inner: Mutex<Option<(u32, Arc<ThreadPool>)>>,
}

impl ForkSafePool {
    pub const fn new(threads: usize) -> Self {
        ForkSafePool {
            threads,
            inner: Mutex::new(None),
        }
    }

    /// Worker threads asked for (0 = default).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The pool of this process.
    pub fn get(&self) -> rawgraph::Result<Arc<ThreadPool>> {
        let pid = std::process::id();
        let mut slot = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((owner, pool)) = slot.as_ref() {
            if *owner == pid {
                return Ok(pool.clone());
            }
        }
        if let Some((_, stale)) = slot.take() {
            // Built by the parent before a fork: its threads are not in
            // this process, so dropping it (which signals them) is
            // pointless; it is leaked instead.
            std::mem::forget(stale);
        }
        let pool = ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("rawgraph-{i}"))
            .build()
            .map_err(|e| rawgraph::Error::invalid(format!("cannot start threads: {e}")))?;
        let pool = Arc::new(pool);
        *slot = Some((pid, pool.clone()));
        Ok(pool)
    }

    /// Runs `f` on this process's pool.
    pub fn install<T: Send>(
        &self,
        f: impl FnOnce() -> rawgraph::Result<T> + Send,
    ) -> rawgraph::Result<T> {
        self.get()?.install(f)
    }
}

/// The pool of module-level calls (`imread`, `from_bayer`, `to_dng`,
/// `imwrite`).
pub static MODULE_POOL: ForkSafePool = ForkSafePool::new(0);
