//! 2-D convolution (cross-correlation, PyTorch semantics) by im2col + GEMM.
//!
//! Weights are `[Cout, Cin, KH, KW]` (PyTorch OIHW), i.e. a row-major
//! `Cout x K` matrix with `K = Cin·KH·KW` and tap index
//! `k = (ci·KH + ky)·KW + kx`. Output pixels are processed in bands of whole
//! rows; for each band an im2col matrix `P` (`Npix x K`, stored with pixels
//! contiguous per tap) is built in a per-thread scratch buffer and multiplied
//! by the `gemm` crate in the pixel-major layout `C[Npix, Cout] = P·Wᵀ`,
//! writing straight into the channel planes of the NCHW output (row stride 1,
//! column stride H·W). Bands run in parallel on rayon threads, each GEMM
//! single-threaded: on this 2-core AVX-512 machine that reaches about
//! 100 GFLOP/s for 64 channels (see benches/nn_conv.rs).
//! Stride-1 zero-padded 3x3 layers with at most 32 output channels run on
//! AVX-512 and on AVX2 + FMA CPUs as a direct kernel instead
//! ([`super::conv3x3_direct`], the same bits). One-GEMM layers (1x1, strided, K <= 512) let the GEMM
//! overwrite the output and add the bias with the activation.

use std::cell::RefCell;

use rayon::prelude::*;

use super::conv3x3_direct::{self, DirectBand, Kernel};
use super::{Activation, BufferPool, Tensor};
use crate::error::{Error, Result};

/// How the input is extended beyond its border.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `p` pixels of zeros on every side (PyTorch `padding=p`).
    Zero(usize),
    /// `p` pixels mirrored without repeating the edge (PyTorch
    /// `padding_mode="reflect"`); `p` must be smaller than H and W.
    Reflect(usize),
}

impl Padding {
    fn amount(self) -> usize {
        match self {
            Padding::Zero(p) | Padding::Reflect(p) => p,
        }
    }
}

/// A compiled convolution layer.
#[derive(Clone, Debug)]
pub struct Conv2d {
    cout: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: Padding,
    /// `[Cout, Cin, KH, KW]`, row-major.
    weight: Vec<f32>,
    /// The same weights as `[KH, Cout, Cin, KW]`: for each kernel row a
    /// `Cout x (Cin·KW)` matrix, read by the row-shift path (stride 1, zero
    /// padding, KH > 1).
    weight_rows: Vec<f32>,
    /// `[Cout]`.
    bias: Vec<f32>,
}

/// Minimum number of output pixels per band (the im2col tile).
pub const BAND_PIXELS: usize = 512;
/// Target size of one band's im2col matrix in f32 values (1 MiB): bands grow
/// beyond [`BAND_PIXELS`] for small K so that per-call GEMM overhead stays
/// small, and shrink to it for 3x3x64 so the matrix stays in L2.
pub const BAND_SCRATCH: usize = 1 << 18;

/// Largest K the `gemm` crate (0.19) sums in one block (one register
/// chain per output); larger K are split into blocks accumulated in the
/// output.
const GEMM_ONE_BLOCK: usize = 512;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Output pointer shared by the bands; each band writes a disjoint set of rows.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: the pointer is only dereferenced for disjoint row ranges of the
// output buffer, which outlives the parallel loop.
unsafe impl Send for OutPtr {}
// SAFETY: as above; no two threads touch the same element.
unsafe impl Sync for OutPtr {}

/// One parallel work item of [`Conv2d::forward`]: output rows `y0..y1` of
/// batch item `b`; `dst` points at element `(b, 0, y0, 0)` of the output,
/// whose rows are `wo` wide and whose channel planes are `plane_out` apart.
#[derive(Clone, Copy)]
struct Band {
    b: usize,
    y0: usize,
    y1: usize,
    wo: usize,
    plane_out: usize,
    dst: *mut f32,
}

impl Band {
    /// Output pixels per channel.
    fn npix(&self) -> usize {
        (self.y1 - self.y0) * self.wo
    }
}

impl Conv2d {
    /// Builds a layer from OIHW `weight` (`[cout, cin, kh, kw]`) and `bias`
    /// (`[cout]`). `stride` is 1 or 2.
    pub fn new(
        weight: Vec<f32>,
        bias: Vec<f32>,
        shape: [usize; 4],
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let [cout, cin, kh, kw] = shape;
        if cout == 0 || cin == 0 || kh == 0 || kw == 0 {
            return Err(Error::invalid(format!(
                "conv2d: empty weight shape {shape:?}"
            )));
        }
        if weight.len() != cout * cin * kh * kw || bias.len() != cout {
            return Err(Error::invalid(format!(
                "conv2d: weight has {} values and bias {}, shape {shape:?} needs {} and {cout}",
                weight.len(),
                bias.len(),
                cout * cin * kh * kw
            )));
        }
        if stride == 0 {
            return Err(Error::invalid("conv2d: stride 0"));
        }
        let mut weight_rows = Vec::with_capacity(weight.len());
        for ky in 0..kh {
            for co in 0..cout {
                for ci in 0..cin {
                    let at = ((co * cin + ci) * kh + ky) * kw;
                    weight_rows.extend_from_slice(&weight[at..at + kw]);
                }
            }
        }
        Ok(Conv2d {
            cout,
            cin,
            kh,
            kw,
            stride,
            padding,
            weight,
            weight_rows,
            bias,
        })
    }

    /// Output channels.
    pub fn cout(&self) -> usize {
        self.cout
    }
    /// Input channels.
    pub fn cin(&self) -> usize {
        self.cin
    }
    /// Kernel size `(KH, KW)`.
    pub fn kernel(&self) -> (usize, usize) {
        (self.kh, self.kw)
    }

    /// Output `(H, W)` for an input of `h x w`, or an error if it is empty.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let p = self.padding.amount();
        if h + 2 * p < self.kh || w + 2 * p < self.kw {
            return Err(Error::invalid(format!(
                "conv2d: input {h}x{w} smaller than kernel {}x{}",
                self.kh, self.kw
            )));
        }
        if let Padding::Reflect(p) = self.padding {
            if p >= h || p >= w {
                return Err(Error::invalid(format!(
                    "conv2d: reflect padding {p} needs an input larger than {h}x{w}"
                )));
            }
        }
        Ok((
            (h + 2 * p - self.kh) / self.stride + 1,
            (w + 2 * p - self.kw) / self.stride + 1,
        ))
    }

    /// Multiply-adds x2 per output pixel (for GFLOP/s reports).
    pub fn flops_per_output_pixel(&self) -> usize {
        2 * self.cout * self.cin * self.kh * self.kw
    }

    /// Runs the layer on `x` (`[N, Cin, H, W]`) and applies `act` to the result.
    pub fn forward(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        self.forward_pooled(x, act, &BufferPool::new())
    }

    /// [`Self::forward`] with the output on a buffer from `pool` (the same
    /// values).
    pub fn forward_pooled(&self, x: &Tensor, act: Activation, pool: &BufferPool) -> Result<Tensor> {
        let [n, c, h, w] = x.shape();
        if c != self.cin {
            return Err(Error::invalid(format!(
                "conv2d: input has {c} channels, layer expects {}",
                self.cin
            )));
        }
        let (ho, wo) = self.output_size(h, w)?;
        // Not zeroed: every band writes all its elements (bias first).
        let len = [n, self.cout, ho, wo]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .filter(|&l| l <= isize::MAX as usize / 4)
            .ok_or_else(|| Error::invalid("conv2d: output size overflows"))?;
        let mut data: Vec<f32> = pool.take(len);
        let k = self.cin * self.kh * self.kw;
        let band_pixels = if self.direct3x3() {
            // the direct path's scratch holds Cin·(rows + 2) input rows
            (BAND_SCRATCH / self.cin).max(BAND_PIXELS)
        } else {
            (BAND_SCRATCH / k).max(BAND_PIXELS)
        };
        let rows_per_band = (band_pixels / wo.max(1)).max(1);
        let bands: Vec<(usize, usize, usize)> = (0..n)
            .flat_map(|b| {
                (0..ho)
                    .step_by(rows_per_band)
                    .map(move |y0| (b, y0, (y0 + rows_per_band).min(ho)))
            })
            .collect();
        let out_ptr = OutPtr(data.as_mut_ptr());
        let plane_out = ho * wo;
        bands.par_iter().for_each(|&(b, y0, y1)| {
            let ptr = out_ptr;
            // SAFETY: band (b, y0..y1) owns rows y0..y1 of every output plane
            // of batch item b; bands are disjoint and `data` (capacity at least
            // `len`) outlives the loop.
            let dst = unsafe { ptr.0.add(b * self.cout * plane_out + y0 * wo) };
            let band = Band {
                b,
                y0,
                y1,
                wo,
                plane_out,
                dst,
            };
            self.band(x, band, act);
        });
        // SAFETY: the bands cover rows 0..ho of every plane of every batch
        // item, and each initialised all of its elements (a bias fill
        // before any GEMM read them, an overwriting GEMM or the direct
        // kernel's stores).
        unsafe { data.set_len(len) };
        Tensor::from_vec([n, self.cout, ho, wo], data)
    }

    /// Output rows `y0..y1` of batch item 0 of `x`, `act` applied, into
    /// `dst`: channel `co`'s rows at `dst[co·(y1 - y0)·wo..]` (planes of
    /// the band's rows only, `wo` the output width). The same values as
    /// those rows of [`Self::forward_pooled`] (the same band kernel),
    /// computed on the calling thread. Errors when `x` has not `cin`
    /// channels, the rows are not inside the output or `dst` holds fewer
    /// than `cout·(y1 - y0)·wo` values.
    pub fn forward_rows_into(
        &self,
        x: &Tensor,
        y0: usize,
        y1: usize,
        dst: &mut [f32],
        act: Activation,
    ) -> Result<()> {
        let [n, c, h, w] = x.shape();
        if c != self.cin || n == 0 {
            return Err(Error::invalid(format!(
                "conv2d: input {:?} is not [N >= 1, {}, H, W]",
                x.shape(),
                self.cin
            )));
        }
        let (ho, wo) = self.output_size(h, w)?;
        let plane_out = y1.saturating_sub(y0) * wo;
        if y0 > y1 || y1 > ho || dst.len() < self.cout * plane_out {
            return Err(Error::invalid(format!(
                "conv2d: rows {y0}..{y1} of a {ho}-row output into {} values",
                dst.len()
            )));
        }
        if y0 == y1 {
            return Ok(());
        }
        let band = Band {
            b: 0,
            y0,
            y1,
            wo,
            plane_out,
            dst: dst.as_mut_ptr(),
        };
        // `dst` (checked above) holds the band's cout planes of
        // (y1 - y0)·wo values, and this call borrows it exclusively.
        self.band(x, band, act);
        Ok(())
    }

    /// Whether the direct 3x3 kernel ([`conv3x3_direct`]) computes this
    /// layer on this CPU (the same bits as the GEMM path).
    fn direct3x3(&self) -> bool {
        matches!(self.padding, Padding::Zero(p) if conv3x3_direct::supports(self.cout, self.kh, self.kw, self.stride, p))
            && conv3x3_direct::simd_available()
    }

    /// Computes one band of the output (see [`Band`]).
    fn band(&self, x: &Tensor, o: Band, act: Activation) {
        if self.direct3x3() {
            self.band_direct(x, o, act, Kernel::best());
            return;
        }
        self.band_gemm(x, o, act);
    }

    /// [`Self::band`] by the direct 3x3 kernel (`kernel`: its AVX-512,
    /// AVX2 + FMA or scalar strips; one this CPU lacks runs the scalar
    /// twin). The layer must be one [`conv3x3_direct::supports`].
    fn band_direct(&self, x: &Tensor, o: Band, act: Activation, kernel: Kernel) {
        let plane_in = x.plane_len();
        let xs = &x.data()[o.b * self.cin * plane_in..(o.b + 1) * self.cin * plane_in];
        let a = DirectBand {
            x: xs,
            h: x.h(),
            w: x.w(),
            cin: self.cin,
            cout: self.cout,
            weight: &self.weight,
            bias: &self.bias,
            y0: o.y0,
            y1: o.y1,
            dst: o.dst,
            plane_out: o.plane_out,
            act,
        };
        SCRATCH.with(|s| {
            // SAFETY: `o.dst` is the band's output (see `band`): rows
            // y0..y1 of every plane, written by this band only; the shapes
            // are the layer's and the input's (output = input size).
            unsafe { conv3x3_direct::band(&a, &mut s.borrow_mut(), kernel) }
        });
    }

    /// [`Self::band`] by GEMMs (bias fill, GEMM, activation).
    fn band_gemm(&self, x: &Tensor, o: Band, act: Activation) {
        let (npix, dst, plane_out) = (o.npix(), o.dst, o.plane_out);
        let direct = self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding.amount() == 0;
        let row_shift = !direct && self.row_shift();
        // One GEMM over K <= GEMM_ONE_BLOCK (the gemm crate then sums all
        // of K in one register chain): it overwrites the output and the
        // bias is added after, `acc + b` (== `b + acc`, the sum a GEMM onto
        // a bias fill gives) fused with the activation. Otherwise (several
        // GEMMs or K blocks accumulate) the bias goes first.
        let bias_after = !row_shift && self.cin * self.kh * self.kw <= GEMM_ONE_BLOCK;
        if !bias_after {
            for (co, &bv) in self.bias.iter().enumerate() {
                // SAFETY: rows y0..y1 of plane `co` are inside the output
                // buffer's capacity and written by this band only; viewed as
                // possibly uninitialised values until filled.
                let row = unsafe {
                    std::slice::from_raw_parts_mut(
                        dst.add(co * plane_out).cast::<std::mem::MaybeUninit<f32>>(),
                        npix,
                    )
                };
                row.fill(std::mem::MaybeUninit::new(bv));
            }
        }
        if row_shift {
            self.band_row_shift(x, o);
        } else {
            self.band_im2col(x, o, direct, !bias_after);
        }
        for (co, &bv) in self.bias.iter().enumerate() {
            // SAFETY: as for the bias fill above; every element is
            // initialised now (bias fill or an overwriting GEMM).
            let row = unsafe { std::slice::from_raw_parts_mut(dst.add(co * plane_out), npix) };
            if bias_after {
                row.iter_mut().for_each(|v| *v += bv);
            }
            act.apply(row);
        }
    }

    /// The GEMM of output rows `y0..y1` over a full im2col matrix (or, for
    /// a 1x1 conv, straight over the input planes). `dst` as in
    /// [`Self::band`]; `accumulate`: onto its values (the bias), else
    /// overwriting them.
    fn band_im2col(&self, x: &Tensor, o: Band, direct: bool, accumulate: bool) {
        let Band {
            b,
            y0,
            y1,
            wo,
            plane_out,
            dst,
        } = o;
        let npix = o.npix();
        let k = self.cin * self.kh * self.kw;
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            let (lhs, lhs_cs): (*const f32, isize) = if direct {
                // 1x1: the input planes already are P (pixels contiguous per channel).
                let plane_in = x.plane_len();
                let start = b * self.cin * plane_in + y0 * wo;
                (x.data()[start..].as_ptr(), plane_in as isize)
            } else {
                if s.len() < npix * k {
                    s.resize(npix * k, 0.0);
                }
                self.im2col(x, b, y0, y1, wo, &mut s[..npix * k]);
                (s.as_ptr(), npix as isize)
            };
            // SAFETY: lhs is npix x k with row stride 1 and column stride
            // lhs_cs (inside the scratch buffer or the input, whose plane 0
            // of item b starts a contiguous run of cin planes); rhs is
            // k x cout, the row-major OIHW weights read transposed.
            unsafe {
                self.gemm_acc(
                    npix,
                    k,
                    dst,
                    plane_out,
                    lhs,
                    lhs_cs,
                    self.weight.as_ptr(),
                    accumulate,
                )
            };
        });
    }

    /// `dst += lhs · rhsᵀ` (`accumulate`; else `dst = lhs · rhsᵀ`, `dst`
    /// not read): `dst` is `npix x cout` (row stride 1, column stride
    /// `plane_out`), `lhs` is `npix x k` (row stride 1, column stride
    /// `lhs_cs`), `rhs` is `cout x k` row-major. Single-threaded GEMM.
    ///
    /// # Safety
    /// All three must be valid for those shapes and strides, and `dst`
    /// written by no one else meanwhile.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm_acc(
        &self,
        npix: usize,
        k: usize,
        dst: *mut f32,
        plane_out: usize,
        lhs: *const f32,
        lhs_cs: isize,
        rhs: *const f32,
        accumulate: bool,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            gemm::gemm(
                npix,
                self.cout,
                k,
                dst,
                plane_out as isize,
                1,
                accumulate,
                lhs,
                lhs_cs,
                1,
                rhs,
                k as isize,
                1,
                1.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    }

    /// Whether [`Self::band_row_shift`] computes this layer: stride 1, zero
    /// padding, more than one kernel row, same-size output width.
    fn row_shift(&self) -> bool {
        self.stride == 1
            && self.kh > 1
            && matches!(self.padding, Padding::Zero(p) if 2 * p + 1 == self.kw)
    }

    /// The GEMMs of output rows `y0..y1` by row shifts: one im2col matrix
    /// over the kernel's columns only (`Cin·KW` taps x the band's pixels
    /// plus `KH - 1` rows), and one GEMM per kernel row `ky` that reads it
    /// `ky` rows further on. A third of the copying of a full 3x3 im2col;
    /// the sums over a kernel row are added to the output row by row of the
    /// kernel. `dst` as in [`Self::band`], already holding the bias.
    fn band_row_shift(&self, x: &Tensor, o: Band) {
        let (b, y0, y1, wo) = (o.b, o.y0, o.y1, o.wo);
        let (h, w) = (x.h(), x.w());
        let pad = self.padding.amount() as isize;
        let npix = o.npix();
        // Input rows y0 - pad .. y1 - pad + kh - 1, all wo columns wide.
        let rows = y1 - y0 + self.kh - 1;
        let next = rows * wo;
        let k = self.cin * self.kw;
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < next * k {
                s.resize(next * k, 0.0);
            }
            let p = &mut s[..next * k];
            for ci in 0..self.cin {
                let src = x.plane(b, ci);
                for kx in 0..self.kw {
                    let col = &mut p[(ci * self.kw + kx) * next..(ci * self.kw + kx + 1) * next];
                    let off = kx as isize - pad;
                    // valid ox: 0 <= ox + off < w
                    let lo = (-off).clamp(0, wo as isize) as usize;
                    let hi = (w as isize - off).clamp(lo as isize, wo as isize) as usize;
                    for (r, drow) in col.chunks_exact_mut(wo).enumerate() {
                        let iy = (y0 + r) as isize - pad;
                        if iy < 0 || iy >= h as isize {
                            drow.fill(0.0);
                            continue;
                        }
                        let srow = &src[iy as usize * w..(iy as usize + 1) * w];
                        let a = (lo as isize + off) as usize;
                        drow[..lo].fill(0.0);
                        drow[lo..hi].copy_from_slice(&srow[a..a + (hi - lo)]);
                        drow[hi..].fill(0.0);
                    }
                }
            }
            for ky in 0..self.kh {
                // SAFETY: dst is the band's output (see `band`); lhs is
                // npix x k starting ky rows into the scratch matrix (row
                // stride 1, column stride next; ky * wo + npix <= next); rhs
                // is the cout x k block of kernel row ky of `weight_rows`.
                unsafe {
                    self.gemm_acc(
                        npix,
                        k,
                        o.dst,
                        o.plane_out,
                        p.as_ptr().add(ky * wo),
                        next as isize,
                        self.weight_rows.as_ptr().add(ky * self.cout * k),
                        true,
                    )
                };
            }
        });
    }

    /// Fills `p` (`K x npix`, pixels contiguous per tap) for output rows
    /// `y0..y1` of batch item `b`.
    #[allow(clippy::too_many_arguments)]
    fn im2col(&self, x: &Tensor, b: usize, y0: usize, y1: usize, wo: usize, p: &mut [f32]) {
        let (h, w) = (x.h(), x.w());
        let pad = self.padding.amount() as isize;
        let reflect = matches!(self.padding, Padding::Reflect(_));
        let s = self.stride;
        let npix = (y1 - y0) * wo;
        // Maps a padded coordinate to a source index, or None for a zero.
        let map = |i: isize, n: usize| -> Option<usize> {
            if i >= 0 && (i as usize) < n {
                Some(i as usize)
            } else if reflect {
                let r = if i < 0 { -i } else { 2 * (n as isize - 1) - i };
                Some(r.clamp(0, n as isize - 1) as usize)
            } else {
                None
            }
        };
        // Strided convs: the source column of output column ox under tap kx
        // at cols[kx * wo + ox] (usize::MAX for a zero), computed once.
        let cols: Vec<usize> = if s == 1 || !reflect {
            Vec::new()
        } else {
            (0..self.kw)
                .flat_map(|kx| {
                    (0..wo).map(move |ox| {
                        map((ox * s) as isize + kx as isize - pad, w).unwrap_or(usize::MAX)
                    })
                })
                .collect()
        };
        for ci in 0..self.cin {
            let src = x.plane(b, ci);
            for ky in 0..self.kh {
                for kx in 0..self.kw {
                    let tap = (ci * self.kh + ky) * self.kw + kx;
                    let col = &mut p[tap * npix..(tap + 1) * npix];
                    for oy in y0..y1 {
                        let drow = &mut col[(oy - y0) * wo..(oy - y0 + 1) * wo];
                        let iy = (oy * s + ky) as isize - pad;
                        let Some(sy) = map(iy, h) else {
                            drow.fill(0.0);
                            continue;
                        };
                        let srow = &src[sy * w..(sy + 1) * w];
                        let off = kx as isize - pad;
                        if s == 1 {
                            // valid ox: 0 <= ox + off < w
                            let lo = (-off).clamp(0, wo as isize) as usize;
                            let hi = (w as isize - off).clamp(lo as isize, wo as isize) as usize;
                            let a = (lo as isize + off) as usize;
                            drow[lo..hi].copy_from_slice(&srow[a..a + (hi - lo)]);
                            for ox in (0..lo).chain(hi..wo) {
                                drow[ox] = map(ox as isize + off, w).map_or(0.0, |i| srow[i]);
                            }
                        } else if !reflect {
                            // valid ox: 0 <= s·ox + off < w (zeros elsewhere),
                            // a strided copy with no per-pixel lookup
                            let si = s as isize;
                            let lo = ((-off).max(0) + si - 1) / si;
                            let lo = (lo as usize).min(wo);
                            let hi = ((w as isize - off + si - 1) / si)
                                .clamp(lo as isize, wo as isize)
                                as usize;
                            drow[..lo].fill(0.0);
                            drow[hi..].fill(0.0);
                            if hi > lo {
                                let a = (s * lo) as isize + off;
                                let run = &srow[a as usize..a as usize + s * (hi - lo - 1) + 1];
                                for (d, &v) in drow[lo..hi].iter_mut().zip(run.iter().step_by(s)) {
                                    *d = v;
                                }
                            }
                        } else {
                            for (d, &src) in drow.iter_mut().zip(&cols[kx * wo..(kx + 1) * wo]) {
                                *d = if src == usize::MAX { 0.0 } else { srow[src] };
                            }
                        }
                    }
                }
            }
        }
    }

    /// Straightforward 7-loop reference convolution (for tests).
    pub fn forward_naive(&self, x: &Tensor, act: Activation) -> Result<Tensor> {
        let [n, c, h, w] = x.shape();
        if c != self.cin {
            return Err(Error::invalid("conv2d: channel mismatch"));
        }
        let (ho, wo) = self.output_size(h, w)?;
        let pad = self.padding.amount() as isize;
        let mut out = Tensor::zeros([n, self.cout, ho, wo])?;
        for b in 0..n {
            for co in 0..self.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let mut acc = self.bias[co] as f64;
                        for ci in 0..self.cin {
                            for ky in 0..self.kh {
                                for kx in 0..self.kw {
                                    let mut iy = (oy * self.stride + ky) as isize - pad;
                                    let mut ix = (ox * self.stride + kx) as isize - pad;
                                    if let Padding::Reflect(_) = self.padding {
                                        iy = reflect_index(iy, h);
                                        ix = reflect_index(ix, w);
                                    }
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let wv = self.weight
                                        [((co * self.cin + ci) * self.kh + ky) * self.kw + kx];
                                    acc += wv as f64 * x.at(b, ci, iy as usize, ix as usize) as f64;
                                }
                            }
                        }
                        let v = act.eval(acc as f32);
                        out.plane_mut(b, co)[oy * wo + ox] = v;
                    }
                }
            }
        }
        Ok(out)
    }
}

fn reflect_index(i: isize, n: usize) -> isize {
    if i < 0 {
        -i
    } else if i >= n as isize {
        2 * (n as isize - 1) - i
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer of `shape` with deterministic pseudo-random weights.
    fn layer(shape: [usize; 4], seed: u32) -> Conv2d {
        let [cout, cin, kh, kw] = shape;
        let mut r = seed;
        let mut next = move || {
            r = r.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (r >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let weight: Vec<f32> = (0..cout * cin * kh * kw).map(|_| next()).collect();
        let bias: Vec<f32> = (0..cout).map(|_| next()).collect();
        Conv2d::new(weight, bias, shape, 1, Padding::Zero(kh / 2)).expect("layer")
    }

    /// The layers whose GEMM overwrites the output and adds the bias after
    /// (1x1, stride 2, K <= GEMM_ONE_BLOCK) give the bits of a GEMM
    /// accumulating onto a bias fill.
    #[test]
    fn bias_after_the_gemm_equals_a_bias_fill_first() {
        for (shape, stride, [n, h, w], rows) in [
            ([12, 16, 1, 1], 1, [1, 9, 21], 4),
            ([64, 32, 1, 1], 1, [1, 5, 40], 5),
            ([32, 16, 3, 3], 2, [1, 12, 34], 2),
            ([8, 3, 3, 3], 2, [2, 7, 9], 3),
        ] {
            let mut c = layer(shape, 7 + h as u32);
            c.stride = stride;
            let direct = shape[2] == 1;
            assert!(c.cin * c.kh * c.kw <= GEMM_ONE_BLOCK && !c.row_shift());
            let x = input([n, shape[1], h, w]);
            let (ho, wo) = c.output_size(h, w).expect("size");
            let xs = x.clone();
            let bands = |f: &dyn Fn(Band)| {
                let mut out = vec![f32::NAN; n * c.cout * ho * wo];
                for b in 0..n {
                    for y0 in (0..ho).step_by(rows) {
                        f(Band {
                            b,
                            y0,
                            y1: (y0 + rows).min(ho),
                            wo,
                            plane_out: ho * wo,
                            dst: out[b * c.cout * ho * wo + y0 * wo..].as_mut_ptr(),
                        });
                    }
                }
                out
            };
            for act in [Activation::Relu, Activation::None] {
                let got = bands(&|o| c.band_gemm(&xs, o, act));
                let want = bands(&|o| {
                    for co in 0..c.cout {
                        // SAFETY: the band's rows of plane co.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(o.dst.add(co * o.plane_out), o.npix())
                        };
                        row.fill(c.bias[co]);
                    }
                    c.band_im2col(&xs, o, direct, true);
                    for co in 0..c.cout {
                        // SAFETY: as above.
                        let row = unsafe {
                            std::slice::from_raw_parts_mut(o.dst.add(co * o.plane_out), o.npix())
                        };
                        act.apply(row);
                    }
                });
                assert!(want.iter().all(|v| v.is_finite()));
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(g.to_bits(), e.to_bits(), "{shape:?} {act:?}: element {i}");
                }
            }
        }
    }

    fn input(shape: [usize; 4]) -> Tensor {
        let n: usize = shape.iter().product();
        let v = (0..n)
            .map(|i| ((i * 7919 % 1000) as f32 / 250.0 - 2.0) * if i % 11 == 0 { 0.0 } else { 1.0 })
            .collect();
        Tensor::from_vec(shape, v).expect("shape")
    }

    /// Runs every band of `c` on `x` through `f` (one band per `rows`).
    fn by_bands(c: &Conv2d, x: &Tensor, rows: usize, f: impl Fn(&Tensor, Band)) -> Vec<f32> {
        let [n, _, h, w] = x.shape();
        let mut out = vec![f32::NAN; n * c.cout * h * w];
        for b in 0..n {
            for y0 in (0..h).step_by(rows) {
                let band = Band {
                    b,
                    y0,
                    y1: (y0 + rows).min(h),
                    wo: w,
                    plane_out: h * w,
                    dst: out[b * c.cout * h * w + y0 * w..].as_mut_ptr(),
                };
                f(x, band);
            }
        }
        out
    }

    /// The direct 3x3 kernel (scalar twin and, where the CPU has them, the
    /// AVX2 + FMA and AVX-512 ones) gives the GEMM path's bits: odd sizes, borders, bands
    /// of one and several rows, ReLU and none.
    #[test]
    fn direct_3x3_equals_the_gemm_path_bit_for_bit() {
        for (shape, [n, h, w], rows) in [
            ([8, 9, 3, 3], [1, 13, 37], 4),
            ([16, 5, 3, 3], [2, 7, 70], 1),
            ([16, 16, 3, 3], [1, 9, 33], 9),
            ([4, 1, 3, 3], [1, 3, 5], 2),
            ([32, 32, 3, 3], [1, 6, 66], 3),
            ([12, 7, 3, 3], [1, 5, 97], 2),
            ([20, 3, 3, 3], [1, 6, 131], 4),
            ([28, 2, 3, 3], [2, 5, 45], 5),
        ] {
            let c = layer(shape, (h * w) as u32);
            assert!(conv3x3_direct::supports(c.cout, 3, 3, 1, 1));
            let x = input([n, shape[1], h, w]);
            for act in [Activation::Relu, Activation::None] {
                let want = by_bands(&c, &x, rows, |x, o| c.band_gemm(x, o, act));
                assert!(want.iter().all(|v| v.is_finite()));
                let kernels = [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512];
                for kernel in kernels.into_iter().filter(|k| k.available()) {
                    let got = by_bands(&c, &x, rows, |x, o| c.band_direct(x, o, act, kernel));
                    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            g.to_bits(),
                            e.to_bits(),
                            "{shape:?} {act:?} {kernel:?}: element {i}: {g} vs {e}"
                        );
                    }
                }
            }
        }
    }

    /// Timing (1 thread, the calling thread, medians of 5 interleaved
    /// runs): the GEMM path against the direct kernels this CPU runs on
    /// `fastd_raw`'s layer shapes (ReLU), checking their bits too. The
    /// `gemm` crate uses AVX-512 where its `x86-v4` feature (Cargo.toml) is
    /// on; build without it to time the GEMM of AVX2-only CPUs.
    /// `cargo test --release --lib nn::conv2d::tests::direct_3x3_timing --
    /// --ignored --nocapture`
    #[test]
    #[ignore]
    fn direct_3x3_timing() {
        use std::time::Instant;
        for (name, shape, hw) in [
            ("e1a 16<-5", [16, 5, 3, 3], 832),
            ("e1b/d1 16<-16", [16, 16, 3, 3], 832),
            ("e2b/d2 32<-32", [32, 32, 3, 3], 416),
            ("fr1 8<-9", [8, 9, 3, 3], 1664),
        ] {
            let c = layer(shape, 5);
            let x = input([1, shape[1], hw, hw]);
            let rows_direct = ((BAND_SCRATCH / c.cin).max(BAND_PIXELS) / hw).max(1);
            let rows_gemm = ((BAND_SCRATCH / (c.cin * 9)).max(BAND_PIXELS) / hw).max(1);
            let act = Activation::Relu;
            // None: the GEMM path
            let mut runs = vec![None];
            runs.extend(
                [Kernel::Avx512, Kernel::Avx2]
                    .into_iter()
                    .filter(|k| k.available())
                    .map(Some),
            );
            // one output buffer for all runs (no allocation or first-touch
            // in the timings)
            let (h, w) = (hw, hw);
            let mut out = vec![0f32; c.cout * h * w];
            let mut run = |k: Option<Kernel>| {
                let rows = if k.is_some() { rows_direct } else { rows_gemm };
                let t0 = Instant::now();
                for y0 in (0..h).step_by(rows) {
                    let band = Band {
                        b: 0,
                        y0,
                        y1: (y0 + rows).min(h),
                        wo: w,
                        plane_out: h * w,
                        dst: out[y0 * w..].as_mut_ptr(),
                    };
                    match k {
                        None => c.band_gemm(&x, band, act),
                        Some(k) => c.band_direct(&x, band, act, k),
                    }
                }
                let ms = t0.elapsed().as_secs_f64() * 1e3;
                (ms, out.clone())
            };
            let want = run(None).1;
            let mut times = vec![Vec::new(); runs.len()];
            for _ in 0..5 {
                for (&k, t) in runs.iter().zip(&mut times) {
                    let (ms, got) = run(k);
                    t.push(ms);
                    assert!(got
                        .iter()
                        .zip(&want)
                        .all(|(g, e)| g.to_bits() == e.to_bits()));
                }
            }
            for (k, t) in runs.iter().zip(&mut times) {
                t.sort_by(f64::total_cmp);
                let k = k.map_or("GEMM".to_string(), |k| format!("{k:?}"));
                eprintln!(
                    "{name} {hw}x{hw}: {k:>6} median {:8.2} ms (min {:8.2})",
                    t[2], t[0]
                );
            }
        }
    }
}
