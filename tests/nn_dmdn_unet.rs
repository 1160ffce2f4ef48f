//! The raw-path `dmdn_unet` network: Rust reproduces PyTorch's single pass
//! over the reflect-padded frame (fixtures written by
//! `training/train_dmdn.py fixture`: three levels, and four levels with a
//! 1/16 stage, gated smoothing, a classical base, chroma smoothing) for
//! every tile size, the shipped raw models load with their declared cost,
//! and bad files are typed errors.

use std::collections::HashMap;

mod common;
use common::write_st;
use std::path::PathBuf;

use rawgraph::nn::dmdn::parse_cfa;
use rawgraph::nn::{BayerFrame, DemosaicNet, DmdnUnet, NoiseInput, Tensor, Weights};
use rawgraph::Error;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load_io() -> (Vec<f32>, Vec<f32>, Tensor, usize, usize) {
    load_io_of("nn_dmdn_unet_tiny_io.safetensors", 45, 70)
}

fn load_io_of(name: &str, h: usize, wd: usize) -> (Vec<f32>, Vec<f32>, Tensor, usize, usize) {
    let mut w = Weights::load(fixture(name)).unwrap();
    let mosaic = w.take("mosaic", &[h, wd]).unwrap();
    let noise = w.take("noise_std", &[h, wd]).unwrap();
    let out = w.take("output", &[3, h, wd]).unwrap();
    (
        mosaic,
        noise,
        Tensor::from_vec([1, 3, h, wd], out).unwrap(),
        h,
        wd,
    )
}

#[test]
fn unet_matches_pytorch_for_every_tiling() {
    let model = DmdnUnet::load(fixture("nn_dmdn_unet_tiny.safetensors")).unwrap();
    assert_eq!(model.config().widths, [4, 6, 8]);
    assert_eq!(model.halo() % 8, 0);
    assert_eq!(model.config().align(), 8);
    // 32 halos clamped to 256..=1536.
    assert_eq!(model.default_tile(), (32 * model.halo()).clamp(256, 1536));
    let (mosaic, noise, expected, h, w) = load_io();
    // The fixture's frame is GRBG, the model's phase GBRG; 45 rows (odd).
    let grbg = parse_cfa("grbg").unwrap();
    for tile in [1024, 16, 24, 40] {
        let out = model
            .run(&mosaic, h, w, grbg, NoiseInput::Map(&noise), tile)
            .unwrap();
        let d = out.max_abs_diff(&expected);
        assert!(d < 2e-4, "tile {tile}: max diff to PyTorch {d}");
    }
    // The wrong phase gives a different result (the test can fail).
    let rggb = parse_cfa("rggb").unwrap();
    let out = model
        .run(&mosaic, h, w, rggb, NoiseInput::Map(&noise), 1024)
        .unwrap();
    assert!(out.max_abs_diff(&expected) > 1e-2);
}

#[test]
fn unet_through_the_dispatching_loader() {
    let net = DemosaicNet::load(fixture("nn_dmdn_unet_tiny.safetensors")).unwrap();
    assert!(matches!(net, DemosaicNet::Unet(_)));
    let flat = DemosaicNet::load(fixture("nn_dmdn_tiny.safetensors")).unwrap();
    assert!(matches!(flat, DemosaicNet::Flat(_)));
    let (mosaic, _, _, h, w) = load_io();
    let cfa = parse_cfa("bggr").unwrap();
    let a = net
        .run(&mosaic, h, w, cfa, NoiseInput::Uniform(0.05), 16)
        .unwrap();
    let map = vec![0.05f32; h * w];
    let b = net
        .run(&mosaic, h, w, cfa, NoiseInput::Map(&map), 64)
        .unwrap();
    assert!(a.max_abs_diff(&b) < 1e-5);
    // Frames smaller than the halo and odd sizes work.
    let m = vec![0.5f32; 3 * 5];
    let t = net
        .run(&m, 3, 5, cfa, NoiseInput::Uniform(0.0), 16)
        .unwrap();
    assert_eq!(t.shape(), [1, 3, 3, 5]);
    assert!(net.flops_per_pixel() > 0.0);
}

/// The four-level fixture: widths 4,6,8,5, `deep` 1, `bottom` 1, 83 x 98
/// GRBG frame (odd rows) for a GBRG model.
fn load_io4() -> (Vec<f32>, Vec<f32>, Tensor, usize, usize) {
    load_io_of("nn_dmdn_unet4_tiny_io.safetensors", 83, 98)
}

/// `model` on the GRBG fixture frame matches PyTorch's `expected` within
/// 2e-4 at several tile sizes (aligned up by the model).
fn assert_matches_pytorch(model: &DmdnUnet, io: &(Vec<f32>, Vec<f32>, Tensor, usize, usize)) {
    let (mosaic, noise, expected, h, w) = io;
    let grbg = parse_cfa("grbg").unwrap();
    for tile in [1024, 16, 24, 40, 56] {
        let out = model
            .run(mosaic, *h, *w, grbg, NoiseInput::Map(noise), tile)
            .unwrap();
        let d = out.max_abs_diff(expected);
        assert!(d < 2e-4, "tile {tile}: max diff to PyTorch {d}");
    }
}

/// `model` tiled at each of `tiles` equals its single pass bit for bit, in
/// every Bayer phase (`label` names the case in a failure).
fn assert_tiles_exact(
    model: &DmdnUnet,
    io: &(Vec<f32>, Vec<f32>, Tensor, usize, usize),
    tiles: &[usize],
    label: &str,
) {
    let (mosaic, noise, _, h, w) = io;
    for cfa in ["rggb", "grbg", "gbrg", "bggr"] {
        let cfa = parse_cfa(cfa).unwrap();
        let whole = model
            .run(mosaic, *h, *w, cfa, NoiseInput::Map(noise), 4096)
            .unwrap();
        for &tile in tiles {
            let tiled = model
                .run(mosaic, *h, *w, cfa, NoiseInput::Map(noise), tile)
                .unwrap();
            assert!(
                tiled.data() == whole.data(),
                "{label} cfa {cfa:?} tile {tile}: differs by {}",
                tiled.max_abs_diff(&whole)
            );
        }
    }
}

#[test]
fn four_level_unet_matches_pytorch_for_every_tiling() {
    let model = DmdnUnet::load(fixture("nn_dmdn_unet4_tiny.safetensors")).unwrap();
    assert_eq!(model.config().widths, [4, 6, 8, 5]);
    assert_eq!((model.config().deep, model.config().levels()), (1, 4));
    assert_eq!(model.config().align(), 16);
    // 32 halos (64 px) clamped to the maximum.
    assert_eq!((model.halo(), model.default_tile()), (64, 1536));
    let io = load_io4();
    assert_matches_pytorch(&model, &io);
    let (mosaic, noise, expected, h, w) = io;
    let grbg = parse_cfa("grbg").unwrap();
    // The 1/16 level contributes: without it (u3 zeroed) the result moves.
    let mut t = tensors_of("nn_dmdn_unet4_tiny.safetensors");
    let meta = Weights::load(fixture("nn_dmdn_unet4_tiny.safetensors"))
        .unwrap()
        .metadata()
        .clone();
    for (n, _, d) in t.iter_mut() {
        if n.starts_with("u3.") {
            d.fill(0.0);
        }
    }
    let silent = build(&t, &meta).unwrap();
    let out = silent
        .run(&mosaic, h, w, grbg, NoiseInput::Map(&noise), 1024)
        .unwrap();
    assert!(out.max_abs_diff(&expected) > 1e-3);
}

/// Tiles of any size (aligned to 16 for four levels) give the single pass
/// bit for bit, also with a halo that is a multiple of 8 but not of 16 (as
/// `fast4`'s 72): tile origins fix the down-sampling grid, not the halo.
#[test]
fn four_level_tiles_equal_the_whole_frame_bit_for_bit() {
    let t = tensors_of("nn_dmdn_unet4_tiny.safetensors");
    let meta = Weights::load(fixture("nn_dmdn_unet4_tiny.safetensors"))
        .unwrap()
        .metadata()
        .clone();
    let io = load_io4();
    for halo in ["64", "72"] {
        let mut m = meta.clone();
        m.insert("halo".into(), halo.into());
        let model = build(&t, &m).unwrap();
        assert_tiles_exact(&model, &io, &[16, 32, 48, 80], &format!("halo {halo}"));
    }
}

/// Every tensor of a fixture, by name (sorted), with its shape.
fn tensors_of(name: &str) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let path = fixture(name);
    let bytes = std::fs::read(&path).unwrap();
    let mut w = Weights::from_bytes(&path, &bytes).unwrap();
    let mut names: Vec<String> = w.names().map(String::from).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let shape = w.shape(&n).unwrap().to_vec();
            let data = w.take(&n, &shape).unwrap();
            (n, shape, data)
        })
        .collect()
}

fn build(
    t: &[(String, Vec<usize>, Vec<f32>)],
    m: &HashMap<String, String>,
) -> rawgraph::Result<DmdnUnet> {
    DmdnUnet::from_weights(Weights::from_bytes("x", &write_st(t, m)).unwrap())
}

fn model_err(r: rawgraph::Result<DmdnUnet>) -> String {
    match r {
        Err(Error::Model { reason, .. }) => reason,
        Err(e) => panic!("expected Error::Model, got {e}"),
        Ok(_) => panic!("expected Error::Model, got a model"),
    }
}

/// Each of `missing` left out, and each `(name, shape)` of `misshaped`
/// given that shape (zeros), is an error naming the tensor.
fn assert_tensor_errors(
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    meta: &HashMap<String, String>,
    missing: &[&str],
    misshaped: &[(&str, Vec<usize>)],
) {
    for &name in missing {
        let bad: Vec<_> = tensors.iter().filter(|t| t.0 != name).cloned().collect();
        let r = model_err(build(&bad, meta));
        assert!(r.contains(name), "{name}: {r}");
    }
    for (name, shape) in misshaped {
        let mut bad = tensors.to_vec();
        let i = bad.iter().position(|t| t.0 == *name).unwrap();
        bad[i].1 = shape.clone();
        bad[i].2 = vec![0.0; shape.iter().product()];
        let r = model_err(build(&bad, meta));
        assert!(r.contains(name), "{name} {shape:?}: {r}");
    }
}

#[test]
fn bad_unet_files_are_typed_errors() {
    let path = fixture("nn_dmdn_unet_tiny.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let mut w = Weights::from_bytes(&path, &bytes).unwrap();
    let meta = w.metadata().clone();
    let mut names: Vec<String> = w.names().map(String::from).collect();
    names.sort();
    let mut tensors = Vec::new();
    for n in &names {
        let shape = w.shape(n).unwrap().to_vec();
        let data = w.take(n, &shape).unwrap();
        tensors.push((n.clone(), shape, data));
    }
    let build = |t: &[(String, Vec<usize>, Vec<f32>)], m: &HashMap<String, String>| {
        DmdnUnet::from_weights(Weights::from_bytes("x", &write_st(t, m)).unwrap())
    };
    assert!(build(&tensors, &meta).is_ok());
    // Metadata that does not match the tensors, or is malformed.
    for (k, v) in [
        ("widths", "4,6"),
        ("widths", "4,6,9"),
        ("widths", "4,6,8,5"),
        ("deep", "1"),
        ("deep", "x"),
        ("widths", "a,b,c"),
        ("bottom", "2"),
        ("halo", "12"),
        ("phase", "rgbx"),
        ("arch", "dmdn"),
        ("version", "2"),
        ("fullres_width", "0"),
        ("base", "none"),
    ] {
        let mut m = meta.clone();
        m.insert(k.into(), v.into());
        let r = model_err(build(&tensors, &m));
        assert!(!r.is_empty(), "{k}={v}");
    }
    // Missing and wrongly shaped tensors name the tensor.
    let bad: Vec<_> = tensors
        .iter()
        .filter(|t| t.0 != "u2.bias")
        .cloned()
        .collect();
    let r = model_err(build(&bad, &meta));
    assert!(r.contains("u2.bias"), "{r}");
    let mut bad = tensors.clone();
    let i = bad.iter().position(|t| t.0 == "e2a.weight").unwrap();
    bad[i].1 = vec![6, 4, 1, 9];
    let r = model_err(build(&bad, &meta));
    assert!(r.contains("e2a.weight"), "{r}");
    // Truncated file through the dispatching loader.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() - 50]).unwrap();
    assert!(matches!(DemosaicNet::load(&p), Err(Error::Model { .. })));
}

#[test]
fn bad_four_level_files_are_typed_errors() {
    let tensors = tensors_of("nn_dmdn_unet4_tiny.safetensors");
    let meta = Weights::load(fixture("nn_dmdn_unet4_tiny.safetensors"))
        .unwrap()
        .metadata()
        .clone();
    assert!(build(&tensors, &meta).is_ok());
    // Metadata that does not match the tensors, or is malformed.
    for (k, v, needle) in [
        ("widths", "4,6,8", "fourth width"),
        ("widths", "4,6,8,6", "e4a.weight"),
        ("widths", "4,6,8,5,2", "three or four"),
        ("widths", "4,6,8,0", "1..=512"),
        ("deep", "0", "unexpected tensor 'e4.0"),
        ("deep", "2", "e4.1.weight"),
        ("deep", "9", "deep"),
        ("halo", "60", "halo"),
    ] {
        let mut m = meta.clone();
        m.insert(k.into(), v.into());
        let r = model_err(build(&tensors, &m));
        assert!(r.contains(needle), "{k}={v}: {r}");
    }
    // A fourth width without `deep` is a fourth level without 3x3 convs
    // there: the file's e4.0 is then unexpected.
    let mut m = meta.clone();
    m.remove("deep");
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("unexpected tensor 'e4.0"), "{r}");
    // `deep` without a fourth width, the tensors removed: refused by name.
    let three: Vec<_> = tensors
        .iter()
        .filter(|t| !t.0.starts_with("e4") && !t.0.starts_with("u3"))
        .cloned()
        .collect();
    let mut m = meta.clone();
    m.insert("widths".into(), "4,6,8".into());
    let r = model_err(build(&three, &m));
    assert!(r.contains("fourth width"), "{r}");
    m.insert("deep".into(), "0".into());
    assert!(build(&three, &m).is_ok());
    // Wrongly shaped and missing 1/16-level tensors name the tensor.
    for (name, shape) in [
        ("e4a.weight", vec![5, 6, 3, 3]),
        ("e4a.weight", vec![5, 8, 1, 1]),
        ("e4.0.weight", vec![5, 5, 1, 1]),
        ("u3.weight", vec![8, 5, 1, 1]),
        ("u3.weight", vec![32, 5, 3, 3]),
        ("u3.bias", vec![8]),
    ] {
        let mut bad = tensors.clone();
        let i = bad.iter().position(|t| t.0 == name).unwrap();
        bad[i].1 = shape.clone();
        let n: usize = shape.iter().product();
        bad[i].2 = vec![0.0; n];
        let r = model_err(build(&bad, &meta));
        assert!(r.contains(name), "{name} {shape:?}: {r}");
    }
    for name in ["e4a.bias", "e4.0.weight", "u3.weight"] {
        let bad: Vec<_> = tensors.iter().filter(|t| t.0 != name).cloned().collect();
        let r = model_err(build(&bad, &meta));
        assert!(r.contains(name), "{name}: {r}");
    }
}

/// The shipped raw-path models (in `$RAWGRAPH_MODELS` when set, as the
/// stage finds them, else calibration/models), when present, load, are
/// `dmdn_unet`, stay within the compute budgets (multiply-adds per
/// pixel, three or four levels) and tile exactly: small tiles give the
/// single pass bit for bit.
#[test]
fn shipped_raw_models_load_within_budget() {
    let dir = std::env::var_os("RAWGRAPH_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("calibration/models"));
    // `fast` ~5 k: `fast4` 5,167, `fastb` 5,272 (its classical base op,
    // ~0.35 s at 12 MP, is counted apart); `fastc_raw` (the `fastc` size:
    // `fastb` + chroma guided filters, whose box sums count as
    // multiply-adds) 5,396; `fastd_raw` (`fastc` + a third chroma radius
    // and three luminance guided filters) 5,548.
    for (name, max_macs) in [
        ("fast_raw", 5_300.0),
        ("fastc_raw", 5_400.0),
        ("fastd_raw", 5_600.0),
        ("quality_raw", 20_000.0),
        // `quality` with `fastd`'s heads: 19,388
        ("qualityd_raw", 20_000.0),
    ] {
        let p = dir.join(format!("demosaic_{name}.safetensors"));
        if !p.exists() {
            eprintln!("SKIPPED: {} not present", p.display());
            continue;
        }
        let m = DmdnUnet::load(&p).unwrap();
        let macs = m.flops_per_pixel() / 2.0;
        assert!(macs <= max_macs, "{name}: {macs} MAC/px");
        let declared: f64 = m.metadata()["macs_per_pixel"].parse().unwrap();
        assert!(
            (declared - macs).abs() < 2.0,
            "{name}: metadata {declared} vs {macs}"
        );
        let (h, w) = (75, 98);
        let mosaic: Vec<f32> = (0..h * w)
            .map(|i| ((i * 7919 % 1009) as f32 / 1009.0).powf(1.5))
            .collect();
        let cfa = parse_cfa("grbg").unwrap();
        let noise = NoiseInput::Uniform(0.01);
        let whole = m.run(&mosaic, h, w, cfa, noise, 4096).unwrap();
        let tiled = m.run(&mosaic, h, w, cfa, noise, 32).unwrap();
        assert!(
            tiled.data() == whole.data(),
            "{name}: tiles differ by {}",
            tiled.max_abs_diff(&whole)
        );
    }
}

/// The gated fixture: widths 4,6,8, `bottom` 1, `gate_radii` 2,6 with
/// random gate weights, 61 x 74 GRBG frame (odd rows) for a GBRG model.
fn load_io_gate() -> (Vec<f32>, Vec<f32>, Tensor, usize, usize) {
    load_io_of("nn_dmdn_unet_gate_tiny_io.safetensors", 61, 74)
}

fn meta_of(name: &str) -> HashMap<String, String> {
    Weights::load(fixture(name)).unwrap().metadata().clone()
}

#[test]
fn gated_unet_matches_pytorch_for_every_tiling() {
    let name = "nn_dmdn_unet_gate_tiny.safetensors";
    let model = DmdnUnet::load(fixture(name)).unwrap();
    assert_eq!(model.config().gate_radii, [2, 6]);
    assert_eq!(model.halo(), 40);
    let io = load_io_gate();
    assert_matches_pytorch(&model, &io);
    let (mosaic, noise, expected, h, w) = io;
    let grbg = parse_cfa("grbg").unwrap();
    // The gate contributes: without it the result moves.
    let t: Vec<_> = tensors_of(name)
        .into_iter()
        .filter(|t| !t.0.starts_with("gate."))
        .collect();
    let mut m = meta_of(name);
    m.remove("gate_radii");
    let plain = build(&t, &m).unwrap();
    let out = plain
        .run(&mosaic, h, w, grbg, NoiseInput::Map(&noise), 1024)
        .unwrap();
    assert!(out.max_abs_diff(&expected) > 1e-3);
    // The gate's cost: K (c1 + 9) multiply-adds per pixel more.
    let extra = model.flops_per_pixel() - plain.flops_per_pixel();
    assert_eq!(extra, 2.0 * 2.0 * (4.0 + 9.0));
}

/// Tiles give the single pass bit for bit at the gate's halo: the box means
/// are direct sums in an order that does not depend on the tile origin.
#[test]
fn gated_tiles_equal_the_whole_frame_bit_for_bit() {
    let model = DmdnUnet::load(fixture("nn_dmdn_unet_gate_tiny.safetensors")).unwrap();
    assert_tiles_exact(&model, &load_io_gate(), &[16, 24, 32, 48], "gated");
}

/// The fixture `name` builds, and with its metadata `key` set to each
/// case's value it fails with an error that contains the case's needle.
fn assert_meta_errors(name: &str, key: &str, cases: &[(&str, &str)]) {
    let tensors = tensors_of(name);
    let meta = meta_of(name);
    assert!(build(&tensors, &meta).is_ok());
    for (v, needle) in cases {
        let mut m = meta.clone();
        m.insert(key.into(), (*v).into());
        let r = model_err(build(&tensors, &m));
        assert!(r.contains(needle), "{key}={v}: {r}");
    }
}

#[test]
fn bad_gated_files_are_typed_errors() {
    let name = "nn_dmdn_unet_gate_tiny.safetensors";
    assert_meta_errors(
        name,
        "gate_radii",
        &[
            ("0,6", "gate_radii"),
            ("2,17", "gate_radii"),
            ("1,2,3,4,5", "gate_radii"),
            ("2,x", "gate_radii"),
            ("", "gate_radii"),
            ("2", "gate.weight"),
            ("2,6,3", "gate.weight"),
        ],
    );
    let tensors = tensors_of(name);
    let meta = meta_of(name);
    // Gate tensors without `gate_radii`, and `gate_radii` without them.
    let mut m = meta.clone();
    m.remove("gate_radii");
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("unexpected tensor 'gate."), "{r}");
    let plain: Vec<_> = tensors
        .iter()
        .filter(|t| !t.0.starts_with("gate."))
        .cloned()
        .collect();
    let r = model_err(build(&plain, &meta));
    assert!(r.contains("gate.weight"), "{r}");
    m.remove("gate_radii");
    assert!(build(&plain, &m).is_ok());
    // Wrongly shaped gate tensors name the tensor.
    for (name, shape) in [
        ("gate.weight", vec![8, 6, 1, 1]),
        ("gate.weight", vec![8, 4, 3, 3]),
        ("gate.weight", vec![4, 4, 1, 1]),
        ("gate.bias", vec![4]),
    ] {
        let mut bad = tensors.clone();
        let i = bad.iter().position(|t| t.0 == name).unwrap();
        bad[i].1 = shape.clone();
        bad[i].2 = vec![0.0; shape.iter().product()];
        let r = model_err(build(&bad, &meta));
        assert!(r.contains(name), "{name} {shape:?}: {r}");
    }
}

/// The fixture over a classical base: widths 4,6,8, `bottom` 1,
/// `gate_radii` 2,6, `base` rcd_mlri with random gate weights, 53 x 66
/// GRBG frame (odd rows) for a GBRG model; its io file also holds `base`,
/// the engine's `demosaic_rcd_mlri` of the frame (3, H, W).
const BASE_FIXTURE: &str = "nn_dmdn_unet_base_tiny.safetensors";

/// A fixture's mosaic, noise map, PyTorch output and size (rows, columns).
type Io = (Vec<f32>, Vec<f32>, Tensor, usize, usize);

fn load_io_base() -> (Io, Vec<f32>) {
    let (h, w) = (53, 66);
    let io = load_io_of("nn_dmdn_unet_base_tiny_io.safetensors", h, w);
    let mut f = Weights::load(fixture("nn_dmdn_unet_base_tiny_io.safetensors")).unwrap();
    let base = f.take("base", &[3, h, w]).unwrap();
    (io, base)
}

/// The fixture's GRBG frame with its noise map and `base`.
fn grbg_frame<'a>(
    mosaic: &'a [f32],
    noise: &'a [f32],
    h: usize,
    w: usize,
    base: Option<&'a [f32]>,
) -> BayerFrame<'a> {
    BayerFrame {
        mosaic,
        h,
        w,
        cfa: parse_cfa("grbg").unwrap(),
        noise: NoiseInput::Map(noise),
        base,
    }
}

/// The network fed the fixture's base matches PyTorch's `run_full` at every
/// tiling, and the base contributes (through fr1 and the gated blend).
#[test]
fn base_unet_with_the_fixture_base_matches_pytorch() {
    let model = DmdnUnet::load(fixture(BASE_FIXTURE)).unwrap();
    assert_eq!(model.config().base, "rcd_mlri");
    let b = model.classical_base().unwrap();
    assert_eq!((b.name(), b.op()), ("rcd_mlri", "demosaic_rcd_mlri"));
    assert_eq!(model.halo(), 40);
    let ((mosaic, noise, expected, h, w), base) = load_io_base();
    let frame = |base| grbg_frame(&mosaic, &noise, h, w, base);
    for tile in [1024, 16, 24, 40, 56] {
        let out = model.run_frame(frame(Some(&base[..])), tile).unwrap();
        let d = out.max_abs_diff(&expected);
        assert!(d < 2e-4, "tile {tile}: max diff to PyTorch {d}");
    }
    // Another base gives another result (the test can fail) ...
    let other: Vec<f32> = base.iter().map(|v| v * 0.8).collect();
    let out = model.run_frame(frame(Some(&other[..])), 1024).unwrap();
    assert!(out.max_abs_diff(&expected) > 1e-3);
    // ... and the base is required, and refused by a model without one.
    assert!(matches!(
        model.run_frame(frame(None), 1024),
        Err(Error::Invalid(_))
    ));
    let plain = DmdnUnet::load(fixture("nn_dmdn_unet_gate_tiny.safetensors")).unwrap();
    assert!(plain.classical_base().is_none());
    assert!(plain.run_frame(frame(Some(&base[..])), 1024).is_err());
}

/// The paths that compute the base themselves (the model's `run`, the
/// dispatching loader's, the stage) from the mosaic: the engine's base
/// equals the fixture's, the output PyTorch's, and tiles the single pass
/// bit for bit in every phase.
#[test]
fn base_unet_computing_its_base_matches_pytorch() {
    use rawgraph::frame::{Mosaic, Value};
    use rawgraph::raw::{CfaPattern, RawMeta};
    use rawgraph::stages::{compile, RunCtx};
    use std::sync::Arc;

    let model = DmdnUnet::load(fixture(BASE_FIXTURE)).unwrap();
    let ((mosaic, noise, expected, h, w), base) = load_io_base();
    let grbg = parse_cfa("grbg").unwrap();
    let ours = model
        .classical_base()
        .unwrap()
        .run(&mosaic, h, w, grbg)
        .unwrap();
    let d = ours
        .iter()
        .zip(&base)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(d < 1e-6, "engine base vs the fixture's: {d}");
    let io = (mosaic.clone(), noise.clone(), expected.clone(), h, w);
    assert_matches_pytorch(&model, &io);
    let net = DemosaicNet::load(fixture(BASE_FIXTURE)).unwrap();
    assert_eq!(net.classical_base().unwrap().op(), "demosaic_rcd_mlri");
    let out = net
        .run(&mosaic, h, w, grbg, NoiseInput::Map(&noise), 24)
        .unwrap();
    assert!(out.max_abs_diff(&expected) < 2e-4);
    assert_tiles_exact(&model, &io, &[16, 24, 32, 48], "base");

    // The stage (uniform σ: it takes per-pixel σ only from a noise model)
    // on a GRBG mosaic gives the model's `run` bit for bit.
    let stage = compile(
        "demosaic_denoise_learned",
        serde_json::json!({ "model": fixture(BASE_FIXTURE), "sigma": 0.03, "tile": 32 }),
    )
    .unwrap();
    let m = Mosaic::normalized(
        w,
        h,
        CfaPattern::Grbg,
        mosaic.clone(),
        RawMeta::bayer("fixture", w, h, CfaPattern::Grbg),
    );
    let ctx = RunCtx { stage_id: "dm" };
    let got = match stage
        .run_cpu(&ctx, vec![Value::Mosaic(Arc::new(m))])
        .unwrap()
    {
        Value::Image(img) => img.data.clone(),
        other => panic!("expected an image, got {:?}", other.kind()),
    };
    let want = model
        .run(&mosaic, h, w, grbg, NoiseInput::Uniform(0.03), 32)
        .unwrap();
    assert!(
        got == want.data(),
        "stage vs run: {:?}",
        want.max_abs_diff(&Tensor::from_vec([1, 3, h, w], got.clone()).unwrap())
    );
}

/// The classical base's cost: 3 fullres_width 9 + c1 + 9 multiply-adds per
/// pixel over the same model without it (as training's `macs_per_pixel`),
/// the classical op not counted.
#[test]
fn base_unet_counts_the_base_path() {
    let base = DmdnUnet::load(fixture(BASE_FIXTURE)).unwrap();
    let gated = DmdnUnet::load(fixture("nn_dmdn_unet_gate_tiny.safetensors")).unwrap();
    assert_eq!(base.config().widths, gated.config().widths);
    assert_eq!(base.config().gate_radii, gated.config().gate_radii);
    let extra = base.flops_per_pixel() - gated.flops_per_pixel();
    assert_eq!(extra, 2.0 * (3.0 * 4.0 * 9.0 + 4.0 + 9.0));
}

#[test]
fn bad_base_files_are_typed_errors() {
    // Unknown bases and ops that are not classical demosaics; the
    // bilinear base has a 6-channel fr1 and no base gate.
    assert_meta_errors(
        BASE_FIXTURE,
        "base",
        &[
            ("denoise_learned", "not a classical demosaic"),
            ("rcd_mlri2", "not a classical demosaic"),
            ("", "not a classical demosaic"),
            ("testing", "not a classical demosaic"),
            ("bilinear", "fr1.weight"),
        ],
    );
    let tensors = tensors_of(BASE_FIXTURE);
    let meta = meta_of(BASE_FIXTURE);
    // No `base` is the bilinear base.
    let mut m = meta.clone();
    m.remove("base");
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("fr1.weight"), "{r}");
    // Other classical demosaics are accepted.
    m.insert("base".into(), "mhc".into());
    let b = build(&tensors, &m).unwrap();
    assert_eq!(b.classical_base().unwrap().op(), "demosaic_mhc");
    // A file over the bilinear base declared over a classical one lacks
    // the base gate.
    let plain = tensors_of("nn_dmdn_unet_gate_tiny.safetensors");
    let mut m = meta_of("nn_dmdn_unet_gate_tiny.safetensors");
    m.insert("base".into(), "rcd_mlri".into());
    let r = model_err(build(&plain, &m));
    assert!(r.contains("bgate.weight"), "{r}");
    // Missing and wrongly shaped base tensors name the tensor.
    assert_tensor_errors(
        &tensors,
        &meta,
        &["bgate.weight", "bgate.bias"],
        &[
            ("bgate.weight", vec![4, 6, 1, 1]),
            ("bgate.weight", vec![4, 4, 3, 3]),
            ("bgate.weight", vec![8, 4, 1, 1]),
            ("bgate.bias", vec![1]),
            ("fr1.weight", vec![4, 6, 3, 3]),
            ("fr1.weight", vec![4, 10, 3, 3]),
        ],
    );
    // Through the file loader the error names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad_base.safetensors");
    let mut m = meta.clone();
    m.insert("base".into(), "denoise_learned".into());
    std::fs::write(&p, write_st(&tensors, &m)).unwrap();
    match DemosaicNet::load(&p) {
        Err(e @ Error::Model { .. }) => assert!(e.to_string().contains("bad_base"), "{e}"),
        other => panic!("expected Error::Model, got {other:?}"),
    }
}

/// The chroma fixture: the base fixture's graph (widths 4,6,8, `bottom` 1,
/// `gate_radii` 2,6, `base` rcd_mlri) with guided-filter `chroma_radii`
/// 2,4 (`chroma_eps_k` 0.5, `chroma_eps_floor` 1e-6) and random gate
/// weights, halo 48, 69 x 78 GRBG frame (odd rows) for a GBRG model; its
/// io file holds `base` as the base fixture's.
const CHROMA_FIXTURE: &str = "nn_dmdn_unet_chroma_tiny.safetensors";

fn load_io_chroma() -> (Io, Vec<f32>) {
    let (h, w) = (69, 78);
    let io = load_io_of("nn_dmdn_unet_chroma_tiny_io.safetensors", h, w);
    let mut f = Weights::load(fixture("nn_dmdn_unet_chroma_tiny_io.safetensors")).unwrap();
    let base = f.take("base", &[3, h, w]).unwrap();
    (io, base)
}

/// The chroma-smoothed network matches PyTorch's `run_full` at every
/// tiling (with the fixture's base, and computing its own), tiles equal
/// the single pass bit for bit in every phase at the file's halo (as
/// PyTorch measures it in float64), and the stage contributes.
#[test]
fn chroma_unet_matches_pytorch_for_every_tiling() {
    let model = DmdnUnet::load(fixture(CHROMA_FIXTURE)).unwrap();
    assert_eq!(model.config().gate_radii, [2, 6]);
    assert_eq!(model.config().chroma_radii, [2, 4]);
    // The gate fixture's 40 and more: the guided filters reach 8 px further.
    assert_eq!(model.halo(), 48);
    // The stage's cost: J (c1 + 40) + 12 multiply-adds per pixel.
    let extra = 2.0 * (2.0 * (4.0 + 40.0) + 12.0);
    let plain = assert_smoothing_fixture(
        &model,
        CHROMA_FIXTURE,
        load_io_chroma(),
        "cgate.",
        &["chroma_radii"],
        extra,
    );
    assert!(plain.config().chroma_radii.is_empty());
}

#[test]
fn bad_chroma_files_are_typed_errors() {
    assert_meta_errors(
        CHROMA_FIXTURE,
        "chroma_radii",
        &[
            ("0,12", "chroma_radii"),
            ("4,17", "chroma_radii"),
            ("1,2,3,4,5", "chroma_radii"),
            ("4,x", "chroma_radii"),
            ("", "chroma_radii"),
            ("2,9", "chroma_radii"),
            ("4", "cgate.weight"),
            ("2,4,8", "cgate.weight"),
        ],
    );
    for (key, bad) in [
        ("chroma_eps_k", "x"),
        ("chroma_eps_k", "-1"),
        ("chroma_eps_k", "NaN"),
        ("chroma_eps_floor", "0"),
        ("chroma_eps_floor", "inf"),
    ] {
        assert_meta_errors(CHROMA_FIXTURE, key, &[(bad, key)]);
    }
    let tensors = tensors_of(CHROMA_FIXTURE);
    let meta = meta_of(CHROMA_FIXTURE);
    // `chroma_radii` without `gate_radii` (the gate tensors removed too).
    let no_gate: Vec<_> = tensors
        .iter()
        .filter(|t| !t.0.starts_with("gate."))
        .cloned()
        .collect();
    let mut m = meta.clone();
    m.remove("gate_radii");
    let r = model_err(build(&no_gate, &m));
    assert!(r.contains("need gate_radii"), "{r}");
    // A missing regulariser names its key.
    for key in ["chroma_eps_k", "chroma_eps_floor"] {
        let mut m = meta.clone();
        m.remove(key);
        let r = model_err(build(&tensors, &m));
        assert!(r.contains(key), "{key}: {r}");
    }
    // `cgate` without `chroma_radii`, and `chroma_radii` without `cgate`.
    let mut m = meta.clone();
    m.remove("chroma_radii");
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("unexpected tensor 'cgate."), "{r}");
    // Missing and wrongly shaped chroma-gate tensors name the tensor.
    assert_tensor_errors(
        &tensors,
        &meta,
        &["cgate.weight", "cgate.bias"],
        &[
            ("cgate.weight", vec![8, 6, 1, 1]),
            ("cgate.weight", vec![8, 4, 3, 3]),
            ("cgate.weight", vec![4, 4, 1, 1]),
            ("cgate.bias", vec![4]),
        ],
    );
    // Through the file loader the error names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad_chroma.safetensors");
    let mut m = meta.clone();
    m.remove("gate_radii");
    std::fs::write(&p, write_st(&no_gate, &m)).unwrap();
    match DemosaicNet::load(&p) {
        Err(e @ Error::Model { .. }) => assert!(e.to_string().contains("bad_chroma"), "{e}"),
        other => panic!("expected Error::Model, got {other:?}"),
    }
}

/// The luminance fixture (`fastd`'s shape): the chroma fixture's graph
/// with `chroma_radii` 2,4,8 and luminance guided filters `lum_radii`
/// 2,4,8 (`lum_eps_k` 0.25) and random gate weights, halo 56, 85 x 94 GRBG
/// frame (odd rows) for a GBRG model; its io file holds `base`.
const LUM_FIXTURE: &str = "nn_dmdn_unet_lum_tiny.safetensors";

fn load_io_lum() -> (Io, Vec<f32>) {
    let (h, w) = (85, 94);
    let io = load_io_of("nn_dmdn_unet_lum_tiny_io.safetensors", h, w);
    let mut f = Weights::load(fixture("nn_dmdn_unet_lum_tiny_io.safetensors")).unwrap();
    let base = f.take("base", &[3, h, w]).unwrap();
    (io, base)
}

/// The luminance-smoothed network matches PyTorch's `run_full` at every
/// tiling (with the fixture's base, and computing its own), tiles equal
/// the single pass bit for bit in every phase at the file's halo, and the
/// luminance stage contributes.
#[test]
fn lum_unet_matches_pytorch_for_every_tiling() {
    let model = DmdnUnet::load(fixture(LUM_FIXTURE)).unwrap();
    assert_eq!(model.config().gate_radii, [2, 6]);
    assert_eq!(model.config().chroma_radii, [2, 4, 8]);
    assert_eq!(model.config().lum_radii, [2, 4, 8]);
    assert_eq!(model.halo(), 56);
    // The stage's cost: M (c1 + 16) multiply-adds per pixel.
    let extra = 2.0 * (3.0 * (4.0 + 16.0));
    let plain = assert_smoothing_fixture(
        &model,
        LUM_FIXTURE,
        load_io_lum(),
        "lgate.",
        &["lum_radii", "lum_eps_k"],
        extra,
    );
    assert!(plain.config().lum_radii.is_empty());
}

/// The half-resolution fixture (`fastd` since run 36): the luminance
/// fixture's graph with `guided_subsample` 2, halo 56, 87 x 98 GRBG frame
/// (odd rows) for a GBRG model; its io file holds `base`.
const HALF_FIXTURE: &str = "nn_dmdn_unet_half_tiny.safetensors";

fn load_io_half() -> (Io, Vec<f32>) {
    let (h, w) = (87, 98);
    let io = load_io_of("nn_dmdn_unet_half_tiny_io.safetensors", h, w);
    let mut f = Weights::load(fixture("nn_dmdn_unet_half_tiny_io.safetensors")).unwrap();
    let base = f.take("base", &[3, h, w]).unwrap();
    (io, base)
}

/// Guided filters at half resolution match PyTorch's `run_full` at every
/// tiling, tiles equal the single pass bit for bit, the luminance stage
/// contributes, and the file's `guided_subsample` is what runs: the same
/// weights at full resolution give another image.
#[test]
fn half_resolution_unet_matches_pytorch_for_every_tiling() {
    let model = DmdnUnet::load(fixture(HALF_FIXTURE)).unwrap();
    assert_eq!(model.config().guided_subsample, 2);
    assert_eq!(model.config().chroma_radii, [2, 4, 8]);
    assert_eq!(model.config().lum_radii, [2, 4, 8]);
    assert_eq!(model.halo(), 56);
    // The luminance stage's cost at half resolution: M (c1 + 10).
    let extra = 2.0 * (3.0 * (4.0 + 10.0));
    let io = load_io_half();
    let plain = assert_smoothing_fixture(
        &model,
        HALF_FIXTURE,
        io.clone(),
        "lgate.",
        &["lum_radii", "lum_eps_k"],
        extra,
    );
    assert_eq!(plain.config().guided_subsample, 2);
    let ((mosaic, noise, expected, h, w), base) = io;
    let mut m = meta_of(HALF_FIXTURE);
    m.remove("guided_subsample");
    let full = build(&tensors_of(HALF_FIXTURE), &m).unwrap();
    assert_eq!(full.config().guided_subsample, 1);
    let out = full
        .run_frame(grbg_frame(&mosaic, &noise, h, w, Some(&base[..])), 1024)
        .unwrap();
    let d = out.max_abs_diff(&expected);
    assert!(d > 1e-3, "full resolution moves the output by {d}");
}

#[test]
fn bad_guided_subsample_is_a_typed_error() {
    assert_meta_errors(
        HALF_FIXTURE,
        "guided_subsample",
        &[
            ("0", "guided_subsample"),
            ("3", "guided_subsample"),
            ("x", "guided_subsample"),
            ("-2", "guided_subsample"),
        ],
    );
    // an odd radius cannot be halved
    let mut m = meta_of(HALF_FIXTURE);
    m.insert("lum_radii".into(), "2,4,5".into());
    let r = model_err(build(&tensors_of(HALF_FIXTURE), &m));
    assert!(r.contains("guided_subsample"), "{r}");
    // without chroma smoothing there is no guided filter to subsample
    let tensors: Vec<_> = tensors_of(HALF_FIXTURE)
        .into_iter()
        .filter(|t| !t.0.starts_with("cgate.") && !t.0.starts_with("lgate."))
        .collect();
    let mut m = meta_of(HALF_FIXTURE);
    for k in ["chroma_radii", "lum_radii"] {
        m.remove(k);
    }
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("guided_subsample 2 needs chroma_radii"), "{r}");
}

/// A smoothing-stage fixture's checks (`model` loaded from `name`, over
/// the `rcd_mlri` base): it matches PyTorch at every tiling with the
/// fixture's base and computing its own, tiles equal the single pass bit
/// for bit, and without the stage (tensors starting with `gate_prefix` and
/// metadata `meta_keys` removed) the output moves and costs
/// `extra_flops` fewer FLOPs per pixel. Returns that stage-less model.
fn assert_smoothing_fixture(
    model: &DmdnUnet,
    name: &str,
    ((mosaic, noise, expected, h, w), base): (Io, Vec<f32>),
    gate_prefix: &str,
    meta_keys: &[&str],
    extra_flops: f64,
) -> DmdnUnet {
    assert_eq!(model.config().base, "rcd_mlri");
    let frame = |base| grbg_frame(&mosaic, &noise, h, w, base);
    for tile in [1024, 16, 24, 40, 56] {
        let out = model.run_frame(frame(Some(&base[..])), tile).unwrap();
        let d = out.max_abs_diff(&expected);
        assert!(d < 2e-4, "{name} tile {tile}: max diff to PyTorch {d}");
    }
    let io = (mosaic.clone(), noise.clone(), expected.clone(), h, w);
    assert_matches_pytorch(model, &io);
    assert_tiles_exact(model, &io, &[16, 24, 32, 48], name);
    let t: Vec<_> = tensors_of(name)
        .into_iter()
        .filter(|t| !t.0.starts_with(gate_prefix))
        .collect();
    let mut m = meta_of(name);
    for k in meta_keys {
        m.remove(*k);
    }
    let plain = build(&t, &m).unwrap();
    let out = plain.run_frame(frame(Some(&base[..])), 1024).unwrap();
    assert!(
        out.max_abs_diff(&expected) > 1e-3,
        "{name}: the stage contributes"
    );
    assert_eq!(
        model.flops_per_pixel() - plain.flops_per_pixel(),
        extra_flops
    );
    plain
}

#[test]
fn bad_lum_files_are_typed_errors() {
    assert_meta_errors(
        LUM_FIXTURE,
        "lum_radii",
        &[
            ("0,4,8", "lum_radii"),
            ("4,17", "lum_radii"),
            ("1,2,3,4,5", "lum_radii"),
            ("4,x", "lum_radii"),
            ("", "lum_radii"),
            ("2,9", "lum_radii"),
            ("4", "lgate.weight"),
            ("2,4", "lgate.weight"),
        ],
    );
    for bad in ["x", "-1", "NaN", "inf"] {
        assert_meta_errors(LUM_FIXTURE, "lum_eps_k", &[(bad, "lum_eps_k")]);
    }
    let tensors = tensors_of(LUM_FIXTURE);
    let meta = meta_of(LUM_FIXTURE);
    // `lum_radii` without `chroma_radii` (the chroma gate removed too).
    let no_chroma: Vec<_> = tensors
        .iter()
        .filter(|t| !t.0.starts_with("cgate."))
        .cloned()
        .collect();
    let mut m = meta.clone();
    m.remove("chroma_radii");
    let r = model_err(build(&no_chroma, &m));
    assert!(r.contains("need chroma_radii"), "{r}");
    // A missing regulariser names its key.
    let mut m = meta.clone();
    m.remove("lum_eps_k");
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("lum_eps_k"), "{r}");
    // `lgate` without `lum_radii`.
    let mut m = meta.clone();
    m.remove("lum_radii");
    let r = model_err(build(&tensors, &m));
    assert!(r.contains("unexpected tensor 'lgate."), "{r}");
    // Missing and wrongly shaped luminance-gate tensors name the tensor.
    assert_tensor_errors(
        &tensors,
        &meta,
        &["lgate.weight", "lgate.bias"],
        &[
            ("lgate.weight", vec![12, 6, 1, 1]),
            ("lgate.weight", vec![12, 4, 3, 3]),
            ("lgate.weight", vec![8, 4, 1, 1]),
            ("lgate.bias", vec![8]),
        ],
    );
    // Through the file loader the error names the file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad_lum.safetensors");
    std::fs::write(&p, write_st(&no_chroma, &m)).unwrap();
    match DemosaicNet::load(&p) {
        Err(e @ Error::Model { .. }) => assert!(e.to_string().contains("bad_lum"), "{e}"),
        other => panic!("expected Error::Model, got {other:?}"),
    }
}
