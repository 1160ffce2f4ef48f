//! Acceptance gates of the semantic exposure on the shared data (issue 7):
//! sky IoU on CamVid val, faces within ±1/3 EV and skies unclipped on
//! frames rendered from synthetic raws at -3..+3 EV, with average metering
//! as the baseline. Needs $RAWGRAPH_DATA (skips loudly without it; fails
//! when RAWGRAPH_REQUIRE_DATA is set).

mod common;

use rawgraph::eval::exposure::{run, sky_iou, Options};
use rawgraph::stages::exposure::tuning::Tuning;

#[test]
fn sky_iou_on_camvid_val() {
    let Some(_) = common::data("sky/camvid/val") else {
        return;
    };
    let data = common::data_dir();
    let learned = sky_iou(&data, "learned", 1).unwrap();
    let classical = sky_iou(&data, "classical", 1).unwrap();
    eprintln!("sky IoU: {learned:?}\nsky IoU: {classical:?}");
    assert_eq!(learned.images, 101);
    assert!(learned.iou >= 0.85, "{learned:?}");
    // The cue model is far weaker (reported, gated against regressions).
    assert!(classical.iou >= 0.3, "{classical:?}");
}

#[test]
fn exposure_acceptance_table() {
    let (Some(_), Some(_)) = (common::data("face/samples"), common::data("sky/camvid/val")) else {
        return;
    };
    let o = Options {
        data: common::data_dir(),
        camvid_step: 10,
        tuning: Tuning::shipped().unwrap(),
    };
    let (_, sums) = run(&o).unwrap();
    eprintln!("{}", rawgraph::eval::exposure::table(&sums));
    let get = |set: &str, mode: &str| {
        sums.iter()
            .find(|s| s.set == set && s.mode == mode)
            .unwrap_or_else(|| panic!("no {set}/{mode} row"))
            .clone()
    };
    // The target: >= 90 % of cases within 1/3 EV (92.9 % measured
    // with the denoised second detection pass; the remaining misses are
    // -3 EV frames where SeetaFace finds no face in the noise).
    let faces = get("faces", "semantic");
    assert!(faces.face_within_third_ev.unwrap() >= 0.90, "{faces:?}");
    let avg = get("faces", "average");
    assert!(avg.face_within_third_ev.unwrap() < faces.face_within_third_ev.unwrap());
    let sky = get("camvid", "semantic");
    assert!(sky.sky_clipped_mean.unwrap() <= 0.01, "{sky:?}");
    let avg_sky = get("camvid", "average");
    assert!(avg_sky.sky_clipped_mean.unwrap() > sky.sky_clipped_mean.unwrap());
    // Backlit: sky kept below clipping, faces on target (91.7 % measured;
    // average metering happens to land these faces too, but clips 13 % of
    // the sky).
    let backlit = get("backlit", "semantic");
    assert!(backlit.cases > 0);
    assert!(backlit.sky_clipped_mean.unwrap() <= 0.01, "{backlit:?}");
    assert!(backlit.face_within_third_ev.unwrap() >= 0.85, "{backlit:?}");
    let backlit_avg = get("backlit", "average");
    assert!(
        backlit_avg.sky_clipped_mean.unwrap() > 0.05,
        "{backlit_avg:?}"
    );
}
