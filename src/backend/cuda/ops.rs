//! Stage-facing CUDA operations on host values: each uploads its input
//! (timed), runs its kernel (event-timed), downloads the result (timed)
//! and records the device times for the stage's [`crate::graph::Timings`]
//! row. [`ClassicalChain`] runs the whole classical chain with one upload
//! and one download, the shape a frame takes when it stays on the device.
//!
//! Every function has the same signature in `cuda_stub.rs`, where it
//! returns [`Error::CudaUnavailable`].

use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use super::device::{device, drv, Device, StageClock};
use crate::backend::DeviceTimes;
use crate::color::Mat3;
use crate::error::{Error, Result};
use crate::frame::Mosaic;
use crate::raw::CfaPattern;

/// Which parts of `kernels/raw_prep.cu` run (see that file for the maths).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RawPrep {
    /// Subtract the black level pattern and divide by (white - black).
    pub black_level: bool,
    /// Clamp negatives to 0 after the black level.
    pub clip_negative: bool,
    /// White-balance multipliers (R, G, B), already normalised so the
    /// smallest is 1.
    pub gains: Option<[f32; 3]>,
    /// Clamp to 1 after the gains.
    pub clip_highlights: bool,
}

/// Classical demosaic methods with a kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemosaicMethod {
    Bilinear,
    Mhc,
    /// Menon 2007, with or without the refining step.
    Menon {
        refine: bool,
    },
}

/// Which steps of `kernels/color_pipeline.cu` run, with their data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColorSteps {
    /// Camera RGB -> output RGB, row-major.
    pub matrix: Option<Mat3>,
    /// Linear gain (2^EV).
    pub gain: Option<f32>,
    /// Tone LUT: n + 1 entries over [0, `tone_max`].
    pub tone_lut: Option<Vec<f32>>,
    /// Input value of the tone LUT's last entry.
    pub tone_max: f32,
    /// sRGB encode LUT: n + 1 entries over [0, 1].
    pub srgb_lut: Option<Vec<f32>>,
}

/// The Bayer phase as four 2-bit colour codes (see kernels/common.cuh).
pub fn cfa_code(c: CfaPattern) -> i32 {
    c.layout()
        .iter()
        .enumerate()
        .fold(0, |a, (i, &col)| a | ((col as i32) << (2 * i)))
}

fn dims(w: usize, h: usize) -> Result<(i32, i32)> {
    let ok = |v: usize| i32::try_from(v).ok().filter(|v| *v > 0);
    match (ok(w), ok(h)) {
        (Some(w), Some(h)) if w >= 2 && h >= 2 => Ok((w, h)),
        _ => Err(Error::invalid(format!(
            "CUDA: image size {w}x{h} is outside 2..2^31"
        ))),
    }
}

fn grid_2d(w: i32, h: i32, bx: u32, by: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((w as u32).div_ceil(bx), (h as u32).div_ceil(by), 1),
        block_dim: (bx, by, 1),
        shared_mem_bytes: 0,
    }
}

fn grid_1d(n: usize, block: u32) -> Result<LaunchConfig> {
    let blocks = u32::try_from(n.div_ceil(block as usize))
        .map_err(|_| Error::invalid(format!("CUDA: {n} elements exceed one 1-D grid")))?;
    Ok(LaunchConfig {
        grid_dim: (blocks.max(1), 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Device buffers of the raw-prep constants (black pattern).
struct PrepArgs {
    black: CudaSlice<f32>,
    rw: i32,
    rh: i32,
    white: [f32; 3],
    gains: [f32; 3],
    cfa: i32,
    flags: i32,
}

impl PrepArgs {
    fn new(dev: &Device, clock: &mut StageClock, m: &Mosaic, p: &RawPrep) -> Result<Self> {
        let b = &m.meta.black;
        if b.values.len() != b.repeat_width * b.repeat_height || b.values.is_empty() {
            return Err(Error::invalid(format!(
                "black level pattern {}x{} has {} values",
                b.repeat_width,
                b.repeat_height,
                b.values.len()
            )));
        }
        let flags = (p.black_level as i32)
            | ((p.clip_negative as i32) << 1)
            | ((p.gains.is_some() as i32) << 2)
            | ((p.clip_highlights as i32) << 3);
        Ok(PrepArgs {
            black: dev.upload(clock, &b.values)?,
            rw: b.repeat_width as i32,
            rh: b.repeat_height as i32,
            white: m.meta.white,
            gains: p.gains.unwrap_or([1.0; 3]),
            cfa: cfa_code(m.cfa),
            flags,
        })
    }

    fn launch(
        &self,
        st: &Arc<CudaStream>,
        dev: &Device,
        input: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        w: i32,
        h: i32,
    ) -> Result<()> {
        let f = dev.function("raw_prep.cu", "raw_prep_f32")?;
        let [wr, wg, wb] = &self.white;
        let [gr, gg, gb] = &self.gains;
        let mut b = st.launch_builder(&f);
        b.arg(input).arg(out).arg(&w).arg(&h);
        b.arg(&self.black).arg(&self.rw).arg(&self.rh);
        b.arg(wr).arg(wg).arg(wb).arg(gr).arg(gg).arg(gb);
        b.arg(&self.cfa).arg(&self.flags);
        // SAFETY: the arguments match raw_prep_f32's signature in
        // kernels/raw_prep.cu (2 buffers of w*h f32, ints, the black buffer
        // of rw*rh f32, 6 floats, 2 ints) and the grid covers w x h.
        unsafe { b.launch(grid_2d(w, h, 32, 8)) }.map_err(drv)?;
        Ok(())
    }
}

/// Black level and/or white balance on the mosaic, in place.
pub fn raw_prep(m: &mut Mosaic, p: &RawPrep) -> Result<DeviceTimes> {
    let dev = device()?;
    let (w, h) = dims(m.width, m.height)?;
    let mut clock = StageClock::default();
    let args = PrepArgs::new(dev, &mut clock, m, p)?;
    let input = dev.upload(&mut clock, m.data.f32_mut())?;
    let mut out = dev.zeros::<f32>(m.data.len())?;
    dev.kernel(&mut clock, |st| {
        args.launch(st, dev, &input, &mut out, w, h)
    })?;
    dev.download(&mut clock, &out, m.data.f32_mut())?;
    clock.finish()
}

/// Queues `method` on `input` (W*H mosaic) into `out` (3 planes);
/// `dims_cfa` = (W, H, Bayer code).
fn launch_demosaic(
    st: &Arc<CudaStream>,
    dev: &Device,
    method: DemosaicMethod,
    input: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
    dims_cfa: (i32, i32, i32),
) -> Result<()> {
    let (w, h, cfa) = dims_cfa;
    let entry = match method {
        DemosaicMethod::Bilinear => "demosaic_bilinear_f32",
        DemosaicMethod::Mhc => "demosaic_mhc_f32",
        DemosaicMethod::Menon { refine } => {
            return launch_menon(st, dev, refine, input, out, dims_cfa)
        }
    };
    let f = dev.function("demosaic.cu", entry)?;
    let mut b = st.launch_builder(&f);
    b.arg(input).arg(out).arg(&w).arg(&h).arg(&cfa);
    // SAFETY: matches `(const float* in, float* out, int w, int h, int cfa)`
    // in kernels/demosaic.cu; `in` holds w*h values, `out` 3*w*h; the block
    // is DM_BX x DM_BY = 32 x 8 as the kernel's shared tile assumes.
    unsafe { b.launch(grid_2d(w, h, 32, 8)) }.map_err(drv)?;
    Ok(())
}

/// Padding of the Menon passes (`MN_PAD` in kernels/demosaic_menon.cu).
const MENON_PAD: i32 = 12;

/// Menon 2007 as the passes of kernels/demosaic_menon.cu on a mirror-padded
/// copy of the mosaic; scratch planes are allocated per call.
fn launch_menon(
    st: &Arc<CudaStream>,
    dev: &Device,
    refine: bool,
    input: &CudaSlice<f32>,
    out: &mut CudaSlice<f32>,
    dims_cfa: (i32, i32, i32),
) -> Result<()> {
    const FILE: &str = "demosaic_menon.cu";
    let (w, h, cfa) = dims_cfa;
    let (wp, hp) = (w + 2 * MENON_PAD, h + 2 * MENON_PAD);
    let np = wp as usize * hp as usize;
    let plane = || dev.zeros::<f32>(np);
    let (mut p, mut gh, mut gv, mut ch, mut cv) =
        (plane()?, plane()?, plane()?, plane()?, plane()?);
    let (mut dh, mut dv, mut g, mut hz) = (plane()?, plane()?, plane()?, plane()?);
    let (mut r, mut b, mut g2) = (plane()?, plane()?, plane()?);
    let padded = grid_2d(wp, hp, 32, 8);
    // SAFETY (every launch below): the arguments match the kernel of the
    // same name in kernels/demosaic_menon.cu; every plane holds wp*hp f32
    // (`input` w*h, `out` 3*w*h) and the grid covers the plane the kernel
    // indexes, with bounds checks in the kernel.
    let f = dev.function(FILE, "menon_pad_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(input).arg(&mut p).arg(&w).arg(&h);
    unsafe { l.launch(padded) }.map_err(drv)?;
    let f = dev.function(FILE, "menon_green_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(&p)
        .arg(&mut gh)
        .arg(&mut gv)
        .arg(&mut ch)
        .arg(&mut cv);
    l.arg(&wp).arg(&hp).arg(&cfa);
    // SAFETY: see above.
    unsafe { l.launch(padded) }.map_err(drv)?;
    let f = dev.function(FILE, "menon_grad_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(&ch)
        .arg(&cv)
        .arg(&mut dh)
        .arg(&mut dv)
        .arg(&wp)
        .arg(&hp);
    // SAFETY: see above.
    unsafe { l.launch(padded) }.map_err(drv)?;
    let f = dev.function(FILE, "menon_classify_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(&dh)
        .arg(&dv)
        .arg(&gh)
        .arg(&gv)
        .arg(&mut g)
        .arg(&mut hz);
    l.arg(&wp).arg(&hp);
    // SAFETY: see above.
    unsafe { l.launch(padded) }.map_err(drv)?;
    let f = dev.function(FILE, "menon_rb_green_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(&p)
        .arg(&g)
        .arg(&mut r)
        .arg(&mut b)
        .arg(&wp)
        .arg(&hp)
        .arg(&cfa);
    // SAFETY: see above.
    unsafe { l.launch(padded) }.map_err(drv)?;
    let f = dev.function(FILE, "menon_rb_cross_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(&mut r)
        .arg(&mut b)
        .arg(&hz)
        .arg(&wp)
        .arg(&hp)
        .arg(&cfa);
    // SAFETY: see above.
    unsafe { l.launch(padded) }.map_err(drv)?;
    let green = if refine {
        let f = dev.function(FILE, "menon_refine_g_f32")?;
        let mut l = st.launch_builder(&f);
        l.arg(&r).arg(&g).arg(&b).arg(&hz).arg(&mut g2);
        l.arg(&wp).arg(&hp).arg(&cfa);
        // SAFETY: see above.
        unsafe { l.launch(padded) }.map_err(drv)?;
        let f = dev.function(FILE, "menon_refine_rb_green_f32")?;
        let mut l = st.launch_builder(&f);
        l.arg(&mut r)
            .arg(&g2)
            .arg(&mut b)
            .arg(&wp)
            .arg(&hp)
            .arg(&cfa);
        // SAFETY: see above.
        unsafe { l.launch(padded) }.map_err(drv)?;
        let f = dev.function(FILE, "menon_refine_rb_cross_f32")?;
        let mut l = st.launch_builder(&f);
        l.arg(&mut r)
            .arg(&mut b)
            .arg(&hz)
            .arg(&wp)
            .arg(&hp)
            .arg(&cfa);
        // SAFETY: see above.
        unsafe { l.launch(padded) }.map_err(drv)?;
        &g2
    } else {
        &g
    };
    let f = dev.function(FILE, "menon_crop_f32")?;
    let mut l = st.launch_builder(&f);
    l.arg(&r).arg(green).arg(&b).arg(out).arg(&w).arg(&h);
    // SAFETY: see above.
    unsafe { l.launch(grid_2d(w, h, 32, 8)) }.map_err(drv)?;
    Ok(())
}

/// Demosaics `m` into planar RGB (3 planes of width*height).
pub fn demosaic(m: &Mosaic, method: DemosaicMethod) -> Result<(Vec<f32>, DeviceTimes)> {
    let dev = device()?;
    let (w, h) = dims(m.width, m.height)?;
    let mut clock = StageClock::default();
    let input = dev.upload(&mut clock, &m.data.f32())?;
    let mut out = dev.zeros::<f32>(3 * m.data.len())?;
    dev.kernel(&mut clock, |st| {
        launch_demosaic(st, dev, method, &input, &mut out, (w, h, cfa_code(m.cfa)))
    })?;
    let mut host = vec![0f32; 3 * m.data.len()];
    dev.download(&mut clock, &out, &mut host)?;
    Ok((host, clock.finish()?))
}

/// Device copies of a [`ColorSteps`].
struct ColorArgs {
    mat: CudaSlice<f32>,
    gain: f32,
    tone: CudaSlice<f32>,
    tone_n: i32,
    tone_scale: f32,
    srgb: CudaSlice<f32>,
    srgb_n: i32,
    flags: i32,
}

fn lut_len(lut: &Option<Vec<f32>>, what: &str) -> Result<i32> {
    match lut {
        None => Ok(1),
        Some(l) if l.len() >= 2 && l.len() < (1 << 24) => Ok(l.len() as i32 - 1),
        Some(l) => Err(Error::invalid(format!(
            "CUDA: {what} LUT of {} entries",
            l.len()
        ))),
    }
}

impl ColorArgs {
    fn new(dev: &Device, clock: &mut StageClock, s: &ColorSteps) -> Result<Self> {
        let mat: Vec<f32> = s
            .matrix
            .unwrap_or(crate::color::IDENTITY)
            .iter()
            .flatten()
            .copied()
            .collect();
        let tone_n = lut_len(&s.tone_lut, "tone")?;
        let srgb_n = lut_len(&s.srgb_lut, "sRGB")?;
        if s.tone_lut.is_some() && !(s.tone_max.is_finite() && s.tone_max > 0.0) {
            return Err(Error::invalid("CUDA: tone LUT range must be positive"));
        }
        let dummy = [0f32; 2];
        let flags = (s.matrix.is_some() as i32)
            | ((s.gain.is_some() as i32) << 1)
            | ((s.tone_lut.is_some() as i32) << 2)
            | ((s.srgb_lut.is_some() as i32) << 3);
        Ok(ColorArgs {
            mat: dev.upload(clock, &mat)?,
            gain: s.gain.unwrap_or(1.0),
            tone: dev.upload(clock, s.tone_lut.as_deref().unwrap_or(&dummy))?,
            tone_n,
            tone_scale: if s.tone_lut.is_some() {
                tone_n as f32 / s.tone_max
            } else {
                1.0
            },
            srgb: dev.upload(clock, s.srgb_lut.as_deref().unwrap_or(&dummy))?,
            srgb_n,
            flags,
        })
    }

    fn launch(
        &self,
        st: &Arc<CudaStream>,
        dev: &Device,
        rgb: &mut CudaSlice<f32>,
        n: usize,
    ) -> Result<()> {
        let f = dev.function("color_pipeline.cu", "color_pipeline_f32")?;
        let nn = n as i64;
        let mut b = st.launch_builder(&f);
        b.arg(rgb).arg(&nn).arg(&self.mat).arg(&self.gain);
        b.arg(&self.tone).arg(&self.tone_n).arg(&self.tone_scale);
        b.arg(&self.srgb).arg(&self.srgb_n).arg(&self.flags);
        // SAFETY: matches color_pipeline_f32 in kernels/color_pipeline.cu;
        // `rgb` holds 3*n values, the LUTs tone_n+1 and srgb_n+1 (or are
        // 2-entry dummies whose step is disabled), `mat` 9 values.
        unsafe { b.launch(grid_1d(n, 256)?) }.map_err(drv)?;
        Ok(())
    }
}

/// Applies the enabled colour steps to planar RGB `data` (3 planes of
/// `data.len() / 3`), in place.
pub fn color_pipeline(data: &mut [f32], steps: &ColorSteps) -> Result<DeviceTimes> {
    if data.is_empty() || !data.len().is_multiple_of(3) {
        return Err(Error::invalid(format!(
            "CUDA: {} values are not 3 planes",
            data.len()
        )));
    }
    let dev = device()?;
    let n = data.len() / 3;
    let mut clock = StageClock::default();
    let args = ColorArgs::new(dev, &mut clock, steps)?;
    let mut rgb = dev.upload(&mut clock, data)?;
    dev.kernel(&mut clock, |st| args.launch(st, dev, &mut rgb, n))?;
    dev.download(&mut clock, &rgb, data)?;
    clock.finish()
}

/// The classical chain fused on the device: raw prep (black level + white
/// balance + clip) -> demosaic -> colour pipeline (matrix, exposure, tone,
/// sRGB encode), one upload of the mosaic and one download of the image.
#[derive(Debug, Clone)]
pub struct ClassicalChain {
    pub prep: RawPrep,
    pub demosaic: DemosaicMethod,
    pub color: ColorSteps,
}

/// Device time per step of one [`ClassicalChain`] run, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ChainTimes {
    pub upload_ms: f64,
    pub raw_prep_ms: f64,
    pub demosaic_ms: f64,
    pub color_ms: f64,
    pub download_ms: f64,
}

impl ChainTimes {
    /// Kernel time without the copies.
    pub fn kernels_ms(&self) -> f64 {
        self.raw_prep_ms + self.demosaic_ms + self.color_ms
    }
}

impl ClassicalChain {
    /// Runs the chain on `m`; returns planar RGB (3 planes of
    /// width*height) and the per-step device times.
    pub fn run(&self, m: &Mosaic) -> Result<(Vec<f32>, ChainTimes)> {
        let mut p = self.prepare(m)?;
        let mut times = p.run_kernels()?;
        let (rgb, download_ms) = p.download()?;
        times.download_ms = download_ms;
        Ok((rgb, times))
    }

    /// Uploads `m` and the chain's constants and allocates the device
    /// buffers, so [`PreparedChain::run_kernels`] can be repeated with the
    /// frame resident on the device (the benches' shape).
    pub fn prepare(&self, m: &Mosaic) -> Result<PreparedChain> {
        let dev = device()?;
        let (w, h) = dims(m.width, m.height)?;
        let n = m.data.len();
        let mut consts = StageClock::default();
        let prep = PrepArgs::new(dev, &mut consts, m, &self.prep)?;
        let color = ColorArgs::new(dev, &mut consts, &self.color)?;
        let mut raw = StageClock::default();
        let input = dev.upload(&mut raw, &m.data.f32())?;
        let mosaic = dev.zeros::<f32>(n)?;
        let rgb = dev.zeros::<f32>(3 * n)?;
        dev.sync()?;
        Ok(PreparedChain {
            dev,
            prep,
            color,
            method: self.demosaic,
            input,
            mosaic,
            rgb,
            w,
            h,
            n,
            cfa: cfa_code(m.cfa),
            upload_ms: raw.times()?.upload_ms,
        })
    }
}

/// A [`ClassicalChain`] with its frame and buffers on the device.
pub struct PreparedChain {
    dev: &'static Device,
    prep: PrepArgs,
    color: ColorArgs,
    method: DemosaicMethod,
    /// The mosaic as uploaded (W*H f32).
    input: CudaSlice<f32>,
    /// After raw prep (W*H f32).
    mosaic: CudaSlice<f32>,
    /// Planar RGB (3*W*H f32).
    rgb: CudaSlice<f32>,
    w: i32,
    h: i32,
    n: usize,
    cfa: i32,
    upload_ms: f64,
}

impl std::fmt::Debug for PreparedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PreparedChain({}x{}, {:?})", self.w, self.h, self.method)
    }
}

impl PreparedChain {
    /// Queues the three kernels, waits, and returns their event times
    /// (`upload_ms` is the upload done by `prepare`; no download here).
    pub fn run_kernels(&mut self) -> Result<ChainTimes> {
        let dev = self.dev;
        let (w, h, n, cfa, method) = (self.w, self.h, self.n, self.cfa, self.method);
        let (input, mosaic, rgb) = (&self.input, &mut self.mosaic, &mut self.rgb);
        let prep = &self.prep;
        let color = &self.color;
        let (_, s_prep) = dev.span(|st| prep.launch(st, dev, input, mosaic, w, h))?;
        let (_, s_dm) =
            dev.span(|st| launch_demosaic(st, dev, method, mosaic, rgb, (w, h, cfa)))?;
        let (_, s_color) = dev.span(|st| color.launch(st, dev, rgb, n))?;
        dev.sync()?;
        Ok(ChainTimes {
            upload_ms: self.upload_ms,
            raw_prep_ms: s_prep.ms()?,
            demosaic_ms: s_dm.ms()?,
            color_ms: s_color.ms()?,
            download_ms: 0.0,
        })
    }

    /// Downloads the image: planar RGB and the copy's device time.
    pub fn download(&self) -> Result<(Vec<f32>, f64)> {
        let mut clock = StageClock::default();
        let mut host = vec![0f32; 3 * self.n];
        self.dev.download(&mut clock, &self.rgb, &mut host)?;
        Ok((host, clock.times()?.download_ms))
    }

    /// Bytes of the image this chain produces (for GB/s figures).
    pub fn output_bytes(&self) -> usize {
        3 * self.n * std::mem::size_of::<f32>()
    }
}

/// Synchronises the device stream (benches call this inside their timed
/// loop).
pub fn synchronize() -> Result<()> {
    device()?.sync()
}
