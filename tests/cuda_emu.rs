//! Every CUDA kernel in kernels/ run through the host emulator (tests/emu)
//! and compared with the CPU stage it stands for, on every machine: no GPU,
//! no CUDA libraries. tests/cuda_parity.rs runs the same comparisons on a
//! real device.
//!
//! Each kernel launch below is a copy of the cudarc launch in
//! src/backend/cuda/{ops,conv,slice}.rs: the same arguments in the same
//! order, the same grid and block (the emulator checks the argument types
//! against the kernel's parameters). Each case runs twice (`both`): once
//! with every buffer's end against a guard page and the threads of a block
//! in forward order, once with every buffer's start against a guard page
//! and the threads in reverse; any access outside a buffer fails the case,
//! and the two outputs must agree bit for bit (a result that depends on
//! thread order between barriers is a race).
//!
//! Inputs: small frames of all four Bayer phases at sizes around the 32x8
//! block and the 36x12 shared tile (tile edges, 1-pixel margins, frames
//! smaller than one block, 2x2), values outside [0, 1]. Tolerances are
//! those of tests/cuda_parity.rs (max absolute difference; the conv2d one
//! relative).

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rawgraph::backend::cuda::{
    cfa_code, ChainTimes, ClassicalChain, ColorSteps, DemosaicMethod, RawPrep,
};
use rawgraph::frame::{ColorSpace, Image, Mosaic, Value};
use rawgraph::graph::device_segment::SegmentDevice;
use rawgraph::graph::exec::frame_to_value;
use rawgraph::nn::hdrnet::GuideWeights;
use rawgraph::nn::{Activation, Conv2d, Padding, Tensor};
use rawgraph::raw::CfaPattern;
use rawgraph::stages::{compile, RunCtx};
use rawgraph::synth::{demo_scene, mosaic_scene, CaptureParams};
use rawgraph_cuda_emu::{DevBuf, Emu, EmuError, LaunchConfig};
use serde_json::json;

type R<T> = Result<T, EmuError>;

// ------------------------------------------------------------------ helpers

/// `grid_2d` of src/backend/cuda/ops.rs.
fn grid_2d(w: i32, h: i32, bx: u32, by: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((w as u32).div_ceil(bx), (h as u32).div_ceil(by), 1),
        block_dim: (bx, by, 1),
        shared_mem_bytes: 0,
    }
}

/// `grid_1d` of src/backend/cuda/ops.rs.
fn grid_1d(n: usize, block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((n.div_ceil(block as usize) as u32).max(1), 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Values compared bit for bit between the two emulator runs.
trait Bits: Copy + std::fmt::Debug {
    fn bits(self) -> u32;
}
impl Bits for f32 {
    fn bits(self) -> u32 {
        self.to_bits()
    }
}
impl Bits for u16 {
    fn bits(self) -> u32 {
        self as u32
    }
}

/// Runs `f` in both emulator configurations; panics with the emulator's
/// message on a failed launch, or when the two outputs differ in any bit.
fn both<T: Bits>(what: &str, f: impl Fn(&Emu) -> R<Vec<T>>) -> Vec<T> {
    let [e0, e1] = Emu::BOTH;
    let a = f(&e0).unwrap_or_else(|e| panic!("{what}: {e}"));
    let b = f(&e1).unwrap_or_else(|e| panic!("{what} (guard before, reverse order): {e}"));
    assert_eq!(
        a.len(),
        b.len(),
        "{what}: output lengths differ between runs"
    );
    if let Some(i) = (0..a.len()).find(|&i| a[i].bits() != b[i].bits()) {
        panic!(
            "{what}: forward and reverse thread order disagree at {i}: {:?} vs {:?} (a race between barriers)",
            a[i], b[i]
        );
    }
    a
}

/// Max |a - b| (NaN counts as infinitely far) and where.
fn worst(a: &[f32], b: &[f32]) -> (f32, usize) {
    assert_eq!(a.len(), b.len());
    let (mut w, mut at) = (0f32, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let d = if x.is_nan() || y.is_nan() {
            if x.is_nan() && y.is_nan() {
                0.0
            } else {
                f32::INFINITY
            }
        } else {
            (x - y).abs()
        };
        if d > w {
            w = d;
            at = i;
        }
    }
    (w, at)
}

thread_local! {
    /// Per test thread: cases compared, the largest difference and where.
    static TALLY: std::cell::RefCell<(usize, f32, String)> = const {
        std::cell::RefCell::new((0, 0.0, String::new()))
    };
}

fn assert_close(what: &str, cpu: &[f32], emu: &[f32], tol: f32) {
    let (w, at) = worst(cpu, emu);
    TALLY.with(|t| {
        let mut t = t.borrow_mut();
        t.0 += 1;
        if t.0 == 1 || w > t.1 {
            (t.1, t.2) = (w, what.to_string());
        }
    });
    assert!(
        w <= tol,
        "{what}: |cpu - emulated cuda| = {w:e} > {tol:e} at {at} (cpu {}, cuda {})",
        cpu[at],
        emu[at]
    );
}

/// Prints how many cases the test compared and the largest difference.
fn report(test: &str) {
    TALLY.with(|t| {
        let t = t.borrow();
        eprintln!(
            "{test}: {} cases, max |cpu - emulated cuda| = {:.3e} ({})",
            t.0, t.1, t.2
        );
    });
}

fn ctx() -> RunCtx<'static> {
    RunCtx { stage_id: "emu" }
}

fn run_cpu(op: &str, params: serde_json::Value, v: Value) -> Value {
    compile(op, params)
        .unwrap()
        .run_cpu(&ctx(), vec![v])
        .unwrap_or_else(|e| panic!("CPU {op}: {e}"))
}

fn data_of(v: &Value) -> std::borrow::Cow<'_, [f32]> {
    match v {
        Value::Mosaic(m) => m.data.f32(),
        Value::Image(i) => std::borrow::Cow::Borrowed(&i.data),
        other => panic!("unexpected value {other:?}"),
    }
}

fn mosaic_of(v: &Value) -> &Mosaic {
    match v {
        Value::Mosaic(m) => m,
        other => panic!("not a mosaic: {other:?}"),
    }
}

/// Frame sizes around the 32x8 block and 36x12 shared tile.
const SIZES: &[(usize, usize)] = &[
    (2, 2),
    (3, 5),
    (7, 3),
    (31, 9),
    (32, 8),
    (33, 17),
    (65, 8),
    (37, 13),
    (67, 45),
];

/// Raw-DN mosaics: every Bayer phase at every size in `sizes`, seeded
/// random values from -5 % to 130 % of white (and a 2x2 black pattern
/// for some, to exercise the repeat indexing).
fn mosaics_dn(sizes: &[(usize, usize)]) -> Vec<(String, Value)> {
    let base = mosaic_scene(&demo_scene(64, 48), &CaptureParams::default(), "scene").unwrap();
    let Value::Mosaic(base) = frame_to_value(base).unwrap() else {
        unreachable!()
    };
    let white = base.meta.white[1];
    let mut rng = ChaCha8Rng::seed_from_u64(20);
    let mut out = Vec::new();
    for (k, cfa) in CfaPattern::ALL.into_iter().enumerate() {
        for (s, &(w, h)) in sizes.iter().enumerate() {
            let mut meta = (*base.meta).clone();
            if (k + s) % 2 == 1 {
                let b0 = meta.black.values[0];
                meta.black = rawgraph::raw::BlackLevel {
                    repeat_width: 2,
                    repeat_height: 2,
                    values: vec![b0, b0 + 3.0, b0 - 2.0, b0 + 1.0],
                };
            }
            let data = (0..w * h)
                .map(|_| (rng.random_range(-0.05f32..1.3) * white).round())
                .collect();
            let m = Mosaic {
                width: w,
                height: h,
                cfa,
                data,
                meta: Arc::new(meta),
                ..(*base).clone()
            };
            out.push((
                format!("{w}x{h} {}", cfa.name()),
                Value::Mosaic(Arc::new(m)),
            ));
        }
    }
    out
}

/// Black-level-normalised mosaics (CPU black level of [`mosaics_dn`]).
fn mosaics_norm(sizes: &[(usize, usize)]) -> Vec<(String, Value)> {
    mosaics_dn(sizes)
        .into_iter()
        .map(|(l, v)| (l, run_cpu("black_level", json!(null), v)))
        .collect()
}

/// Linear images of `w x h` with values in -0.1 .. 1.6 and a few
/// non-finite ones.
fn image(w: usize, h: usize, seed: u64, space: ColorSpace) -> Value {
    let base = mosaic_scene(&demo_scene(16, 16), &CaptureParams::default(), "scene").unwrap();
    let Value::Mosaic(base) = frame_to_value(base).unwrap() else {
        unreachable!()
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut data: Vec<f32> = (0..3 * w * h)
        .map(|_| rng.random_range(-0.1f32..1.6))
        .collect();
    // Non-finite samples where there is room (a hot pixel gone to inf
    // upstream, a NaN from a division).
    if data.len() >= 12 {
        data[5] = f32::INFINITY;
        data[7] = f32::NEG_INFINITY;
        data[11] = f32::NAN;
    }
    Value::Image(Arc::new(Image {
        width: w,
        height: h,
        data,
        space,
        wb_applied: None,
        meta: base.meta.clone(),
    }))
}

// ------------------------------------------------ launches as in src/backend/cuda

/// `raw_prep` of ops.rs (PrepArgs::new + PrepArgs::launch), f32 input.
fn emu_raw_prep(emu: &Emu, m: &Mosaic, p: &RawPrep) -> R<Vec<f32>> {
    let b = &m.meta.black;
    let flags = (p.black_level as i32)
        | ((p.clip_negative as i32) << 1)
        | ((p.gains.is_some() as i32) << 2)
        | ((p.clip_highlights as i32) << 3);
    let black = emu.upload(&b.values)?;
    let (rw, rh) = (b.repeat_width as i32, b.repeat_height as i32);
    let [wr, wg, wb] = m.meta.white;
    let [gr, gg, gb] = p.gains.unwrap_or([1.0; 3]);
    let cfa = cfa_code(m.cfa);
    let (w, h) = (m.width as i32, m.height as i32);
    let input = emu.upload(&m.data.f32())?;
    let out = emu.zeros::<f32>(m.data.len())?;
    let mut l = emu.launch_builder("raw_prep.cu", "raw_prep_f32");
    l.arg(&input).arg(&out).arg(&w).arg(&h);
    l.arg(&black).arg(&rw).arg(&rh);
    l.arg(&wr).arg(&wg).arg(&wb).arg(&gr).arg(&gg).arg(&gb);
    l.arg(&cfa).arg(&flags);
    l.launch(grid_2d(w, h, 32, 8))?;
    Ok(out.to_vec())
}

/// raw_prep_u16 (no Rust caller yet): the f32 launch with 16-bit DN input.
fn emu_raw_prep_u16(emu: &Emu, m: &Mosaic, p: &RawPrep) -> R<Vec<f32>> {
    let b = &m.meta.black;
    let flags = (p.black_level as i32)
        | ((p.clip_negative as i32) << 1)
        | ((p.gains.is_some() as i32) << 2)
        | ((p.clip_highlights as i32) << 3);
    let black = emu.upload(&b.values)?;
    let (rw, rh) = (b.repeat_width as i32, b.repeat_height as i32);
    let [wr, wg, wb] = m.meta.white;
    let [gr, gg, gb] = p.gains.unwrap_or([1.0; 3]);
    let cfa = cfa_code(m.cfa);
    let (w, h) = (m.width as i32, m.height as i32);
    let dn: Vec<u16> = m
        .data
        .f32()
        .iter()
        .map(|&v| v.clamp(0.0, 65535.0) as u16)
        .collect();
    let input = emu.upload(&dn)?;
    let out = emu.zeros::<f32>(m.data.len())?;
    let mut l = emu.launch_builder("raw_prep.cu", "raw_prep_u16");
    l.arg(&input).arg(&out).arg(&w).arg(&h);
    l.arg(&black).arg(&rw).arg(&rh);
    l.arg(&wr).arg(&wg).arg(&wb).arg(&gr).arg(&gg).arg(&gb);
    l.arg(&cfa).arg(&flags);
    l.launch(grid_2d(w, h, 32, 8))?;
    Ok(out.to_vec())
}

/// `launch_demosaic` of ops.rs for bilinear / MHC.
fn emu_demosaic(emu: &Emu, entry: &str, m: &Mosaic) -> R<Vec<f32>> {
    let (w, h, cfa) = (m.width as i32, m.height as i32, cfa_code(m.cfa));
    let input = emu.upload(&m.data.f32())?;
    let out = emu.zeros::<f32>(3 * m.data.len())?;
    let mut l = emu.launch_builder("demosaic.cu", entry);
    l.arg(&input).arg(&out).arg(&w).arg(&h).arg(&cfa);
    l.launch(grid_2d(w, h, 32, 8))?;
    Ok(out.to_vec())
}

/// `launch_menon` of ops.rs: the same passes, buffers and grids.
fn emu_menon(emu: &Emu, m: &Mosaic, refine: bool) -> R<Vec<f32>> {
    const FILE: &str = "demosaic_menon.cu";
    const PAD: i32 = 12;
    let (w, h, cfa) = (m.width as i32, m.height as i32, cfa_code(m.cfa));
    let (wp, hp) = (w + 2 * PAD, h + 2 * PAD);
    let np = wp as usize * hp as usize;
    let input = emu.upload(&m.data.f32())?;
    let out = emu.zeros::<f32>(3 * m.data.len())?;
    let plane = || emu.zeros::<f32>(np);
    let (p, gh, gv, ch, cv) = (plane()?, plane()?, plane()?, plane()?, plane()?);
    let (dh, dv, g, hz) = (plane()?, plane()?, plane()?, plane()?);
    let (r, b, g2) = (plane()?, plane()?, plane()?);
    let padded = grid_2d(wp, hp, 32, 8);
    let mut l = emu.launch_builder(FILE, "menon_pad_f32");
    l.arg(&input).arg(&p).arg(&w).arg(&h);
    l.launch(padded)?;
    let mut l = emu.launch_builder(FILE, "menon_green_f32");
    l.arg(&p).arg(&gh).arg(&gv).arg(&ch).arg(&cv);
    l.arg(&wp).arg(&hp).arg(&cfa);
    l.launch(padded)?;
    let mut l = emu.launch_builder(FILE, "menon_grad_f32");
    l.arg(&ch).arg(&cv).arg(&dh).arg(&dv).arg(&wp).arg(&hp);
    l.launch(padded)?;
    let mut l = emu.launch_builder(FILE, "menon_classify_f32");
    l.arg(&dh).arg(&dv).arg(&gh).arg(&gv).arg(&g).arg(&hz);
    l.arg(&wp).arg(&hp);
    l.launch(padded)?;
    let mut l = emu.launch_builder(FILE, "menon_rb_green_f32");
    l.arg(&p)
        .arg(&g)
        .arg(&r)
        .arg(&b)
        .arg(&wp)
        .arg(&hp)
        .arg(&cfa);
    l.launch(padded)?;
    let mut l = emu.launch_builder(FILE, "menon_rb_cross_f32");
    l.arg(&r).arg(&b).arg(&hz).arg(&wp).arg(&hp).arg(&cfa);
    l.launch(padded)?;
    let green = if refine {
        let mut l = emu.launch_builder(FILE, "menon_refine_g_f32");
        l.arg(&r).arg(&g).arg(&b).arg(&hz).arg(&g2);
        l.arg(&wp).arg(&hp).arg(&cfa);
        l.launch(padded)?;
        let mut l = emu.launch_builder(FILE, "menon_refine_rb_green_f32");
        l.arg(&r).arg(&g2).arg(&b).arg(&wp).arg(&hp).arg(&cfa);
        l.launch(padded)?;
        let mut l = emu.launch_builder(FILE, "menon_refine_rb_cross_f32");
        l.arg(&r).arg(&b).arg(&hz).arg(&wp).arg(&hp).arg(&cfa);
        l.launch(padded)?;
        &g2
    } else {
        &g
    };
    let mut l = emu.launch_builder(FILE, "menon_crop_f32");
    l.arg(&r).arg(green).arg(&b).arg(&out).arg(&w).arg(&h);
    l.launch(grid_2d(w, h, 32, 8))?;
    Ok(out.to_vec())
}

/// `ColorArgs::new` + `ColorArgs::launch` of ops.rs on planar RGB `data`.
fn emu_color(emu: &Emu, data: &[f32], s: &ColorSteps) -> R<Vec<f32>> {
    let mat: Vec<f32> = s
        .matrix
        .unwrap_or(rawgraph::color::IDENTITY)
        .iter()
        .flatten()
        .copied()
        .collect();
    let lut_n = |l: &Option<Vec<f32>>| l.as_ref().map_or(1, |l| l.len() as i32 - 1);
    let (tone_n, srgb_n) = (lut_n(&s.tone_lut), lut_n(&s.srgb_lut));
    let dummy = [0f32; 2];
    let flags = (s.matrix.is_some() as i32)
        | ((s.gain.is_some() as i32) << 1)
        | ((s.tone_lut.is_some() as i32) << 2)
        | ((s.srgb_lut.is_some() as i32) << 3);
    let mat = emu.upload(&mat)?;
    let gain = s.gain.unwrap_or(1.0);
    let tone = emu.upload(s.tone_lut.as_deref().unwrap_or(&dummy))?;
    let tone_scale = if s.tone_lut.is_some() {
        tone_n as f32 / s.tone_max
    } else {
        1.0
    };
    let srgb = emu.upload(s.srgb_lut.as_deref().unwrap_or(&dummy))?;
    let n = data.len() / 3;
    let rgb = emu.upload(data)?;
    let nn = n as i64;
    let mut l = emu.launch_builder("color_pipeline.cu", "color_pipeline_f32");
    l.arg(&rgb).arg(&nn).arg(&mat).arg(&gain);
    l.arg(&tone).arg(&tone_n).arg(&tone_scale);
    l.arg(&srgb).arg(&srgb_n).arg(&flags);
    l.launch(grid_1d(n, 256))?;
    Ok(rgb.to_vec())
}

/// `pack_guide` of slice.rs.
fn pack_guide(g: &GuideWeights) -> Vec<f32> {
    let mut p = Vec::new();
    p.extend(g.ccm.iter().flatten());
    p.extend(g.ccm_bias);
    p.extend(g.mix_w);
    p.push(g.mix_b);
    p.extend(&g.shifts);
    p.extend(&g.slopes);
    p
}

/// `bilateral_slice_apply` of slice.rs.
fn emu_slice(
    emu: &Emu,
    planes: &[f32],
    wh: (usize, usize),
    grid: &[f32],
    gdims: [usize; 3],
    guide: &GuideWeights,
) -> R<Vec<f32>> {
    let (wi, hi) = (wh.0 as i32, wh.1 as i32);
    let [gwi, ghi, gdi] = gdims.map(|v| v as i32);
    let knots = guide.knots as i32;
    let rgb = emu.upload(planes)?;
    let grid_d = emu.upload(grid)?;
    let guide_d = emu.upload(&pack_guide(guide))?;
    let cfg = LaunchConfig {
        grid_dim: ((wi as u32).div_ceil(32), (hi as u32).div_ceil(8), 1),
        block_dim: (32, 8, 1),
        shared_mem_bytes: 0,
    };
    let mut l = emu.launch_builder("bilateral_slice.cu", "bilateral_slice_apply_f32");
    l.arg(&rgb).arg(&wi).arg(&hi);
    l.arg(&grid_d).arg(&gwi).arg(&ghi).arg(&gdi);
    l.arg(&guide_d).arg(&knots);
    l.launch(cfg)?;
    Ok(rgb.to_vec())
}

/// A convolution layer as `CudaConv2d` holds it: fp16 weights `[cout, kpad]`.
struct EmuConv {
    shape: [usize; 4],
    stride: usize,
    padding: Padding,
    w16: Vec<u16>,
    bias: Vec<f32>,
}

impl EmuConv {
    fn new(w: &[f32], bias: &[f32], shape: [usize; 4], stride: usize, padding: Padding) -> Self {
        let [cout, cin, kh, kw] = shape;
        let k = cin * kh * kw;
        let kpad = k.div_ceil(32) * 32;
        let mut w16 = vec![0u16; cout * kpad];
        for (dst, src) in w16.chunks_exact_mut(kpad).zip(w.chunks_exact(k)) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = half::f16::from_f32(*s).to_bits();
            }
        }
        EmuConv {
            shape,
            stride,
            padding,
            w16,
            bias: bias.to_vec(),
        }
    }

    /// `CudaConv2d::forward_timed` of conv.rs on fp16 input `x` `[n, cin,
    /// h, w]`; returns fp16 bits `[n, cout, ho, wo]`.
    fn forward(
        &self,
        emu: &Emu,
        x: &[u16],
        xs: [usize; 4],
        act: Activation,
        mma: bool,
    ) -> R<Vec<u16>> {
        let [cout, cin, kh, kw] = self.shape;
        let [n, _, h, w] = xs;
        let (pad, reflect) = match self.padding {
            Padding::Zero(p) => (p, 0i32),
            Padding::Reflect(p) => (p, 1i32),
        };
        let ho = (h + 2 * pad - kh) / self.stride + 1;
        let wo = (w + 2 * pad - kw) / self.stride + 1;
        let k = cin * kh * kw;
        let kpad = k.div_ceil(32) * 32;
        let npix = ho * wo;
        let ints = [
            cin,
            h,
            w,
            cout,
            kh,
            kw,
            self.stride,
            pad,
            reflect as usize,
            ho,
            wo,
            k,
            kpad,
        ]
        .map(|v| v as i32);
        let (act, slope) = match act {
            Activation::None => (0i32, 0f32),
            Activation::Relu => (1, 0.0),
            Activation::LeakyRelu(s) => (2, s),
            Activation::Sigmoid => (3, 0.0),
        };
        let (entry, cfg) = if mma {
            (
                "conv2d_mma_f16",
                LaunchConfig {
                    grid_dim: (npix.div_ceil(64) as u32, cout.div_ceil(64) as u32, n as u32),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                },
            )
        } else {
            (
                "conv2d_direct_f16",
                LaunchConfig {
                    grid_dim: (npix.div_ceil(128) as u32, cout as u32, n as u32),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                },
            )
        };
        let xd = emu.upload(x)?;
        let wd = emu.upload(&self.w16)?;
        let bd = emu.upload(&self.bias)?;
        let out: DevBuf<u16> = emu.zeros(n * cout * npix)?;
        let mut l = emu.launch_builder("conv2d.cu", entry);
        l.arg(&xd).arg(&wd).arg(&bd).arg(&out);
        for v in &ints {
            l.arg(v);
        }
        l.arg(&act).arg(&slope);
        l.launch(cfg)?;
        Ok(out.to_vec())
    }
}

// ------------------------------------------------------------------ tests

#[test]
fn raw_prep_matches_black_level_and_white_balance() {
    let cases = [
        ("black_level", json!(null), false),
        ("black_level", json!({"clip_negative": true}), false),
        (
            "white_balance",
            json!({"mode": "manual", "gains": [2.1, 1.0, 1.6]}),
            true,
        ),
        (
            "white_balance",
            json!({"mode": "manual", "gains": [1.0, 1.3, 2.5], "clip_highlights": false}),
            true,
        ),
    ];
    let dn = mosaics_dn(SIZES);
    let norm = mosaics_norm(SIZES);
    for (op, params, on_norm) in cases {
        let clip_negative = params["clip_negative"].as_bool().unwrap_or(false);
        let clip_highlights = params["clip_highlights"].as_bool().unwrap_or(true);
        let gains = params["gains"].as_array().map(|g| {
            let g: Vec<f32> = g.iter().map(|v| v.as_f64().unwrap() as f32).collect();
            let min = g.iter().copied().fold(f32::INFINITY, f32::min);
            [g[0] / min, g[1] / min, g[2] / min]
        });
        let prep = RawPrep {
            black_level: op == "black_level",
            clip_negative,
            gains,
            clip_highlights: gains.is_some() && clip_highlights,
        };
        for (label, v) in if on_norm { &norm } else { &dn } {
            let cpu = run_cpu(op, params.clone(), v.clone());
            let m = mosaic_of(v);
            let what = format!("raw_prep_f32 as {op} {params} on {label}");
            let got = both(&what, |e| emu_raw_prep(e, m, &prep));
            assert_close(&what, &data_of(&cpu), &got, 1e-5);
            if !on_norm {
                // 16-bit DN: the same mosaic with negatives clamped to 0.
                let m16 = Mosaic {
                    data: m.data.f32().iter().map(|v| v.clamp(0.0, 65535.0)).collect(),
                    ..m.clone()
                };
                let cpu = run_cpu(op, params.clone(), Value::Mosaic(Arc::new(m16.clone())));
                let what = format!("raw_prep_u16 as {op} {params} on {label}");
                let got = both(&what, |e| emu_raw_prep_u16(e, &m16, &prep));
                assert_close(&what, &data_of(&cpu), &got, 1e-5);
            }
        }
    }
    report("raw_prep_matches_black_level_and_white_balance");
}

#[test]
fn demosaic_bilinear_and_mhc_match_cpu() {
    for (label, v) in mosaics_norm(SIZES) {
        let m = mosaic_of(&v);
        for (op, entry) in [
            ("demosaic_bilinear", "demosaic_bilinear_f32"),
            ("demosaic_mhc", "demosaic_mhc_f32"),
        ] {
            let cpu = run_cpu(op, json!(null), v.clone());
            let what = format!("{entry} on {label}");
            let got = both(&what, |e| emu_demosaic(e, entry, m));
            assert_close(&what, &data_of(&cpu), &got, 1e-5);
        }
    }
    report("demosaic_bilinear_and_mhc_match_cpu");
}

#[test]
fn demosaic_menon_matches_cpu() {
    let sizes = [(2, 2), (5, 3), (33, 9), (40, 21), (67, 45)];
    for (label, v) in mosaics_norm(&sizes) {
        let m = mosaic_of(&v);
        for refine in [true, false] {
            let cpu = run_cpu("demosaic_menon", json!({ "refine": refine }), v.clone());
            let what = format!("demosaic_menon (refine {refine}) on {label}");
            let got = both(&what, |e| emu_menon(e, m, refine));
            assert_close(&what, &data_of(&cpu), &got, 1e-5);
        }
    }
    report("demosaic_menon_matches_cpu");
}

#[test]
fn color_pipeline_matches_cpu_stages() {
    let tone = rawgraph::stages::tone_curve::build(json!(null)).unwrap();
    let tone_wp =
        rawgraph::stages::tone_curve::build(json!({"knee": 0.4, "white_point": 4.0})).unwrap();
    let srgb: Vec<f32> = (0..=4096)
        .map(|i| rawgraph::color::srgb_encode(i as f32 / 4096.0))
        .collect();
    // 1-D grid of 256: a partial block, exactly one block, one more, odd.
    for (k, (w, h)) in [(1usize, 1usize), (16, 16), (257, 1), (37, 13)]
        .into_iter()
        .enumerate()
    {
        let cam = image(w, h, 100 + k as u64, ColorSpace::Camera);
        let lin = image(w, h, 200 + k as u64, ColorSpace::LinearSrgb);
        let meta = match &cam {
            Value::Image(i) => i.meta.clone(),
            _ => unreachable!(),
        };
        let matrix = meta.camera_to_srgb().unwrap();
        let cases: Vec<(&str, serde_json::Value, &Value, ColorSteps, f32)> = vec![
            (
                "color_correct",
                json!(null),
                &cam,
                ColorSteps {
                    matrix: Some(matrix),
                    ..Default::default()
                },
                1e-5,
            ),
            (
                "exposure_gain",
                json!({"ev": 1.3}),
                &lin,
                ColorSteps {
                    gain: Some(2f32.powf(1.3)),
                    ..Default::default()
                },
                2e-5,
            ),
            (
                "tone_curve",
                json!(null),
                &lin,
                ColorSteps {
                    tone_lut: Some(tone.lut()),
                    tone_max: tone.lut_max(),
                    ..Default::default()
                },
                2e-5,
            ),
            (
                "tone_curve",
                json!({"knee": 0.4, "white_point": 4.0}),
                &lin,
                ColorSteps {
                    tone_lut: Some(tone_wp.lut()),
                    tone_max: tone_wp.lut_max(),
                    ..Default::default()
                },
                2e-5,
            ),
            (
                "srgb_encode",
                json!(null),
                &lin,
                ColorSteps {
                    srgb_lut: Some(srgb.clone()),
                    ..Default::default()
                },
                2e-5,
            ),
        ];
        for (op, params, input, steps, tol) in cases {
            let cpu = run_cpu(op, params.clone(), input.clone());
            let what = format!("color_pipeline_f32 as {op} {params} on {w}x{h}");
            let got = both(&what, |e| emu_color(e, &data_of(input), &steps));
            assert_close(&what, &data_of(&cpu), &got, tol);
        }
        // All four steps fused, against the four CPU stages in a row.
        let mut v = cam.clone();
        for (op, p) in [
            ("color_correct", json!(null)),
            ("exposure_gain", json!({"ev": 0.5})),
            ("tone_curve", json!(null)),
            ("srgb_encode", json!(null)),
        ] {
            v = run_cpu(op, p, v);
        }
        let steps = ColorSteps {
            matrix: Some(matrix),
            gain: Some(2f32.powf(0.5)),
            tone_lut: Some(tone.lut()),
            tone_max: tone.lut_max(),
            srgb_lut: Some(srgb.clone()),
        };
        let what = format!("color_pipeline_f32 fused on {w}x{h}");
        let got = both(&what, |e| emu_color(e, &data_of(&cam), &steps));
        assert_close(&what, &data_of(&v), &got, 1e-4);
    }
    report("color_pipeline_matches_cpu_stages");
}

#[test]
fn bilateral_slice_apply_matches_cpu() {
    use rawgraph::stages::hdrnet::{slice_apply, BilateralGrid, Guide};
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for (k, &(w, h, gw, gh, gd, knots)) in [
        (67usize, 45usize, 16usize, 16usize, 8usize, 16usize),
        (33, 9, 16, 16, 8, 4),
        (7, 5, 16, 16, 8, 16),
        (1, 1, 4, 3, 2, 1),
        (32, 8, 3, 5, 1, 2),
    ]
    .iter()
    .enumerate()
    {
        let data: Vec<f32> = (0..gw * gh * gd * slice_apply::COEFFS)
            .map(|_| rng.random_range(-0.5f32..1.5))
            .collect();
        let grid = BilateralGrid {
            width: gw,
            height: gh,
            depth: gd,
            data,
        };
        let mut r3 = || [0; 3].map(|_| rng.random_range(-0.3f32..1.2));
        let (ccm, ccm_bias, mix_w) = ([r3(), r3(), r3()], r3(), r3());
        let guide = GuideWeights {
            ccm,
            ccm_bias,
            shifts: (0..3 * knots)
                .map(|_| rng.random_range(0f32..1.0))
                .collect(),
            slopes: (0..3 * knots)
                .map(|_| rng.random_range(-0.5f32..1.0))
                .collect(),
            mix_w,
            mix_b: rng.random_range(-0.1f32..0.1),
            knots,
        };
        let mut img: Vec<f32> = (0..3 * w * h)
            .map(|_| rng.random_range(-0.1f32..2.0))
            .collect();
        if img.len() > 4 {
            img[1] = f32::NAN;
            img[3] = f32::INFINITY;
        }
        let mut cpu = img.clone();
        slice_apply::slice_apply(&grid, &Guide::new(&guide), &mut cpu, w, h).unwrap();
        let what = format!("bilateral_slice_apply_f32 case {k} {w}x{h} grid {gw}x{gh}x{gd}");
        let got = both(&what, |e| {
            emu_slice(e, &img, (w, h), &grid.data, [gw, gh, gd], &guide)
        });
        assert_close(&what, &cpu, &got, 1e-5);
    }
    report("bilateral_slice_apply_matches_cpu");
}

/// The fused classical chain's kernels in a row, as `PreparedChain`
/// queues them (raw_prep with black level, gains and clip in one pass ->
/// MHC -> all four colour steps), against the seven CPU stages.
#[test]
fn classical_chain_matches_cpu_stages() {
    let gains = [2.0f32, 1.0, 1.5];
    let tone = rawgraph::stages::tone_curve::build(json!(null)).unwrap();
    let srgb: Vec<f32> = (0..=4096)
        .map(|i| rawgraph::color::srgb_encode(i as f32 / 4096.0))
        .collect();
    for (label, v) in mosaics_dn(&[(3, 5), (33, 17), (67, 45)]) {
        let m = mosaic_of(&v).clone();
        let mut cpu = v.clone();
        for (op, p) in [
            ("black_level", json!(null)),
            ("white_balance", json!({"mode": "manual", "gains": gains})),
            ("demosaic_mhc", json!(null)),
            ("color_correct", json!(null)),
            ("exposure_gain", json!({"ev": 0.5})),
            ("tone_curve", json!(null)),
            ("srgb_encode", json!(null)),
        ] {
            cpu = run_cpu(op, p, cpu);
        }
        let prep = RawPrep {
            black_level: true,
            clip_negative: false,
            gains: Some(gains),
            clip_highlights: true,
        };
        let steps = ColorSteps {
            matrix: Some(m.meta.camera_to_srgb().unwrap()),
            gain: Some(2f32.powf(0.5)),
            tone_lut: Some(tone.lut()),
            tone_max: tone.lut_max(),
            srgb_lut: Some(srgb.clone()),
        };
        let what = format!("classical chain on {label}");
        let got = both(&what, |e| {
            let prepped = Mosaic {
                data: emu_raw_prep(e, &m, &prep)?.into(),
                ..m.clone()
            };
            let rgb = emu_demosaic(e, "demosaic_mhc_f32", &prepped)?;
            emu_color(e, &rgb, &steps)
        });
        assert_close(&what, &data_of(&cpu), &got, 1e-4);
    }
    report("classical_chain_matches_cpu_stages");
}

/// The executor's device-resident segments (src/graph/device_segment.rs)
/// on the emulator: each `ClassicalChain` the executor builds from a
/// scheduled chain of stages is run as `PreparedChain` queues it (raw
/// prep -> demosaic -> colour pipeline; the launches are the copies
/// above), every other stage as the executor places it.
struct EmuDevice(Emu);

/// Device times the emulated chain reports (ms): distinct values, so the
/// timing rows' shares can be checked.
const EMU_TIMES: ChainTimes = ChainTimes {
    upload_ms: 1.0,
    raw_prep_ms: 2.0,
    demosaic_ms: 3.0,
    color_ms: 4.0,
    download_ms: 5.0,
};

impl SegmentDevice for EmuDevice {
    fn available(&self) -> Result<(), String> {
        Ok(())
    }

    fn run_chain(
        &self,
        chain: &ClassicalChain,
        m: &Mosaic,
    ) -> rawgraph::error::Result<(Vec<f32>, ChainTimes)> {
        let e = &self.0;
        let run = || -> R<Vec<f32>> {
            let prepped = Mosaic {
                data: emu_raw_prep(e, m, &chain.prep)?.into(),
                ..m.clone()
            };
            let rgb = match chain.demosaic {
                DemosaicMethod::Bilinear => emu_demosaic(e, "demosaic_bilinear_f32", &prepped)?,
                DemosaicMethod::Mhc => emu_demosaic(e, "demosaic_mhc_f32", &prepped)?,
                DemosaicMethod::Menon { refine } => emu_menon(e, &prepped, refine)?,
            };
            emu_color(e, &rgb, &chain.color)
        };
        let rgb = run().map_err(|err| rawgraph::error::Error::invalid(err.to_string()))?;
        Ok((rgb, EMU_TIMES))
    }
}

fn image_data(out: &rawgraph::graph::RunOutput) -> &[f32] {
    match &out.outputs[0].1 {
        Value::Image(i) => &i.data,
        other => panic!("expected an image output, got {other:?}"),
    }
}

/// A classical pipeline run with `--backend cuda` forms one
/// device-resident segment (black level .. sRGB encode) whose launches,
/// on the emulator, give the CPU fused output within 1e-4 (the tolerance
/// of the fused chain above: LUT interpolation on both sides, a few ulps
/// per step); the segment reports one upload and one download row and
/// each member's share of the launch that does its work.
#[test]
fn device_segment_matches_cpu_fused_segment() {
    use rawgraph::backend::BackendChoice;
    use rawgraph::graph::exec::{run_value, run_value_on};
    use rawgraph::graph::{Pipeline, RunOptions};
    let cuda = RunOptions {
        backend: Some(BackendChoice::Cuda),
        ..Default::default()
    };
    for dm in [
        "demosaic_bilinear",
        "demosaic_mhc",
        "demosaic_menon, params: { refine: false }",
        "demosaic_menon, params: { refine: true }",
    ] {
        let yaml = format!(
            "version: 1\nname: seg\nstages:\n  - {{ id: raw, op: raw_source }}\n  - {{ id: bl, op: black_level }}\n  - {{ id: wb, op: white_balance, params: {{ mode: manual, gains: [2.0, 1.0, 1.5], clip_highlights: true }} }}\n  - {{ id: dm, op: {dm} }}\n  - {{ id: cc, op: color_correct }}\n  - {{ id: exp, op: exposure_gain, params: {{ mode: manual, ev: 0.5 }} }}\n  - {{ id: tone, op: tone_curve }}\n  - {{ id: out, op: srgb_encode }}\noutputs: [out]\n"
        );
        let p = Pipeline::from_yaml(&yaml, "seg.yaml").unwrap();
        for (label, v) in mosaics_dn(&[(33, 17), (67, 45)]) {
            let what = format!("device segment ({dm}) on {label}");
            let cpu = run_value(&p, v.clone(), "t", &RunOptions::default()).unwrap();
            let [e0, e1] = Emu::BOTH;
            let a = run_value_on(&p, v.clone(), "t", &cuda, &EmuDevice(e0))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            let b = run_value_on(&p, v, "t", &cuda, &EmuDevice(e1))
                .unwrap_or_else(|e| panic!("{what} (guard before, reverse order): {e}"));
            let (ga, gb) = (image_data(&a), image_data(&b));
            assert!(
                ga.iter().zip(gb).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{what}: forward and reverse thread order disagree"
            );
            assert_close(&what, image_data(&cpu), ga, 1e-4);
            // Rows: raw_source on the CPU, then h2d, the seven members, d2h.
            let rows = &a.timings.stages;
            let ops: Vec<&str> = rows.iter().map(|t| t.op.as_str()).collect();
            assert_eq!(
                ops,
                [
                    "raw_source",
                    "copy_h2d",
                    "black_level",
                    "white_balance",
                    dm.split(',').next().unwrap(),
                    "color_correct",
                    "exposure_gain",
                    "tone_curve",
                    "srgb_encode",
                    "copy_d2h"
                ],
                "{what}"
            );
            assert_eq!(
                (rows[1].id.as_str(), rows[9].id.as_str()),
                ("bl.h2d", "out.d2h")
            );
            let label = "bl+wb+dm+cc+exp+tone+out";
            let device: Vec<f64> = rows[1..].iter().map(|t| t.device_ms.unwrap()).collect();
            assert_eq!(
                device,
                [1.0, 1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 5.0],
                "{what}"
            );
            for t in &rows[1..] {
                assert_eq!(t.fused.as_deref(), Some(label), "{t:?}");
                assert_eq!(t.backend, "cuda", "{t:?}");
                assert!(!t.fell_back, "{t:?}");
            }
            // Host shares add up to the segment's wall time, in proportion
            // to the device times.
            let host: f64 = rows[1..].iter().map(|t| t.host_ms).sum();
            assert!(host > 0.0);
            assert!(
                (rows[9].host_ms / host - 5.0 / 15.0).abs() < 1e-9,
                "{rows:?}"
            );
            assert!(a
                .timings
                .fallback
                .as_deref()
                .unwrap()
                .contains("no CUDA kernel"));
        }
    }
    report("device_segment_matches_cpu_fused_segment");
}

/// Where a scheduled chain stops being one device segment: a gray-world
/// white balance (its gains need the pixels) ends it before any demosaic,
/// so the chain from the black level forms none; from the demosaic on, an
/// exposure gain after the tone curve is out of the chain's launch order,
/// so the segment is demosaic + matrix + tone and the rest runs after it.
#[test]
fn device_segment_splits_where_the_chain_cannot_follow() {
    use rawgraph::graph::device_segment::prepare;
    use rawgraph::graph::Pipeline;
    let yaml = "version: 1\nname: split\nstages:\n  - { id: raw, op: raw_source }\n  - { id: bl, op: black_level }\n  - { id: lsc, op: lens_shading }\n  - { id: wb, op: white_balance, params: { mode: gray_world } }\n  - { id: dm, op: demosaic_bilinear }\n  - { id: cc, op: color_correct }\n  - { id: tone, op: tone_curve }\n  - { id: exp, op: exposure_gain, params: { mode: manual, ev: -0.5 } }\n  - { id: out, op: srgb_encode }\noutputs: [out]\n";
    let p = Pipeline::from_yaml(yaml, "split.yaml").unwrap();
    let at = |id: &str| p.nodes.iter().position(|n| n.id == id).unwrap();
    let ids = |c: &[(usize, Option<String>)]| {
        c.iter()
            .map(|(k, skip)| {
                format!(
                    "{}{}",
                    p.nodes[*k].id,
                    if skip.is_some() { "(skipped)" } else { "" }
                )
            })
            .collect::<Vec<_>>()
    };
    let chain: Vec<usize> = ["bl", "lsc", "wb", "dm", "cc", "tone", "exp", "out"]
        .iter()
        .map(|id| at(id))
        .collect();
    for (label, v) in mosaics_dn(&[(33, 17)]) {
        assert!(
            prepare(&p, &chain, std::slice::from_ref(&v))
                .unwrap()
                .is_none(),
            "{label}: bl + lsc (skipped) is no segment"
        );
        let seg = prepare(&p, &chain[3..], std::slice::from_ref(&v))
            .unwrap()
            .unwrap_or_else(|| panic!("{label}: no segment from the demosaic"));
        assert_eq!(ids(&seg.covered), ["dm", "cc", "tone"], "{label}");
        assert!(seg.chain.color.matrix.is_some() && seg.chain.color.tone_lut.is_some());
        assert!(seg.chain.color.gain.is_none() && seg.chain.color.srgb_lut.is_none());
        assert_eq!(seg.chain.prep, RawPrep::default(), "{label}");
        // With a lens-shading stage that has nothing to do for the frame
        // (no map) passed over inside the segment, and the white balance
        // as shot: one segment from the black level to the sRGB encode.
        let yaml2 = yaml.replace(
            "{ mode: gray_world }",
            "{ mode: manual, gains: [2.0, 1.0, 1.5] }",
        );
        let p2 = Pipeline::from_yaml(&yaml2, "split2.yaml").unwrap();
        let seg = prepare(&p2, &chain, std::slice::from_ref(&v))
            .unwrap()
            .unwrap();
        assert_eq!(
            seg.covered
                .iter()
                .map(|(k, s)| (p2.nodes[*k].id.as_str(), s.is_some()))
                .collect::<Vec<_>>(),
            [
                ("bl", false),
                ("lsc", true),
                ("wb", false),
                ("dm", false),
                ("cc", false),
                ("tone", false)
            ],
            "{label}"
        );
    }
}

fn round16(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
}

/// conv2d_mma_f16 and conv2d_direct_f16 against `nn::Conv2d` on the same
/// fp16-rounded inputs and weights; `ck = [cin, cout, kernel, stride]`.
fn conv_case(ck: [usize; 4], padding: Padding, act: Activation, hw: (usize, usize), seed: u64) {
    let [cin, cout, k, stride] = ck;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fan = (cin * k * k) as f32;
    let w: Vec<f32> = (0..cout * cin * k * k)
        .map(|_| rng.random_range(-1f32..1.0) / fan.sqrt())
        .collect();
    let b: Vec<f32> = (0..cout).map(|_| rng.random_range(-0.1f32..0.1)).collect();
    let x: Vec<f32> = (0..2 * cin * hw.0 * hw.1)
        .map(|_| rng.random_range(-1f32..1.0))
        .collect();
    let (w16, x16) = (round16(&w), round16(&x));
    let xs = [2, cin, hw.0, hw.1];
    let cpu = Conv2d::new(w16.clone(), b.clone(), [cout, cin, k, k], stride, padding)
        .unwrap()
        .forward(&Tensor::from_vec(xs, x16.clone()).unwrap(), act)
        .unwrap();
    let conv = EmuConv::new(&w16, &b, [cout, cin, k, k], stride, padding);
    let xbits: Vec<u16> = x16
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    for mma in [true, false] {
        let what = format!(
            "conv2d_{}_f16 {cin}->{cout} {k}x{k}/{stride} {padding:?} {act:?} on {}x{}",
            if mma { "mma" } else { "direct" },
            hw.0,
            hw.1
        );
        let y = both(&what, |e| conv.forward(e, &xbits, xs, act, mma));
        assert_eq!(y.len(), cpu.data().len(), "{what}");
        let (mut worst, mut at) = (0f32, 0);
        for (i, (&a, &c)) in y.iter().zip(cpu.data()).enumerate() {
            let a = half::f16::from_bits(a).to_f32();
            let d = if a.is_nan() {
                f32::INFINITY
            } else {
                (a - c).abs() / c.abs().max(1.0)
            };
            if d > worst {
                (worst, at) = (d, i);
            }
        }
        eprintln!("{what}: max relative |cpu - emulated cuda| = {worst:.2e}");
        assert!(
            worst <= 2e-3,
            "{what}: max relative |cpu - emulated cuda| = {worst:e} at {at} (cpu {}, cuda {})",
            cpu.data()[at],
            half::f16::from_bits(y[at]).to_f32()
        );
    }
}

#[test]
fn conv2d_mma_and_direct_match_cpu() {
    // Two M tiles with a ragged one (70 = 64 + 6), ragged pixel tiles,
    // K = 144 (4.5 K tiles), zero padding, ReLU.
    conv_case(
        [16, 70, 3, 1],
        Padding::Zero(1),
        Activation::Relu,
        (9, 13),
        1,
    );
    // Cin 4 (K = 36: one full and one almost empty K tile), reflect padding.
    conv_case(
        [4, 8, 3, 1],
        Padding::Reflect(1),
        Activation::LeakyRelu(0.1),
        (11, 7),
        2,
    );
    // 1x1 (K = 48 with 16 zero-padded), no padding.
    conv_case(
        [48, 16, 1, 1],
        Padding::Zero(0),
        Activation::None,
        (5, 13),
        3,
    );
    // Stride 2, sigmoid.
    conv_case(
        [8, 24, 3, 2],
        Padding::Zero(1),
        Activation::Sigmoid,
        (13, 12),
        4,
    );
    // Output smaller than one 64-pixel tile, Cout 3.
    conv_case(
        [5, 3, 3, 1],
        Padding::Reflect(1),
        Activation::None,
        (4, 5),
        5,
    );
    // The layer shape of the first case of tests/cuda_parity.rs (64 -> 64
    // channels, K = 576: 18 K tiles) on a smaller frame (its 37x70 takes
    // 9 s emulated).
    conv_case(
        [64, 64, 3, 1],
        Padding::Zero(1),
        Activation::Relu,
        (9, 15),
        1,
    );
}

#[test]
fn casts_round_like_half() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut vals: Vec<f32> = (0..1000)
        .map(|_| rng.random_range(-70000f32..70000.0))
        .collect();
    vals.extend((0..1000).map(|_| rng.random_range(-1e-4f32..1e-4)));
    // Ties, subnormals, the overflow edge, signed zero, infinities.
    vals.extend([
        0.0,
        -0.0,
        1.0 + 1.0 / 2048.0,
        1.0 + 3.0 / 2048.0,
        65504.0,
        65519.99,
        65520.0,
        -65520.0,
        5.96e-8,
        2.98e-8,
        2.9802322e-8,
        6.1e-5,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    let n = vals.len() as i64;
    let want: Vec<u16> = vals
        .iter()
        .map(|&v| half::f16::from_f32(v).to_bits())
        .collect();
    let got = both("cast_f32_f16", |e| {
        let i = e.upload(&vals)?;
        let o: DevBuf<u16> = e.zeros(vals.len())?;
        let mut l = e.launch_builder("conv2d.cu", "cast_f32_f16");
        l.arg(&i).arg(&o).arg(&n);
        l.launch(grid_1d(vals.len(), 256))?;
        Ok(o.to_vec())
    });
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            a, b,
            "cast_f32_f16({:e}): {a:#06x} vs half {b:#06x}",
            vals[i]
        );
    }
    let all: Vec<u16> = (0..=u16::MAX)
        .filter(|b| !half::f16::from_bits(*b).is_nan())
        .collect();
    let n = all.len() as i64;
    let back = both("cast_f16_f32", |e| {
        let i = e.upload(&all)?;
        let o: DevBuf<f32> = e.zeros(all.len())?;
        let mut l = e.launch_builder("conv2d.cu", "cast_f16_f32");
        l.arg(&i).arg(&o).arg(&n);
        l.launch(grid_1d(all.len(), 256))?;
        Ok(o.to_vec())
    });
    for (b, f) in all.iter().zip(&back) {
        assert_eq!(
            f.to_bits(),
            half::f16::from_bits(*b).to_f32().to_bits(),
            "cast_f16_f32({b:#06x})"
        );
    }
}

/// The emulated `mma.sync.m16n8k16.row.col.f32.f16.f16.f32` against a
/// plain matrix product, with the fragments laid out as the PTX ISA
/// ("Matrix Fragments for mma.m16n8k16 with floating point type") states,
/// written out here independently of the runtime:
/// - A: a0..a7 (4 registers of f16x2, low half first); row = groupID for
///   a0, a1, a4, a5 and groupID + 8 for the others; column =
///   threadID_in_group * 2 + (i & 1), + 8 for i >= 4.
/// - B: b0..b3 (2 registers); row = threadID_in_group * 2 + (i & 1), + 8
///   for i >= 2; column = groupID.
/// - C/D: c0..c3; row = groupID for c0, c1 and groupID + 8 for c2, c3;
///   column = threadID_in_group * 2 + (i & 1).
#[test]
fn mma_fragment_layout_matches_ptx() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let h = |v: f32| half::f16::from_f32(v);
    let a: Vec<half::f16> = (0..16 * 16)
        .map(|_| h(rng.random_range(-2f32..2.0)))
        .collect(); // [16][16]
    let b: Vec<half::f16> = (0..16 * 8)
        .map(|_| h(rng.random_range(-2f32..2.0)))
        .collect(); // [16 k][8 n]
    let c: Vec<f32> = (0..16 * 8).map(|_| rng.random_range(-1f32..1.0)).collect(); // [16][8]
    let (mut fa, mut fb, mut fc) = (vec![0u32; 128], vec![0u32; 64], vec![0f32; 128]);
    for lane in 0..32 {
        let (g, t) = (lane / 4, lane % 4);
        for i in 0..8 {
            let row = if i < 2 || (4..6).contains(&i) {
                g
            } else {
                g + 8
            };
            let col = t * 2 + (i & 1) + if i >= 4 { 8 } else { 0 };
            fa[lane * 4 + i / 2] |= (a[row * 16 + col].to_bits() as u32) << (16 * (i & 1));
        }
        for i in 0..4 {
            let row = t * 2 + (i & 1) + if i >= 2 { 8 } else { 0 };
            fb[lane * 2 + i / 2] |= (b[row * 8 + g].to_bits() as u32) << (16 * (i & 1));
        }
        for i in 0..4 {
            let row = if i < 2 { g } else { g + 8 };
            fc[lane * 4 + i] = c[row * 8 + t * 2 + (i & 1)];
        }
    }
    // Spot checks of the layout itself: lane 5 (groupID 1, tig 1) holds
    // A[1][2..4] in a0/a1 and A[9][10..12] in a6/a7.
    assert_eq!(fa[5 * 4] & 0xffff, a[16 + 2].to_bits() as u32);
    assert_eq!(fa[5 * 4 + 3] >> 16, a[9 * 16 + 11].to_bits() as u32);
    let d = both("probe_mma", |e| {
        let (da, db, dd) = (e.upload(&fa)?, e.upload(&fb)?, e.upload(&fc)?);
        let mut l = e.launch_builder("emu_probes", "probe_mma");
        l.arg(&da).arg(&db).arg(&dd);
        l.launch(LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (32, 1, 1),
            shared_mem_bytes: 0,
        })?;
        Ok(dd.to_vec())
    });
    for lane in 0..32 {
        let (g, t) = (lane / 4, lane % 4);
        for i in 0..4 {
            let row = if i < 2 { g } else { g + 8 };
            let col = t * 2 + (i & 1);
            let want: f64 = c[row * 8 + col] as f64
                + (0..16)
                    .map(|k| a[row * 16 + k].to_f64() * b[k * 8 + col].to_f64())
                    .sum::<f64>();
            let got = d[lane * 4 + i] as f64;
            assert!(
                (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                "lane {lane} d{i} (row {row}, col {col}): {got} vs {want}"
            );
        }
    }
}

// ------------------------------------------------- the emulator's own checks

fn one_block(threads: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn probe_access(emu: &Emu, index: i32, write: i32) -> R<Vec<f32>> {
    let buf = emu.upload(&[1f32; 10])?;
    let mut l = emu.launch_builder("emu_probes", "probe_access");
    l.arg(&buf).arg(&index).arg(&write);
    l.launch(one_block(32))?;
    Ok(buf.to_vec())
}

#[test]
fn emulator_catches_out_of_bounds_accesses() {
    let [after, before] = Emu::BOTH;
    assert!(probe_access(&after, 9, 0).is_ok() && probe_access(&before, 0, 1).is_ok());
    // Guard page side: the access faults at once, with read/write and offset.
    let e = probe_access(&after, 10, 0).unwrap_err().0;
    assert!(
        e.contains("past the end of buffer") && e.contains("byte offset 40"),
        "{e}"
    );
    assert!(
        e.contains("probe_access block (0,0,0) thread (0,0,0)"),
        "{e}"
    );
    let e = probe_access(&before, -1, 1).unwrap_err().0;
    assert!(
        e.contains("before the start of buffer") && e.contains("byte offset -4"),
        "{e}"
    );
    // Canary side: a write is found after the launch.
    let e = probe_access(&before, 10, 1).unwrap_err().0;
    assert!(e.contains("wrote out of bounds: byte offset 40"), "{e}");
    let e = probe_access(&after, -3, 1).unwrap_err().0;
    assert!(e.contains("wrote out of bounds: byte offset -12"), "{e}");
}

#[test]
fn emulator_catches_barrier_misuse_and_races() {
    let [fwd, rev] = Emu::BOTH;
    let run = |e: &Emu, name: &str, mode: Option<i32>| -> R<Vec<f32>> {
        let out = e.zeros::<f32>(64)?;
        let mut l = e.launch_builder("emu_probes", name);
        l.arg(&out);
        if let Some(m) = &mode {
            l.arg(m);
        }
        l.launch(one_block(64))?;
        Ok(out.to_vec())
    };
    let e = run(&fwd, "probe_divergent", Some(0)).unwrap_err().0;
    assert!(e.contains("divergent __syncthreads()"), "{e}");
    let e = run(&fwd, "probe_divergent", Some(1)).unwrap_err().0;
    assert!(e.contains("has exited"), "{e}");
    // Shared memory no thread wrote reads as NaN.
    let e = &fwd;
    let out = e.zeros::<f32>(64).unwrap();
    let written = 40i32;
    let mut l = e.launch_builder("emu_probes", "probe_shared");
    l.arg(&out).arg(&written);
    l.launch(one_block(64)).unwrap();
    let v = out.to_vec();
    assert!(v[..40].iter().enumerate().all(|(i, &x)| x == i as f32));
    assert!(v[40..].iter().all(|x| x.is_nan()), "{v:?}");
    // Indexing a __shared__ array past its end traps (-fsanitize=bounds).
    let out = e.zeros::<f32>(96).unwrap();
    let written = 96i32;
    let mut l = e.launch_builder("emu_probes", "probe_shared");
    l.arg(&out).arg(&written);
    let err = l.launch(one_block(96)).unwrap_err().0;
    assert!(
        err.contains("thread (64,0,0)") && err.contains("outside a fixed-size array"),
        "{err}"
    );
    // Two threads writing one shared word: thread order decides, so the
    // forward and reverse runs disagree.
    let a = run(&fwd, "probe_race", None).unwrap();
    let b = run(&rev, "probe_race", None).unwrap();
    assert_ne!(a, b);
    // Argument types are checked against the kernel's parameters.
    let buf = fwd.zeros::<f32>(4).unwrap();
    let (i, f) = (0i32, 0f32);
    let mut l = fwd.launch_builder("emu_probes", "probe_access");
    l.arg(&buf).arg(&f).arg(&i);
    let e = l.launch(one_block(1)).unwrap_err().0;
    assert!(
        e.contains("takes (f32* i32 i32) but the launch passed (f32* f32 i32)"),
        "{e}"
    );
}

/// Every entry point the Rust side knows (src/backend/cuda/kernels.rs
/// lists them) exists in the emulator with the parameter types of its
/// launch above.
#[test]
fn every_kernel_is_emulated() {
    let f32p = "f32*";
    let prep = "i32 i32 f32* i32 i32 f32 f32 f32 f32 f32 f32 i32 i32";
    let conv = "u16* u16* f32* u16* i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 f32";
    let expect = [
        (
            "raw_prep.cu",
            "raw_prep_f32",
            format!("{f32p} {f32p} {prep}"),
        ),
        ("raw_prep.cu", "raw_prep_u16", format!("u16* {f32p} {prep}")),
        (
            "demosaic.cu",
            "demosaic_bilinear_f32",
            "f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic.cu",
            "demosaic_mhc_f32",
            "f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_pad_f32",
            "f32* f32* i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_green_f32",
            "f32* f32* f32* f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_grad_f32",
            "f32* f32* f32* f32* i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_classify_f32",
            "f32* f32* f32* f32* f32* f32* i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_rb_green_f32",
            "f32* f32* f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_rb_cross_f32",
            "f32* f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_refine_g_f32",
            "f32* f32* f32* f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_refine_rb_green_f32",
            "f32* f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_refine_rb_cross_f32",
            "f32* f32* f32* i32 i32 i32".into(),
        ),
        (
            "demosaic_menon.cu",
            "menon_crop_f32",
            "f32* f32* f32* f32* i32 i32".into(),
        ),
        (
            "color_pipeline.cu",
            "color_pipeline_f32",
            "f32* i64 f32* f32 f32* i32 f32 f32* i32 i32".into(),
        ),
        (
            "bilateral_slice.cu",
            "bilateral_slice_apply_f32",
            "f32* i32 i32 f32* i32 i32 i32 f32* i32".into(),
        ),
        ("conv2d.cu", "conv2d_mma_f16", conv.into()),
        ("conv2d.cu", "conv2d_direct_f16", conv.into()),
        ("conv2d.cu", "cast_f32_f16", "f32* u16* i64".into()),
        ("conv2d.cu", "cast_f16_f32", "u16* f32* i64".into()),
    ];
    for (file, name, sig) in &expect {
        assert_eq!(
            rawgraph_cuda_emu::signature(file, name).as_deref(),
            Some(sig.as_str()),
            "{file}/{name}"
        );
    }
    // Nothing in kernels/ is left out of this list.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "cu") {
            let src = std::fs::read_to_string(&p).unwrap();
            n += src.matches("extern \"C\" __global__ void").count();
        }
    }
    assert_eq!(
        n,
        expect.len(),
        "kernels/ has {n} entry points, this test lists {}",
        expect.len()
    );
}
