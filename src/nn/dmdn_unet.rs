//! `dmdn_unet`: the CPU-sized joint demosaicking and denoising network of
//! the raw path, noise-conditioned.
//!
//! Method: Gharbi, Chaurasia, Paris & Durand 2016 ("Deep Joint Demosaicking
//! and Denoising") for the packed-Bayer input, the full-resolution
//! refinement and the noise-level map (as FFDNet, Zhang et al. 2018); the
//! body is a small U-Net (Ronneberger et al. 2015) with sub-pixel
//! up-sampling (Shi et al. 2016) so the receptive field is large (±40 px
//! with three levels, ±72 with the optional fourth at 1/16 resolution) at a
//! few thousand multiply-adds per pixel (`fast` 4,981, `fast4` 5,167). Trained by
//! `training/train_dmdn.py --arch unet` on unprocessed raw data (Brooks et
//! al. 2019), which documents the same graph in PyTorch (`DMDNUNet`); the
//! two must stay identical.
//!
//! Graph (3x3 convs zero-padded, stride-2 ones with padding 1, ReLU after
//! every conv except the 1x1s; `(c1, c2, c3[, c4])` = metadata `widths`,
//! `levels` = the number of widths, 3 or 4; H, W multiples of `2^levels`;
//! tensors `[channels, rows, cols]`, the sizes given as rows):
//! ```text
//! x  = concat(pixel_unshuffle(mosaic, 2), noise)         (4 + nc, H/2, W/2)
//! e1 = e1b(e1a(x))                                       (c1, H/2)
//! e2 = e2b(e2a_stride2(e1))                              (c2, H/4)
//! e3 = e3a_stride2(e2)                                   (c3, H/8)
//! with a fourth width (a 1/16 level, `deep` = metadata `deep`, 0..=8):
//!   e4 = e4.{0..deep}(e4a_stride2(e3))                   (c4, H/16)
//!   e3 = e3 + pixel_shuffle(u3_1x1(e4), 2)               (c3, H/8), no ReLU
//! e3 = e3.{0..bottom}(e3)                                (c3, H/8)
//! d2 = d2(e2 + pixel_shuffle(u2_1x1(e3), 2))             (c2, H/4)
//! d1 = d1(e1 + pixel_shuffle(u1_1x1(d2), 2))             (c1, H/2)
//! up = pixel_shuffle(head_1x1(d1), 2)                    (3, H, W)
//! bil = bilinear(masked)                                 (3, H, W), fixed depthwise 3x3 ([`BILINEAR`])
//! y = bil + up + fr2_1x1(fr1(concat(masked, up)))        masked: mosaic spread to its colour plane
//! with a classical base (metadata `base` = b other than `bilinear`, `fastb`: rcd_mlri):
//!   base = demosaic_b(whole frame), windowed as the mosaic (3, H, W)
//!   yn = bil + up + fr2_1x1(fr1(concat(masked, up, base - bil)))
//!   g = sigmoid(pixel_shuffle(bgate_1x1(d1), 2))         (1, H, W)
//!   y = yn + g (base - yn)                               per-pixel blend
//! out = y
//! with gated smoothing (metadata `gate_radii` = r_1..r_K, `fastg`: 2,6):
//!   z = pixel_shuffle(gate_1x1(d1), 2)                   (K, H, W) logits
//!   out = w_0 y + Σ_k w_k box_{r_k}(y),  w = softmax(0, z_1..z_K) per pixel
//! with chroma smoothing after it (metadata `chroma_radii` = s_1..s_J, only
//! with `gate_radii`; `fastc`: 2,4):
//!   zc = pixel_shuffle(cgate_1x1(d1), 2)                 (J, H, W) logits
//!   L  = (R + 2G + B) / 4                                of `out`, kept
//!   C  = (R - G, B - G) blended per pixel (softmax(0, zc)) with its
//!        guided filters of radii s_j, guide L, eps from the noise map
//!   G' = L - (C_0 + C_1) / 4
//!   out = (C_0 + G', G', C_1 + G')
//! with luminance smoothing too (metadata `lum_radii` = t_1..t_M, only
//! with `chroma_radii`; `fastd`: chroma 2,4,8, luminance 2,4,8):
//!   zl = pixel_shuffle(lgate_1x1(d1), 2)                 (M, H, W) logits
//!   L' = L blended per pixel (softmax(0, zl)) with its own guided
//!        filters of radii t_m (guide L), eps from the noise map
//!   G' = L' - (C_0 + C_1) / 4                            (the chroma filters keep L as guide)
//! ```
//! Gated smoothing ([`super::gated_smoothing`]) lets flat areas average
//! many pixels (the plain network leaves pixel-level noise there): `box_r`
//! is the per-channel mean over the (2r+1)^2 window clipped to the tensor.
//! Files hold the gate's logits as used (`gate.weight` `[4K, c1, 1, 1]`,
//! `gate.bias` `[4K]`; training's GATE_SCALE is applied by the export);
//! files without `gate_radii` have no gate tensors and run unchanged. Cost:
//! K (c1 + 9) multiply-adds per pixel (`fastg` 5,031 against `fast`'s
//! 4,981), a halo covering the largest radius (48 for `fastg`).
//! Chroma smoothing ([`super::chroma_guided`]) blends the colour
//! differences with their guided filters (He et al. 2010), the luminance
//! the guide, regularised by `chroma_eps_k` x the local noise variance
//! (from the noise input) + `chroma_eps_floor`: flat areas lose chroma
//! noise, and colour follows luminance edges instead of bleeding across
//! them, while the luminance is untouched. Files hold `cgate.weight`
//! `[4J, c1, 1, 1]`, `cgate.bias` `[4J]` (logits as used, GATE_SCALE
//! applied by the export) and the metadata `chroma_eps_k`,
//! `chroma_eps_floor`; files without `chroma_radii` have no `cgate` and
//! run unchanged. Cost: J (c1 + 40) + 12 multiply-adds per pixel as
//! training counts them (`fastc`: 2 (16 + 40) + 12 = 124 over `fastb`'s
//! 5,272), and a halo that covers the filters' reach (2 s_J) on top of
//! the gate's (the file's `halo`, as PyTorch measures it).
//! Luminance smoothing (the same module) blends L with its self-guided
//! filters, regularised by `lum_eps_k` x the local noise variance +
//! `chroma_eps_floor`: flat areas lose luminance noise, edges stay.
//! Files hold `lgate.weight` `[4M, c1, 1, 1]`, `lgate.bias` `[4M]`
//! (logits as used) and the metadata `lum_eps_k`; files without
//! `lum_radii` have no `lgate` and run unchanged. Cost: M (c1 + 16)
//! multiply-adds per pixel more as training counts them (a radius shared
//! with the chroma filters shares their means of L, L L and V).
//! Metadata `guided_subsample` = 2 (`fastd` since run 36; absent or 1:
//! full resolution) runs both kinds of guided filter at half resolution
//! (He and Sun's fast guided filter): their coefficients from 2x2 means of
//! L, C and the noise variance, radii halved, bilinearly upsampled before
//! they meet the full-resolution L. Cost as training counts it: 16 plus
//! J (c1 + 22) and M (c1 + 10) multiply-adds per pixel.
//! The network learns a residual over a bilinear demosaic (metadata
//! `base` = `bilinear`, or absent), and may lean on a classical one, which
//! the gate `g` blends with its estimate per pixel (metadata `base` =
//! `rcd_mlri` or another
//! classical demosaic, [`super::classical_base`]): the engine's
//! `demosaic_<base>` op with default params, run once over the whole frame
//! in its own phase before the tiles (its cost is not in
//! `flops_per_pixel`), then reflect-padded and windowed exactly as the
//! mosaic (RGB, so no CFA parity to keep). `fr1.weight` is then
//! `[fullres_width, 9, 3, 3]` (input channels: masked mosaic R, G, B, up
//! R, G, B, base - bilinear R, G, B) and the file holds `bgate.weight`
//! `[4, c1, 1, 1]`, `bgate.bias` `[4]` (logits as used, GATE_SCALE applied
//! by the export). Cost: 3 fullres_width 9 + c1 + 9 multiply-adds per
//! pixel more (`fastb` 5,272 against `fastg`'s 5,031).
//! Inputs: the black-level-subtracted, white-balanced mosaic (1.0 = white)
//! in the model's phase, the noise std of that mosaic per pixel,
//! RMS-pooled to half resolution, and for a model over a classical base
//! that base (planar RGB `[3, H, W]`, the mosaic's units). Output:
//! white-balanced linear camera RGB.
//! Frames run tiled ([`super::bayer_tiles`]) with the halo of the metadata
//! (full-resolution pixels, a multiple of 8: 40 for `fast`, 72 for `fast4`)
//! and tile origins aligned to `2^levels` full-resolution pixels (8, or 16
//! with the 1/16 level), so every window starts on the down-sampling grid of
//! one pass over the whole frame reflect-padded by the halo (`run_full` in
//! training/train_dmdn.py) and a tiled run equals that pass bit for bit.
//! The halo need not be a multiple of `2^levels`. It is the receptive
//! radius PyTorch measures (in float64: float32 misses the far, weak reach
//! of near-silent smoothing stages: with box means of chroma of radii 4
//! and 12, halo 48 left tiles an ulp off the whole frame where 64 was
//! exact) for inputs at grid phase 0 and 1; at other
//! phases the radius reaches 4 px more (44 / 76, measured), but a tile's
//! first output row sits at phase `halo + dy` of the grid, where the radius
//! is smaller, and each later row is one pixel further from the window
//! edge, so the halo suffices (the tests compare tiles with the whole frame
//! for the fixtures and the shipped models). The halo is the network's
//! radius over its inputs, the classical base being one: the base op's own
//! radius needs none, as it runs on the whole frame.
//!
//! Measured (data movement of the forward pass, `bench --synthetic
//! 4000x3000 -p learned`, `fast_raw`, Intel Xeon with AVX-512, 2 vCPUs
//! shared with a training job, load 2.9-3.0; old and new binaries
//! interleaved, 4 rounds, `dm` median): building the tile windows, the
//! noise map, the input `concat(pixel_unshuffle(mosaic), noise)`, the
//! pixel shuffles and fr1's input (up and base - bilinear) in place with
//! no zero fills or extra copies, strided im2col without per-pixel
//! lookups, the bilinear rows read once (a ring of three) and the direct
//! 3x3 conv reading its input rows in place took 1 thread 2,846 -> 2,759
//! ms (-3 %; process user CPU 8.97 -> 8.70 s) and 2 threads 3,148 ->
//! 2,982 ms (-5 %; 9.78 -> 9.36 s), the same bits (outputs of the four
//! shipped raw models on odd-sized frames of every phase compared bit for
//! bit with the old code). In a 1-thread profile (3 MP) memmove fell from
//! 11.8 % to 8.8 % of the time and im2col from 4.9 % to under 0.5 %;
//! much of the remaining copying is the first touch of tile-sized planes
//! (a 1,104 px window's 9 full-resolution planes of fr1's input are 44
//! MB), which only streaming the full-resolution stages in row bands would
//! avoid.
//! That streaming is [`super::fullres_tail`] (fr1's input built per band
//! of ~20 rows, fr1, fr2, `+ up`, `+ bilinear` and the base blend in one
//! pass; neither fr1's 9 input planes nor its 8 output planes of the whole
//! window are written), with the shuffles' rows interleaved by SSE2
//! unpacks: on `fastd_raw` (learned_fastd.yaml, `tile: 1536`, 12 MP, load
//! ~4) the stages it touches took ~80 ms less per frame in 1-thread perf
//! samples (~2 % of the frame; see its "Measured"), and as fr1's 9 input
//! and 8 output planes of the whole window are no longer allocated, peak
//! RSS at 2 threads fell from 1.25-1.34 GB to 0.98-1.0 GB (3 runs each);
//! the same bits (`fastd_raw` and `fast_raw` outputs on odd-sized frames
//! of every phase, tiles 96 to 1536, compared byte for byte with the old
//! code at 1 and 2 threads).

use std::collections::HashMap;
use std::path::Path;

use super::bayer_tiles::{parse_cfa, run_tiled_pooled, BayerFrame, Cfa2x2, NoiseInput, TileSpec};
use super::chroma_guided::ChromaGuided;
use super::classical_base::ClassicalBase;
use super::fullres_tail::{fullres_tail, TailInputs};
use super::gated_smoothing::{gated_smoothing_into, MAX_BOXES, MAX_RADIUS};
use super::logits::Logits;
use super::shuffle::{pixel_shuffle_add_pooled, pixel_shuffle_pooled, pixel_unshuffle_extend};
use super::{Activation, BufferPool, Conv2d, Padding, Tensor, Weights};
use crate::error::{Error, Result};

/// Hyper-parameters, read from the weights file's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmdnUnetConfig {
    /// Channels at 1/2, 1/4 and 1/8 resolution, and at 1/16 when there is
    /// a fourth level (3 or 4 values).
    pub widths: Vec<usize>,
    /// 3x3 convs at 1/8 resolution after the stride-2 one.
    pub bottom: usize,
    /// 3x3 convs at 1/16 resolution after the stride-2 one (0 without a
    /// fourth level).
    pub deep: usize,
    /// Channels of the full-resolution refinement conv.
    pub fullres_width: usize,
    /// Canonical CFA phase the model was trained on.
    pub phase: Cfa2x2,
    /// Number of noise-map input channels (each = the noise std).
    pub noise_channels: usize,
    /// Receptive radius in full-resolution pixels (multiple of 8).
    pub halo: usize,
    /// Box radii of the gated smoothing (metadata `gate_radii`, 1..=4
    /// values in 1..=16 px); empty without the gate.
    pub gate_radii: Vec<usize>,
    /// Guided-filter radii of the chroma smoothing (metadata
    /// `chroma_radii`, 1..=4 values in 1..=8 px, only with `gate_radii`);
    /// empty without it.
    pub chroma_radii: Vec<usize>,
    /// Guided-filter radii of the luminance smoothing (metadata
    /// `lum_radii`, 1..=4 values in 1..=8 px, only with `chroma_radii`);
    /// empty without it.
    pub lum_radii: Vec<usize>,
    /// Resolution divisor of the guided filters' coefficients (metadata
    /// `guided_subsample`: 1, also when absent, or 2; only with
    /// `chroma_radii`, and 2 divides every radius).
    pub guided_subsample: usize,
    /// Metadata `base`: `bilinear` (also when absent) or the name of the
    /// classical demosaic the network refines (`rcd_mlri`: the op
    /// `demosaic_rcd_mlri`).
    pub base: String,
}

impl DmdnUnetConfig {
    /// U-Net levels (resolutions 1/2 .. 1/2^levels): 3 or 4.
    pub fn levels(&self) -> usize {
        self.widths.len()
    }

    /// Window alignment of the tiler in full-resolution pixels: `2^levels`
    /// (8 or 16), so every stride-2 stage divides evenly.
    pub fn align(&self) -> usize {
        1 << self.levels()
    }
}

/// The optional 1/16 level: a stride-2 conv, `deep` 3x3 convs and the 1x1
/// conv whose pixel-shuffled output is added to the 1/8 features.
#[derive(Clone, Debug)]
struct Level4 {
    e4a: Conv2d,
    e4: Vec<Conv2d>,
    u3: Conv2d,
}

/// The classical base of a model over one: the op that computes it and the
/// 1x1 conv on `d1` whose pixel-shuffled sigmoid blends it in.
#[derive(Clone, Debug)]
struct BaseHead {
    op: ClassicalBase,
    /// `[4, c1, 1, 1]`: logits as used (GATE_SCALE applied by the export).
    bgate: Conv2d,
}

/// A loaded `dmdn_unet` model.
#[derive(Clone, Debug)]
pub struct DmdnUnet {
    cfg: DmdnUnetConfig,
    e1a: Conv2d,
    e1b: Conv2d,
    e2a: Conv2d,
    e2b: Conv2d,
    e3a: Conv2d,
    e3: Vec<Conv2d>,
    level4: Option<Level4>,
    u2: Conv2d,
    d2: Conv2d,
    u1: Conv2d,
    d1: Conv2d,
    head: Conv2d,
    fr1: Conv2d,
    fr2: Conv2d,
    /// The gated smoothing's 1x1 conv on `d1`: `[4K, c1, 1, 1]` (logits as
    /// used, GATE_SCALE already applied by the export).
    gate: Option<Conv2d>,
    /// The chroma smoothing: its 1x1 conv on `d1`, `[4J, c1, 1, 1]`
    /// (logits as used, GATE_SCALE already applied by the export), and its
    /// guided filters.
    chroma: Option<(Conv2d, ChromaGuided)>,
    /// The luminance smoothing's 1x1 conv on `d1`, `[4M, c1, 1, 1]`
    /// (logits as used); its filters are in `chroma`'s [`ChromaGuided`].
    lgate: Option<Conv2d>,
    /// The classical base (metadata `base` other than `bilinear`).
    base: Option<BaseHead>,
    metadata: HashMap<String, String>,
}

/// Bilinear demosaicking of a masked mosaic as a depthwise 3x3 kernel per
/// colour (R, G, B), zero-padded; the same weights as `BILINEAR` in
/// training/train_dmdn.py.
pub const BILINEAR: [[f32; 9]; 3] = [
    [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25],
    [0.0, 0.25, 0.0, 0.25, 1.0, 0.25, 0.0, 0.25, 0.0],
    [0.25, 0.5, 0.25, 0.5, 1.0, 0.5, 0.25, 0.5, 0.25],
];

/// Adds the bilinear demosaic of `masked` (`[1, 3, H, W]`) to `y` (same
/// shape): `y[c] += Σ BILINEAR[c][k] · masked[c](neighbour k)`, zeros outside.
#[cfg(test)]
pub(super) fn add_bilinear(y: &mut Tensor, masked: &Tensor) {
    let [_, _, h, w] = masked.shape();
    acc_bilinear::<false>(y.data_mut(), masked.data(), h, w)
}

/// Subtracts the bilinear demosaic of `masked` from `y` (as
/// [`add_bilinear`], `y[c] -= Σ ...`): `base - bilinear` in place.
#[cfg(test)]
pub(super) fn sub_bilinear(y: &mut Tensor, masked: &Tensor) {
    let [_, _, h, w] = masked.shape();
    acc_bilinear::<true>(y.data_mut(), masked.data(), h, w)
}

/// `y[c] ±= Σ BILINEAR[c][k] · masked[c](neighbour k)` (minus when `NEG`);
/// `y` and `masked` are three planes (R, G, B) of `h x w` each.
#[cfg(test)]
fn acc_bilinear<const NEG: bool>(y: &mut [f32], masked: &[f32], h: usize, w: usize) {
    bilinear_rows(masked, h, w, |c, yy, acc| {
        let at = c * h * w + yy * w;
        let dst = y[at..at + w].iter_mut().zip(acc);
        if NEG {
            dst.for_each(|(d, &a)| *d -= a);
        } else {
            dst.for_each(|(d, &a)| *d += a);
        }
    })
}

/// Calls `row(c, yy, acc)` for every colour `c` and row `yy` in order,
/// `acc` holding `Σ BILINEAR[c][k] · masked[c](neighbour k)` of that row
/// (`masked`: three planes of `h x w`, zeros outside).
///
/// Row at a time over a zero-bordered ring of three source rows, the taps
/// summed in kernel order into a row accumulator: the same arithmetic as the
/// per-pixel definition (a zero tap adds +0.0, which leaves a sum that
/// started at +0.0 unchanged), vectorised.
#[cfg(test)]
fn bilinear_rows(masked: &[f32], h: usize, w: usize, row: impl FnMut(usize, usize, &[f32])) {
    bilinear_rows_range(masked, h, w, 0, h, row)
}

/// [`bilinear_rows`] for rows `y0..y1` only (`y1 <= h`): the same values
/// for those rows (each row's sum reads its three source rows alone).
pub(super) fn bilinear_rows_range(
    masked: &[f32],
    h: usize,
    w: usize,
    y0: usize,
    y1: usize,
    mut row: impl FnMut(usize, usize, &[f32]),
) {
    let mut rows = vec![0f32; 3 * (w + 2)];
    let mut acc = vec![0f32; w];
    let hw = h * w;
    for (c, k) in BILINEAR.iter().enumerate() {
        let src = &masked[c * hw..(c + 1) * hw];
        // A ring of three source rows, each with a zero column each side,
        // each copied once: `load(rows, r)` puts source row r - 1 (all
        // zeros outside the frame) in slot r % 3.
        let load = |rows: &mut [f32], r: usize| {
            let row = &mut rows[(r % 3) * (w + 2) + 1..(r % 3) * (w + 2) + 1 + w];
            match r.checked_sub(1).filter(|&s| s < h) {
                Some(sy) => row.copy_from_slice(&src[sy * w..(sy + 1) * w]),
                None => row.fill(0.0),
            }
        };
        load(&mut rows, y0);
        load(&mut rows, y0 + 1);
        for yy in y0..y1.min(h) {
            // source row yy + 1; rows yy - 1 and yy are in place
            load(&mut rows, yy + 2);
            acc.fill(0.0);
            for (t, &kv) in k.iter().enumerate() {
                if kv == 0.0 {
                    continue;
                }
                // source row yy + dy - 1: slot (yy + dy) % 3
                let (slot, dx) = ((yy + t / 3) % 3, t % 3);
                let s = &rows[slot * (w + 2) + dx..slot * (w + 2) + dx + w];
                acc.iter_mut().zip(s).for_each(|(a, &v)| *a += kv * v);
            }
            row(c, yy, &acc);
        }
    }
}

impl DmdnUnet {
    /// Loads and validates a weights file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_weights(Weights::load(path)?)
    }

    /// Builds the model from parsed weights, checking metadata and shapes.
    pub fn from_weights(mut w: Weights) -> Result<Self> {
        if w.meta("arch")? != "dmdn_unet" {
            return Err(w.err(format!("arch '{}' is not 'dmdn_unet'", w.meta("arch")?)));
        }
        if w.meta("version")? != "1" {
            return Err(w.err(format!(
                "dmdn_unet version '{}' not supported",
                w.meta("version")?
            )));
        }
        let ws: Vec<usize> = w
            .meta("widths")?
            .split(',')
            .map(|s| s.trim().parse::<usize>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| w.err("widths must be three or four integers"))?;
        if !(3..=4).contains(&ws.len()) || !ws.iter().all(|v| (1..=512).contains(v)) {
            return Err(w.err(format!(
                "widths {ws:?} must be three or four values in 1..=512"
            )));
        }
        // `deep` is optional (files from before the fourth level lack it).
        let deep = if w.metadata().contains_key("deep") {
            w.meta_usize("deep", 0, 8)?
        } else {
            0
        };
        if deep > 0 && ws.len() < 4 {
            return Err(w.err(format!("deep {deep} needs a fourth width (widths {ws:?})")));
        }
        // `gate_radii`, `chroma_radii` and `lum_radii` are optional (files
        // without gated, chroma or luminance smoothing lack them); chroma
        // smoothing follows the gate, luminance smoothing the chroma one.
        let gate_radii = radii_meta(&w, "gate_radii")?;
        let chroma_radii = radii_meta(&w, "chroma_radii")?;
        let lum_radii = radii_meta(&w, "lum_radii")?;
        if !chroma_radii.is_empty() && gate_radii.is_empty() {
            return Err(w.err(format!(
                "chroma_radii {chroma_radii:?} need gate_radii (chroma smoothing follows the gated smoothing)"
            )));
        }
        if !lum_radii.is_empty() && chroma_radii.is_empty() {
            return Err(w.err(format!(
                "lum_radii {lum_radii:?} need chroma_radii (luminance smoothing is part of the chroma smoothing)"
            )));
        }
        // `base` absent: the bilinear base (files from before the
        // classical one).
        let base_name = match w.metadata().get("base") {
            None => "bilinear".to_string(),
            Some(b) => b.clone(),
        };
        let base_op = match base_name.as_str() {
            "bilinear" => None,
            b => Some(ClassicalBase::new(b).map_err(|r| w.err(r))?),
        };
        let guided_subsample = if w.metadata().contains_key("guided_subsample") {
            w.meta_usize("guided_subsample", 1, 2)?
        } else {
            1
        };
        if guided_subsample > 1 && chroma_radii.is_empty() {
            return Err(w.err(format!(
                "guided_subsample {guided_subsample} needs chroma_radii (it sets the guided filters' resolution)"
            )));
        }
        let phase_s = w.meta("phase")?.to_string();
        let cfg = DmdnUnetConfig {
            widths: ws,
            bottom: w.meta_usize("bottom", 0, 32)?,
            deep,
            fullres_width: w.meta_usize("fullres_width", 1, 512)?,
            phase: parse_cfa(&phase_s)
                .ok_or_else(|| w.err(format!("phase '{phase_s}' is not a Bayer pattern")))?,
            noise_channels: w.meta_usize("noise_channels", 0, 16)?,
            halo: w.meta_usize("halo", 8, 1024)?,
            gate_radii,
            chroma_radii,
            lum_radii,
            guided_subsample,
            base: base_name,
        };
        if !cfg.halo.is_multiple_of(8) {
            return Err(w.err(format!("halo {} is not a multiple of 8", cfg.halo)));
        }
        let (c1, c2, c3) = (cfg.widths[0], cfg.widths[1], cfg.widths[2]);
        let nc = cfg.noise_channels;
        let metadata = w.metadata().clone();
        let e3 = (0..cfg.bottom)
            .map(|i| conv(&mut w, &format!("e3.{i}"), [c3, c3, 3, 3], 1))
            .collect::<Result<Vec<_>>>()?;
        let level4 = match cfg.widths.get(3) {
            Some(&c4) => Some(Level4 {
                e4a: conv(&mut w, "e4a", [c4, c3, 3, 3], 2)?,
                e4: (0..cfg.deep)
                    .map(|i| conv(&mut w, &format!("e4.{i}"), [c4, c4, 3, 3], 1))
                    .collect::<Result<Vec<_>>>()?,
                u3: conv(&mut w, "u3", [4 * c3, c4, 1, 1], 1)?,
            }),
            None => None,
        };
        let gate = match cfg.gate_radii.len() {
            0 => None,
            k => Some(conv(&mut w, "gate", [4 * k, c1, 1, 1], 1)?),
        };
        let chroma = match cfg.chroma_radii.len() {
            0 => None,
            k => {
                let eps = |key: &str| -> Result<f32> {
                    let s = w.meta(key)?;
                    s.trim()
                        .parse::<f32>()
                        .map_err(|_| w.err(format!("{key} '{s}' is not a number")))
                };
                let mut filters = ChromaGuided::new(
                    cfg.chroma_radii.clone(),
                    eps("chroma_eps_k")?,
                    eps("chroma_eps_floor")?,
                )
                .and_then(|f| f.with_subsample(cfg.guided_subsample))
                .map_err(|e| w.err(e.to_string()))?;
                if !cfg.lum_radii.is_empty() {
                    filters = filters
                        .with_lum(cfg.lum_radii.clone(), eps("lum_eps_k")?)
                        .map_err(|e| w.err(e.to_string()))?;
                }
                Some((conv(&mut w, "cgate", [4 * k, c1, 1, 1], 1)?, filters))
            }
        };
        let lgate = match cfg.lum_radii.len() {
            0 => None,
            k => Some(conv(&mut w, "lgate", [4 * k, c1, 1, 1], 1)?),
        };
        let base = match base_op {
            Some(op) => Some(BaseHead {
                op,
                bgate: conv(&mut w, "bgate", [4, c1, 1, 1], 1)?,
            }),
            None => None,
        };
        let fr1_in = if base.is_some() { 9 } else { 6 };
        let m = DmdnUnet {
            e1a: conv(&mut w, "e1a", [c1, 4 + nc, 3, 3], 1)?,
            e1b: conv(&mut w, "e1b", [c1, c1, 3, 3], 1)?,
            e2a: conv(&mut w, "e2a", [c2, c1, 3, 3], 2)?,
            e2b: conv(&mut w, "e2b", [c2, c2, 3, 3], 1)?,
            e3a: conv(&mut w, "e3a", [c3, c2, 3, 3], 2)?,
            e3,
            level4,
            u2: conv(&mut w, "u2", [4 * c2, c3, 1, 1], 1)?,
            d2: conv(&mut w, "d2", [c2, c2, 3, 3], 1)?,
            u1: conv(&mut w, "u1", [4 * c1, c2, 1, 1], 1)?,
            d1: conv(&mut w, "d1", [c1, c1, 3, 3], 1)?,
            head: conv(&mut w, "head", [12, c1, 1, 1], 1)?,
            fr1: conv(&mut w, "fr1", [cfg.fullres_width, fr1_in, 3, 3], 1)?,
            fr2: conv(&mut w, "fr2", [3, cfg.fullres_width, 1, 1], 1)?,
            gate,
            chroma,
            lgate,
            base,
            cfg,
            metadata,
        };
        w.finish()?;
        Ok(m)
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &DmdnUnetConfig {
        &self.cfg
    }

    /// The classical demosaic the network refines (metadata `base` other
    /// than `bilinear`), None over the bilinear base. Compute it over the
    /// whole frame and pass it to [`DmdnUnet::run_frame`].
    pub fn classical_base(&self) -> Option<&ClassicalBase> {
        self.base.as_ref().map(|b| &b.op)
    }

    /// The weights file's metadata (training regime, steps, eval curve ...).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Receptive radius in full-resolution pixels (a multiple of 8).
    pub fn halo(&self) -> usize {
        self.cfg.halo
    }

    /// Output tile edge: 32 halos clamped to 256..=[`MAX_TILE`] (a
    /// multiple of [`DmdnUnetConfig::align`]).
    ///
    /// Three levels (`fast`, halo 40): at 1024 the halo overlap costs ~17 %
    /// (26 % at 640) and a tile's largest activation is ~40 MB for 32
    /// channels. Four levels (`fast4`, halo 72): the overlap costs ~31 % at
    /// 1024, ~21 % at 1536 (12 MP: 3x2 tiles of 1344x1504), ~8 % less time
    /// than 1024 measured at 12 MP for ~+130 MB peak RSS per thread; 2048
    /// gained at most a few % more for another ~+200 MB per thread.
    ///
    /// Models over a classical base were capped near 864 px so that fr1's
    /// 9-channel window stayed under glibc's largest mmap threshold (each
    /// tile mapped and zeroed it afresh); since tensors come from a per-run
    /// [`super::pool::BufferPool`] that no longer costs a mapping per
    /// tile. With the guided filters' reach (`fastd`, halo 64) the overlap
    /// of 832-px tiles is ~36 %, of 1536 ~19 %. 12 MP `bench`, `dm` row,
    /// Intel Xeon AVX-512, training paused, two rounds each: `fastd` 2
    /// threads 1,891 / 1,966 ms at 832 -> 1,708 / 1,688 at 1536 (2048:
    /// 1,705 / 1,708; 3072: 1,691 / 1,687), peak RSS 0.8 -> 1.3 GB (2048:
    /// 1.7 GB); 1 thread 3,838 / 3,842 at 832 -> 3,425 / 3,328 at 2048.
    /// `fast_raw` (halo 48), 2 threads: 1,364 / 1,351 ms at 864 -> 1,287
    /// / 1,353 at 1536, 0.71 -> 1.2 GB.
    pub fn default_tile(&self) -> usize {
        let align = self.cfg.align();
        (32 * self.halo()).clamp(256, MAX_TILE) / align * align
    }

    /// Floating-point operations per full-resolution output pixel (conv
    /// multiply-adds x2, excluding halo overlap; the gates as training
    /// counts them; without the classical base op itself).
    pub fn flops_per_pixel(&self) -> f64 {
        let f = |c: &Conv2d| c.flops_per_output_pixel() as f64;
        let half = f(&self.e1a) + f(&self.e1b) + f(&self.d1) + f(&self.head);
        let quarter = f(&self.e2a) + f(&self.e2b) + f(&self.d2) + f(&self.u1);
        let eighth = f(&self.e3a) + self.e3.iter().map(f).sum::<f64>() + f(&self.u2);
        let sixteenth = self.level4.as_ref().map_or(0.0, |l| {
            f(&l.e4a) + l.e4.iter().map(f).sum::<f64>() + f(&l.u3)
        });
        // the gate (as training/train_dmdn.py's `macs_per_pixel`): its 1x1
        // conv at 1/2 resolution and, per box, 3 channels x (2 sums + 1
        // blend) = K (c1 + 9) multiply-adds per pixel
        let gate = (self.cfg.gate_radii.len() * (self.cfg.widths[0] + 9)) as f64 * 2.0;
        // the chroma smoothing (as training counts it): its 1x1 conv, ~40
        // per guided filter, ~12 for the transforms and the softmax
        // (at half resolution ~22 per filter and ~16)
        let (per, fixed, per_lum) = match self.cfg.guided_subsample {
            1 => (40, 12, 16),
            _ => (22, 16, 10),
        };
        let chroma = match self.cfg.chroma_radii.len() {
            0 => 0.0,
            k => (k * (self.cfg.widths[0] + per) + fixed) as f64 * 2.0,
        };
        // the luminance smoothing (as training counts it): its 1x1 conv,
        // ~16 per guided filter (~10 at half resolution)
        let lum = (self.cfg.lum_radii.len() * (self.cfg.widths[0] + per_lum)) as f64 * 2.0;
        // the classical base (fr1's extra inputs are in f(fr1)): the base
        // gate's 1x1 conv at 1/2 resolution and 9 multiply-adds of the
        // blend as training counts them
        let base = self.base.as_ref().map_or(0.0, |b| f(&b.bgate) / 4.0 + 18.0);
        // + 9 multiply-adds of the bilinear base per pixel
        base + gate
            + chroma
            + lum
            + half / 4.0
            + quarter / 16.0
            + eighth / 64.0
            + sixteenth / 256.0
            + f(&self.fr1)
            + f(&self.fr2)
            + 18.0
    }

    /// Runs the network on one canonical-phase window.
    ///
    /// `mosaic`: `[1, 1, H, W]` (H, W multiples of [`DmdnUnetConfig::align`],
    /// origin in the model's phase); `noise`: `[1, noise_channels, H/2, W/2]`;
    /// `base`: the classical base's window `[1, 3, H, W]`, required by a
    /// model over a classical base and refused by one over the bilinear
    /// base. Returns `[1, 3, H, W]`.
    pub fn forward(&self, mosaic: &Tensor, noise: &Tensor, base: Option<Tensor>) -> Result<Tensor> {
        self.forward_pooled(mosaic, noise, base, &BufferPool::new())
    }

    /// [`Self::forward`] with every tensor on buffers from `pool`, each
    /// given back as soon as it is dead (the base window too); the result
    /// is on a pooled buffer. The same arithmetic, bit for bit.
    pub fn forward_pooled(
        &self,
        mosaic: &Tensor,
        noise: &Tensor,
        base: Option<Tensor>,
        pool: &BufferPool,
    ) -> Result<Tensor> {
        let relu = Activation::Relu;
        let none = Activation::None;
        self.check_base(base.is_some())?;
        let [_, _, h, w] = mosaic.shape();
        let base = match (&self.base, base) {
            (Some(head), Some(b)) => {
                if b.shape() != [1, 3, h, w] {
                    return Err(Error::invalid(format!(
                        "dmdn_unet: base window {:?} is not [1, 3, {h}, {w}]",
                        b.shape()
                    )));
                }
                Some((head, b))
            }
            _ => None,
        };
        // conv, then give its input back
        let step = |c: &Conv2d, x: Tensor, act: Activation| -> Result<Tensor> {
            let y = c.forward_pooled(&x, act, pool)?;
            pool.give(x);
            Ok(y)
        };
        // pixel_shuffle(c(x), 2), x kept
        let up2 = |c: &Conv2d, x: &Tensor, act: Activation| -> Result<Tensor> {
            let u = c.forward_pooled(x, act, pool)?;
            let s = pixel_shuffle_pooled(&u, 2, pool)?;
            pool.give(u);
            Ok(s)
        };
        // pixel_shuffle(c(x), 2) + a in one pass, x kept
        let up2_add = |c: &Conv2d, x: &Tensor, a: &Tensor| -> Result<Tensor> {
            let u = c.forward_pooled(x, none, pool)?;
            let s = pixel_shuffle_add_pooled(&u, 2, a, pool)?;
            pool.give(u);
            Ok(s)
        };
        // concat(pixel_unshuffle(mosaic, 2), noise), built in place
        let (hh, hw2) = (h / 2, w / 2);
        let nc = if self.cfg.noise_channels > 0 {
            noise.c()
        } else {
            0
        };
        if mosaic.shape()[..2] != [1, 1] || (nc > 0 && noise.shape() != [1, nc, hh, hw2]) {
            return Err(Error::invalid(format!(
                "dmdn_unet: mosaic {:?} or noise {:?} is not [1, 1, {h}, {w}] and [1, {}, {hh}, {hw2}]",
                mosaic.shape(),
                noise.shape(),
                self.cfg.noise_channels
            )));
        }
        let mut xv = pool.take((4 + nc) * hh * hw2);
        pixel_unshuffle_extend(mosaic, 2, &mut xv)?;
        if nc > 0 {
            xv.extend_from_slice(noise.data());
        }
        let x = Tensor::from_vec([1, 4 + nc, hh, hw2], xv)?;
        let e1 = step(&self.e1b, step(&self.e1a, x, relu)?, relu)?;
        let e2 = step(&self.e2b, self.e2a.forward_pooled(&e1, relu, pool)?, relu)?;
        let mut e3 = self.e3a.forward_pooled(&e2, relu, pool)?;
        if let Some(l4) = &self.level4 {
            let mut e4 = l4.e4a.forward_pooled(&e3, relu, pool)?;
            for c in &l4.e4 {
                e4 = step(c, e4, relu)?;
            }
            let s3 = up2_add(&l4.u3, &e4, &e3)?;
            pool.give(e4);
            pool.give(std::mem::replace(&mut e3, s3));
        }
        for c in &self.e3 {
            e3 = step(c, e3, relu)?;
        }
        let s2 = up2_add(&self.u2, &e3, &e2)?;
        pool.give(e3);
        pool.give(e2);
        let d2 = step(&self.d2, s2, relu)?;
        let s1 = up2_add(&self.u1, &d2, &e1)?;
        pool.give(d2);
        pool.give(e1);
        let d1 = step(&self.d1, s1, relu)?;
        let u = self.head.forward_pooled(&d1, none, pool)?;
        // the smoothing stages read their logits packed (as the 1x1 convs
        // leave them, `Logits::Packed`), one interleaved row at a time
        let logits = match &self.gate {
            Some(g) => Some(g.forward_pooled(&d1, none, pool)?),
            None => None,
        };
        let chroma_logits = match &self.chroma {
            Some((g, _)) => Some(g.forward_pooled(&d1, none, pool)?),
            None => None,
        };
        let lum_logits = match &self.lgate {
            Some(g) => Some(g.forward_pooled(&d1, none, pool)?),
            None => None,
        };
        let g = match &base {
            Some((head, _)) => Some(up2(&head.bgate, &d1, Activation::Sigmoid)?),
            None => None,
        };
        pool.give(d1);
        // y = bilinear + up + fr2(fr1(concat(masked, up[, base -
        // bilinear]))) (and with a classical base y + g (base - y)),
        // streamed in row bands, fr1's input built per band
        let mut y = {
            let inp = TailInputs {
                mosaic,
                phase: self.cfg.phase,
                head: &u,
                base: match (&base, &g) {
                    (Some((_, b)), Some(g)) => Some((b.data(), g.data())),
                    _ => None,
                },
            };
            fullres_tail(&self.fr1, &self.fr2, inp, pool)?
        };
        pool.give(u);
        if let Some(g) = g {
            pool.give(g);
        }
        // a dead 3 x H x W buffer for the smoothing's output: the base
        // window's (every value is overwritten), else a zeroed one
        let spare = |base: Option<Tensor>| -> Result<Tensor> {
            match base {
                Some(b) => Ok(b),
                None => pool.zeros([1, 3, h, w]),
            }
        };
        let base = base.map(|(_, b)| b);
        match logits {
            Some(z) => {
                let mut out = spare(base)?;
                gated_smoothing_into(&y, Logits::Packed(&z), &self.cfg.gate_radii, &mut out)?;
                pool.give(z);
                match (&self.chroma, chroma_logits) {
                    (Some((_, filters)), Some(zc)) => {
                        // `y` is dead: it holds the output.
                        filters.run_into(
                            &out,
                            noise,
                            Logits::Packed(&zc),
                            lum_logits.as_ref().map(Logits::Packed),
                            pool,
                            &mut y,
                        )?;
                        pool.give(out);
                        pool.give(zc);
                        if let Some(zl) = lum_logits {
                            pool.give(zl);
                        }
                        Ok(y)
                    }
                    _ => {
                        pool.give(y);
                        Ok(out)
                    }
                }
            }
            None => {
                if let Some(b) = base {
                    pool.give(b);
                }
                Ok(y)
            }
        }
    }

    /// Demosaics and denoises a whole frame, computing the classical base
    /// (when the model has one) from `mosaic` ([`ClassicalBase::run`]).
    ///
    /// `mosaic`: row-major `h x w` Bayer samples (normalised, 1.0 = white)
    /// whose top-left 2x2 cell is `cfa`; `noise`: σ in the mosaic's units.
    /// `tile`: output tile edge in pixels (rounded up to a multiple of
    /// [`DmdnUnetConfig::align`], at least 16). Returns `[1, 3, h, w]` RGB.
    pub fn run(
        &self,
        mosaic: &[f32],
        h: usize,
        w: usize,
        cfa: Cfa2x2,
        noise: NoiseInput<'_>,
        tile: usize,
    ) -> Result<Tensor> {
        let base = match self.classical_base() {
            Some(b) => Some(b.run(mosaic, h, w, cfa)?),
            None => None,
        };
        let frame = BayerFrame {
            mosaic,
            h,
            w,
            cfa,
            noise,
            base: base.as_deref(),
        };
        self.run_frame(frame, tile)
    }

    /// Demosaics and denoises a whole frame whose classical base (for a
    /// model over one, [`DmdnUnet::classical_base`]) the caller computed:
    /// `frame.base` is then its planar RGB `3 x h x w`, else None. `tile`
    /// as in [`DmdnUnet::run`]. Returns `[1, 3, h, w]` RGB.
    pub fn run_frame(&self, frame: BayerFrame<'_>, tile: usize) -> Result<Tensor> {
        self.check_base(frame.base.is_some())?;
        let spec = TileSpec {
            phase: self.cfg.phase,
            noise_channels: self.cfg.noise_channels,
            halo: self.halo(),
            align: self.cfg.align(),
        };
        run_tiled_pooled(frame, tile, spec, |m, n, b, pool| {
            self.forward_pooled(m, n, b, pool)
        })
    }

    /// A classical base is given (`given`) exactly when the model has one.
    fn check_base(&self, given: bool) -> Result<()> {
        match (&self.base, given) {
            (Some(head), false) => Err(Error::invalid(format!(
                "dmdn_unet: this model refines a classical base ({}) and got none",
                head.op.op()
            ))),
            (None, true) => Err(Error::invalid(
                "dmdn_unet: this model is over the bilinear base and got a classical one",
            )),
            _ => Ok(()),
        }
    }
}

/// Metadata `key` as box radii: absent is none; present, 1..=[`MAX_BOXES`]
/// comma-separated integers in 1..=[`MAX_RADIUS`].
fn radii_meta(w: &Weights, key: &str) -> Result<Vec<usize>> {
    let Some(s) = w.metadata().get(key) else {
        return Ok(Vec::new());
    };
    let r: Vec<usize> = s
        .split(',')
        .map(|v| v.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| w.err(format!("{key} '{s}' must be integers")))?;
    if r.is_empty() || r.len() > MAX_BOXES || !r.iter().all(|v| (1..=MAX_RADIUS).contains(v)) {
        return Err(w.err(format!(
            "{key} {r:?} must be 1..={MAX_BOXES} values in 1..={MAX_RADIUS}"
        )));
    }
    Ok(r)
}

/// Largest default output tile edge, pixels ([`DmdnUnet::default_tile`]).
pub const MAX_TILE: usize = 1536;

fn conv(w: &mut Weights, name: &str, shape: [usize; 4], stride: usize) -> Result<Conv2d> {
    let weight = w.take(&format!("{name}.weight"), &shape)?;
    let bias = w.take(&format!("{name}.bias"), &shape[..1])?;
    Conv2d::new(weight, bias, shape, stride, Padding::Zero(shape[2] / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row-at-a-time [`add_bilinear`] and [`sub_bilinear`] equal the
    /// per-pixel definition bit for bit, borders included.
    #[test]
    fn add_bilinear_equals_the_per_pixel_definition() {
        let (h, w) = (7, 9);
        let vals: Vec<f32> = (0..3 * h * w)
            .map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * if i % 3 == 0 { 0.0 } else { 1.3 })
            .collect();
        let masked = Tensor::from_vec([1, 3, h, w], vals).expect("shape");
        let start: Vec<f32> = (0..3 * h * w).map(|i| (i % 13) as f32 * 0.1).collect();
        let mut y = Tensor::from_vec([1, 3, h, w], start.clone()).expect("shape");
        add_bilinear(&mut y, &masked);
        let mut z = Tensor::from_vec([1, 3, h, w], start.clone()).expect("shape");
        sub_bilinear(&mut z, &masked);
        for (c, k) in BILINEAR.iter().enumerate() {
            for yy in 0..h as isize {
                for xx in 0..w as isize {
                    let mut s = 0f32;
                    for (t, kv) in k.iter().enumerate() {
                        let (sy, sx) = (yy + t as isize / 3 - 1, xx + t as isize % 3 - 1);
                        if *kv != 0.0
                            && (0..h as isize).contains(&sy)
                            && (0..w as isize).contains(&sx)
                        {
                            s += kv * masked.at(0, c, sy as usize, sx as usize);
                        }
                    }
                    let i = (yy * w as isize + xx) as usize;
                    let want = start[c * h * w + i] + s;
                    let got = y.plane(0, c)[i];
                    assert_eq!(got.to_bits(), want.to_bits(), "c {c} y {yy} x {xx}");
                    let want = start[c * h * w + i] - s;
                    let got = z.plane(0, c)[i];
                    assert_eq!(got.to_bits(), want.to_bits(), "sub: c {c} y {yy} x {xx}");
                }
            }
        }
    }
}
