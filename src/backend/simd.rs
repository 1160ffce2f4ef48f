//! Run-time SIMD dispatch for the auto-vectorised CPU kernels.
//!
//! The release build targets baseline x86-64 (SSE2, 4 f32 lanes), so the
//! per-pixel kernels that the compiler vectorises would use half of an
//! AVX2 machine's width. [`avx2_dispatch!`](crate::avx2_dispatch) defines a
//! function that runs a kernel body compiled a second time with AVX2
//! enabled (8 lanes) when the CPU has it, checked at run time;
//! [`avx512_dispatch!`](crate::avx512_dispatch) adds a third copy with
//! AVX-512F (16 lanes) tried first. Only AVX2 or AVX-512F is enabled, not
//! FMA: the compiler never fuses a separate multiply and add, so every
//! version computes bit-identical results. Hand-written kernels pick their
//! instruction set with [`Level`].

/// Whether this CPU has AVX2 (cached by the standard library after the
/// first query).
#[inline]
pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU has AVX-512F (cached by the standard library after the
/// first query).
#[inline]
pub fn has_avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A vector instruction set a hand-written kernel is compiled for: the
/// kernels of every level compute the same operations in the same order
/// (no fused multiply-add), so their results are bit-identical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Plain Rust (the definition; baseline x86-64 or another arch).
    Scalar,
    /// AVX2, 8 f32 lanes.
    Avx2,
    /// AVX-512F, 16 f32 lanes.
    Avx512,
}

impl Level {
    /// The widest level this CPU runs.
    #[inline]
    pub fn best() -> Level {
        if has_avx512f() {
            Level::Avx512
        } else if has_avx2() {
            Level::Avx2
        } else {
            Level::Scalar
        }
    }

    /// Whether this CPU runs the level.
    pub fn available(self) -> bool {
        match self {
            Level::Scalar => true,
            Level::Avx2 => has_avx2(),
            Level::Avx512 => has_avx512f(),
        }
    }
}

/// `avx2_dispatch!(fn name(a: A, b: B) -> R => body);` defines `fn name(a:
/// A, b: B) -> R` (the return type is optional) calling `body(a, b)`: through a copy compiled with AVX2 where
/// the CPU has it, else directly. `body` must be `#[inline(always)]` so
/// that its loops are compiled into each copy.
#[macro_export]
macro_rules! avx2_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::backend::simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2 (checked just above),
                    // the only feature `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// As [`avx2_dispatch!`](crate::avx2_dispatch), with a third copy of
/// `body` compiled with AVX-512F (16 lanes) run first where the CPU has it.
#[macro_export]
macro_rules! avx512_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::backend::simd::has_avx512f() {
                    // SAFETY: the CPU supports AVX-512F (checked just
                    // above), the only feature `wide512` is compiled for.
                    return unsafe { wide512($($arg),*) };
                }
                if $crate::backend::simd::has_avx2() {
                    // SAFETY: the CPU supports AVX2 (checked just above),
                    // the only feature `wide` is compiled for.
                    return unsafe { wide($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    #[inline(always)]
    fn affine(src: &[f32], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s * 2.0 + 1.0;
        }
    }

    crate::avx2_dispatch!(fn affine_wide(src: &[f32], dst: &mut [f32]) => affine);

    crate::avx512_dispatch!(fn affine_wider(src: &[f32], dst: &mut [f32]) => affine);

    #[test]
    fn dispatched_copy_matches_the_plain_one() {
        let v: Vec<f32> = (0..1001).map(|i| i as f32 * 0.37 - 50.0).collect();
        let (mut a, mut b) = (vec![0f32; v.len()], vec![0f32; v.len()]);
        affine_wide(&v, &mut a);
        affine(&v, &mut b);
        assert_eq!(a, b);
        let mut c = vec![0f32; v.len()];
        affine_wider(&v, &mut c);
        assert_eq!(c, b);
    }
}
