//! `rawgraph noise IN...`: prints the noise level of each input.
//!
//! - 8-bit images (PNG, JPEG, TIFF, BMP without a sidecar): the AWGN sigma
//!   of the BT.601 luma in 8-bit units ([`crate::noise::awgn`]);
//!   `--add-sigma S` first adds N(0, S²) noise (for checking the estimator).
//! - raw files and dumps: the Poisson-Gaussian (a, b) per colour estimated
//!   from the frame, compared with the DNG NoiseProfile tag and with a
//!   calibration profile when either exists.

use std::path::{Path, PathBuf};

use clap::Args;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use super::InputArgs;
use crate::error::{Error, Result};
use crate::input;
use crate::noise::awgn::{estimate_sigma, load_luma, AwgnParams};
use crate::noise::raw_estimator::{self, EstimatorParams};
use crate::noise::{compare, profile, std_at, MID_GREY};
use crate::raw::NoiseProfile;

#[derive(Debug, Args)]
pub struct NoiseArgs {
    /// Images or raw files.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Images only: add Gaussian noise of this sigma (8-bit units) first.
    #[arg(long)]
    pub add_sigma: Option<f64>,
    /// Seed of --add-sigma's noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Folder of calibration profiles to compare raw estimates with.
    #[arg(long, default_value = "calibration/noise")]
    pub calibration_dir: PathBuf,
    #[command(flatten)]
    pub input: InputArgs,
}

fn is_image(p: &Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        ext.as_str(),
        "png" | "jpg" | "jpeg" | "tif" | "tiff" | "bmp"
    )
}

fn print_profile(label: &str, p: &NoiseProfile) {
    println!(
        "  {label:<26} a [{:.3e} {:.3e} {:.3e}]  b [{:.3e} {:.3e} {:.3e}]  std@{MID_GREY} [{:.5} {:.5} {:.5}]",
        p.a[0],
        p.a[1],
        p.a[2],
        p.b[0],
        p.b[1],
        p.b[2],
        std_at(p, 0, MID_GREY),
        std_at(p, 1, MID_GREY),
        std_at(p, 2, MID_GREY)
    );
}

fn run_image(path: &Path, a: &NoiseArgs) -> Result<()> {
    let (w, h, mut y) = load_luma(path)?;
    if let Some(s) = a.add_sigma {
        if !(s.is_finite() && s >= 0.0) {
            return Err(Error::invalid(format!("--add-sigma {s}: must be >= 0")));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
        let n = Normal::new(0.0f64, 1.0).map_err(|e| Error::invalid(e.to_string()))?;
        for v in y.iter_mut() {
            *v = (*v as f64 + s * n.sample(&mut rng)) as f32;
        }
    }
    let e = estimate_sigma(&y, w, h, &AwgnParams::default())?;
    println!(
        "{}: AWGN sigma {:.3} (8-bit units, BT.601 luma; {} of {} blocks){}",
        path.display(),
        e.sigma,
        e.blocks_used,
        e.blocks_total,
        a.add_sigma
            .map_or(String::new(), |s| format!("; added sigma {s}"))
    );
    Ok(())
}

fn run_raw(path: &Path, a: &NoiseArgs) -> Result<()> {
    let frame = input::open(path, a.input.sidecar.as_deref(), &a.input.limits())?;
    let meta = frame.meta.clone();
    if meta.cfa().is_err() {
        // LinearRaw: no mosaic to measure, but the tag is still worth showing.
        println!(
            "{}: {} {} (LinearRaw)",
            path.display(),
            meta.make,
            meta.model
        );
        if let Some(p) = meta.noise_profile {
            print_profile("DNG NoiseProfile", &p);
        }
    }
    let m = super::calibrate::normalised_mosaic(frame)?;
    let fit = raw_estimator::estimate(
        &m.data.f32(),
        m.width,
        m.height,
        m.cfa,
        &EstimatorParams::default(),
    )?;
    println!(
        "{}: {} {} ISO {}",
        path.display(),
        meta.make,
        meta.model,
        meta.iso.map_or("?".into(), |i| i.to_string())
    );
    print_profile("estimate", &fit.profile);
    for n in &fit.notes {
        println!("  note: {n}");
    }
    if let Some(p) = meta.noise_profile {
        print_profile("DNG NoiseProfile", &p);
        let d = compare(&fit.profile, &p);
        println!(
            "  estimate / DNG std ratio {:.3?} (max {:.1}%)",
            d.std_ratio,
            100.0 * d.max_rel
        );
    }
    if let Some((file, prof)) = profile::find(&a.calibration_dir, &meta.make, &meta.model)? {
        let (p, how) = prof.at_iso(meta.iso);
        print_profile(&format!("calibration ({how})"), &p);
        let d = compare(&fit.profile, &p);
        println!(
            "  estimate / {} std ratio {:.3?} (max {:.1}%)",
            file.display(),
            d.std_ratio,
            100.0 * d.max_rel
        );
    }
    Ok(())
}

pub fn run(a: NoiseArgs) -> Result<i32> {
    let mut failed = 0;
    for p in &a.inputs {
        let r = if is_image(p) && a.input.sidecar.is_none() {
            run_image(p, &a)
        } else {
            run_raw(p, &a)
        };
        if let Err(e) = r {
            eprintln!("error: {e}");
            failed += 1;
        }
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
