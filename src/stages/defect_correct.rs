//! `defect_correct`: defective-pixel correction on the mosaic (hot, dead
//! and stuck photosites).
//!
//! Dynamic detection compares each photosite with its eight same-colour
//! neighbours two pixels away (the Bayer period): a sample more than
//! `threshold` above the second largest of them (hot) or below the second
//! smallest (dead, stuck dark) is replaced by their median; using the
//! second extreme finds pairs of adjacent defects too. This is the thresholded form
//! of Halide camera_pipe's hot-pixel suppression, which clamps every pixel
//! to its neighbours' range and so also flattens clean detail. A static
//! map (`map: FILE`, one `x y` pair per line in mosaic coordinates, `#`
//! comments; dcraw's `-P` format, a trailing third column is ignored)
//! lists known defects that are always replaced; `rawgraph calibrate dpc`
//! writes one from dark and flat frames
//! ([`crate::cli::calibrate::dpc`]).
//!
//! Input and output: a black-level-corrected mosaic (1.0 = white), same
//! size and phase; `threshold` is in those normalised units. Every path
//! runs [`fix_row`] per row: it reads the rows two above and below and
//! lists the row's corrections (column, value), so only defective
//! photosites are ever written. The whole-frame path corrects the mosaic
//! it owns in place; in a fused segment the op is a mosaic stencil
//! ([`RowKernel::MosaicStencil`], two rows of context) whose corrections
//! the runner applies once no other row reads the row's old values
//! (checked by a test).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Deserialize;

use super::row_kernel::{Header, MosaicStencilFn, RowKernel, RowShape};
use super::{check_range, one_input, parse_params, take_mosaic, RunCtx, Stage, ROWS_PER_TASK};
use crate::backend::cpu::reflect;
use crate::error::{Error, Result};
use crate::frame::{MosaicScale, Value, ValueDesc, ValueKind};

/// YAML params of `defect_correct`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Dynamic detection on/off.
    pub dynamic: bool,
    /// How far (normalised units, 1.0 = white) a sample must lie outside
    /// its same-colour neighbours' range to count as defective.
    pub threshold: f32,
    /// Optional static defect map file (`x y` per line).
    pub map: Option<PathBuf>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            dynamic: true,
            threshold: 0.08,
            map: None,
        }
    }
}

impl crate::stages::Validate for Params {
    fn validate(&self) -> std::result::Result<(), crate::stages::CompileError> {
        check_range("threshold", self.threshold, 0.0, 1.0)
    }
}

/// The compiled `defect_correct` op.
#[derive(Debug)]
pub struct DefectCorrect {
    p: Params,
    /// Static defects as (x, y), sorted by row.
    map: Arc<Vec<(usize, usize)>>,
}

pub fn compile(params: serde_json::Value) -> crate::stages::CompileResult {
    let p: Params = parse_params(params)?;
    let map = match &p.map {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                crate::stages::CompileError::params(format!(
                    "map: cannot read {}: {e}",
                    path.display()
                ))
            })?;
            parse_map(&text).map_err(|e| {
                crate::stages::CompileError::params(format!("map: {}: {e}", path.display()))
            })?
        }
        None => Vec::new(),
    };
    Ok(Box::new(DefectCorrect {
        p,
        map: Arc::new(map),
    }))
}

/// Parses a defect list: `x y [anything]` per line, `#` comments.
pub fn parse_map(text: &str) -> std::result::Result<Vec<(usize, usize)>, String> {
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let mut num = || -> std::result::Result<usize, String> {
            it.next()
                .ok_or_else(|| format!("line {}: expected `x y`", k + 1))?
                .parse::<usize>()
                .map_err(|e| format!("line {}: {e}", k + 1))
        };
        let x = num()?;
        let y = num()?;
        out.push((x, y));
    }
    out.sort_by_key(|&(x, y)| (y, x));
    out.dedup();
    Ok(out)
}

/// Offsets (dx, dy) of the eight same-colour neighbours.
const NB: [(isize, isize); 8] = [
    (-2, -2),
    (0, -2),
    (2, -2),
    (-2, 0),
    (2, 0),
    (-2, 2),
    (0, 2),
    (2, 2),
];

/// Median of eight values (mean of the 4th and 5th in `f32::total_cmp`
/// order), by Batcher's 19-comparator sorting network on integer keys that
/// order as `total_cmp` does: branch-free, and the same result as sorting.
#[inline(always)]
fn median8(v: [f32; 8]) -> f32 {
    // Flipping the magnitude bits of negatives makes signed integer order
    // the IEEE total order (-NaN < -inf < ... < -0 < +0 < ... < +NaN).
    let key = |x: f32| {
        let b = x.to_bits() as i32;
        b ^ (((b >> 31) as u32) >> 1) as i32
    };
    let unkey = |k: i32| f32::from_bits((k ^ (((k >> 31) as u32) >> 1) as i32) as u32);
    let [mut k0, mut k1, mut k2, mut k3, mut k4, mut k5, mut k6, mut k7] = v.map(key);
    // One compare-exchange; written out (not a loop over a table of
    // pairs) so that the keys stay in registers.
    macro_rules! cx {
        ($a:ident, $b:ident) => {
            ($a, $b) = ($a.min($b), $a.max($b));
        };
    }
    cx!(k0, k1);
    cx!(k2, k3);
    cx!(k4, k5);
    cx!(k6, k7);
    cx!(k0, k2);
    cx!(k1, k3);
    cx!(k4, k6);
    cx!(k5, k7);
    cx!(k1, k2);
    cx!(k5, k6);
    cx!(k0, k4);
    cx!(k1, k5);
    cx!(k2, k6);
    cx!(k3, k7);
    cx!(k2, k4);
    cx!(k3, k5);
    cx!(k1, k2);
    cx!(k3, k4);
    cx!(k5, k6);
    // Only the middle two are needed.
    let _ = (k0, k1, k2, k5, k6, k7);
    0.5 * (unkey(k3) + unkey(k4))
}

/// Whether a photosite of value `c` is defective against its eight
/// same-colour neighbours `nb`: hot when fewer than two of them reach
/// `c - thr` (c above the second largest by more than `thr`), dead when
/// fewer than two reach down to `c + thr`; the second extreme finds a
/// defect next to another. Branch-free counts.
#[inline(always)]
fn is_defect(c: f32, nb: &[f32; 8], thr: f32) -> bool {
    let (lo, hi) = (c - thr, c + thr);
    let (mut n_hi, mut n_lo) = (0u32, 0u32);
    for &v in nb {
        n_hi += u32::from(v >= lo);
        n_lo += u32::from(v <= hi);
    }
    n_hi < 2 || n_lo < 2
}

/// [`is_defect`] for the interior photosites `x = 2 .. w - 2` of a row:
/// `up`, `mid` and `down` are the full rows `y - 2`, `y`, `y + 2` (width
/// `w`); appends `x - 2` of each defect to `found`, in order; with `copy`,
/// also copies `mid[2 .. w - 2]` into `copy[2 .. w - 2]` block by block
/// while it is in cache (the demosaic segment's output row). Written over
/// equal-length slices with 32-bit lanes throughout so that it vectorises
/// ([`flag_row_wide`] runs it 8 lanes wide on AVX2).
///
/// Most photosites are ruled out by a cheaper necessary test first, a
/// block of [`BLOCK`] at a time: a hot one has at most one neighbour at
/// or above `lo = c - thr`, so neither both of its left and right
/// same-colour neighbours nor both of its upper and lower ones are, that
/// is `max(min(l, r), min(u, d)) < lo`; likewise a dead one has
/// `min(max(l, r), max(u, d)) > c + thr`. A NaN among `l, r, u, d` makes
/// a photosite pass (their sum is NaN), as does a NaN `c` (the tests are
/// written as `!(.. >= lo)` and `!(.. <= hi)`), so every photosite
/// [`is_defect`] flags passes. Only blocks with a photosite that passes
/// get the eight-neighbour count ([`flag_exact`]): the flags are those of
/// [`is_defect`].
#[inline(always)]
fn flag_row(
    up: &[f32],
    mid: &[f32],
    down: &[f32],
    thr: f32,
    found: &mut Vec<usize>,
    copy: Option<&mut [f32]>,
) {
    let n = up.len().min(mid.len()).min(down.len()).saturating_sub(4);
    let mut copy = copy.and_then(|o| o.get_mut(2..2 + n));
    let c = &mid[2..2 + n];
    let (u0, u1, u2) = (&up[..n], &up[2..2 + n], &up[4..4 + n]);
    let (m0, m2) = (&mid[..n], &mid[4..4 + n]);
    let (d0, d1, d2) = (&down[..n], &down[2..2 + n], &down[4..4 + n]);
    let mut flags = [0u32; BLOCK];
    let mut x0 = 0;
    while x0 < n {
        let m = BLOCK.min(n - x0);
        let s = x0..x0 + m;
        let (cb, l, r, u, d) = (
            &c[s.clone()],
            &m0[s.clone()],
            &m2[s.clone()],
            &u1[s.clone()],
            &d1[s.clone()],
        );
        let mut cand = 0u32;
        for ((((&c, &l), &r), &u), &d) in cb.iter().zip(l).zip(r).zip(u).zip(d) {
            // `if a < b { a } else { b }`: one vector min (max) each.
            let (lr_lo, lr_hi) = if l < r { (l, r) } else { (r, l) };
            let (ud_lo, ud_hi) = if u < d { (u, d) } else { (d, u) };
            let a = if lr_lo > ud_lo { lr_lo } else { ud_lo };
            let b = if lr_hi < ud_hi { lr_hi } else { ud_hi };
            let sum = (l + r) + (u + d);
            // Negated so that a NaN `c` passes (is_defect flags it).
            #[allow(clippy::neg_cmp_op_on_partial_ord)]
            let (hot, dead) = (!(a >= c - thr), !(b <= c + thr));
            #[allow(clippy::eq_op)]
            let nan = sum != sum;
            cand |= u32::from(hot | dead | nan);
        }
        if let Some(o) = copy.as_deref_mut() {
            o[s.clone()].copy_from_slice(cb);
        }
        if cand != 0 {
            let nb = [
                &u0[s.clone()],
                u,
                &u2[s.clone()],
                l,
                r,
                &d0[s.clone()],
                d,
                &d2[s.clone()],
            ];
            let f = &mut flags[..m];
            if flag_exact(cb, nb, thr, f) > 0 {
                let hits = f.iter().enumerate().filter(|(_, &g)| g != 0);
                found.extend(hits.map(|(i, _)| x0 + i));
            }
        }
        x0 += m;
    }
}

/// Photosites per block of [`flag_row`]'s first test. Measured on the
/// 12 MP synthetic frame (1 thread, AVX2): blocks of 128 to 512 cost the
/// same, ~8 % less than 64 (whose per-block reduction and set-up show),
/// 16 or 32 more.
const BLOCK: usize = 128;

/// [`is_defect`] of each `c[i]` against `nb[k][i]` (the neighbours in
/// [`NB`] order, each slice at least `c.len()` long): `flags[i]` 1 or 0.
/// Returns the number of defects.
#[inline(always)]
fn flag_exact(c: &[f32], nb: [&[f32]; 8], thr: f32, flags: &mut [u32]) -> u32 {
    let n = c.len().min(flags.len());
    let [u0, u1, u2, m0, m2, d0, d1, d2] = nb.map(|s| &s[..n]);
    let mut count = 0u32;
    for i in 0..n {
        let nb = [u0[i], u1[i], u2[i], m0[i], m2[i], d0[i], d1[i], d2[i]];
        let bad = u32::from(is_defect(c[i], &nb, thr));
        flags[i] = bad;
        count = count.wrapping_add(bad);
    }
    count
}

crate::avx2_dispatch!(fn flag_row_wide(up: &[f32], mid: &[f32], down: &[f32], thr: f32, found: &mut Vec<usize>, copy: Option<&mut [f32]>) => flag_row);

thread_local! {
    /// Per-thread scratch of [`fix_row`]: a row's defects.
    static FOUND: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// The corrections of one row of a `w` x `h` mosaic, appended to `edits`
/// as (column, new value): `up`, `mid` and `down` are the input rows `y -
/// 2`, `y` and `y + 2` (mirrored at the frame's top and bottom);
/// dynamic detection (when `thr` is `Some`) and the static defects `map`
/// of this row (their `x`), each defect replaced by the median of its
/// neighbours, mirrored at the left and right edges. Every other sample
/// keeps `mid`'s value. A photosite both detected and listed appears
/// twice, with the same value. Nothing on frames under 3 x 3. With
/// `copy` (`w` wide), `mid` is also copied there (the detection's pass
/// does it while the row is in cache).
fn fix_row(
    [up, mid, down]: [&[f32]; 3],
    (w, h): (usize, usize),
    thr: Option<f32>,
    map: &[(usize, usize)],
    edits: &mut Vec<(usize, f32)>,
    mut copy: Option<&mut [f32]>,
) {
    let interior = w >= 5 && h >= 3 && thr.is_some();
    if let Some(o) = copy.as_deref_mut() {
        let n = o.len().min(mid.len());
        if interior && n == w {
            // The interior is copied by flag_row_wide as it tests it.
            o[..2].copy_from_slice(&mid[..2]);
            o[w - 2..].copy_from_slice(&mid[w - 2..w]);
        } else {
            o[..n].copy_from_slice(&mid[..n]);
            copy = None;
        }
    }
    if w < 3 || h < 3 {
        return;
    }
    let wi = w as isize;
    let nb_at = |x: usize| -> [f32; 8] {
        NB.map(|(dx, dy)| {
            let row = match dy {
                -2 => up,
                0 => mid,
                _ => down,
            };
            row[reflect(x as isize + dx, wi)]
        })
    };
    if let Some(thr) = thr {
        let (left, right) = if w >= 5 {
            FOUND.with(|f| {
                let mut found = f.borrow_mut();
                found.clear();
                flag_row_wide(up, mid, down, thr, &mut found, copy);
                // Interior: no mirroring.
                for &i in found.iter() {
                    let nb = [
                        up[i],
                        up[i + 2],
                        up[i + 4],
                        mid[i],
                        mid[i + 4],
                        down[i],
                        down[i + 2],
                        down[i + 4],
                    ];
                    edits.push((i + 2, median8(nb)));
                }
            });
            (2, w - 2)
        } else {
            (w, w)
        };
        for x in (0..left).chain(right..w) {
            let nb = nb_at(x);
            if is_defect(mid[x], &nb, thr) {
                edits.push((x, median8(nb)));
            }
        }
    }
    for &(x, _) in map {
        edits.push((x, median8(nb_at(x))));
    }
}

/// The entries of a row-sorted defect map on row `y`.
fn map_row(map: &[(usize, usize)], y: usize) -> &[(usize, usize)] {
    let a = map.partition_point(|&(_, my)| my < y);
    let b = map.partition_point(|&(_, my)| my <= y);
    &map[a..b]
}

impl Stage for DefectCorrect {
    fn op(&self) -> &'static str {
        "defect_correct"
    }

    fn infer(&self, inputs: &[ValueDesc]) -> std::result::Result<ValueDesc, String> {
        one_input(inputs, ValueKind::Mosaic)
    }

    fn run_cpu(&self, ctx: &RunCtx, inputs: Vec<Value>) -> Result<Value> {
        let v = inputs
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("no input"))?;
        let mut m = take_mosaic(v)?;
        if m.scale != MosaicScale::Normalized {
            return Err(Error::invalid(format!(
                "stage '{}': defect_correct needs a black-level-corrected mosaic (place it after black_level)",
                ctx.stage_id
            )));
        }
        let (w, h) = (m.width, m.height);
        if let Some(&(x, y)) = self.map.iter().find(|&&(x, y)| x >= w || y >= h) {
            return Err(Error::invalid(format!(
                "stage '{}': defect map entry ({x}, {y}) lies outside the {w}x{h} mosaic",
                ctx.stage_id
            )));
        }
        let thr = self.p.dynamic.then_some(self.p.threshold);
        let map = &self.map[..];
        // Corrections (index, value), computed from the input only, then
        // written in place: most photosites are never written.
        let fixes: Vec<(usize, f32)> = if w >= 3 && h >= 3 {
            let src: &[f32] = m.data.f32_mut();
            let row = |y: usize, dy: isize| {
                let r = reflect(y as isize + dy, h as isize);
                &src[r * w..(r + 1) * w]
            };
            (0..h.div_ceil(ROWS_PER_TASK))
                .into_par_iter()
                .flat_map_iter(|k| {
                    let mut f = Vec::new();
                    let mut edits = Vec::new();
                    for y in k * ROWS_PER_TASK..((k + 1) * ROWS_PER_TASK).min(h) {
                        edits.clear();
                        let rows = [row(y, -2), row(y, 0), row(y, 2)];
                        fix_row(rows, (w, h), thr, map_row(map, y), &mut edits, None);
                        f.extend(edits.iter().map(|&(x, v)| (y * w + x, v)));
                    }
                    f.into_iter()
                })
                .collect()
        } else {
            Vec::new()
        };
        let data = m.data.f32_mut();
        for (i, v) in fixes {
            data[i] = v;
        }
        Ok(Value::Mosaic(m.into()))
    }

    fn row_shape(&self) -> Option<RowShape> {
        Some(RowShape {
            halo: 2,
            row_align: 1,
        })
    }

    /// The correction as a mosaic stencil: each row's corrections by
    /// [`fix_row`] from the rows two above and below.
    fn row_kernel(&self, input: &Header) -> Result<Option<(RowKernel, Header)>> {
        let (_, scale) = input
            .mosaic()
            .ok_or_else(|| Error::invalid("expected a mosaic"))?;
        if scale != MosaicScale::Normalized {
            return Err(Error::invalid(
                "defect_correct needs a black-level-corrected mosaic (place it after black_level)",
            ));
        }
        let (w, h) = (input.width, input.height);
        if let Some(&(x, y)) = self.map.iter().find(|&&(x, y)| x >= w || y >= h) {
            return Err(Error::invalid(format!(
                "defect map entry ({x}, {y}) lies outside the {w}x{h} mosaic"
            )));
        }
        let thr = self.p.dynamic.then_some(self.p.threshold);
        let map = self.map.clone();
        let f: MosaicStencilFn = Box::new(move |y, rows, out, edits| {
            if let [up, _, mid, _, down] = rows {
                fix_row([up, mid, down], (w, h), thr, map_row(&map, y), edits, out);
            }
        });
        Ok(Some((
            RowKernel::MosaicStencil { halo: 2, f },
            input.clone(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Mosaic;
    use crate::raw::{CfaPattern, RawMeta};

    fn mosaic(w: usize, h: usize, f: &dyn Fn(usize, usize) -> f32) -> Mosaic {
        let data = (0..w * h).map(|i| f(i % w, i / w)).collect();
        Mosaic::normalized(
            w,
            h,
            CfaPattern::ALL[0],
            data,
            RawMeta::bayer("t", w, h, CfaPattern::ALL[0]),
        )
    }

    fn run(p: serde_json::Value, m: Mosaic) -> Result<Mosaic> {
        let st = compile(p).map_err(Error::invalid)?;
        let ctx = RunCtx { stage_id: "dpc" };
        match st.run_cpu(&ctx, vec![Value::Mosaic(m.into())])? {
            Value::Mosaic(m) => Ok((*m).clone()),
            _ => panic!("not a mosaic"),
        }
    }

    /// Deterministic uniform samples in [0, 1) (xorshift64).
    fn uniform(mut seed: u64) -> impl FnMut() -> f32 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    /// The row-vectorised detection equals the per-photosite definition
    /// (every neighbour gathered with reflection, the first
    /// implementation) bit for bit, on textured frames with defects of
    /// every kind, at sizes where the interior is empty, thin or wide.
    #[test]
    fn row_kernel_equals_per_pixel_reference() {
        let mut rnd = uniform(0x2545_f491_4f6c_dd1d);
        for (w, h) in [(3, 3), (4, 7), (5, 5), (6, 9), (37, 29), (130, 20)] {
            let data: Vec<f32> = (0..w * h)
                .map(|i| {
                    let base = 0.3 + 0.2 * ((i % w) as f32 * 0.3).sin();
                    match (rnd() * 40.0) as u32 {
                        0 => 1.0,
                        1 => 0.0,
                        _ => base + 0.05 * rnd(),
                    }
                })
                .collect();
            let (wi, hi) = (w as isize, h as isize);
            let mut expect = data.clone();
            for y in 0..h {
                for x in 0..w {
                    let mut nb = [0f32; 8];
                    for (k, &(dx, dy)) in NB.iter().enumerate() {
                        nb[k] =
                            data[reflect(y as isize + dy, hi) * w + reflect(x as isize + dx, wi)];
                    }
                    let c = data[y * w + x];
                    let n_hi = nb.iter().filter(|&&v| v >= c - 0.08).count();
                    let n_lo = nb.iter().filter(|&&v| v <= c + 0.08).count();
                    if n_hi < 2 || n_lo < 2 {
                        expect[y * w + x] = median8(nb);
                    }
                }
            }
            let out = run(serde_json::json!({}), mosaic(w, h, &|x, y| data[y * w + x])).unwrap();
            assert_eq!(*out.data.f32(), *expect, "{w}x{h}");
            if w * h > 1000 {
                assert_ne!(*out.data.f32(), *data, "{w}x{h}: nothing was fixed");
            }
        }
    }

    /// The mosaic-stencil kernel (row by row from mirrored rows, as a
    /// fused segment runs it) gives the whole-frame path's values bit for
    /// bit, with and without dynamic detection and a static map, at sizes
    /// down to the smallest.
    #[test]
    fn stencil_kernel_equals_the_whole_frame_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, "0 0\n2 1\n1 2\n").unwrap();
        let mut rnd = uniform(0x1234_5678_9abc_def1);
        for (w, h) in [(3, 3), (4, 7), (5, 5), (6, 9), (37, 29), (130, 20)] {
            let data: Vec<f32> = (0..w * h)
                .map(|i| match (rnd() * 30.0) as u32 {
                    0 => 1.0,
                    1 => 0.0,
                    2 => f32::NAN,
                    _ => 0.3 + 0.2 * ((i % w) as f32 * 0.7).sin() + 0.05 * rnd(),
                })
                .collect();
            for p in [
                serde_json::json!({}),
                serde_json::json!({ "map": path }),
                serde_json::json!({ "dynamic": false, "map": path }),
                serde_json::json!({ "threshold": 0.01 }),
            ] {
                let m = mosaic(w, h, &|x, y| data[y * w + x]);
                let st = compile(p.clone()).unwrap();
                let hdr = Header::of_mosaic(&m);
                let Some((RowKernel::MosaicStencil { halo, f }, _)) = st.row_kernel(&hdr).unwrap()
                else {
                    panic!("defect_correct has a mosaic stencil kernel");
                };
                assert_eq!(Some(halo), st.row_shape().map(|s| s.halo));
                let mut got = vec![-1f32; w * h];
                let mut edits = Vec::new();
                for (y, out) in got.chunks_exact_mut(w).enumerate() {
                    let rows: Vec<&[f32]> = (0..=2 * halo)
                        .map(|t| {
                            let r = reflect(y as isize + t as isize - halo as isize, h as isize);
                            &data[r * w..(r + 1) * w]
                        })
                        .collect();
                    edits.clear();
                    // Odd rows copy the row themselves, even ones let the
                    // kernel do it.
                    if y % 2 == 1 {
                        out.copy_from_slice(rows[halo]);
                        f(y, &rows, None, &mut edits);
                    } else {
                        f(y, &rows, Some(&mut *out), &mut edits);
                    }
                    for &(x, v) in &edits {
                        out[x] = v;
                    }
                }
                let want = run(p.clone(), m).unwrap();
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want.data.f32()), "{w}x{h} {p}");
            }
        }
    }

    /// The row flags (the first test, then the eight-neighbour count) are
    /// [`is_defect`] of every interior photosite, on rows holding NaN,
    /// infinities, defects of both kinds and near-threshold values, with
    /// and without AVX2.
    #[test]
    fn flag_row_equals_is_defect_on_any_values() {
        let mut rnd = uniform(0x0dd_b1a5_e5ee_d5ee);
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1.0,
            0.0,
            0.58,
            0.42,
        ];
        for w in [5usize, 6, 67, 64 + 4, 200, 301] {
            for round in 0..40 {
                let rows: Vec<Vec<f32>> = (0..3)
                    .map(|_| {
                        (0..w)
                            .map(|_| {
                                let p = rnd();
                                if p < 0.02 * (round % 4) as f32 {
                                    special[(rnd() * special.len() as f32) as usize % special.len()]
                                } else {
                                    0.5 + 0.1 * (rnd() - 0.5)
                                }
                            })
                            .collect()
                    })
                    .collect();
                let (up, mid, down) = (&rows[0][..], &rows[1][..], &rows[2][..]);
                let want: Vec<usize> = (2..w - 2)
                    .filter(|&x| {
                        let nb = NB.map(|(dx, dy)| {
                            let row = [up, mid, down][(dy / 2 + 1) as usize];
                            row[(x as isize + dx) as usize]
                        });
                        is_defect(mid[x], &nb, 0.08)
                    })
                    .map(|x| x - 2)
                    .collect();
                let (mut wide, mut plain) = (Vec::new(), Vec::new());
                let mut copy = vec![-1f32; w];
                flag_row_wide(up, mid, down, 0.08, &mut wide, Some(&mut copy));
                flag_row(up, mid, down, 0.08, &mut plain, None);
                let bits = |d: &[f32]| d.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&copy[2..w - 2]), bits(&mid[2..w - 2]), "{w} copy");
                assert_eq!(wide, want, "{w} wide, round {round}");
                assert_eq!(plain, want, "{w} wide, round {round} (no AVX2)");
                if round == 3 && w > 100 {
                    assert!(!want.is_empty(), "{w}: no defects to find");
                }
            }
        }
    }

    /// The sorting network gives what sorting gives, signed zeros and
    /// repeats included.
    #[test]
    fn median8_equals_sorting() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let pool = [-0.0f32, 0.0, -1.5, 2.0, 0.25, -0.25, 1e-30, 3.0];
        for _ in 0..20_000 {
            let mut v = [0f32; 8];
            for x in &mut v {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = pool[(seed % 8) as usize];
            }
            let mut s = v;
            s.sort_unstable_by(f32::total_cmp);
            let want = 0.5 * (s[3] + s[4]);
            assert_eq!(median8(v).to_bits(), want.to_bits(), "{v:?}");
        }
    }

    #[test]
    fn parses_dcraw_style_maps() {
        let m = parse_map("# bad pixels\n12 7 1700000000\n3 4\n\n3 4 # twice\n").unwrap();
        assert_eq!(m, vec![(3, 4), (12, 7)]);
        assert!(parse_map("1\n").is_err());
        assert!(parse_map("1 -2\n").is_err());
    }

    #[test]
    fn dead_and_hot_pixels_on_a_flat_bayer_frame() {
        // Flat colour field: R 0.3, G 0.5, B 0.2.
        let cfa = CfaPattern::ALL[0];
        let flat = move |x: usize, y: usize| [0.3f32, 0.5, 0.2][cfa.color_at(y, x)];
        let mut m = mosaic(40, 30, &flat);
        m.data.f32_mut()[10 * 40 + 11] = 1.0; // hot
        m.data.f32_mut()[20 * 40 + 20] = 0.0; // dead
        m.data.f32_mut()[0] = 0.9; // hot in the corner
        let out = run(serde_json::Value::Null, m).unwrap();
        for y in 0..30 {
            for x in 0..40 {
                assert_eq!(out.data.f32()[y * 40 + x], flat(x, y), "({x},{y})");
            }
        }
    }

    /// The gate: 0.1 % injected hot/dead pixels (adjacent pairs
    /// included) on a noisy 12-bit flat frame are all fixed; no clean pixel
    /// changes by more than 1 DN.
    #[test]
    fn injected_defects_all_fixed_clean_pixels_untouched() {
        let (w, h) = (256usize, 256usize);
        let dn = 1.0f32 / 4095.0;
        let cfa = CfaPattern::ALL[0];
        let mut s = 7u64;
        let mut rnd = move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 33) as f32 / (1u64 << 31) as f32
        };
        // Flat colour field plus ~2 DN noise (sum of uniforms).
        let mut clean = vec![0f32; w * h];
        for y in 0..h {
            for x in 0..w {
                let base = [0.3f32, 0.5, 0.2][cfa.color_at(y, x)];
                let u: f32 = (0..4).map(|_| rnd()).sum::<f32>() - 2.0;
                clean[y * w + x] = base + 3.5 * dn * u;
            }
        }
        let mut m = mosaic(w, h, &|x, y| clean[y * w + x]);
        let n_bad = w * h / 1000;
        let mut bad = std::collections::BTreeSet::new();
        while bad.len() < n_bad {
            bad.insert((rnd() * (w * h) as f32) as usize % (w * h));
        }
        for (k, &i) in bad.iter().enumerate() {
            m.data.f32_mut()[i] = if k % 2 == 0 { 0.6 + 0.4 * rnd() } else { 0.0 };
        }
        // Adjacent same-colour pairs: hot next to a brighter hot, dead
        // next to dead, hot next to dead.
        for (i, a, b) in [
            (40 * w + 40, 0.7, 0.9),
            (80 * w + 81, 0.0, 0.0),
            (120 * w + 9, 1.0, 0.0),
        ] {
            m.data.f32_mut()[i] = a;
            m.data.f32_mut()[i + 2] = b;
            bad.insert(i);
            bad.insert(i + 2);
        }
        let out = run(serde_json::Value::Null, m).unwrap();
        for (i, (&o, &c)) in out.data.f32().iter().zip(&clean).enumerate() {
            let d = (o - c).abs();
            if bad.contains(&i) {
                assert!(
                    d < 8.0 * dn,
                    "defect {i} not fixed: {} vs {}",
                    out.data.f32()[i],
                    clean[i]
                );
            } else {
                assert!(d <= dn, "clean pixel {i} changed by {} DN", d / dn);
            }
        }
    }

    #[test]
    fn static_map_fixes_listed_pixels_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.txt");
        std::fs::write(&path, "5 5\n").unwrap();
        let mut m = mosaic(16, 16, &|_, _| 0.4);
        m.data.f32_mut()[5 * 16 + 5] = 0.43; // below the dynamic threshold
        m.data.f32_mut()[9 * 16 + 9] = 0.43;
        let p = serde_json::json!({ "map": path });
        let out = run(p, m).unwrap();
        assert_eq!(out.data.f32()[5 * 16 + 5], 0.4);
        assert_eq!(out.data.f32()[9 * 16 + 9], 0.43);
        let big = dir.path().join("big.txt");
        std::fs::write(&big, "16 0\n").unwrap();
        let m = mosaic(16, 16, &|_, _| 0.4);
        let e = run(serde_json::json!({ "map": big }), m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("outside"), "{e}");
        let e = compile(serde_json::json!({ "map": dir.path().join("none.txt") })).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
    }

    #[test]
    fn dn_scale_mosaics_are_rejected() {
        let mut m = mosaic(8, 8, &|_, _| 100.0);
        m.scale = MosaicScale::Dn;
        let e = run(serde_json::Value::Null, m).unwrap_err().to_string();
        assert!(e.contains("black_level"), "{e}");
    }

    #[test]
    fn bad_params_are_rejected() {
        assert!(compile(serde_json::json!({ "threshold": -0.1 })).is_err());
        assert!(compile(serde_json::json!({ "thresh": 0.1 })).is_err());
    }
}
