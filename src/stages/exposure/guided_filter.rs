//! Guided filter (He, Sun & Tang 2010, "Guided Image Filtering", ECCV;
//! TPAMI 2013), gray guide: `q = mean(a)·I + mean(b)` with
//! `a = cov(I, p) / (var(I) + eps)`, `b = mean(p) - a·mean(I)` over
//! `(2r+1)²` boxes, box means from summed-area tables (O(1) per pixel).
//! Used to upsample a coarse probability map `p` along the edges of a
//! finer guide `I` (the frame's luminance).

/// Box mean of `x` (`w x h`, row-major) over a `(2r+1)²` window clipped to
/// the image, via a summed-area table in f64.
pub fn box_mean(x: &[f32], w: usize, h: usize, r: usize) -> Vec<f32> {
    let mut sat = vec![0f64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0f64;
        for xx in 0..w {
            row += x[y * w + xx] as f64;
            sat[(y + 1) * (w + 1) + xx + 1] = sat[y * (w + 1) + xx + 1] + row;
        }
    }
    let mut out = vec![0f32; w * h];
    for y in 0..h {
        let (y0, y1) = (y.saturating_sub(r), (y + r + 1).min(h));
        for xx in 0..w {
            let (x0, x1) = (xx.saturating_sub(r), (xx + r + 1).min(w));
            let s = sat[y1 * (w + 1) + x1] - sat[y0 * (w + 1) + x1] - sat[y1 * (w + 1) + x0]
                + sat[y0 * (w + 1) + x0];
            out[y * w + xx] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
        }
    }
    out
}

/// Guided filter of `p` by guide `i` (both `w x h`), radius `r` pixels,
/// regulariser `eps` (in squared guide units).
pub fn guided_filter(i: &[f32], p: &[f32], w: usize, h: usize, r: usize, eps: f32) -> Vec<f32> {
    let n = w * h;
    let mean_i = box_mean(i, w, h, r);
    let mean_p = box_mean(p, w, h, r);
    let ip: Vec<f32> = (0..n).map(|k| i[k] * p[k]).collect();
    let ii: Vec<f32> = (0..n).map(|k| i[k] * i[k]).collect();
    let mean_ip = box_mean(&ip, w, h, r);
    let mean_ii = box_mean(&ii, w, h, r);
    let mut a = vec![0f32; n];
    let mut b = vec![0f32; n];
    for k in 0..n {
        let cov = mean_ip[k] - mean_i[k] * mean_p[k];
        let var = (mean_ii[k] - mean_i[k] * mean_i[k]).max(0.0);
        a[k] = cov / (var + eps);
        b[k] = mean_p[k] - a[k] * mean_i[k];
    }
    let ma = box_mean(&a, w, h, r);
    let mb = box_mean(&b, w, h, r);
    (0..n).map(|k| ma[k] * i[k] + mb[k]).collect()
}

/// Bilinear resize of a single plane (`sw x sh` -> `dw x dh`), pixel
/// centres aligned (PyTorch `align_corners=False`).
pub fn resize_bilinear(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    let mut out = vec![0f32; dw * dh];
    if sw == 0 || sh == 0 {
        return out;
    }
    let (fx, fy) = (sw as f32 / dw as f32, sh as f32 / dh as f32);
    for y in 0..dh {
        let sy = ((y as f32 + 0.5) * fy - 0.5).clamp(0.0, (sh - 1) as f32);
        let y0 = sy as usize;
        let y1 = (y0 + 1).min(sh - 1);
        let ay = sy - y0 as f32;
        for x in 0..dw {
            let sx = ((x as f32 + 0.5) * fx - 0.5).clamp(0.0, (sw - 1) as f32);
            let x0 = sx as usize;
            let x1 = (x0 + 1).min(sw - 1);
            let ax = sx - x0 as f32;
            let t = src[y0 * sw + x0] + ax * (src[y0 * sw + x1] - src[y0 * sw + x0]);
            let b = src[y1 * sw + x0] + ax * (src[y1 * sw + x1] - src[y1 * sw + x0]);
            out[y * dw + x] = t + ay * (b - t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_mean_of_constant_is_constant() {
        let x = vec![3.0f32; 7 * 5];
        assert!(box_mean(&x, 7, 5, 2).iter().all(|v| (v - 3.0).abs() < 1e-6));
    }

    #[test]
    fn guided_filter_snaps_a_blurry_mask_to_the_guide_edge() {
        // Guide: step edge at x = 10; mask: a soft ramp across x 6..14.
        let (w, h) = (20, 8);
        let i: Vec<f32> = (0..w * h)
            .map(|k| if k % w < 10 { 1.0 } else { 0.0 })
            .collect();
        let p: Vec<f32> = (0..w * h)
            .map(|k| (1.0 - ((k % w) as f32 - 6.0) / 8.0).clamp(0.0, 1.0))
            .collect();
        let q = guided_filter(&i, &p, w, h, 3, 1e-3);
        let row = &q[3 * w..4 * w];
        // Sharper than the input at the edge: the step across x 9 -> 10.
        let step_in = p[3 * w + 9] - p[3 * w + 10];
        let step_out = row[9] - row[10];
        assert!(step_out > 2.0 * step_in, "{step_in} {step_out} {row:?}");
    }

    #[test]
    fn bilinear_resize_keeps_constants_and_ramps() {
        let src: Vec<f32> = (0..4).map(|x| x as f32).collect();
        let up = resize_bilinear(&src, 4, 1, 8, 1);
        assert!((up[3] - 1.25).abs() < 1e-6, "{up:?}");
        assert_eq!(up[0], 0.0);
        assert_eq!(up[7], 3.0);
    }
}
