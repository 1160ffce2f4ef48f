//! A pool of `f32` buffers that a tiled network run shares between its
//! tiles, so the activations of one tile reuse the memory of the last.
//!
//! Without it every layer of every tile allocates its output afresh (and
//! `Tensor::zeros` zeroes it), and large blocks may come back as fresh
//! pages that the kernel zeroes on first touch. With it (and fr1's input
//! built in place, tiles written straight into the frame), a 12 MP
//! `bench -p learned` process faulted ~10,000 pages instead of ~21,000
//! and the `dm` stage ran 7 % (1 thread) to 10 % (2 threads) faster, side
//! by side on a loaded 2-vCPU Xeon. The pool lives as long as one frame's run
//! ([`super::bayer_tiles::run_tiled_pooled`]): its memory goes back to the
//! allocator when the frame is done. Buffers carry no values across uses
//! (every taker initialises what it reads).

use std::sync::Mutex;

use super::Tensor;
use crate::error::Result;

/// Free `f32` buffers (any thread may take or give).
#[derive(Debug, Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<f32>>>,
}

impl BufferPool {
    /// An empty pool (allocates nothing).
    pub fn new() -> Self {
        BufferPool::default()
    }

    /// An empty vector with capacity for at least `len` values: the
    /// smallest free buffer that holds `len`, else a new allocation.
    pub fn take(&self, len: usize) -> Vec<f32> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.capacity() >= len)
            .min_by_key(|(_, v)| v.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => {
                let mut v = free.swap_remove(i);
                v.clear();
                v
            }
            None => {
                drop(free);
                Vec::with_capacity(len)
            }
        }
    }

    /// A zero-filled tensor of `shape` on a pooled buffer.
    pub fn zeros(&self, shape: [usize; 4]) -> Result<Tensor> {
        let len = Tensor::numel(shape)?;
        let mut v = self.take(len);
        v.resize(len, 0.0);
        Tensor::from_vec(shape, v)
    }

    /// Returns a buffer to the pool (its values are not kept).
    pub fn give_vec(&self, v: Vec<f32>) {
        if v.capacity() == 0 {
            return;
        }
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(v);
    }

    /// Returns a tensor's buffer to the pool.
    pub fn give(&self, t: Tensor) {
        self.give_vec(t.into_vec());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_reuses_the_smallest_buffer_that_fits() {
        let pool = BufferPool::new();
        let small = pool.take(10);
        assert!(small.capacity() >= 10 && small.is_empty());
        let (ps, cs) = (small.as_ptr(), small.capacity());
        let big = Vec::<f32>::with_capacity(1000);
        let pb = big.as_ptr();
        pool.give_vec(big);
        pool.give_vec(small);
        let v = pool.take(8);
        assert_eq!((v.as_ptr(), v.capacity()), (ps, cs));
        let v2 = pool.take(500);
        assert_eq!(v2.as_ptr(), pb);
        // Nothing left that fits: a fresh buffer.
        let v3 = pool.take(2000);
        assert!(v3.capacity() >= 2000 && v3.as_ptr() != pb);
    }

    #[test]
    fn zeros_are_zero_after_reuse() {
        let pool = BufferPool::new();
        pool.give_vec(vec![7.0; 64]);
        let t = pool.zeros([1, 2, 4, 8]).unwrap();
        assert!(t.data().iter().all(|&v| v == 0.0));
        assert_eq!(t.shape(), [1, 2, 4, 8]);
    }
}
