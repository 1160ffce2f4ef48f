//! Fuzzing support and regressions.
//!
//! - `generate_fuzz_seeds` (ignored; run it before fuzzing) writes the seed
//!   corpora of the targets in fuzz/ to fuzz/corpus/TARGET: synthetic DNGs
//!   in every Bayer phase and bit depth (strips and tiles), the metadata
//!   stubs, dumps with sidecars in every packing, the shipped pipelines.
//! - Every minimised crash input kept in tests/fixtures/fuzz/TARGET/ runs
//!   through the same entry point as its fuzz target and must give a typed
//!   one-line error (or a valid frame), never a panic.
//! - Resource limits: headers claiming 100000 x 100000 pixels are refused
//!   before anything is allocated.
//!
//! See fuzz/README.md for running the fuzzers.

#[path = "fixtures/fuzz/support.rs"]
mod support;

use std::path::{Path, PathBuf};

use rawgraph::raw::decode::decode_bytes;
use rawgraph::raw::sidecar::{decode_dump_bytes, unpack, Packing, Sidecar};
use rawgraph::raw::{CfaPattern, DEFAULT_MAX_MEGAPIXELS};
use rawgraph::{Error, Pipeline};

use support::*;

fn fixtures(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz")
        .join(target);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn one_line(e: &Error) {
    let s = e.to_string();
    assert!(
        !s.is_empty() && !s.contains('\n'),
        "multi-line error: {s:?}"
    );
}

/// The raw_decode fixture `name` is refused (at 16 MP) with a one-line
/// error that names the file and contains `needle`.
fn assert_refused(name: &str, needle: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fuzz/raw_decode")
        .join(name);
    let e = decode_bytes(&std::fs::read(&p).unwrap(), &p, 16.0).unwrap_err();
    one_line(&e);
    let s = e.to_string();
    assert!(s.contains(needle) && s.contains(name), "{name}: {s}");
}

/// What the sidecar_dump target does with one input (see its docs).
fn sidecar_case(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 != 0 {
        return; // structured mode: its regressions are explicit tests below
    }
    let cut = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    let Ok(text) = std::str::from_utf8(&rest[..cut]) else {
        return;
    };
    let dump = rest.get(cut + 1..).unwrap_or(&[]);
    match Sidecar::parse(text, Path::new("fuzz.raw.yaml")) {
        Ok(sc) => {
            match decode_dump_bytes(dump, Path::new("fuzz.raw"), &sc, 16.0) {
                Ok(f) => f.validate().unwrap(),
                Err(e) => one_line(&e),
            }
            if let Ok(v) = unpack(dump, &sc) {
                assert_eq!(v.len(), sc.width * sc.height);
            }
        }
        Err(e) => one_line(&e),
    }
}

#[test]
fn raw_decode_regressions() {
    for p in fixtures("raw_decode") {
        let bytes = std::fs::read(&p).unwrap();
        match decode_bytes(&bytes, &p, 16.0) {
            Ok(f) => f.validate().unwrap(),
            Err(e) => {
                one_line(&e);
                assert!(e.to_string().contains(&p.display().to_string()), "{e}");
            }
        }
    }
}

#[test]
fn sidecar_dump_regressions() {
    for p in fixtures("sidecar_dump") {
        sidecar_case(&std::fs::read(&p).unwrap());
    }
}

#[test]
fn pipeline_yaml_regressions() {
    for p in fixtures("pipeline_yaml") {
        let bytes = std::fs::read(&p).unwrap();
        if let Ok(text) = std::str::from_utf8(&bytes) {
            if let Err(e) = Pipeline::from_yaml(text, "fuzz.yaml") {
                one_line(&e);
            }
        }
    }
}

#[test]
fn huge_dng_header_is_refused_before_decoding() {
    let bytes = huge_claim_dng(100_000, 100_000);
    let e = decode_bytes(&bytes, Path::new("huge.dng"), DEFAULT_MAX_MEGAPIXELS).unwrap_err();
    let s = e.to_string();
    assert!(matches!(e, Error::Limit { .. }), "{s}");
    assert!(
        s.contains("huge.dng") && s.contains("100000x100000") && s.contains("--max-megapixels"),
        "{s}"
    );
}

#[test]
fn huge_sidecar_is_refused_before_reading() {
    let sc = Sidecar::parse(
        &sidecar_yaml(100_000, 100_000, "u16le", "RGGB", 65535),
        Path::new("huge.yaml"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No dump file at all: the limit must fire before the file is read.
    let e =
        rawgraph::raw::sidecar::decode_dump(&dir.path().join("huge.raw"), &sc, 200.0).unwrap_err();
    assert!(matches!(e, Error::Limit { .. }), "{e}");
    assert!(e.to_string().contains("100000x100000"), "{e}");
}

#[test]
fn huge_claim_in_every_dimension_is_refused() {
    for (w, h) in [
        (u32::MAX, 2),
        (2, u32::MAX),
        (65_535, 65_535),
        (1 << 20, 1 << 20),
    ] {
        let bytes = huge_claim_dng(w, h);
        match decode_bytes(&bytes, Path::new("claim.dng"), DEFAULT_MAX_MEGAPIXELS) {
            Ok(f) => panic!("{w}x{h} decoded as {}x{}", f.meta.width, f.meta.height),
            Err(e) => one_line(&e),
        }
    }
}

/// Writes the seed corpora (ignored: `cargo test --test fuzz_regressions
/// -- --ignored generate_fuzz_seeds`).
#[test]
#[ignore]
fn generate_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = root.join(target);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(name), bytes).unwrap();
    };
    // raw_decode: every Bayer phase x bit depth, strips and tiles.
    for cfa in CfaPattern::ALL {
        for bits in [8, 10, 12, 14, 16] {
            for tiles in [false, true] {
                let f = synth_frame(40, 24, cfa, bits, bits as u64);
                let name = format!(
                    "{}_{bits}bit_{}.dng",
                    cfa.name(),
                    if tiles { "tiles" } else { "strips" }
                );
                let b = dng_bytes(&f, tiles);
                put("raw_decode", &name, &b);
                if bits == 12 {
                    put("dng_roundtrip", &name, &b[..b.len().min(512)]);
                }
            }
        }
    }
    put(
        "raw_decode",
        "huge_claim.dng",
        &huge_claim_dng(100_000, 100_000),
    );
    // GoPro GPR: flat VC-5 tiles (gpr_vc5: size byte 0 = 64 px, stream).
    for (i, side) in [64u16, 128].into_iter().enumerate() {
        let s = vc5_flat_stream(side, side, GPR_FLAT);
        put(
            "raw_decode",
            &format!("gpr_flat_{side}.gpr"),
            &gpr_bytes(side as usize, side as usize, &s),
        );
        let mut v = vec![i as u8];
        v.extend_from_slice(&s);
        put("gpr_vc5", &format!("flat_{side}.vc5"), &v);
    }
    let stubs = data_dir().join("raw/metadata_stubs");
    match std::fs::read_dir(&stubs) {
        Ok(rd) => {
            for e in rd.flatten() {
                let b = std::fs::read(e.path()).unwrap();
                put("raw_decode", &e.file_name().to_string_lossy(), &b);
            }
        }
        Err(_) => eprintln!("SKIPPED: no metadata stubs at {}", stubs.display()),
    }
    // sidecar_dump: mode byte 0, YAML, NUL, dump.
    for (i, packing) in [
        Packing::U8,
        Packing::U16le,
        Packing::U16be,
        Packing::Raw10,
        Packing::Raw12,
    ]
    .into_iter()
    .enumerate()
    {
        let cfa = CfaPattern::ALL[i % 4];
        let (dump, yaml) = dump_bytes(12, 6, packing, cfa);
        let mut b = vec![0u8];
        b.extend(yaml.as_bytes());
        b.push(0);
        b.extend(&dump);
        put("sidecar_dump", &format!("{packing:?}.bin"), &b);
        // With stride and offset.
        let row = packing.row_bytes(12).unwrap();
        let yaml2 = format!("{yaml}stride: {}\noffset: 3\n", row + 2);
        let mut padded = vec![0xAA; 3];
        for r in dump.chunks(row) {
            padded.extend(r);
            padded.extend([0, 0]);
        }
        let mut b = vec![2u8];
        b.extend(yaml2.as_bytes());
        b.push(0);
        b.extend(&padded);
        put("sidecar_dump", &format!("{packing:?}_stride.bin"), &b);
    }
    let mut png = Vec::new();
    let img = image::ImageBuffer::<image::Luma<u16>, _>::from_fn(8, 4, |x, y| {
        image::Luma([(x * 97 + y * 13) as u16])
    });
    image::DynamicImage::ImageLuma16(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let mut b = vec![0u8];
    b.extend(sidecar_yaml(8, 4, "png16", "BGGR", 65535).as_bytes());
    b.push(0);
    b.extend(&png);
    put("sidecar_dump", "png16.bin", &b);
    let mut b = vec![1u8];
    b.extend((0..64u8).map(|i| i.wrapping_mul(37)));
    put("sidecar_dump", "fields.bin", &b);
    // pipeline_yaml: the shipped pipelines.
    let pdir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    for e in std::fs::read_dir(pdir).unwrap().flatten() {
        put(
            "pipeline_yaml",
            &e.file_name().to_string_lossy(),
            &std::fs::read(e.path()).unwrap(),
        );
    }
    eprintln!("seeds written under {}", root.display());
}

/// Fuzz find (sidecar_dump, structured mode): a stride or offset near
/// usize::MAX overflowed the expected-size arithmetic (a panic in debug
/// builds, a wrapped size and an out-of-bounds slice in release).
#[test]
fn sidecar_size_arithmetic_does_not_overflow() {
    let base = Sidecar::parse(&sidecar_yaml(4, 3, "u8", "RGGB", 255), Path::new("s.yaml")).unwrap();
    for (stride, offset) in [
        (Some(usize::MAX), 0),
        (Some(usize::MAX / 2 + 1), 0),
        (None, usize::MAX),
        (Some(8), usize::MAX - 10),
    ] {
        let sc = Sidecar {
            stride,
            offset,
            ..base.clone()
        };
        // unpack is public and never validated against a limit.
        let e = unpack(&[0u8; 64], &sc).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
        // The same numbers as YAML are refused by validation, naming the
        // sidecar.
        let mut yaml = sidecar_yaml(4, 3, "u8", "RGGB", 255);
        if let Some(s) = stride {
            yaml.push_str(&format!("stride: {s}\n"));
        }
        yaml.push_str(&format!("offset: {offset}\n"));
        let e = Sidecar::parse(&yaml, Path::new("s.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.yaml: ") && e.contains("impossibly large"),
            "{e}"
        );
    }
    // Width x height near usize::MAX.
    let yaml = sidecar_yaml(1 << 62, 1 << 62, "u16le", "RGGB", 4095);
    let e = Sidecar::parse(&yaml, Path::new("s.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("impossibly large"), "{e}");
}

/// Fuzz find (raw_decode): rawler allocates `count x size` for a TIFF
/// entry before reading it; a tiny file claiming a DOUBLE entry of
/// 2^32 - 1 values asked for 32 GiB, and a failed allocation aborts the
/// process (no guard can catch that). Our adapter now refuses it first.
#[test]
fn tiff_entry_claiming_more_than_the_file_is_refused() {
    for (order, typ) in [(*b"II", 12u16), (*b"MM", 12), (*b"II", 7), (*b"MM", 5)] {
        let le = order == *b"II";
        let w16 = |v: u16| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let w32 = |v: u32| if le { v.to_le_bytes() } else { v.to_be_bytes() };
        let mut b = order.to_vec();
        b.extend(w16(42));
        b.extend(w32(8));
        b.extend(w16(1)); // one entry
        b.extend(w16(50721)); // ColorMatrix1
        b.extend(w16(typ));
        b.extend(w32(u32::MAX));
        b.extend(w32(26));
        b.extend(w32(0)); // no next IFD
        b.extend([0u8; 64]);
        let e = decode_bytes(&b, Path::new("claims.dng"), 16.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("claims.dng: cannot decode: TIFF tag 50721 claims"),
            "{e}"
        );
    }
    // The fuzz finds: a DNG, the TIFF embedded in a Minolta MRW, and a NEF
    // whose Exif MakerNote points at a directory without a TIFF header
    // (rawler parses it anyway; an entry of unknown type asked for 1.9 GB),
    // and directories rawler reads by its own sub-IFD rule (an UNDEFINED
    // or unknown-type SubIFDs/Exif/GPS/ICC value taken as an IFD), and
    // the TIFF in a CR3 CMT box that the header scan did not treat as one
    // rawler always parses, and sub-IFD pointer webs (rawler follows every
    // SubIFDs offset of a chain directory; the walk stopped at 64 / 256).
    for name in [
        "tiff-entry-count-alloc",
        "mrw-embedded-tiff-entry-alloc",
        "mrw-ttw-bad-magic-entry-alloc",
        "raf-tiff-entry-alloc",
        "nef-makernote-unknown-type-alloc",
        "subifd-entry-alloc",
        "subifd-entry-alloc-2",
        "cr3-cmt-box-entry-alloc",
        "subifd-web-1",
        "subifd-web-2",
        "subifd-web-3",
        "subifd-web-4",
        "subifd-web-5",
        "subifd-web-6",
    ] {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz/raw_decode")
            .join(name);
        let e = decode_bytes(&std::fs::read(&p).unwrap(), &p, 16.0)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("claims") || e.contains("truncated"),
            "{name}: {e}"
        );
    }
}

/// Fuzz find (dng_roundtrip): a default crop reaching past the frame was
/// written, and rawler's DNG reader overflowed on it (a panic in debug
/// builds, a wrapped offset in release). The writer now refuses crops that
/// do not fit, naming the crop and the frame; a crop covering the whole
/// frame reads back as no crop, as `dng_representable` says.
#[test]
fn dng_crop_outside_the_frame_is_refused_and_a_full_crop_is_none() {
    use rawgraph::raw::dng_write::{dng_representable, encode_dng, DngOptions};
    use rawgraph::raw::Rect;
    let mut f = synth_frame(48, 32, CfaPattern::Rggb, 12, 3);
    f.meta.source = "crop.dng".into();
    for (x, y, w, h) in [
        (40, 0, 16, 8),
        (0, 30, 8, 4),
        (0, 0, 1, 8),
        (usize::MAX, 0, 2, 2),
    ] {
        f.meta.crop = Some(Rect {
            x,
            y,
            width: w,
            height: h,
        });
        let e = encode_dng(&f, &DngOptions::default()).unwrap_err();
        one_line(&e);
        let s = e.to_string();
        assert!(
            s.starts_with("crop.dng: ") && s.contains("does not fit in the 48x32 frame"),
            "{s}"
        );
    }
    for (crop, expect) in [
        (
            Rect {
                x: 0,
                y: 0,
                width: 48,
                height: 32,
            },
            None,
        ),
        (
            Rect {
                x: 2,
                y: 4,
                width: 40,
                height: 26,
            },
            Some((2, 4, 40, 26)),
        ),
    ] {
        f.meta.crop = Some(crop);
        let bytes = encode_dng(&f, &DngOptions::default()).unwrap();
        let back = decode_bytes(&bytes, Path::new("crop.dng"), 16.0).unwrap();
        let got = back.meta.crop.map(|c| (c.x, c.y, c.width, c.height));
        assert_eq!(got, expect);
        let rep = dng_representable(&f.meta).unwrap();
        assert_eq!(rep.crop.map(|c| (c.x, c.y, c.width, c.height)), expect);
    }
}

/// Fuzz find (dng_roundtrip): a black level past what a 16-bit DNG stores
/// (4.3e6 here; the white level is clamped to 65535) was written, and the
/// file read back as "white level not above the black level". The writer
/// now refuses it, naming the levels.
#[test]
fn dng_black_level_above_the_storable_white_is_refused() {
    use rawgraph::raw::dng_write::{encode_dng, DngOptions};
    use rawgraph::raw::BlackLevel;
    let mut f = synth_frame(48, 32, CfaPattern::Gbrg, 12, 5);
    f.meta.source = "levels.dng".into();
    for (black, white) in [
        (4_294_967.5f32, 5.0e6f32),
        (70_000.0, 80_000.0),
        (65_535.0, 66_000.0),
    ] {
        f.meta.black = BlackLevel::uniform(black);
        f.meta.white = [white; 3];
        let e = encode_dng(&f, &DngOptions::default()).unwrap_err();
        one_line(&e);
        let s = e.to_string();
        assert!(
            s.starts_with("levels.dng: black level") && s.contains("a 16-bit DNG can store"),
            "{s}"
        );
    }
    // Levels a DNG can hold still round-trip.
    f.meta.black = BlackLevel::uniform(64.0);
    f.meta.white = [4095.0; 3];
    let bytes = encode_dng(&f, &DngOptions::default()).unwrap();
    let back = decode_bytes(&bytes, Path::new("levels.dng"), 16.0).unwrap();
    assert_eq!(
        (back.meta.black.values[0], back.meta.white[0]),
        (64.0, 4095.0)
    );
}

/// Fuzz find (dng_roundtrip): an illuminant code rawler does not know
/// (573) reads back as D65, and two matrices for one illuminant collapse
/// to the later one; `dng_representable` now says so, and the round trip
/// agrees with it.
#[test]
fn dng_unknown_illuminant_reads_back_as_d65() {
    use rawgraph::raw::dng_write::{dng_representable, encode_dng, DngOptions};
    use rawgraph::raw::{ColorMatrix, Illuminant};
    let mut f = synth_frame(48, 32, CfaPattern::Bggr, 12, 7);
    let m = [[0.5, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.5]];
    let n = [[0.25, 0.0, 0.0], [0.0, 0.25, 0.0], [0.0, 0.0, 0.25]];
    for (ills, expect) in [
        (
            [Illuminant::Other(573), Illuminant::StdA],
            vec![
                (Illuminant::StdA, m[0][0] / 2.0),
                (Illuminant::D65, m[0][0]),
            ],
        ),
        (
            [Illuminant::D65, Illuminant::D65],
            vec![(Illuminant::D65, n[0][0])],
        ),
    ] {
        f.meta.color_matrices = vec![
            ColorMatrix {
                illuminant: ills[0],
                xyz_to_cam: m,
            },
            ColorMatrix {
                illuminant: ills[1],
                xyz_to_cam: n,
            },
        ];
        let bytes = encode_dng(&f, &DngOptions::default()).unwrap();
        let back = decode_bytes(&bytes, Path::new("ill.dng"), 16.0).unwrap();
        let got: Vec<(Illuminant, f32)> = back
            .meta
            .color_matrices
            .iter()
            .map(|c| (c.illuminant, c.xyz_to_cam[0][0]))
            .collect();
        assert_eq!(got, expect);
        assert_eq!(
            dng_representable(&f.meta).unwrap().color_matrices,
            back.meta.color_matrices
        );
    }
}

/// Fuzz finds (raw_decode): rawler allocates the pixel buffer even for a
/// header-only decode, from sizes that live outside any TIFF directory —
/// a CRW's SensorInfo (63435 x 25739) and an IIQ maker note's Width /
/// Height (52252 x 5536) — and a CR3 box of size 0 made its box reader
/// loop forever, growing a list. All are refused before rawler runs, with
/// the megapixel limit or the box named.
#[test]
fn sizes_outside_tiff_and_zero_size_boxes_are_refused_first() {
    for (name, needle) in [
        (
            "crw-sensorinfo-huge",
            "63435x25739 is 1632.8 MP, over the limit of 16 MP",
        ),
        (
            "iiq-makernote-dims-huge",
            "52252x5536 is 289.3 MP, over the limit of 16 MP",
        ),
        (
            "cr3-zero-size-box",
            "BMFF box '\\0\\0\\0\\0' at byte 8788 has size 0",
        ),
    ] {
        assert_refused(name, needle);
    }
}

/// Fuzz find (dng_roundtrip): samples that spell a TIFF header and a
/// directory claiming gigabytes made the header scan refuse our own DNG.
/// rawler's DNG decoder reads no embedded TIFF, so a DNG skips the scan.
#[test]
fn dng_whose_samples_look_like_a_tiff_reads_back() {
    use rawgraph::raw::dng_write::{encode_dng, DngOptions};
    let mut f = synth_frame(48, 32, CfaPattern::Rggb, 16, 9);
    f.meta.white = [65535.0; 3];
    // "II*\0", IFD at 8, one entry: ImageWidth, LONG, count 0x7fffffff.
    let fake: [u16; 13] = [
        0x4949, 0x002a, 0x0008, 0x0000, 0x0001, 0x0100, 0x0004, 0xffff, 0x7fff, 0, 0, 0, 0,
    ];
    for (i, v) in fake.iter().enumerate() {
        f.data.f32_mut()[100 + i] = *v as f32;
    }
    let bytes = encode_dng(&f, &DngOptions::default()).unwrap();
    let back = decode_bytes(&bytes, Path::new("looks-like-tiff.dng"), 16.0).unwrap();
    assert_eq!(&back.data.f32()[100..113], &f.data.f32()[100..113]);
}

/// Fuzz finds (raw_decode) of the second campaign, each refused before
/// rawler allocates, with its cause named:
/// - a SubIFDs / Exif pointer of 0: rawler reads the file header as a
///   directory of 0x4949 entries of junk, allocating what each claims;
/// - Canon CR2: the decoder reads the Exif maker note as a plain directory;
/// - RAF: sub-IFDs of the root directory the RAF header points at;
/// - frame sizes rawler allocates for even in a header-only decode: an MRW
///   PRD block, a NEF raw directory (its ImageLength as rawler reads it);
/// - an IFD chain whose next link loops back: rawler's reader follows it
///   forever, pushing directories until memory runs out;
/// - BMFF boxes of size 0 in a file without `ftyp` (rawler tries its BMFF
///   reader on any file no magic number claimed) and after a moov child
///   uuid box rawler does not skip: its box loop stalls, growing a list;
/// - Apple QuickTake headers (frame size at byte 544);
/// - a BMFF sample table (co64) whose entry count rawler reserves first.
#[test]
fn second_campaign_raw_decode_finds_are_refused_first() {
    for (name, needle) in [
        ("subifd-at-offset-0-1", "TIFF tag 1 claims 738198898 bytes"),
        ("subifd-at-offset-0-2", "TIFF tag 0 claims 822214656 bytes"),
        ("subifd-at-offset-0-3", "TIFF tag 1 claims 4294967295 bytes"),
        ("subifd-at-offset-0-4", "TIFF tag 1 claims 738198898 bytes"),
        (
            "exif-ifd-at-offset-0-1",
            "TIFF tag 0 claims 1998548648 bytes",
        ),
        (
            "exif-ifd-at-offset-0-2",
            "TIFF tag 0 claims 1998548648 bytes",
        ),
        (
            "cr2-makernote-entry-alloc-1",
            "maker note tag 11650 claims 1172081197 bytes",
        ),
        (
            "cr2-makernote-entry-alloc-2",
            "maker note tag 77 claims 1380974604 bytes",
        ),
        (
            "raf-root-subifd-alloc-1",
            "TIFF tag 17920 claims 1279870537 bytes",
        ),
        (
            "raf-root-subifd-alloc-2",
            "TIFF tag 21830 claims 1296845126 bytes",
        ),
        (
            "mrw-prd-dims-huge",
            "28160x27503 is 774.5 MP, over the limit",
        ),
        (
            "nef-raw-ifd-dims-huge",
            "3040x9437184 is 28689.0 MP, over the limit",
        ),
        ("bmff-no-ftyp-zero-size-box-1", "at byte 138 has size 0"),
        ("bmff-no-ftyp-zero-size-box-2", "at byte 2372 has size 0"),
        ("bmff-moov-unknown-uuid-zero-box", "at byte 278 has size 0"),
        (
            "bmff-co64-count-alloc",
            "BMFF box 'co64' at byte 1807 claims 286064640 entries",
        ),
        ("quicktake-100-dims-huge", "32000x18176 is 581.6 MP"),
        ("quicktake-150-dims-huge", "62208x43520 is 2707.3 MP"),
        (
            "tiff-chain-loop-1",
            "TIFF directory chain loops back to the directory at byte 3345",
        ),
        (
            "tiff-chain-loop-2",
            "TIFF directory chain loops back to the directory at byte 8",
        ),
    ] {
        assert_refused(name, needle);
    }
}

/// Lowpass values of the flat synthetic GPR: G sum 2000, R - G = +100,
/// B - G = -100, G difference 0 (the last three offset by 2048).
const GPR_FLAT: [u16; 4] = [2000, 2148, 1948, 2048];

/// What the raw_decode target does with a GPR: a valid frame or a one-line
/// error, never a panic.
fn gpr_case(stream: &[u8]) -> bool {
    let b = gpr_bytes(64, 64, stream);
    match decode_bytes(&b, Path::new("fuzz.gpr"), 16.0) {
        Ok(f) => {
            f.validate().unwrap();
            true
        }
        Err(e) => {
            one_line(&e);
            false
        }
    }
}

/// GoPro GPR (issue 18): a synthetic DNG whose tile is a flat VC-5 stream
/// decodes through `raw::gpr` + the DNG path to exactly the samples VC-5
/// predicts (R = G sum + 2 (R - G), B likewise, both greens the G sum,
/// each through the inverse-log curve at the white level's 14 bits), in
/// the RGGB positions of the DNG's CFA.
#[test]
fn gpr_flat_vc5_tile_decodes_exactly() {
    let (w, h) = (64usize, 64usize);
    let b = gpr_bytes(w, h, &vc5_flat_stream(w as u16, h as u16, GPR_FLAT));
    let f = decode_bytes(&b, Path::new("flat.gpr"), 16.0).unwrap();
    assert_eq!((f.meta.width, f.meta.height), (w, h));
    assert!(
        f.meta.provenance.white.contains("VC-5"),
        "{:?}",
        f.meta.provenance
    );
    let (r, g, bl) = (
        vc5_curve(2000 + 200, 14) as f32,
        vc5_curve(2000, 14) as f32,
        vc5_curve(2000 - 200, 14) as f32,
    );
    assert!(r > g && g > bl, "{r} {g} {bl}");
    for y in 0..h {
        for x in 0..w {
            let want = match (y % 2, x % 2) {
                (0, 0) => r,
                (1, 1) => bl,
                _ => g,
            };
            assert_eq!(f.data.get(y * w + x), Some(want), "({x}, {y})");
        }
    }
}

/// Corrupt VC-5 tiles (every truncation, garbage, thousands of seeded byte
/// mutations, a stream for another size) give a one-line error or a valid
/// frame, never a panic: the in-tree counterpart of the gpr_vc5 fuzz target.
#[test]
fn gpr_corrupt_vc5_tiles_never_panic() {
    let good = vc5_flat_stream(64, 64, GPR_FLAT);
    assert!(gpr_case(&good));
    for cut in (0..good.len()).step_by(5) {
        assert!(!gpr_case(&good[..cut]), "truncated at {cut} decoded");
    }
    assert!(!gpr_case(b"VC-5"));
    assert!(!gpr_case(&[0xA5; 4096]));
    // A stream for 128x128 in a 64x64 DNG.
    assert!(!gpr_case(&vc5_flat_stream(128, 128, GPR_FLAT)));
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..10_000 {
        let mut m = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % m.len() as u64) as usize;
            m[at] = next() as u8;
        }
        gpr_case(&m);
    }
    // Huge claims in the DNG are refused before the tile is decoded.
    let mut b = gpr_bytes(64, 64, &good);
    assert!(patch_tiff_tag(&mut b, 256, 100_000));
    assert!(patch_tiff_tag(&mut b, 257, 100_000));
    let e = decode_bytes(&b, Path::new("huge.gpr"), 16.0).unwrap_err();
    one_line(&e);
}

/// A GPR in several VC-5 tiles (offsets and counts stored out of line, the
/// right-hand tiles padded past the image edge): each tile lands where its
/// TileOffsets entry says, cropped to the image.
#[test]
fn gpr_tiles_land_in_place() {
    let (w, h, t) = (96usize, 128usize, 64u16);
    // Tiles row-major: 2 across (the second padded 32 px), 2 down; G sum
    // differs per tile.
    let sums = [1600u16, 1800, 2000, 2200];
    let streams: Vec<Vec<u8>> = sums
        .iter()
        .map(|&g| vc5_flat_stream(t, t, [g, 2048, 2048, 2048]))
        .collect();
    let b = gpr_tiled_bytes(w, h, t as u32, &streams);
    let f = decode_bytes(&b, Path::new("tiled.gpr"), 16.0).unwrap();
    assert_eq!((f.meta.width, f.meta.height), (w, h));
    for y in 0..h {
        for x in 0..w {
            let tile = (y / t as usize) * 2 + x / t as usize;
            let want = vc5_curve(sums[tile], 14) as f32;
            assert_eq!(f.data.get(y * w + x), Some(want), "({x}, {y}) tile {tile}");
        }
    }
}

/// Found by fuzzing raw_decode from the GPR seeds: in a hostile GPR the
/// rewritten tile offsets land on another directory's entry count, and
/// rawler then allocated 2.9 GB for it. The transcoded bytes pass the
/// pre-flight checks again and are refused there.
#[test]
fn gpr_rewritten_offsets_on_a_directory_are_refused_first() {
    assert_refused("gpr-patched-offsets-overlap-entry", "TIFF directory");
}

/// Fuzz find (raw_decode, GPR seeds run): 9 bytes `FF D8 FF E1 II*\0 08`
/// made rawler's JFIF reader retry an unreadable APP1 segment forever
/// (`info` hung). Refused by the pre-flight walk of EXIF JPEGs; run on a
/// thread so that a regression fails after 60 s instead of hanging.
#[test]
fn exif_jpeg_with_unreadable_app1_is_refused_not_looped() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        assert_refused(
            "jfif-app1-unreadable-loop",
            "malformed EXIF JPEG: the APP1 segment at byte 2 cannot be read",
        );
        tx.send(()).ok();
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("decode failed or hung (rawler's JFIF reader loops on an unreadable APP1)");
}

/// A minimal Fujifilm RAF: the header, an embedded TIFF whose Model is
/// `model` (main directory, offset at byte 84, + 12) and a RAF data block
/// (offset at byte 92) whose RawImageFullSize is `w` x `h`.
fn raf_stub(model: &str, w: u16, h: u16) -> Vec<u8> {
    let mut b = vec![0u8; 0x200];
    b[..16].copy_from_slice(b"FUJIFILMCCD-RAW ");
    b[84..88].copy_from_slice(&(0x100u32 - 12).to_be_bytes());
    b[92..96].copy_from_slice(&0x180u32.to_be_bytes());
    // TIFF at 0x100: one entry, Model (ASCII) at base + 26.
    let mut t = Vec::new();
    t.extend_from_slice(b"MM\0\x2a");
    t.extend_from_slice(&8u32.to_be_bytes());
    t.extend_from_slice(&1u16.to_be_bytes());
    t.extend_from_slice(&0x0110u16.to_be_bytes());
    t.extend_from_slice(&2u16.to_be_bytes());
    t.extend_from_slice(&(model.len() as u32 + 1).to_be_bytes());
    t.extend_from_slice(&26u32.to_be_bytes());
    t.extend_from_slice(&0u32.to_be_bytes());
    t.extend_from_slice(model.as_bytes());
    t.push(0);
    b[0x100..0x100 + t.len()].copy_from_slice(&t);
    // RAF data block at 0x180: one entry, RawImageFullSize (h, w).
    let mut r = Vec::new();
    r.extend_from_slice(&1u32.to_be_bytes());
    r.extend_from_slice(&0x100u16.to_be_bytes());
    r.extend_from_slice(&4u16.to_be_bytes());
    r.extend_from_slice(&h.to_be_bytes());
    r.extend_from_slice(&w.to_be_bytes());
    b[0x180..0x180 + r.len()].copy_from_slice(&r);
    b
}

/// Fuzz find (raw_decode, whole corpus): a mutated Fuji S5Pro stub made
/// rawler allocate 1.35 GB (3.7 GB with 20480x32768) in its header-only
/// RAF decode: the RAF frame size, and for SuperCCD models the 45°-rotated
/// frame rawler also allocates, were in no pre-flight check. Both are
/// refused before rawler runs; other models are not held to the rotated
/// size.
#[test]
fn raf_frame_and_superccd_rotation_sizes_are_refused_first() {
    let p = Path::new("stub.raf");
    let e = decode_bytes(&raf_stub("FinePix S5Pro", 0x5000, 0x8000), p, 16.0).unwrap_err();
    one_line(&e);
    assert!(
        e.to_string()
            .contains("20480x32768 is 671.1 MP, over the limit of 16 MP"),
        "{e}"
    );
    // 6000x2000 (12 MP) fits; rotated, 7000x6999 (49 MP) does not.
    let e = decode_bytes(&raf_stub("FinePix S5Pro", 6000, 2000), p, 16.0).unwrap_err();
    one_line(&e);
    assert!(e.to_string().contains("7000x6999 is 49.0 MP"), "{e}");
    let e = decode_bytes(&raf_stub("X-T1", 6000, 2000), p, 16.0).unwrap_err();
    one_line(&e);
    assert!(!e.to_string().contains("7000x6999"), "{e}");
}
