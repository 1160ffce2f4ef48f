//! Run-time SIMD dispatch for the auto-vectorised CPU kernels.
//!
//! The release build targets baseline x86-64 (SSE2, 4 f32 lanes), so the
//! per-pixel kernels that the compiler vectorises would use half of an
//! AVX2 machine's width. [`avx2_dispatch!`](crate::avx2_dispatch) defines a
//! function that runs a kernel body compiled a second time with AVX2
//! enabled (8 lanes) when the CPU has it, checked at run time. Only AVX2 is
//! enabled, not FMA: the compiler never fuses a separate multiply and add,
//! so both versions compute bit-identical results.

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

#[cfg(test)]
mod tests {
    #[inline(always)]
    fn affine(src: &[f32], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = s * 2.0 + 1.0;
        }
    }

    crate::avx2_dispatch!(fn affine_wide(src: &[f32], dst: &mut [f32]) => affine);

    #[test]
    fn dispatched_copy_matches_the_plain_one() {
        let v: Vec<f32> = (0..1001).map(|i| i as f32 * 0.37 - 50.0).collect();
        let (mut a, mut b) = (vec![0f32; v.len()], vec![0f32; v.len()]);
        affine_wide(&v, &mut a);
        affine(&v, &mut b);
        assert_eq!(a, b);
    }
}
