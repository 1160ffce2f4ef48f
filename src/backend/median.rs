//! Exact 3 x 3 medians along a row, shared by the ops that filter colour
//! differences with them (`demosaic_rcd_mlri`, `false_color_suppress`).
//! `#[inline(always)]`: each op's AVX2 copy compiles the loops in (no FMA,
//! selections only: the same bits on every CPU).

/// The smaller of `a`, `b` (branch-free; `minps` on x86).
#[inline(always)]
fn min(a: f32, b: f32) -> f32 {
    if a < b {
        a
    } else {
        b
    }
}

/// The larger of `a`, `b` (branch-free; `maxps` on x86).
#[inline(always)]
fn max(a: f32, b: f32) -> f32 {
    if a < b {
        b
    } else {
        a
    }
}

/// Median of three values.
#[inline(always)]
fn med3(a: f32, b: f32, c: f32) -> f32 {
    max(min(a, b), min(max(a, b), c))
}

/// Medians of the 3 x 3 windows centred on columns `1..w-1` of the
/// middle row of `rows` (three rows, `w = out.len()` each) into
/// `out[1..w-1]`; `cols` (3 `w`) is scratch. Each column's three values
/// are sorted once (low, middle, high rows); the median of a window is
/// then the median of the largest low, the middle middle and the
/// smallest high of its three columns (exact: a selection, so the bits
/// of any other median of nine).
#[inline(always)]
pub fn median3x3_row(rows: [&[f32]; 3], cols: &mut [f32], out: &mut [f32]) {
    let w = out.len();
    if w < 3 {
        return;
    }
    let [a, b, c] = rows;
    let (a, b, c) = (&a[..w], &b[..w], &c[..w]);
    let (lo, rest) = cols[..3 * w].split_at_mut(w);
    let (mid, hi) = rest.split_at_mut(w);
    for x in 0..w {
        let (p, q, r) = (a[x], b[x], c[x]);
        let (l, u) = (min(p, q), max(p, q));
        lo[x] = min(l, r);
        let m = max(l, r);
        mid[x] = min(u, m);
        hi[x] = max(u, m);
    }
    let n = w - 2;
    let (l0, l1, l2) = (&lo[..n], &lo[1..n + 1], &lo[2..n + 2]);
    let (m0, m1, m2) = (&mid[..n], &mid[1..n + 1], &mid[2..n + 2]);
    let (h0, h1, h2) = (&hi[..n], &hi[1..n + 1], &hi[2..n + 2]);
    for (i, o) in out[1..n + 1].iter_mut().enumerate() {
        let big_lo = max(max(l0[i], l1[i]), l2[i]);
        let mid_mid = med3(m0[i], m1[i], m2[i]);
        let small_hi = min(min(h0[i], h1[i]), h2[i]);
        *o = med3(big_lo, mid_mid, small_hi);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column-sorted medians against sorting each window.
    #[test]
    fn row_medians_match_a_sort() {
        let w = 37;
        let rows: Vec<Vec<f32>> = (0..3)
            .map(|r| {
                (0..w)
                    .map(|x| (((x * 7 + r * 11) * 13) % 23) as f32 - 0.5 * r as f32)
                    .collect()
            })
            .collect();
        let mut out = vec![0f32; w];
        let mut cols = vec![0f32; 3 * w];
        median3x3_row([&rows[0], &rows[1], &rows[2]], &mut cols, &mut out);
        for x in 1..w - 1 {
            let mut v: Vec<f32> = rows
                .iter()
                .flat_map(|r| r[x - 1..x + 2].iter().copied())
                .collect();
            v.sort_by(f32::total_cmp);
            assert_eq!(out[x].to_bits(), v[4].to_bits(), "column {x}");
        }
    }
}
