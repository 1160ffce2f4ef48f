//! 2-D convolution on the device: implicit GEMM with fp16 storage and fp32
//! accumulation (`kernels/conv2d.cu`), the GPU counterpart of
//! [`crate::nn::Conv2d`] (same OIHW weights, stride, zero/reflect padding
//! and fused activation).
//!
//! Tensors stay on the device between layers as [`DeviceTensor`] (fp16
//! NCHW); [`CudaConv2d::forward_host`] is the convenience path that uploads
//! an f32 [`Tensor`] and downloads the result (used by the parity tests).

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use half::f16;

use super::device::{device, drv, StageClock};
use crate::backend::DeviceTimes;
use crate::error::{Error, Result};
use crate::nn::{Activation, Padding, Tensor};

/// K is padded to a multiple of this (the kernel's K tile) with zero
/// weights, so every weight row load is 16-byte aligned.
pub const K_ALIGN: usize = 32;

/// Which kernel runs the convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvKernel {
    /// Tensor cores (`mma.sync.m16n8k16`) on sm_80 and newer, else direct.
    Auto,
    /// Tensor cores; an error before sm_80.
    Mma,
    /// One thread per output value (any GPU; the on-device reference).
    Direct,
}

/// An fp16 NCHW tensor on the device.
#[derive(Debug)]
pub struct DeviceTensor {
    /// `[N, C, H, W]`.
    pub shape: [usize; 4],
    /// `N*C*H*W` fp16 values, NCHW.
    pub data: CudaSlice<f16>,
}

impl DeviceTensor {
    /// A zero tensor of `shape` (`[N, C, H, W]`).
    pub fn zeros(shape: [usize; 4]) -> Result<Self> {
        Ok(DeviceTensor {
            shape,
            data: device()?.zeros::<f16>(shape.iter().product())?,
        })
    }

    /// Uploads `t`, converting to fp16 on the host (half the bytes of f32).
    pub fn upload(t: &Tensor) -> Result<(Self, DeviceTimes)> {
        let dev = device()?;
        let host: Vec<f16> = t.data().iter().map(|&v| f16::from_f32(v)).collect();
        let mut clock = StageClock::default();
        let data = dev.upload(&mut clock, &host)?;
        dev.sync()?;
        Ok((
            DeviceTensor {
                shape: t.shape(),
                data,
            },
            clock.times()?,
        ))
    }

    /// Downloads to an f32 [`Tensor`].
    pub fn download(&self) -> Result<(Tensor, DeviceTimes)> {
        let dev = device()?;
        let mut host = vec![f16::ZERO; self.shape.iter().product()];
        let mut clock = StageClock::default();
        dev.download(&mut clock, &self.data, &mut host)?;
        let t = Tensor::from_vec(self.shape, host.iter().map(|v| v.to_f32()).collect())?;
        Ok((t, clock.times()?))
    }
}

/// A convolution layer with its weights on the device.
#[derive(Debug)]
pub struct CudaConv2d {
    cout: usize,
    cin: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    padding: Padding,
    k: usize,
    kpad: usize,
    /// fp16 `[Cout, Kpad]`, OIHW rows zero-padded to `kpad`.
    weight: CudaSlice<f16>,
    /// f32 `[Cout]`.
    bias: CudaSlice<f32>,
}

fn act_code(a: Activation) -> (i32, f32) {
    match a {
        Activation::None => (0, 0.0),
        Activation::Relu => (1, 0.0),
        Activation::LeakyRelu(s) => (2, s),
        Activation::Sigmoid => (3, 0.0),
    }
}

fn to_i32(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::invalid(format!("CUDA conv2d: {what} = {v} is too large")))
}

impl CudaConv2d {
    /// Uploads OIHW `weight` (`[cout, cin, kh, kw]`, f32, rounded to fp16)
    /// and `bias` (`[cout]`).
    pub fn new(
        weight: &[f32],
        bias: &[f32],
        shape: [usize; 4],
        stride: usize,
        padding: Padding,
    ) -> Result<Self> {
        let [cout, cin, kh, kw] = shape;
        let k = cin * kh * kw;
        if cout == 0 || k == 0 || stride == 0 {
            return Err(Error::invalid(format!(
                "CUDA conv2d: bad shape {shape:?} / stride {stride}"
            )));
        }
        if weight.len() != cout * k || bias.len() != cout {
            return Err(Error::invalid(format!(
                "CUDA conv2d: weight has {} values and bias {}, shape {shape:?} needs {} and {cout}",
                weight.len(),
                bias.len(),
                cout * k
            )));
        }
        let kpad = k.div_ceil(K_ALIGN) * K_ALIGN;
        let mut w16 = vec![f16::ZERO; cout * kpad];
        for (dst, src) in w16.chunks_exact_mut(kpad).zip(weight.chunks_exact(k)) {
            for (d, s) in dst.iter_mut().zip(src) {
                *d = f16::from_f32(*s);
            }
        }
        let dev = device()?;
        let mut clock = StageClock::default();
        let wbuf = dev.upload(&mut clock, &w16)?;
        let bbuf = dev.upload(&mut clock, bias)?;
        dev.sync()?;
        Ok(CudaConv2d {
            cout,
            cin,
            kh,
            kw,
            stride,
            padding,
            k,
            kpad,
            weight: wbuf,
            bias: bbuf,
        })
    }

    /// Output `(height, width)` for an `h x w` input.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let p = match self.padding {
            Padding::Zero(p) => p,
            Padding::Reflect(p) => {
                if p >= h || p >= w {
                    return Err(Error::invalid(format!(
                        "CUDA conv2d: reflect padding {p} needs an input larger than {h}x{w}"
                    )));
                }
                p
            }
        };
        let (hp, wp) = (h + 2 * p, w + 2 * p);
        if hp < self.kh || wp < self.kw {
            return Err(Error::invalid(format!(
                "CUDA conv2d: input {h}x{w} is smaller than the {}x{} kernel",
                self.kh, self.kw
            )));
        }
        Ok((
            (hp - self.kh) / self.stride + 1,
            (wp - self.kw) / self.stride + 1,
        ))
    }

    /// Multiply-adds x 2 per output pixel (for GFLOP/s figures).
    pub fn flops_per_output_pixel(&self) -> usize {
        2 * self.cout * self.k
    }

    /// Shape of the output for input shape `[n, c, h, w]`.
    pub fn output_shape(&self, x: [usize; 4]) -> Result<[usize; 4]> {
        let (ho, wo) = self.output_size(x[2], x[3])?;
        Ok([x[0], self.cout, ho, wo])
    }

    /// Queues the convolution of `x` into a new tensor (no
    /// synchronisation).
    pub fn forward(
        &self,
        x: &DeviceTensor,
        act: Activation,
        kernel: ConvKernel,
    ) -> Result<DeviceTensor> {
        let shape = self.output_shape(x.shape)?;
        let mut out = DeviceTensor {
            shape,
            data: device()?.zeros::<f16>(shape.iter().product())?,
        };
        self.forward_timed(x, &mut out, act, kernel, None)?;
        Ok(out)
    }

    /// Queues the convolution of `x` into `out` (whose shape must be
    /// [`CudaConv2d::output_shape`]); no allocation, no synchronisation.
    pub fn forward_into(
        &self,
        x: &DeviceTensor,
        out: &mut DeviceTensor,
        act: Activation,
        kernel: ConvKernel,
    ) -> Result<()> {
        self.forward_timed(x, out, act, kernel, None)
    }

    fn forward_timed(
        &self,
        x: &DeviceTensor,
        out: &mut DeviceTensor,
        act: Activation,
        kernel: ConvKernel,
        clock: Option<&mut StageClock>,
    ) -> Result<()> {
        let [n, c, h, w] = x.shape;
        if c != self.cin {
            return Err(Error::invalid(format!(
                "CUDA conv2d: input has {c} channels, the layer expects {}",
                self.cin
            )));
        }
        let (ho, wo) = self.output_size(h, w)?;
        let dev = device()?;
        let tensor_cores = dev
            .arch()
            .trim_start_matches("sm_")
            .parse::<u32>()
            .is_ok_and(|a| a >= 80);
        let use_mma = match kernel {
            ConvKernel::Auto => tensor_cores,
            ConvKernel::Mma if !tensor_cores => {
                return Err(Error::invalid(format!(
                    "CUDA conv2d: the tensor-core kernel needs sm_80 or newer, the device is {}",
                    dev.arch()
                )))
            }
            ConvKernel::Mma => true,
            ConvKernel::Direct => false,
        };
        let shape = [n, self.cout, ho, wo];
        if out.shape != shape || out.data.len() < shape.iter().product() {
            return Err(Error::invalid(format!(
                "CUDA conv2d: output tensor is {:?}, the layer produces {shape:?}",
                out.shape
            )));
        }
        let npix = ho * wo;
        let (pad, reflect) = match self.padding {
            Padding::Zero(p) => (p, 0i32),
            Padding::Reflect(p) => (p, 1i32),
        };
        let ints = [
            to_i32(self.cin, "cin")?,
            to_i32(h, "height")?,
            to_i32(w, "width")?,
            to_i32(self.cout, "cout")?,
            to_i32(self.kh, "kh")?,
            to_i32(self.kw, "kw")?,
            to_i32(self.stride, "stride")?,
            to_i32(pad, "padding")?,
            reflect,
            to_i32(ho, "output height")?,
            to_i32(wo, "output width")?,
            to_i32(self.k, "K")?,
            to_i32(self.kpad, "Kpad")?,
        ];
        to_i32(n * self.cout.max(self.cin) * npix.max(h * w), "tensor size")?;
        let (act, slope) = act_code(act);
        let batch =
            u32::try_from(n.max(1)).map_err(|_| Error::invalid("CUDA conv2d: batch too large"))?;
        let (entry, cfg) = if use_mma {
            (
                "conv2d_mma_f16",
                LaunchConfig {
                    grid_dim: (
                        npix.div_ceil(64) as u32,
                        self.cout.div_ceil(64) as u32,
                        batch,
                    ),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                },
            )
        } else {
            (
                "conv2d_direct_f16",
                LaunchConfig {
                    grid_dim: (npix.div_ceil(128) as u32, self.cout as u32, batch),
                    block_dim: (128, 1, 1),
                    shared_mem_bytes: 0,
                },
            )
        };
        let f = dev.function("conv2d.cu", entry)?;
        let mut launch = |st: &std::sync::Arc<cudarc::driver::CudaStream>| -> Result<()> {
            let mut b = st.launch_builder(&f);
            b.arg(&x.data)
                .arg(&self.weight)
                .arg(&self.bias)
                .arg(&mut out.data);
            for v in &ints {
                b.arg(v);
            }
            b.arg(&act).arg(&slope);
            // SAFETY: the arguments match conv2d_{mma,direct}_f16 in
            // kernels/conv2d.cu: x holds N*Cin*H*W fp16, the weights
            // Cout*Kpad fp16 (Kpad % 32 == 0), bias Cout f32, out
            // N*Cout*Ho*Wo fp16; the grid and the 128-thread block are the
            // ones each kernel's indexing assumes.
            unsafe { b.launch(cfg) }.map_err(drv)?;
            Ok(())
        };
        match clock {
            Some(c) => dev.kernel(c, launch)?,
            None => launch(dev.stream())?,
        }
        Ok(())
    }

    /// Uploads `x`, convolves, downloads; records the device times.
    pub fn forward_host(
        &self,
        x: &Tensor,
        act: Activation,
        kernel: ConvKernel,
    ) -> Result<(Tensor, DeviceTimes)> {
        let (dx, up) = DeviceTensor::upload(x)?;
        let shape = self.output_shape(dx.shape)?;
        let mut out = DeviceTensor {
            shape,
            data: device()?.zeros::<f16>(shape.iter().product())?,
        };
        let mut clock = StageClock::default();
        self.forward_timed(&dx, &mut out, act, kernel, Some(&mut clock))?;
        let (t, down) = out.download()?;
        let mut times = clock.times()?;
        times.upload_ms = up.upload_ms;
        times.upload_bytes = up.upload_bytes;
        times.download_ms = down.download_ms;
        times.download_bytes = down.download_bytes;
        Ok((t, times))
    }
}
