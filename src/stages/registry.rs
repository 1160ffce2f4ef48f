//! The op registry: every op name the YAML `op:` field accepts, mapped to
//! its `compile` function. Each op lives in `src/stages/<op>.rs`,
//! `src/stages/<op>/`, or, for the semantic-exposure family, in
//! `src/stages/exposure/<op>.rs` (checked by the test below).

use super::*;

/// Every op the registry knows, for error messages and docs.
pub const OPS: &[&str] = &[
    "raw_source",
    "black_level",
    "lens_shading",
    "defect_correct",
    "denoise_profiled",
    "white_balance",
    "demosaic_bilinear",
    "demosaic_mhc",
    "demosaic_menon",
    "demosaic_rcd",
    "demosaic_ari",
    "demosaic_rcd_mlri",
    "demosaic_ahd",
    "false_color_suppress",
    "demosaic_denoise_learned",
    "noise_estimate",
    "color_correct",
    "exposure_gain",
    "exposure_meter",
    "face_detect",
    "sky_segment",
    "exposure_debug",
    "tone_curve",
    "local_laplacian",
    "hdrnet",
    "srgb_encode",
    "sharpen",
    "resize",
    "yuv_encode",
    "orient",
];

/// Whether `op` is a classical demosaic: a registered `demosaic_*` op that
/// maps a mosaic to camera RGB without a model (all but
/// `demosaic_denoise_learned`). These are the bases a learned demosaic may
/// refine (`dmdn_unet`'s metadata `base`, [`crate::nn::classical_base`]).
pub fn is_classical_demosaic(op: &str) -> bool {
    op.starts_with("demosaic_") && op != "demosaic_denoise_learned" && OPS.contains(&op)
}

/// Compiles an op from its YAML params (`Null` when absent).
pub fn compile(op: &str, params: serde_json::Value) -> crate::stages::CompileResult {
    match op {
        "raw_source" => raw_source::compile(params),
        "black_level" => black_level::compile(params),
        "lens_shading" => lens_shading::compile(params),
        "defect_correct" => defect_correct::compile(params),
        "denoise_profiled" => denoise_profiled::compile(params),
        "white_balance" => white_balance::compile(params),
        "demosaic_bilinear" => demosaic_bilinear::compile(params),
        "demosaic_mhc" => demosaic_mhc::compile(params),
        "demosaic_menon" => demosaic_menon::compile(params),
        "demosaic_rcd" => demosaic_rcd::compile(params),
        "demosaic_ari" => demosaic_ari::compile(params),
        "demosaic_rcd_mlri" => demosaic_rcd_mlri::compile(params),
        "demosaic_ahd" => demosaic_ahd::compile(params),
        "false_color_suppress" => false_color_suppress::compile(params),
        "demosaic_denoise_learned" => demosaic_denoise_learned::compile(params),
        "noise_estimate" => noise_estimate::compile(params),
        "color_correct" => color_correct::compile(params),
        "exposure_gain" => exposure_gain::compile(params),
        "exposure_meter" => exposure::exposure_meter::compile(params),
        "face_detect" => exposure::face_detect::compile(params),
        "sky_segment" => exposure::sky_segment::compile(params),
        "exposure_debug" => exposure::exposure_debug::compile(params),
        "tone_curve" => tone_curve::compile(params),
        "local_laplacian" => local_laplacian::compile(params),
        "hdrnet" => hdrnet::compile(params),
        "srgb_encode" => srgb_encode::compile(params),
        "sharpen" => sharpen::compile(params),
        "resize" => resize::compile(params),
        "yuv_encode" => yuv_encode::compile(params),
        "orient" => orient::compile(params),
        _ => Err(CompileError::UnknownOp(op.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Files and folders under src/stages that are not ops.
    const NOT_OPS: &[&str] = &[
        "mod",
        "registry",
        "row_kernel",
        "exposure",
        "demosaic_testing",
    ];

    #[test]
    fn registry_op_names_and_file_names_agree() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stages");
        for op in OPS {
            // Every listed op compiles (or rejects its default params with
            // a message of its own, never as an unknown op), and names
            // itself as listed.
            match compile(op, serde_json::Value::Null) {
                Ok(stage) => assert_eq!(stage.op(), *op),
                Err(e) => assert!(!e.to_string().contains("unknown op"), "{op}: {e}"),
            }
            let found = [
                dir.join(format!("{op}.rs")),
                dir.join(op),
                dir.join("exposure").join(format!("{op}.rs")),
            ]
            .iter()
            .any(|p| p.exists());
            assert!(
                found,
                "op {op} has no src/stages/{op}.rs or src/stages/{op}/"
            );
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            if NOT_OPS.contains(&stem.as_str()) {
                continue;
            }
            assert!(
                OPS.contains(&stem.as_str()),
                "src/stages/{stem} is not a registered op (register it, or list it in NOT_OPS)"
            );
        }
        assert!(compile("no_such_op", serde_json::Value::Null)
            .unwrap_err()
            .to_string()
            .contains("unknown op"));
    }

    /// The classical demosaics are the registered `demosaic_*` ops but the
    /// learned one; each compiles with its defaults and maps a mosaic to an
    /// image.
    #[test]
    fn classical_demosaics_are_mosaic_to_image_ops() {
        use crate::frame::{ValueDesc, ValueKind};
        let classical: Vec<&str> = OPS
            .iter()
            .copied()
            .filter(|op| is_classical_demosaic(op))
            .collect();
        assert!(classical.len() >= 7, "{classical:?}");
        assert!(classical.contains(&"demosaic_rcd_mlri"));
        for op in [
            "demosaic_denoise_learned",
            "demosaic_testing",
            "demosaic_x",
            "denoise_profiled",
        ] {
            assert!(!is_classical_demosaic(op), "{op}");
        }
        for op in classical {
            let stage = compile(op, serde_json::Value::Null).unwrap();
            assert_eq!(stage.arity(), (1, 1), "{op}");
            let out = stage.infer(&[ValueDesc::mosaic(6, 4)]).unwrap();
            assert_eq!(
                (out.kind, out.width, out.height),
                (ValueKind::Image, 6, 4),
                "{op}"
            );
        }
    }

    /// Every op with bounded params refuses a value out of its range at
    /// compile time as a `Params` error naming the field (parse_params
    /// runs each op's `Validate`), and accepts its defaults.
    #[test]
    fn out_of_range_params_are_params_errors() {
        use serde_json::json;
        let bad = [
            ("black_level", None),
            (
                "denoise_profiled",
                Some(("search_radius", json!({ "search_radius": 40 }))),
            ),
            (
                "white_balance",
                Some(("gains", json!({ "mode": "manual", "gains": [1, -2, 1] }))),
            ),
            ("exposure_gain", Some(("ev", json!({ "ev": 99.0 })))),
            (
                "noise_estimate",
                Some(("keep_fraction", json!({ "keep_fraction": 0.0 }))),
            ),
            (
                "tone_curve",
                Some(("white_point", json!({ "knee": 0.9, "white_point": 0.5 }))),
            ),
            (
                "color_correct",
                Some(("matrix", json!({ "source": "custom" }))),
            ),
            ("sharpen", Some(("radius", json!({ "radius": 50.0 })))),
            ("resize", Some(("width", json!({ "width": 0 })))),
            (
                "demosaic_ari",
                Some(("iterations", json!({ "iterations": 0 }))),
            ),
            (
                "demosaic_rcd_mlri",
                Some(("rb_radius", json!({ "rb_radius": 9 }))),
            ),
            (
                "false_color_suppress",
                Some(("strength", json!({ "strength": 3.0 }))),
            ),
            (
                "exposure_meter",
                Some(("bias_ev", json!({ "bias_ev": 40.0 }))),
            ),
            (
                "sky_segment",
                Some(("map_side", json!({ "map_side": 8, "model": "classical" }))),
            ),
            ("face_detect", Some(("nms_iou", json!({ "nms_iou": 2.0 })))),
        ];
        for (op, case) in bad {
            // resize needs a size; the others load files or models.
            if !matches!(
                op,
                "sky_segment" | "face_detect" | "exposure_meter" | "resize"
            ) {
                assert!(
                    compile(op, serde_json::Value::Null).is_ok(),
                    "{op}: defaults"
                );
            }
            let Some((field, params)) = case else {
                continue;
            };
            match compile(op, params) {
                Err(CompileError::Params(m)) => assert!(m.contains(field), "{op}: {m}"),
                other => panic!("{op}: expected a params error on {field}, got {other:?}"),
            }
        }
    }
}
