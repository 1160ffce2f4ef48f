//! The sample buffer of a raw frame or mosaic, kept in the type the decoder
//! delivered it in.
//!
//! Integer sensors (every Bayer raw rawler decodes, the headerless Kodak
//! files) deliver `u16` DN; holding them as such costs 2 bytes a sample
//! instead of 4 and skips a whole-frame widening pass. Stages that need
//! floats convert once ([`SensorSamples::f32_mut`]); the fused segment
//! runner widens rows while it fills its tiles, so the default pipelines
//! never hold a whole `f32` mosaic. Widening `u16 -> f32` is exact, so
//! either storage gives the same pixels.

use std::borrow::Cow;

use rayon::prelude::*;

/// Samples in row-major order (interleaved when a pixel has several).
/// What a value means (DN, normalised) is the owner's business
/// (`MosaicScale`, `RawFrame`); the storage only says how it is held.
/// Equality compares the values, whatever the storage.
#[derive(Debug, Clone)]
pub enum SensorSamples {
    /// Integer samples as decoded (DN, at most 16 significant bits).
    U16(Vec<u16>),
    /// Float samples (DN, or normalised once black level is applied).
    F32(Vec<f32>),
}

impl PartialEq for SensorSamples {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (SensorSamples::U16(a), SensorSamples::U16(b)) => a == b,
            (SensorSamples::F32(a), SensorSamples::F32(b)) => a == b,
            (SensorSamples::U16(a), SensorSamples::F32(b))
            | (SensorSamples::F32(b), SensorSamples::U16(a)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| f32::from(x) == y)
            }
        }
    }
}

impl Default for SensorSamples {
    fn default() -> Self {
        SensorSamples::F32(Vec::new())
    }
}

impl From<Vec<f32>> for SensorSamples {
    fn from(v: Vec<f32>) -> Self {
        SensorSamples::F32(v)
    }
}

impl FromIterator<f32> for SensorSamples {
    fn from_iter<I: IntoIterator<Item = f32>>(it: I) -> Self {
        SensorSamples::F32(it.into_iter().collect())
    }
}

impl From<Vec<u16>> for SensorSamples {
    fn from(v: Vec<u16>) -> Self {
        SensorSamples::U16(v)
    }
}

impl SensorSamples {
    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            SensorSamples::U16(v) => v.len(),
            SensorSamples::F32(v) => v.len(),
        }
    }

    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sample `i` as f32; `None` past the end.
    #[inline]
    pub fn get(&self, i: usize) -> Option<f32> {
        match self {
            SensorSamples::U16(v) => v.get(i).map(|&x| f32::from(x)),
            SensorSamples::F32(v) => v.get(i).copied(),
        }
    }

    /// The samples as f32: borrowed when already floats, widened into a new
    /// buffer otherwise (the storage is left as it is).
    pub fn f32(&self) -> Cow<'_, [f32]> {
        match self {
            SensorSamples::U16(v) => Cow::Owned(widen(v)),
            SensorSamples::F32(v) => Cow::Borrowed(v),
        }
    }

    /// Samples `start .. start + len` as f32: borrowed when already
    /// floats, widened otherwise (a row). Panics, as slice indexing does,
    /// when the range runs past the end.
    #[inline]
    pub fn f32_range(&self, start: usize, len: usize) -> Cow<'_, [f32]> {
        match self {
            SensorSamples::U16(v) => Cow::Owned(widen_serial(&v[start..start + len])),
            SensorSamples::F32(v) => Cow::Borrowed(&v[start..start + len]),
        }
    }

    /// The float samples, for in-place work: integer storage is widened
    /// once (in parallel) and replaced by the float buffer.
    pub fn f32_mut(&mut self) -> &mut Vec<f32> {
        match self {
            SensorSamples::F32(v) => v,
            SensorSamples::U16(v) => {
                let f = widen(v);
                *self = SensorSamples::F32(f);
                self.f32_mut()
            }
        }
    }

    /// The float samples, owned (integer storage is widened).
    pub fn into_f32(self) -> Vec<f32> {
        match self {
            SensorSamples::U16(v) => widen(&v),
            SensorSamples::F32(v) => v,
        }
    }

    /// Writes samples `start .. start + dst.len()` into `dst` as f32 (a
    /// row of a tile). Panics, as slice indexing does, when the range runs
    /// past the end.
    #[inline]
    pub fn copy_f32(&self, start: usize, dst: &mut [f32]) {
        let end = start + dst.len();
        match self {
            SensorSamples::U16(v) => {
                for (d, &s) in dst.iter_mut().zip(&v[start..end]) {
                    *d = f32::from(s);
                }
            }
            SensorSamples::F32(v) => dst.copy_from_slice(&v[start..end]),
        }
    }

    /// As [`SensorSamples::copy_f32`] into memory not yet initialised
    /// (part of a frame buffer's spare capacity): writes every element of
    /// `dst` once and returns it as plain values. Integer rows are widened
    /// eight lanes at a time where the CPU has AVX2 (exact either way).
    pub fn copy_f32_uninit<'d>(
        &self,
        start: usize,
        dst: &'d mut [std::mem::MaybeUninit<f32>],
    ) -> &'d mut [f32] {
        let end = start + dst.len();
        match self {
            SensorSamples::U16(v) => widen_row_wide(&v[start..end], dst),
            SensorSamples::F32(v) => {
                for (d, &s) in dst.iter_mut().zip(&v[start..end]) {
                    d.write(s);
                }
            }
        }
        // SAFETY: `v[start..end]` has `dst.len()` elements (indexing
        // panics otherwise), so both loops wrote every element of `dst`;
        // `MaybeUninit<f32>` has the layout of `f32`.
        unsafe { &mut *(dst as *mut [std::mem::MaybeUninit<f32>] as *mut [f32]) }
    }

    /// Keeps the first `n` samples.
    pub fn truncate(&mut self, n: usize) {
        match self {
            SensorSamples::U16(v) => v.truncate(n),
            SensorSamples::F32(v) => v.truncate(n),
        }
    }

    /// The `width` x `height` window at (`x`, `y`) of a frame `stride`
    /// pixels wide with `spp` samples per pixel, in the same storage.
    /// Panics, as slice indexing does, when the window does not fit.
    pub fn window(
        &self,
        stride: usize,
        spp: usize,
        (x, y): (usize, usize),
        (width, height): (usize, usize),
    ) -> SensorSamples {
        fn rows<T: Copy>(
            v: &[T],
            stride: usize,
            spp: usize,
            (x, y): (usize, usize),
            (width, height): (usize, usize),
        ) -> Vec<T> {
            let mut out = Vec::with_capacity(width * height * spp);
            for r in y..y + height {
                let at = (r * stride + x) * spp;
                out.extend_from_slice(&v[at..at + width * spp]);
            }
            out
        }
        match self {
            SensorSamples::U16(v) => {
                SensorSamples::U16(rows(v, stride, spp, (x, y), (width, height)))
            }
            SensorSamples::F32(v) => {
                SensorSamples::F32(rows(v, stride, spp, (x, y), (width, height)))
            }
        }
    }
}

/// `u16 -> f32` over a short run (a row), on this thread (exact).
fn widen_serial(v: &[u16]) -> Vec<f32> {
    v.iter().map(|&x| f32::from(x)).collect()
}

/// `dst[i] = src[i]` widened to f32, over the common length.
#[inline(always)]
fn widen_row(src: &[u16], dst: &mut [std::mem::MaybeUninit<f32>]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        d.write(f32::from(s));
    }
}

crate::avx2_dispatch!(fn widen_row_wide(src: &[u16], dst: &mut [std::mem::MaybeUninit<f32>]) => widen_row);

/// `u16 -> f32` over a whole buffer, in parallel (exact).
fn widen(v: &[u16]) -> Vec<f32> {
    v.par_iter().map(|&x| f32::from(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_storages_give_the_same_floats() {
        let dn: Vec<u16> = vec![0, 1, 4095, 65535, 512, 7];
        let f: Vec<f32> = dn.iter().map(|&x| x as f32).collect();
        let a = SensorSamples::from(dn.clone());
        let b = SensorSamples::from(f.clone());
        assert_eq!(a.len(), 6);
        assert_eq!(&*a.f32(), &f[..]);
        assert_eq!(&*b.f32(), &f[..]);
        assert_eq!(a, b);
        assert_ne!(a, SensorSamples::from(vec![0.0f32; 6]));
        assert_ne!(a, SensorSamples::from(f[..5].to_vec()));
        assert_eq!(a.get(3), Some(65535.0));
        assert_eq!(a.get(6), None);
        let mut row = [0.0f32; 3];
        a.copy_f32(2, &mut row);
        assert_eq!(row, [4095.0, 65535.0, 512.0]);
        b.copy_f32(3, &mut row);
        assert_eq!(row, [65535.0, 512.0, 7.0]);
        assert_eq!(a.clone().into_f32(), f);
        assert_eq!(&*a.f32_range(1, 2), &f[1..3]);
        assert_eq!(&*b.f32_range(4, 2), &f[4..6]);
        let mut c = a.clone();
        c.f32_mut()[0] = 0.5;
        assert!(matches!(c, SensorSamples::F32(_)));
        assert_eq!(c.get(0), Some(0.5));
        assert_eq!(c.get(1), Some(1.0));
    }

    /// Rows copied into uninitialised memory are the floats
    /// [`SensorSamples::copy_f32`] gives, from both storages, at lengths
    /// with and without a partial last vector.
    #[test]
    fn uninit_copies_equal_plain_copies() {
        let dn: Vec<u16> = (0..301u32)
            .map(|i| (i.wrapping_mul(2654435761) % 65536) as u16)
            .collect();
        for s in [
            SensorSamples::from(dn.clone()),
            SensorSamples::from(dn.iter().map(|&x| f32::from(x) * 0.5).collect::<Vec<_>>()),
        ] {
            for (start, len) in [(0, 301), (3, 17), (290, 11), (5, 0)] {
                let mut want = vec![0f32; len];
                s.copy_f32(start, &mut want);
                let mut buf: Vec<f32> = Vec::with_capacity(len);
                let got = s.copy_f32_uninit(start, &mut buf.spare_capacity_mut()[..len]);
                assert_eq!(got, &want[..], "{start}+{len}");
            }
        }
    }

    #[test]
    fn window_and_truncate_keep_the_storage() {
        // 3x2 frame, 2 samples per pixel.
        let dn: Vec<u16> = (0..12).collect();
        let s = SensorSamples::from(dn);
        let w = s.window(3, 2, (1, 1), (2, 1));
        assert!(matches!(&w, SensorSamples::U16(v) if v == &[8, 9, 10, 11]));
        let f = SensorSamples::from(s.f32().into_owned());
        let fw = f.window(3, 2, (0, 0), (1, 2));
        assert!(matches!(&fw, SensorSamples::F32(v) if v == &[0.0, 1.0, 6.0, 7.0]));
        let mut t = s;
        t.truncate(4);
        assert!(matches!(&t, SensorSamples::U16(v) if v == &[0, 1, 2, 3]));
    }
}
