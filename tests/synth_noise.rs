//! The noise `synth` adds is what it claims: on a flat-field capture,
//! written to DNG and read back, the measured variance per intensity bin
//! matches shot * x + read within 5 %, and the mean stays at x.

use rawgraph::raw::decode::decode_file;
use rawgraph::raw::dng_write::{write_dng, DngOptions};
use rawgraph::raw::{BlackLevel, CfaPattern, NoiseProfile, RawFrame, RawMeta};
use rawgraph::synth::unprocess::{
    noisy_quantised, resolve_params, CfaSpec, NoiseSpec, UnprocessConfig,
};

/// Intensity bins of the flat field, normalised signal.
const LEVELS: [f32; 8] = [0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85];
/// Each bin is a band of this many rows over the full width.
const BAND: usize = 32;
const W: usize = 512;

fn check(spec: NoiseSpec, bits: u32, seed: u64) {
    let cfg = UnprocessConfig {
        cfa: CfaSpec::Fixed(CfaPattern::Rggb),
        noise: spec,
        bits,
        ..Default::default()
    };
    let h = BAND * LEVELS.len();
    let p = resolve_params(&cfg, W, h, "flat field", seed).unwrap();
    let clean: Vec<f32> = (0..W * h).map(|i| LEVELS[(i / W) / BAND]).collect();
    let data = noisy_quantised(&clean, W, p.shot, p.read, p.black, p.white, p.seed);
    let mut meta = RawMeta::bayer("flat", W, h, CfaPattern::Rggb);
    meta.black = BlackLevel::uniform(p.black);
    meta.white = [p.white; 3];
    meta.noise_profile = Some(NoiseProfile {
        a: [p.shot; 3],
        b: [p.read; 3],
    });
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flat.dng");
    write_dng(
        &RawFrame {
            meta,
            data: data.into(),
        },
        &path,
        &DngOptions::default(),
    )
    .unwrap();
    let back = decode_file(&path, 100.0, 1 << 30).unwrap();
    let np = back.meta.noise_profile.expect("noise profile read back");
    assert_eq!((np.a[1], np.b[1]), (p.shot, p.read));

    let range = (p.white - p.black) as f64;
    let mut checked = 0;
    for (k, &x) in LEVELS.iter().enumerate() {
        let x = x as f64;
        let claimed = np.a[1] * x + np.b[1];
        let sd = claimed.sqrt();
        // Skip bins that would clip at white or at 0 DN.
        if x + 5.0 * sd > 1.0 || x - 5.0 * sd < -(p.black as f64) / range {
            continue;
        }
        let v: Vec<f64> = back.data.f32()[k * BAND * W..(k + 1) * BAND * W]
            .iter()
            .map(|&dn| (dn as f64 - p.black as f64) / range)
            .collect();
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f64>() / (n - 1.0);
        // Quantisation adds 1/12 DN^2 on top of the model.
        let expect = claimed + 1.0 / 12.0 / (range * range);
        let rel = var / expect - 1.0;
        println!(
            "{spec:?} {bits} bit x={x:.2}: var {var:.4e} claimed {claimed:.4e} ({:+.2} %), mean {mean:.5}",
            100.0 * rel
        );
        assert!(rel.abs() < 0.05, "x={x}: variance {var:e} vs {expect:e}");
        assert!(
            (mean - x).abs() < 3.0 * sd / n.sqrt() + 0.5 / range,
            "mean {mean} vs {x}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} bins checked");
}

#[test]
fn iso_800_12_bit() {
    check(NoiseSpec::Iso(800), 12, 1);
}

#[test]
fn iso_3200_14_bit() {
    check(NoiseSpec::Iso(3200), 14, 2);
}

#[test]
fn given_shot_and_read_10_bit() {
    check(
        NoiseSpec::Fixed {
            shot: 2e-3,
            read: 4e-5,
        },
        10,
        3,
    );
}

#[test]
fn noise_free_is_exact_quantisation() {
    let clean: Vec<f32> = (0..64).map(|i| i as f32 / 63.0).collect();
    let q = noisy_quantised(&clean, 8, 0.0, 0.0, 64.0, 1023.0, 9);
    for (c, d) in clean.iter().zip(&q) {
        assert_eq!(*d, (c * 959.0 + 64.0).round());
    }
}
