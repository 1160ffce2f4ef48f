//! The literature's sRGB-domain demosaicking protocol, so our numbers
//! compare with published tables: take an 8-bit sRGB image, sample it
//! through a Bayer mosaic (RGGB by default) on values / 255, optionally
//! add unclipped Gaussian noise of sigma / 255, demosaic with no colour
//! pipeline, round to 8 bit, and score CPSNR / SSIM with a border crop.
//!
//! The noise is known, so the mosaic carries it as its NoiseProfile (shot
//! term 0, read variance (sigma / 255)^2), as a DNG carries its tag:
//! noise-aware stages (`demosaic_denoise_learned` without a `sigma`
//! param, `denoise_profiled`) condition on the protocol's level.

use std::path::Path;
use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::metrics::Rgb8;
use crate::error::{Error, Result};
use crate::frame::{Mosaic, MosaicScale, Value};
use crate::graph::{exec, Pipeline, RunOptions, Timings};
use crate::raw::{CfaPattern, NoiseProfile, RawMeta};

/// Settings of one protocol run.
#[derive(Debug, Clone)]
pub struct SrgbProtocol {
    pub cfa: CfaPattern,
    /// Gaussian noise sigma in 8-bit units (0 = noise-free).
    pub sigma: f32,
    /// Border excluded from the metrics, pixels.
    pub crop: usize,
    pub seed: u64,
}

impl Default for SrgbProtocol {
    fn default() -> Self {
        SrgbProtocol {
            cfa: CfaPattern::Rggb,
            sigma: 0.0,
            crop: 10,
            seed: 0,
        }
    }
}

/// Score of one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageScore {
    pub image: String,
    pub cpsnr: f64,
    pub ssim: f64,
    /// Mean CIEDE2000 colour difference (same border crop).
    pub ciede2000: f64,
    /// Per-channel mean ratio output / truth (R, G, B; same border crop).
    pub channel_ratio: [f64; 3],
    pub timings: Timings,
}

/// A pipeline `raw_source -> op` for evaluating a single demosaic op.
pub fn single_op_pipeline(op: &str) -> Result<Pipeline> {
    let yaml = format!(
        "version: 1\nname: {op}\nstages:\n  - {{ id: raw, op: raw_source }}\n  - {{ id: dm, op: {op} }}\n"
    );
    Pipeline::from_yaml(&yaml, &format!("--op {op}"))
}

/// Mosaics an 8-bit image per the protocol (values in [0, 1] plus noise).
pub fn mosaic_of(img: &Rgb8, p: &SrgbProtocol, name: &str) -> Result<Mosaic> {
    let (w, h) = (img.width, img.height);
    if w < 4 || h < 4 {
        return Err(Error::invalid(format!("{name}: image too small ({w}x{h})")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let normal = Normal::new(0.0f32, p.sigma.max(0.0) / 255.0)
        .map_err(|e| Error::invalid(format!("bad sigma {}: {e}", p.sigma)))?;
    let mut data = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let c = p.cfa.color_at(y, x);
            let mut v = img.data[3 * (y * w + x) + c] as f32 / 255.0;
            if p.sigma > 0.0 {
                v += normal.sample(&mut rng);
            }
            data.push(v);
        }
    }
    let mut meta = RawMeta::bayer(name, w, h, p.cfa);
    meta.bits = 8;
    if p.sigma > 0.0 {
        let var = (f64::from(p.sigma) / 255.0).powi(2);
        meta.noise_profile = Some(NoiseProfile {
            a: [0.0; 3],
            b: [var; 3],
        });
    }
    Ok(Mosaic {
        width: w,
        height: h,
        cfa: p.cfa,
        data: data.into(),
        scale: MosaicScale::Normalized,
        wb_applied: Some([1.0; 3]),
        meta: Arc::new(meta),
    })
}

/// Runs the protocol on one image file with `pipeline` (whose
/// `raw_source` receives the normalised mosaic and whose first output is
/// compared with the original).
pub fn score_image(path: &Path, pipeline: &Pipeline, p: &SrgbProtocol) -> Result<ImageScore> {
    render_image(path, pipeline, p).map(|r| r.0)
}

/// [`score_image`], also returning (ground truth, output) for reports.
pub fn render_image(
    path: &Path,
    pipeline: &Pipeline,
    p: &SrgbProtocol,
) -> Result<(ImageScore, Rgb8, Rgb8)> {
    let name = path.display().to_string();
    let truth = Rgb8::load(path)?;
    let m = mosaic_of(&truth, p, &name)?;
    let out = exec::run_value(
        pipeline,
        Value::Mosaic(Arc::new(m)),
        &name,
        &RunOptions::default(),
    )
    .map_err(|e| Error::invalid(format!("{name}: {e}")))?;
    let img = match out.outputs.first() {
        Some((_, Value::Image(i))) => i.clone(),
        _ => {
            return Err(Error::invalid(format!(
                "{name}: pipeline output is not an image"
            )))
        }
    };
    let got = Rgb8::from_planar(img.width, img.height, &img.data);
    let score = super::score_pair(&name, &truth, &got, p.crop, out.timings)?;
    Ok((score, truth, got))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: usize, h: usize) -> Rgb8 {
        let data = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [
                    (x * 7 % 256) as u8,
                    (y * 5 % 256) as u8,
                    ((x + y) * 3 % 256) as u8,
                ]
            })
            .collect();
        Rgb8 {
            width: w,
            height: h,
            data,
        }
    }

    /// The protocol's noise travels as the mosaic's NoiseProfile, and a
    /// noise-aware stage without a level of its own reads it: the learned
    /// stage renders as with `sigma: 10 / 255` named, not as noise-free.
    #[test]
    fn known_noise_is_the_mosaics_profile() {
        let img = picture(48, 40);
        let clean = mosaic_of(&img, &SrgbProtocol::default(), "t").unwrap();
        assert!(clean.meta.noise_profile.is_none());
        let p = SrgbProtocol {
            sigma: 10.0,
            ..Default::default()
        };
        let m = Arc::new(mosaic_of(&img, &p, "t").unwrap());
        let np = m.meta.noise_profile.unwrap();
        assert_eq!(np.a, [0.0; 3]);
        let var = (10.0f64 / 255.0).powi(2);
        assert!(np.b.iter().all(|&b| (b - var).abs() < 1e-15), "{np:?}");
        let run = |params: &str| {
            let yaml = format!(
                "version: 1\nstages:\n  - {{ id: raw, op: raw_source }}\n  \
                 - {{ id: dm, op: demosaic_denoise_learned, params: {{ model: fast_raw{params} }} }}\n"
            );
            let pipe = Pipeline::from_yaml(&yaml, "t.yaml").unwrap();
            let out = exec::run_value(&pipe, Value::Mosaic(m.clone()), "t", &RunOptions::default())
                .unwrap();
            match out.outputs.first() {
                Some((_, Value::Image(i))) => i.data.clone(),
                _ => panic!("no image output"),
            }
        };
        let from_profile = run("");
        let named = run(&format!(", sigma: {}", 10.0f32 / 255.0));
        let unaware = run(", sigma: 0.0");
        let diff = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max)
        };
        assert!(diff(&from_profile, &named) < 1e-5);
        assert!(diff(&from_profile, &unaware) > 1e-3);
    }
}
