//! DNG writer -> our reader (rawler via src/raw/decode.rs): every tag we
//! write comes back exactly, for all Bayer phases, strips and tiles,
//! uncompressed and lossless JPEG.

use rawgraph::raw::decode::decode_file;
use rawgraph::raw::dng_write::{
    dng_representable, write_dng, DngCompression, DngOptions, DngTiling,
};
use rawgraph::raw::{
    BlackLevel, CfaPattern, ColorMatrix, Illuminant, NoiseProfile, Orientation, RawFrame, RawMeta,
    Rect, DEFAULT_MAX_MEGAPIXELS,
};

fn frame(w: usize, h: usize, cfa: CfaPattern) -> RawFrame {
    let mut meta = RawMeta::bayer("roundtrip", w, h, cfa);
    meta.black = BlackLevel {
        repeat_width: 2,
        repeat_height: 2,
        values: vec![256.0, 257.0, 258.0, 259.0],
    };
    meta.white = [16383.0; 3];
    meta.bits = 14;
    meta.wb_gains = Some([2.137, 1.0, 1.583]);
    meta.color_matrices = vec![
        ColorMatrix {
            illuminant: Illuminant::StdA,
            xyz_to_cam: [
                [0.81, -0.21, -0.05],
                [-0.42, 1.23, 0.21],
                [-0.09, 0.2, 0.71],
            ],
        },
        ColorMatrix {
            illuminant: Illuminant::D65,
            xyz_to_cam: [
                [0.4716, 0.0603, -0.0830],
                [-0.7798, 1.5474, 0.2480],
                [-0.1496, 0.1937, 0.6651],
            ],
        },
    ];
    meta.noise_profile = Some(NoiseProfile {
        a: [1.25e-4, 1.0e-4, 1.5e-4],
        b: [3.0e-7, 2.5e-7, 3.5e-7],
    });
    meta.crop = Some(Rect {
        x: 2,
        y: 4,
        width: w - 6,
        height: h - 8,
    });
    meta.orientation = Orientation::Rotate90;
    meta.make = "rawgraph".into();
    meta.model = "roundtrip cam".into();
    meta.iso = Some(800);
    meta.exposure_time = Some(1.0 / 125.0);
    let data = (0..w * h)
        .map(|i| (256 + (i * 37) % 16000) as f32)
        .collect();
    RawFrame { meta, data }
}

#[test]
fn every_tag_roundtrips_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let layouts = [
        (
            DngTiling::Strips { rows_per_strip: 7 },
            DngCompression::None,
        ),
        (DngTiling::Tiles { size: 16 }, DngCompression::None),
        (DngTiling::Tiles { size: 16 }, DngCompression::LosslessJpeg),
        (DngTiling::Tiles { size: 32 }, DngCompression::LosslessJpeg),
    ];
    for cfa in CfaPattern::ALL {
        for (tiling, compression) in layouts {
            let f = frame(50, 38, cfa);
            let path = dir
                .path()
                .join(format!("{}_{tiling:?}_{compression:?}.dng", cfa.name()));
            let opts = DngOptions {
                tiling,
                compression,
                ..Default::default()
            };
            write_dng(&f, &path, &opts).unwrap();
            let back = decode_file(&path, DEFAULT_MAX_MEGAPIXELS, 1 << 30).unwrap();
            let mut expect = dng_representable(&f.meta).unwrap();
            expect.source = back.meta.source.clone();
            assert_eq!(back.meta, expect, "{cfa:?} {tiling:?}");
            assert_eq!(back.data, f.data, "{cfa:?} {tiling:?}");
        }
    }
}

/// Lossless JPEG keeps every sample of a full 16-bit range frame and of a
/// noisy 12-bit one, with edge tiles cut by the frame, and is smaller than
/// the uncompressed file; it refuses strips.
#[test]
fn lossless_jpeg_keeps_every_sample() {
    let (w, h) = (131, 77);
    let mut full = frame(w, h, CfaPattern::Bggr);
    full.meta.white = [65535.0; 3];
    full.meta.bits = 16;
    full.data = (0..w * h)
        .map(|i| ((i * 7919 + (i / w) * 104_729) % 65536) as f32)
        .collect();
    let mut noisy = frame(w, h, CfaPattern::Gbrg);
    noisy.meta.white = [4095.0; 3];
    noisy.meta.bits = 12;
    noisy.data = (0..w * h)
        .map(|i| (1000 + (i % w) * 8 + (i * 2_654_435_761 % 97)) as f32)
        .collect();
    for f in [full, noisy] {
        let lossless = DngOptions::from_cli(Some(48), true);
        let bytes = rawgraph::raw::dng_write::encode_dng(&f, &lossless).unwrap();
        let plain = rawgraph::raw::dng_write::encode_dng(&f, &DngOptions::default()).unwrap();
        let back = rawgraph::raw::decode::decode_bytes(
            &bytes,
            std::path::Path::new("ljpeg.dng"),
            DEFAULT_MAX_MEGAPIXELS,
        )
        .unwrap();
        assert_eq!(back.data, f.data, "white {:?}", f.meta.white);
        if f.meta.bits == 12 {
            assert!(
                bytes.len() < plain.len() * 3 / 4,
                "{} vs {}",
                bytes.len(),
                plain.len()
            );
        }
    }
    let strips = DngOptions {
        compression: DngCompression::LosslessJpeg,
        ..Default::default()
    };
    let f = frame(16, 16, CfaPattern::Rggb);
    let err = rawgraph::raw::dng_write::encode_dng(&f, &strips).unwrap_err();
    assert!(err.to_string().contains("tiles"), "{err}");
}

#[test]
fn representable_metadata_is_a_fixed_point() {
    let f = frame(8, 8, CfaPattern::Grbg);
    let once = dng_representable(&f.meta).unwrap();
    let twice = dng_representable(&once).unwrap();
    assert_eq!(once, twice);
    let g = once.wb_gains.unwrap();
    assert!((g[0] - 2.137).abs() < 1e-5 && (g[2] - 1.583).abs() < 1e-5);
}

#[test]
fn sidecar_matrix_becomes_a_color_matrix_that_renders_the_same() {
    let mut f = frame(8, 8, CfaPattern::Rggb);
    f.meta.color_matrices.clear();
    // A white-preserving camera -> sRGB matrix (rows sum to 1).
    let m = [[1.6, -0.4, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.5, 1.5]];
    f.meta.cam_to_srgb = Some(m);
    let q = dng_representable(&f.meta).unwrap();
    assert!(q.cam_to_srgb.is_none());
    let back = q.camera_to_srgb().unwrap();
    for i in 0..3 {
        for j in 0..3 {
            assert!((back[i][j] - m[i][j]).abs() < 1e-4, "{back:?}");
        }
    }
}

#[test]
fn linear_raw_and_bad_tiles_are_refused() {
    let mut f = frame(16, 16, CfaPattern::Rggb);
    let opts = DngOptions {
        tiling: DngTiling::Tiles { size: 10 },
        ..Default::default()
    };
    assert!(rawgraph::raw::dng_write::encode_dng(&f, &opts).is_err());
    f.meta.layout = rawgraph::raw::PixelLayout::LinearRgb;
    f.data = vec![0.0; 16 * 16 * 3].into();
    let e = rawgraph::raw::dng_write::encode_dng(&f, &DngOptions::default()).unwrap_err();
    assert!(e.to_string().contains("Bayer"), "{e}");
}
