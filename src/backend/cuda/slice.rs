//! HDRnet's guide + bilateral slice + affine apply on the device
//! (`kernels/bilateral_slice.cu`), the GPU path of the `hdrnet` stage's
//! full-resolution part. The CPU reference is
//! `src/stages/hdrnet/{guide,slice_apply}.rs`.

use cudarc::driver::{LaunchConfig, PushKernelArg};

use super::device::{device, drv, StageClock};
use crate::backend::DeviceTimes;
use crate::error::{Error, Result};
use crate::nn::hdrnet::GuideWeights;

/// Coefficients per grid cell (3x4 affine), as `slice_apply::COEFFS`.
const COEFFS: usize = 12;

/// The guide weights packed as the kernel reads them (see the layout in
/// `kernels/bilateral_slice.cu`): matrix, bias, mix weights, mix bias,
/// shifts, slopes.
pub fn pack_guide(g: &GuideWeights) -> Result<Vec<f32>> {
    let k = g.knots;
    if k == 0 || g.shifts.len() != 3 * k || g.slopes.len() != 3 * k {
        return Err(Error::invalid(format!(
            "CUDA: guide with {k} knots has {} shifts and {} slopes",
            g.shifts.len(),
            g.slopes.len()
        )));
    }
    let mut p = Vec::with_capacity(16 + 6 * k);
    p.extend(g.ccm.iter().flatten());
    p.extend(g.ccm_bias);
    p.extend(g.mix_w);
    p.push(g.mix_b);
    p.extend(&g.shifts);
    p.extend(&g.slopes);
    Ok(p)
}

fn as_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| Error::invalid(format!("CUDA: {what} {v} is outside 1..2^31")))
}

/// Slices the bilateral grid `grid` (`[gh][gw][gd][12]`, see
/// `slice_apply::BilateralGrid`) with the guide of each pixel and applies
/// the affine transforms to planar linear RGB `planes` (3 planes of
/// `w·h`) in place; output clamped to [0, 1]. One upload of the image, the
/// grid and the guide, one download of the image.
pub fn bilateral_slice_apply(
    planes: &mut [f32],
    w: usize,
    h: usize,
    grid: &[f32],
    grid_dims: [usize; 3],
    guide: &GuideWeights,
) -> Result<DeviceTimes> {
    let [gw, gh, gd] = grid_dims;
    let (wi, hi) = (as_i32(w, "width")?, as_i32(h, "height")?);
    let (gwi, ghi, gdi) = (
        as_i32(gw, "grid width")?,
        as_i32(gh, "grid height")?,
        as_i32(gd, "grid depth")?,
    );
    let n = w
        .checked_mul(h)
        .ok_or_else(|| Error::invalid("CUDA: image size overflows"))?;
    if planes.len() != 3 * n {
        return Err(Error::invalid(format!(
            "CUDA: {w}x{h} image needs {} values, got {}",
            3 * n,
            planes.len()
        )));
    }
    if grid.len() != gw * gh * gd * COEFFS {
        return Err(Error::invalid(format!(
            "CUDA: {gw}x{gh}x{gd} grid needs {} values, got {}",
            gw * gh * gd * COEFFS,
            grid.len()
        )));
    }
    let packed = pack_guide(guide)?;
    let knots = as_i32(guide.knots, "guide knots")?;
    let dev = device()?;
    let f = dev.function("bilateral_slice.cu", "bilateral_slice_apply_f32")?;
    let mut clock = StageClock::default();
    let mut rgb = dev.upload(&mut clock, planes)?;
    let grid_d = dev.upload(&mut clock, grid)?;
    let guide_d = dev.upload(&mut clock, &packed)?;
    let cfg = LaunchConfig {
        grid_dim: ((wi as u32).div_ceil(32), (hi as u32).div_ceil(8), 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    dev.kernel(&mut clock, |st| {
        let mut b = st.launch_builder(&f);
        b.arg(&mut rgb).arg(&wi).arg(&hi);
        b.arg(&grid_d).arg(&gwi).arg(&ghi).arg(&gdi);
        b.arg(&guide_d).arg(&knots);
        // SAFETY: matches bilateral_slice_apply_f32 in
        // kernels/bilateral_slice.cu; `rgb` holds 3·w·h values, `grid_d`
        // gw·gh·gd·12 (checked above), `guide_d` 16 + 6·knots.
        unsafe { b.launch(cfg) }.map_err(drv)?;
        Ok(())
    })?;
    dev.download(&mut clock, &rgb, planes)?;
    clock.finish()
}
