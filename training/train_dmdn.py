#!/usr/bin/env python3
"""Train the `dmdn` joint demosaic + denoise network (Gharbi et al. 2016 style).

Architecture (identical to src/nn/dmdn.rs; every conv is 'same' zero padded):

    mosaic (H, W) in the model's canonical Bayer phase (metadata `phase`)
      -> packed: 4 half-res planes in raster order of the 2x2 block
         (c00, c01, c10, c11), concatenated with `noise_channels` noise-std maps
      -> body: `depth` 3x3 convs + ReLU at half resolution, `width` channels
         (if `gated`, the last conv has 2*width outputs: filters * masks)
      -> 1x1 conv width -> 12, pixel_shuffle(2) -> up (3, H, W)
      -> full-res refinement: concat(masked mosaic (3 ch, zeros where a colour is
         not sampled), up) -> 3x3 conv -> `fullres_width` -> ReLU -> 1x1 -> 3
      -> output = refinement (+ up when `fullres_residual`)

Any Bayer phase is handled by reflect padding: the mosaic is reflect-padded by
the halo plus (0 or 1) rows/cols so the padded origin has the canonical phase
(reflection preserves CFA parity), the net runs, and the output is cropped.

Sizes:
  fast     depth 5, width 24, fullres 16, residual; trained from scratch.
  quality  depth 15, width 64, gated, fullres 64: demosaicnet's released Bayer
           model (MIT, Gharbi et al.) with its 2x2 packing conv and transposed
           conv folded into conv1 / the 1x1 head, plus a zero-initialised
           noise-map input channel, fine-tuned for noise.

Regimes:
  srgb  the literature's protocol: mosaic of the 8-bit sRGB image / 255 plus
        unclipped Gaussian noise sigma/255, sigma ~ U[0, 20] (20% at 0).
  raw   linear camera RGB via simple unprocessing (inverse sRGB gamma, inverse
        colour matrix, inverse WB) + Poisson-Gaussian noise on the raw signal,
        then white balance; noise map = per-pixel std after white balance.

Usage (see training/README.md):
  python training/train_dmdn.py train --size fast --regime srgb --minutes 70
  python training/train_dmdn.py eval --size fast --regime srgb
  python training/train_dmdn.py export --size fast --regime srgb
"""
import argparse
import glob
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("RAWGRAPH_DATA", os.path.join(REPO, "..", "shared", "data"))
CACHE = os.environ.get("RAWGRAPH_CACHE", "/root/.cache/rawgraph")

SIZES = {
    "fast": dict(depth=5, width=24, gated=False, fullres_width=16, fullres_residual=True,
                 phase="rggb", noise_channels=1),
    "quality": dict(depth=15, width=64, gated=True, fullres_width=64, fullres_residual=False,
                    phase="grbg", noise_channels=1),
}

# `dmdn_unet` sizes (the raw-path models), sized for a 2-core CPU:
# fast ~5.0 k multiply-adds per output pixel, quality ~18.5 k.
UNET_SIZES = {
    "fast": dict(widths=(16, 32, 64), bottom=2, fullres_width=8, phase="rggb", noise_channels=1),
    # `fast` with a fourth level at 1/16 resolution (c4 = 40, one conv there)
    # feeding the 1/8 bottom: ~190 more multiply-adds per pixel for ~2x the
    # receptive field (large flat areas at high ISO). Grows from `fast` files.
    "fast4": dict(widths=(16, 32, 64, 40), bottom=2, fullres_width=8, phase="rggb", noise_channels=1,
                  deep=1),
    # `fast` with gated smoothing (box means of radius 2 and 6 px blended per
    # pixel): grows from `fast` files
    "fastg": dict(widths=(16, 32, 64), bottom=2, fullres_width=8, phase="rggb", noise_channels=1,
                  gate=(2, 6)),
    # `fastg` over a classical base: the residual is learned over
    # `demosaic_rcd_mlri` (computed by the engine, `rawgraph.demosaic`)
    # blended in per pixel by a gate; grows from `fastg`/`fast` files
    "fastb": dict(widths=(16, 32, 64), bottom=2, fullres_width=8, phase="rggb", noise_channels=1,
                  gate=(2, 6), base="rcd_mlri"),
    # `fastb` with chroma smoothing: after the gated smoothing, the colour
    # differences (R - G, B - G) are blended per pixel with their guided
    # filters (radii 2 and 4, guide: the luminance (R + 2G + B) / 4, which
    # is kept), an edge-aware average of chroma noise; grows from `fastb` files
    "fastc": dict(widths=(16, 32, 64), bottom=2, fullres_width=8, phase="rggb", noise_channels=1,
                  gate=(2, 6), base="rcd_mlri", chroma=(2, 4)),
    # `fastc` with a third chroma radius (8) and luminance smoothing: L is
    # blended per pixel with its own guided filters (radii 2, 4 and 8, eps
    # LUM_EPS_K x the local noise variance), the flat areas of high-ISO
    # captures averaged wider than the net's receptive field reaches cheaply;
    # grows from `fastc` files. Its guided filters run at half resolution
    # (`subsample` 2, He and Sun's fast guided filter: the coefficients from
    # 2x2 means of L, C and the noise variance, radii halved, bilinearly
    # upsampled): ~1/4 of the box work; files without `guided_subsample`
    # are the full-resolution filters of run 33
    "fastd": dict(widths=(16, 32, 64), bottom=2, fullres_width=8, phase="rggb", noise_channels=1,
                  gate=(2, 6), base="rcd_mlri", chroma=(2, 4, 8), lum=(2, 4, 8), subsample=2),
    "quality": dict(widths=(32, 64, 128), bottom=2, fullres_width=16, phase="rggb", noise_channels=1),
    # `quality` with `fastd`'s heads: the residual over `demosaic_rcd_mlri`,
    # gated smoothing, chroma and luminance guided filters at half
    # resolution; ships in its own file and grows from `quality` files
    "qualityd": dict(widths=(32, 64, 128), bottom=2, fullres_width=16, phase="rggb", noise_channels=1,
                     gate=(2, 6), base="rcd_mlri", chroma=(2, 4, 8), lum=(2, 4, 8), subsample=2),
}
GATE_INIT = -4.0
GATE_SCALE = 50.0
# the classical-base gate starts at sigmoid(-3) ~ 0.047: the grown model is
# almost the file's function
BASE_GATE_INIT = -3.0
# the 1x1 convs whose outputs are logits x GATE_SCALE (files hold them as used)
GATES = ("gate", "bgate", "cgate", "lgate")

# CFA colour index (0 R, 1 G, 2 B) of the 2x2 block positions (dy, dx) in raster order.
PHASES = {
    "rggb": [0, 1, 1, 2],
    "grbg": [1, 0, 2, 1],
    "gbrg": [1, 2, 0, 1],
    "bggr": [2, 1, 1, 0],
}


def phase_offset(image_phase, model_phase):
    """(dy, dx) such that image pixel (y+dy, x+dx) has model_phase at (y, x)."""
    cols = PHASES[image_phase]
    for dy in (0, 1):
        for dx in (0, 1):
            shifted = [cols[((dy + py) % 2) * 2 + (dx + px) % 2] for py in (0, 1) for px in (0, 1)]
            if shifted == PHASES[model_phase]:
                return dy, dx
    raise ValueError("phases are not related by a shift")


class DMDN(nn.Module):
    def __init__(self, depth, width, gated, fullres_width, fullres_residual, phase, noise_channels):
        super().__init__()
        self.depth, self.width, self.gated = depth, width, gated
        self.fullres_residual = fullres_residual
        self.phase = phase
        self.noise_channels = noise_channels
        body = []
        for i in range(depth):
            cin = 4 + noise_channels if i == 0 else width
            cout = 2 * width if (gated and i == depth - 1) else width
            body.append(nn.Conv2d(cin, cout, 3, padding=1))
        self.body = nn.ModuleList(body)
        self.head = nn.Conv2d(width, 12, 1)
        self.fr1 = nn.Conv2d(6, fullres_width, 3, padding=1)
        self.fr2 = nn.Conv2d(fullres_width, 3, 1)
        self.noise_w = None

    def split_noise_weights(self):
        self.noise_w = nn.Parameter(self.body[0].weight[:, 4:].detach().clone())

    def fold_noise_weights(self):
        if self.noise_w is not None:
            with torch.no_grad():
                self.body[0].weight[:, 4:] = self.noise_w

    def halo(self):
        """Full-res receptive radius, rounded up to even."""
        r = 2 * self.depth + 2 + 1
        return r + (r % 2)

    def forward(self, mosaic, noise):
        """mosaic: (B,1,H,W) canonical phase, H and W even; noise: (B,nc,H/2,W/2)."""
        b, _, h, w = mosaic.shape
        packed = F.pixel_unshuffle(mosaic, 2)  # channel k = dy*2+dx (raster order)
        x = torch.cat([packed, noise], 1)
        for i, conv in enumerate(self.body):
            if i == 0 and self.noise_w is not None:
                # fine-tuning: the noise-input weights are their own parameter
                # (own learning rate); folded back into body.0 on export.
                w0 = torch.cat([conv.weight[:, :4], self.noise_w], 1)
                x = F.relu(F.conv2d(x, w0, conv.bias, padding=1))
            else:
                x = F.relu(conv(x))
        if self.gated:
            x = x[:, : self.width] * x[:, self.width:]
        up = F.pixel_shuffle(self.head(x), 2)
        masked = masked_mosaic(mosaic, self.phase)
        y = self.fr2(F.relu(self.fr1(torch.cat([masked, up], 1))))
        if self.fullres_residual:
            y = y + up
        return y


class DMDNUNet(nn.Module):
    """`dmdn_unet`: the CPU-sized joint demosaic + denoise net (src/nn/dmdn_unet.rs).

    Packed Bayer at half resolution, a three-level U-Net (stride-2 3x3 convs
    down, 1x1 conv + pixel shuffle up, additive skips), a 1x1 head to 12
    channels shuffled to full-resolution RGB, and a thin full-resolution
    refinement on (masked mosaic, upsampled RGB), both added to a bilinear
    demosaic of the mosaic (a fixed 3x3 depthwise conv of the masked mosaic),
    so the network learns a residual over a known interpolation. H, W must be
    multiples of 8. Every conv is zero-padded 'same' (stride-2: padding 1).

    With a fourth width c4 there is a 1/16 level: e4 = `deep` 3x3 convs after
    a stride-2 conv of e3a's output, added back (1x1 conv + pixel shuffle)
    before the 1/8 bottom convs; H, W must then be multiples of 16.

    With a classical `base` (e.g. "rcd_mlri": the engine's
    `demosaic_rcd_mlri` of the same mosaic, passed in as `base`), the
    full-resolution refinement also sees `base - bilinear` and a per-pixel
    gate g (1x1 conv of d1, pixel shuffle, sigmoid) blends the network's
    estimate yn = bilinear + up + fr2(..) with the base:
    y = yn + g * (base - yn). (A blend, not an added term: the gradient on g
    is then (y - truth) . (base - yn), which opens the gate where the base
    beats the network, so a model grown from a bilinear-base file can
    learn to use it; `bilinear + up + g (base - bilinear)` cannot, as its
    estimate is already near the truth.)
    """

    def __init__(self, widths, bottom, fullres_width, phase, noise_channels, deep=0, gate=(), base="bilinear",
                 chroma=(), lum=(), subsample=1):
        super().__init__()
        c1, c2, c3 = widths[:3]
        self.widths, self.bottom, self.phase = tuple(widths), bottom, phase
        self.deep = deep
        self.noise_channels = noise_channels
        self.fullres_width = fullres_width
        self.e1a = nn.Conv2d(4 + noise_channels, c1, 3, padding=1)
        self.e1b = nn.Conv2d(c1, c1, 3, padding=1)
        self.e2a = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.e2b = nn.Conv2d(c2, c2, 3, padding=1)
        self.e3a = nn.Conv2d(c2, c3, 3, stride=2, padding=1)
        self.e3 = nn.ModuleList([nn.Conv2d(c3, c3, 3, padding=1) for _ in range(bottom)])
        if len(widths) == 4:
            c4 = widths[3]
            self.e4a = nn.Conv2d(c3, c4, 3, stride=2, padding=1)
            self.e4 = nn.ModuleList([nn.Conv2d(c4, c4, 3, padding=1) for _ in range(deep)])
            self.u3 = nn.Conv2d(c4, 4 * c3, 1)
        self.u2 = nn.Conv2d(c3, 4 * c2, 1)
        self.d2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.u1 = nn.Conv2d(c2, 4 * c1, 1)
        self.d1 = nn.Conv2d(c1, c1, 3, padding=1)
        self.head = nn.Conv2d(c1, 12, 1)
        self.base = base
        self.fr1 = nn.Conv2d(6 if base == "bilinear" else 9, fullres_width, 3, padding=1)
        if base != "bilinear":
            self.bgate = nn.Conv2d(c1, 4, 1)
            nn.init.zeros_(self.bgate.weight)
            nn.init.constant_(self.bgate.bias, BASE_GATE_INIT / GATE_SCALE)
        self.fr2 = nn.Conv2d(fullres_width, 3, 1)
        self.gate_radii = tuple(gate)
        if self.gate_radii:
            # logits of the box filters against a fixed 0 for "keep", from the
            # 1/2-resolution decoder features d1 (1x1 conv, pixel shuffle), x
            # GATE_SCALE (Adam moves them GATE_SCALE times faster than the
            # other weights); start at weight ~0.018 per box, so the model
            # grows from a file almost as its function
            self.gate = nn.Conv2d(c1, 4 * len(self.gate_radii), 1)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, GATE_INIT / GATE_SCALE)
        self.chroma_radii = tuple(chroma)
        if self.chroma_radii:
            if not self.gate_radii:
                raise ValueError("chroma smoothing needs the gated smoothing")
            # logits of the chroma boxes, as the gate's (zero weights: the
            # grown model starts at ~0.018 per box)
            self.cgate = nn.Conv2d(c1, 4 * len(self.chroma_radii), 1)
            nn.init.zeros_(self.cgate.weight)
            nn.init.constant_(self.cgate.bias, GATE_INIT / GATE_SCALE)
        self.lum_radii = tuple(lum)
        # the guided filters' coefficients at 1/subsample resolution (1 or 2)
        if subsample not in (1, 2) or any(r % subsample for r in self.chroma_radii + self.lum_radii):
            raise ValueError(f"guided filters: subsample {subsample} must be 1 or 2 and divide every radius")
        self.subsample = subsample
        if self.lum_radii:
            if not self.chroma_radii:
                raise ValueError("luminance smoothing needs the chroma smoothing")
            # logits of the luminance guided filters, as the gate's
            self.lgate = nn.Conv2d(c1, 4 * len(self.lum_radii), 1)
            nn.init.zeros_(self.lgate.weight)
            nn.init.constant_(self.lgate.bias, GATE_INIT / GATE_SCALE)
        self.noise_w = None

    def fold_noise_weights(self):
        pass

    def halo(self):
        return receptive_halo(self)

    def forward(self, mosaic, noise, base=None):
        """mosaic: (B,1,H,W) canonical phase, H and W multiples of 8; noise: (B,nc,H/2,W/2);
        base: (B,3,H,W), the classical demosaic of `mosaic` (models with a classical base)."""
        x = torch.cat([F.pixel_unshuffle(mosaic, 2), noise], 1)
        e1 = F.relu(self.e1b(F.relu(self.e1a(x))))
        e2 = F.relu(self.e2b(F.relu(self.e2a(e1))))
        e3 = F.relu(self.e3a(e2))
        if len(self.widths) == 4:
            e4 = F.relu(self.e4a(e3))
            for conv in self.e4:
                e4 = F.relu(conv(e4))
            e3 = e3 + F.pixel_shuffle(self.u3(e4), 2)
        for conv in self.e3:
            e3 = F.relu(conv(e3))
        d2 = F.relu(self.d2(e2 + F.pixel_shuffle(self.u2(e3), 2)))
        d1 = F.relu(self.d1(e1 + F.pixel_shuffle(self.u1(d2), 2)))
        up = F.pixel_shuffle(self.head(d1), 2)
        logits = F.pixel_shuffle(self.gate(d1), 2) * GATE_SCALE if self.gate_radii else None
        masked = masked_mosaic(mosaic, self.phase)
        bil = F.conv2d(masked, BILINEAR.to(masked), padding=1, groups=3)
        if self.base == "bilinear":
            h = F.relu(self.fr1(torch.cat([masked, up], 1)))
            y = bil + up + self.fr2(h)
        else:
            if base is None:
                raise ValueError(f"this model needs its classical base ({self.base})")
            d = base - bil
            h = F.relu(self.fr1(torch.cat([masked, up, d], 1)))
            g = torch.sigmoid(F.pixel_shuffle(self.bgate(d1), 2) * GATE_SCALE)
            yn = bil + up + self.fr2(h)
            y = yn + g * (base - yn)
        if not self.gate_radii:
            return y
        # gated smoothing: a per-pixel convex blend of y and its box means
        # (radius r: the mean over the (2r+1)^2 window), weights a softmax
        # of (0, gate logits): flat areas can average many pixels at no cost
        out = gated_boxes(y, logits, self.gate_radii)
        if not self.chroma_radii:
            return out
        # chroma smoothing: (R - G, B - G) blended per pixel with its guided
        # filters at luminance L = (R + 2G + B) / 4, then G = L - (C_r + C_b) / 4
        zc = F.pixel_shuffle(self.cgate(d1), 2) * GATE_SCALE
        r, g, b = out[:, 0:1], out[:, 1:2], out[:, 2:3]
        lum = (r + 2.0 * g + b) * 0.25
        chroma = torch.cat([r - g, b - g], 1)
        var = F.interpolate(noise[:, :1] * noise[:, :1], scale_factor=2, mode="nearest")
        w = torch.softmax(torch.cat([torch.zeros_like(zc[:, :1]), zc], 1), 1)
        c = w[:, :1] * chroma
        s = getattr(self, "subsample", 1)
        # the filters' inputs at 1/s resolution (s = 1: themselves)
        lum_s, chroma_s, var_s = (lum, chroma, var) if s == 1 else \
            (F.avg_pool2d(lum, s), F.avg_pool2d(chroma, s), F.avg_pool2d(var, s))

        def apply(coef):
            # mean(a) L + mean(b), the means upsampled from 1/s resolution
            a, b = coef
            if s > 1:
                a, b = upsample_coef(a, s), upsample_coef(b, s)
            return a * lum + b

        stats = {}
        for k, rad in enumerate(self.chroma_radii):
            stats[rad] = lum_stats(lum_s, var_s, rad // s)
            c = c + w[:, k + 1: k + 2] * apply(guided_chroma(lum_s, chroma_s, var_s, rad // s, stats[rad]))
        if self.lum_radii:
            # luminance smoothing: L blended per pixel with its own guided filters
            zl = F.pixel_shuffle(self.lgate(d1), 2) * GATE_SCALE
            wl = torch.softmax(torch.cat([torch.zeros_like(zl[:, :1]), zl], 1), 1)
            lum2 = wl[:, :1] * lum
            for k, rad in enumerate(self.lum_radii):
                lum2 = lum2 + wl[:, k + 1: k + 2] * apply(guided_self(lum_s, var_s, rad // s, stats.get(rad)))
            lum = lum2
        g2 = lum - (c[:, 0:1] + c[:, 1:2]) * 0.25
        return torch.cat([c[:, 0:1] + g2, g2, c[:, 1:2] + g2], 1)

    def macs_per_pixel(self):
        """Multiply-adds per full-resolution output pixel (weights x output positions)."""
        c1, c2, c3 = self.widths[:3]
        nc = self.noise_channels
        half = (4 + nc) * c1 * 9 + c1 * c1 * 9 + c1 * c1 * 9 + c1 * 12
        quarter = c1 * c2 * 9 + c2 * c2 * 9 + c2 * c2 * 9 + c2 * 4 * c1
        eighth = c2 * c3 * 9 + self.bottom * c3 * c3 * 9 + c3 * 4 * c2
        full = 6 * self.fullres_width * 9 + self.fullres_width * 3 + 9  # + the bilinear base
        if self.base != "bilinear":
            # base - bilinear into fr1, the gate's 1x1 conv at 1/2 resolution (4 outputs per
            # 2x2 block), the blend (the classical demosaic itself is not counted)
            full += 3 * self.fullres_width * 9 + c1 + 9
        sixteenth = 0
        if len(self.widths) == 4:
            c4 = self.widths[3]
            sixteenth = c3 * c4 * 9 + self.deep * c4 * c4 * 9 + c4 * 4 * c3
        # the gate's 1x1 conv at 1/2 resolution, and per box 3 channels x
        # (2 running-sum adds + 1 blend)
        gate = len(self.gate_radii) * (c1 + 9)
        # chroma: its 1x1 conv, per guided filter ~40 (8 running box means,
        # the coefficients, the blend), ~12 for the transforms and the softmax
        # luminance: its 1x1 conv, per guided filter ~16 (2 more running box
        # means, the coefficients, the blend; L's means are the chroma's).
        # At half resolution (subsample 2) the box work is a quarter, plus
        # ~3 per upsampled coefficient plane (4 chroma, 2 luminance) and ~4
        # for the 2x2 means
        if getattr(self, "subsample", 1) == 1:
            gate += len(self.chroma_radii) * (c1 + 40) + (12 if self.chroma_radii else 0)
            gate += len(getattr(self, "lum_radii", ())) * (c1 + 16)
        else:
            gate += len(self.chroma_radii) * (c1 + 10 + 12) + (16 if self.chroma_radii else 0)
            gate += len(self.lum_radii) * (c1 + 4 + 6)
        return half / 4 + quarter / 16 + eighth / 64 + sixteenth / 256 + full + gate


def gated_boxes(y, logits, radii):
    """Per-pixel convex blend of y (B,C,H,W) and its box means (radius r:
    the mean over the (2r+1)^2 window clipped to the image), weights
    softmax(0, logits) (logits (B,K,H,W), one plane per radius)."""
    w = torch.softmax(torch.cat([torch.zeros_like(logits[:, :1]), logits], 1), 1)
    out = w[:, :1] * y
    for k, r in enumerate(radii):
        box = F.avg_pool2d(y, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
        out = out + w[:, k + 1: k + 2] * box
    return out


# The guided filter's regulariser: CHROMA_EPS_K x the local noise variance
# (metadata `chroma_eps_k`)
CHROMA_EPS_K = 0.5
# and a floor (image units squared) for noise-free input (metadata `chroma_eps_floor`)
CHROMA_EPS_FLOOR = 1e-6
# The luminance guided filters' regulariser: LUM_EPS_K x the local noise
# variance of the mosaic (metadata `lum_eps_k`; L = (R + 2G + B) / 4 of
# independent channels would have 0.375 of it), the same floor
LUM_EPS_K = 0.25


def box_mean(x, r):
    """Mean over the (2r+1)^2 window clipped to the image, as two 1-D means
    (a window clipped to the image is a rectangle: the same value)."""
    x = F.avg_pool2d(x, (1, 2 * r + 1), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(x, (2 * r + 1, 1), stride=1, padding=(r, 0), count_include_pad=False)


def lum_stats(lum, var, r):
    """Box means at radius r shared by the guided filters: mean(L), var(L), mean(V)."""
    m_l = box_mean(lum, r)
    return m_l, box_mean(lum * lum, r) - m_l * m_l, box_mean(var, r)


def guided_self(lum, var, r, stats=None):
    """Coefficient means (mean(a), mean(b)) of the guided filter of the
    luminance lum (B,1,H,W) by itself, radius r, regularised by LUM_EPS_K x
    the box mean of the noise variance var plus CHROMA_EPS_FLOOR:
    a = var(L) / (var(L) + eps), b = (1 - a) mean(L); the filter is
    mean(a) L + mean(b). `stats`: lum_stats(lum, var, r) if known."""
    m_l, var_l, m_v = stats or lum_stats(lum, var, r)
    a = var_l / (var_l + LUM_EPS_K * m_v + CHROMA_EPS_FLOOR)
    b = m_l - a * m_l
    return box_mean(a, r), box_mean(b, r)


def upsample_coef(x, s):
    """Guided-filter coefficient means from 1/s resolution to full: bilinear,
    pixel centres aligned (align_corners=False), edges clamped; for s = 2
    each output takes 3/4 of its own low-resolution sample and 1/4 of the
    next one towards it, per axis."""
    return F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)


def guided_chroma(lum, chroma, var, r, stats=None):
    """Coefficient means (mean(a), mean(b)) of the guided filter (He et al.
    2010) of each chroma plane (B,2,H,W) with the luminance lum (B,1,H,W) as
    guide, radius r (box means over the (2r+1)^2 window clipped to the
    image), regularised by CHROMA_EPS_K x the box mean of the noise variance
    var (B,1,H,W) plus CHROMA_EPS_FLOOR: a = cov(L, C) / (var(L) + eps),
    b = mean(C) - a mean(L); the filter is mean(a) L + mean(b)."""
    def box(x):
        return box_mean(x, r)
    m_l, var_l, m_v = stats or lum_stats(lum, var, r)
    m_c = box(chroma)
    cov = box(lum * chroma) - m_l * m_c
    a = cov / (var_l + CHROMA_EPS_K * m_v + CHROMA_EPS_FLOOR)
    b = m_c - a * m_l
    return box(a), box(b)


# Bilinear demosaic of a masked mosaic as a depthwise 3x3 conv (R, G, B):
# the same weights as `BILINEAR` in src/nn/dmdn_unet.rs.
BILINEAR = torch.tensor([
    [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]],
    [[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]],
    [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]],
])[:, None]


def receptive_halo(model):
    """Smallest multiple of 8 covering the receptive radius (full-res px), measured
    by perturbing one input pixel of a large random mosaic.

    In float64: the probe's gates start near-silent (~1.8 % per box), so a
    perturbation reaching the far side of a wide box (the chroma smoothing's
    radius 12) moves the output by less than a float32 ulp and float32 sees a
    radius up to 9 px short (`fastc`: 47 against 56 in float64, so halo 48
    where tiles need 64; the Rust engine's exact box sums do see it, and
    tiles then differ from the whole frame by an ulp)."""
    if getattr(model, "_halo", None) is not None:
        return model._halo
    # a fresh random model of the same shape: the halo depends on the graph only
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    probe = DMDNUNet(model.widths, model.bottom, model.fullres_width, model.phase,
                     model.noise_channels, model.deep, model.gate_radii, model.base,
                     getattr(model, "chroma_radii", ()), getattr(model, "lum_radii", ()),
                     getattr(model, "subsample", 1))
    probe._halo = 0
    probe = probe.double()
    size = 256
    with torch.no_grad():
        m = torch.rand(1, 1, size, size).double()
        n = torch.full((1, model.noise_channels, size // 2, size // 2), 0.02, dtype=torch.float64)
        # a fixed classical base: the engine computes it over the whole frame
        cb = torch.rand(1, 3, size, size).double() if model.base != "bilinear" else None
        ref = probe(m, n, cb)
        radius = 0
        for (cy, cx) in ((128, 128), (129, 129), (128, 129), (129, 128)):
            m2 = m.clone()
            m2[0, 0, cy, cx] += 1.0
            d = (probe(m2, n, cb) - ref).abs().amax(1)[0] > 0
            ys, xs = torch.nonzero(d, as_tuple=True)
            radius = max(radius, int((ys - cy).abs().max()), int((xs - cx).abs().max()))
    torch.random.set_rng_state(state)
    model._halo = (radius + 1 + 7) // 8 * 8
    return model._halo


def classical_base(model, mosaic, phase=None):
    """The engine's classical demosaic (`rawgraph.demosaic`, the op the
    Rust stage runs) of `mosaic` (B,1,H,W) in `phase` (default: the
    model's), as (B,3,H,W); None for a model over the bilinear base."""
    if getattr(model, "base", "bilinear") == "bilinear":
        return None
    import rawgraph
    m = mosaic[:, 0].detach().float().cpu().contiguous().numpy()
    out = rawgraph.demosaic(m, cfa=(phase or model.phase).upper(), op=f"demosaic_{model.base}")
    return torch.from_numpy(out).to(mosaic.device)


def cfa_masks(h, w, phase, device=None):
    m = torch.zeros(1, 3, h, w, device=device)
    cols = PHASES[phase]
    for k, c in enumerate(cols):
        dy, dx = divmod(k, 2)
        m[0, c, dy::2, dx::2] = 1.0
    return m


def masked_mosaic(mosaic, phase):
    _, _, h, w = mosaic.shape
    return mosaic * cfa_masks(h, w, phase, mosaic.device)


def mosaic_of(rgb, phase):
    """rgb (B,3,H,W) -> (B,1,H,W) Bayer mosaic in `phase`."""
    _, _, h, w = rgb.shape
    return (rgb * cfa_masks(h, w, phase, rgb.device)).sum(1, keepdim=True)


def build(size, arch="flat", bottom=None, levels_from=None):
    """`levels_from`: metadata of the file the model resumes from; a 3-level
    size then takes a 4-level file's fourth width and `deep` (a `fast` run
    resuming from shipped `fast4` weights keeps their level) and a gated
    file's `gate_radii`."""
    if arch == "unet":
        hp = dict(UNET_SIZES[size])
        if bottom is not None:
            hp["bottom"] = bottom
        if levels_from and len(hp["widths"]) == 3:
            file_widths = tuple(int(c) for c in levels_from.get("widths", "").split(",") if c)
            if len(file_widths) == 4 and file_widths[:3] == tuple(hp["widths"]):
                hp["widths"] = file_widths
                hp["deep"] = int(levels_from.get("deep", 0))
        if levels_from and levels_from.get("gate_radii") and not hp.get("gate"):
            # a `fast` run resuming from a gated (`fastg`) file keeps the gate
            hp["gate"] = tuple(int(r) for r in levels_from["gate_radii"].split(","))
        if levels_from and levels_from.get("chroma_radii") and not hp.get("chroma"):
            # a run resuming from a file with chroma smoothing keeps it
            hp["chroma"] = tuple(int(r) for r in levels_from["chroma_radii"].split(","))
        if levels_from and levels_from.get("lum_radii") and not hp.get("lum"):
            hp["lum"] = tuple(int(r) for r in levels_from["lum_radii"].split(","))
        if levels_from and levels_from.get("guided_subsample"):
            # a file's guided filters keep their resolution; a file without
            # the key (full resolution) takes the size's
            hp["subsample"] = int(levels_from["guided_subsample"])
        if levels_from and levels_from.get("base", "bilinear") != "bilinear":
            # a run resuming from a file over a classical base keeps that base
            hp["base"] = levels_from["base"]
        return DMDNUNet(**hp)
    return DMDN(**SIZES[size])


def load_demosaicnet_into(model):
    """Fold demosaicnet's released Bayer weights into a `quality` DMDN."""
    path = os.path.join(os.path.dirname(__import__("demosaicnet").__file__), "data", "bayer.pth")
    sd = torch.load(path, map_location="cpu")
    wp, bp = sd["main_processor.pack_mosaic.weight"], sd["main_processor.pack_mosaic.bias"]
    cols = PHASES["grbg"]
    a = torch.zeros(4, 4)
    for k in range(4):
        dy, dx = divmod(k, 2)
        a[:, k] = wp[:, cols[k], dy, dx]
    w1, b1 = sd["main_processor.conv1.weight"], sd["main_processor.conv1.bias"]
    w1n = torch.einsum("jouv,ok->jkuv", w1, a)
    b1n = b1 + torch.einsum("jouv,o->j", w1, bp)
    with torch.no_grad():
        model.body[0].weight.zero_()
        model.body[0].weight[:, :4] = w1n
        model.body[0].bias.copy_(b1n)
        for i in range(1, 15):
            model.body[i].weight.copy_(sd[f"main_processor.conv{i + 1}.weight"])
            model.body[i].bias.copy_(sd[f"main_processor.conv{i + 1}.bias"])
        wr, br = sd["residual_predictor.weight"][:, :, 0, 0], sd["residual_predictor.bias"]
        wt, bt = sd["upsampler.weight"], sd["upsampler.bias"]  # (12,1,2,2), (3,)
        wh = torch.zeros(12, wr.shape[1])
        bh = torch.zeros(12)
        for c in range(3):
            for dy in range(2):
                for dx in range(2):
                    k = c * 4 + dy * 2 + dx
                    for i in range(4):
                        wh[k] += wt[4 * c + i, 0, dy, dx] * wr[4 * c + i]
                        bh[k] += wt[4 * c + i, 0, dy, dx] * br[4 * c + i]
                    bh[k] += bt[c]
        model.head.weight.copy_(wh[:, :, None, None])
        model.head.bias.copy_(bh)
        model.fr1.weight.copy_(sd["fullres_processor.post_conv.weight"])
        model.fr1.bias.copy_(sd["fullres_processor.post_conv.bias"])
        model.fr2.weight.copy_(sd["fullres_processor.output.weight"])
        model.fr2.bias.copy_(sd["fullres_processor.output.bias"])


# ---------------------------------------------------------------- inference

def run_full(model, mosaic, phase, noise_std):
    """Run on a whole mosaic exactly as the Rust engine does.

    mosaic: (H, W) float tensor in `phase`; noise_std: float or (H, W) tensor.
    Returns (3, H, W)."""
    h, w = mosaic.shape
    dy, dx = phase_offset(phase, model.phase)
    halo = model.halo()
    # reflection keeps CFA parity: padded (0,0) is image pixel (-top, -left), so top == dy (mod 2)
    top = halo + dy
    left = halo + dx
    mult = 2 ** len(model.widths) if isinstance(model, DMDNUNet) else 2
    bottom = halo + (-(top + h + halo)) % mult
    right = halo + (-(left + w + halo)) % mult
    x = F.pad(mosaic[None, None], (left, right, top, bottom), mode="reflect")
    ph, pw = x.shape[-2:]
    if torch.is_tensor(noise_std):
        n = F.pad(noise_std[None, None], (left, right, top, bottom), mode="reflect")
        n = torch.sqrt(F.avg_pool2d(n * n, 2))
    else:
        n = torch.full((1, 1, ph // 2, pw // 2), float(noise_std))
    n = n.expand(1, model.noise_channels, ph // 2, pw // 2)
    with torch.no_grad():
        if getattr(model, "base", "bilinear") != "bilinear":
            # the classical base of the frame in its own phase, padded as the mosaic
            cb = F.pad(classical_base(model, mosaic[None, None], phase), (left, right, top, bottom), mode="reflect")
            y = model(x, n, cb)
        else:
            y = model(x, n)
    return y[0, :, top: top + h, left: left + w]


# ---------------------------------------------------------------- data

def list_train_images():
    files = []
    for sub in ("cbsd432", "urban100", "sunhays80"):
        files += sorted(glob.glob(os.path.join(DATA, "train", sub, "*")))
    return [f for f in files if f.lower().endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff"))]


def downsample_srgb(im, k):
    """`im` (H,W,3) uint8 sRGB reduced k x k by box averaging in linear light
    (sizes cropped to multiples of k), re-encoded to uint8 sRGB. Halving the
    training photos removes most of their sensor noise, JPEG blocking and
    4:2:0 chroma blur from the *targets* (Brooks et al. 2019 downsampled
    their photos for the same reason); what is left is sharper per pixel."""
    h, w = im.shape[0] // k * k, im.shape[1] // k * k
    x = srgb_to_linear(torch.from_numpy(im[:h, :w].astype(np.float32) / 255.0))
    x = x.reshape(h // k, k, w // k, k, 3).mean((1, 3))
    return (srgb_encode(x).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


def patch_cache(patch=128, per_image=32, seed=0, downsample=1):
    """The training patch cache: `per_image` random `patch`-px crops of each
    training photo (after `downsample_srgb` by `downsample` when > 1), uint8
    (N,3,P,P), made once under $RAWGRAPH_CACHE."""
    tag = f"_ds{downsample}" if downsample > 1 else ""
    path = os.path.join(CACHE, f"patches_{patch}_{per_image}_{seed}{tag}.npy")
    if os.path.exists(path):
        return np.load(path, mmap_mode="r")
    from PIL import Image
    rng = np.random.default_rng(seed)
    files = list_train_images()
    out = []
    for f in files:
        im = np.asarray(Image.open(f).convert("RGB"))
        if downsample > 1:
            im = downsample_srgb(im, downsample)
        h, w, _ = im.shape
        if h < patch or w < patch:
            continue
        for _ in range(per_image):
            y = rng.integers(0, h - patch + 1)
            x = rng.integers(0, w - patch + 1)
            out.append(im[y: y + patch, x: x + patch])
    arr = np.stack(out).transpose(0, 3, 1, 2).copy()  # (N,3,P,P) uint8
    os.makedirs(CACHE, exist_ok=True)
    tmp = path + ".tmp.npy"
    np.save(tmp, arr)
    os.replace(tmp, path)
    print(f"cached {arr.shape[0]} patches from {len(files)} images -> {path}", flush=True)
    return arr


def load_patches(path):
    """A patch file written by `train_dmdn.py cut` (.npz: key `patches`, or
    JPEG-packed `jpeg` bytes with `offsets`) or `cache` (.npy)."""
    if path.endswith(".npz"):
        z = np.load(path)
        if "offsets" not in z:
            return z["patches"]
        import io
        from PIL import Image
        data, offs = z["jpeg"], z["offsets"]
        return np.stack([np.asarray(Image.open(io.BytesIO(data[offs[i]:offs[i + 1]].tobytes())).convert("RGB"))
                         .transpose(2, 0, 1) for i in range(len(offs) - 1)])
    return np.load(path, mmap_mode="r")


def jpeg_pack(patches, quality):
    """(N, 3, H, W) patches as concatenated 4:4:4 JPEG files (no chroma subsampling, so
    colour edges keep full resolution): (bytes as uint8, offsets int64)."""
    import io
    from PIL import Image
    chunks, offs = [], [0]
    for p in patches:
        b = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(np.asarray(p).transpose(1, 2, 0))).save(b, format="JPEG", quality=quality, subsampling=0)
        chunks.append(np.frombuffer(b.getvalue(), dtype=np.uint8))
        offs.append(offs[-1] + len(chunks[-1]))
    return np.concatenate(chunks), np.asarray(offs, dtype=np.int64)


def cmd_cut(args):
    """Writes a compressed random subset of the patch cache under
    `--max-mib` MiB (for a device machine, whose working tree travels in
    64 MiB): `--out`, default $RAWGRAPH_CACHE/device_patches.npz."""
    import io
    patches = patch_cache()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(patches.shape[0])
    limit = args.max_mib * (1 << 20)

    def packed(n):
        buf = io.BytesIO()
        sel = np.asarray(patches[np.sort(order[:n])])
        if args.jpeg_quality > 0:
            data, offs = jpeg_pack(sel, args.jpeg_quality)
            np.savez(buf, jpeg=data, offsets=offs)
        else:
            np.savez_compressed(buf, patches=sel)
        return buf

    probe = min(500, patches.shape[0])
    n = min(patches.shape[0], int(limit / (packed(probe).tell() / probe) * 0.97))
    buf = packed(n)
    while buf.tell() > limit:  # rarely: shrink by the overshoot
        n = int(n * limit / buf.tell() * 0.98)
        buf = packed(n)
    best = (n, buf)
    n, buf = best
    out = args.out or os.path.join(CACHE, "device_patches.npz")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "wb") as f:
        f.write(buf.getvalue())
    os.replace(out + ".tmp", out)
    print(f"{n} patches ({os.path.getsize(out) / (1 << 20):.1f} MiB) -> {out}")


def srgb_to_linear(x):
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp(min=0) ** 2.4)


# Brooks et al. 2019 (`random_ccm`): XYZ -> camera matrices of four cameras;
# the same constants as BROOKS_XYZ_TO_CAMS in src/synth/unprocess.rs.
BROOKS_XYZ_TO_CAMS = torch.tensor([
    [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
    [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
    [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
    [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
])
SRGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                            [0.2126729, 0.7151522, 0.0721750],
                            [0.0193339, 0.1191920, 0.9503041]])
HIGHLIGHT_INFLECTION = 0.9


def urand(gen, *shape, lo=0.0, hi=1.0):
    return lo + (hi - lo) * torch.rand(*shape, generator=gen, device=gen.device)


def random_srgb_to_cam(b, gen):
    """(b,3,3) linear sRGB -> camera: row-normalised (random convex mix of
    Brooks' cameras, half of them jittered by up to +-0.08) . sRGB_to_XYZ."""
    w = urand(gen, b, 4, lo=1e-8)
    w = w / w.sum(1, keepdim=True)
    xyz2cam = torch.einsum("bk,kij->bij", w, BROOKS_XYZ_TO_CAMS.to(gen.device))
    jitter = (torch.rand(b, 1, 1, generator=gen, device=gen.device) < 0.5).float()
    xyz2cam = xyz2cam + jitter * urand(gen, b, 3, 3, lo=-0.08, hi=0.08)
    m = torch.einsum("bij,jk->bik", xyz2cam, SRGB_TO_XYZ.to(gen.device))
    return m / m.sum(2, keepdim=True)


def sample_noise(b, gen, clean_frac=0.08, high_iso_frac=0.0):
    """(shot, read) per sample: shot log-uniform over ISO 50..16000 on
    rawgraph's scale (shot = 1e-4 * ISO / 100), read from Brooks' log-linear
    fit with N(0, 0.26) jitter; `high_iso_frac` of the samples redrawn
    log-uniform over ISO 1600..12800 (the low-light end, where the model has
    the most to win); `clean_frac` of the samples noise-free."""
    shot = torch.exp(urand(gen, b, lo=math.log(5e-5), hi=math.log(1.6e-2)))
    if high_iso_frac > 0:
        high = torch.exp(urand(gen, b, lo=math.log(1.6e-3), hi=math.log(1.28e-2)))
        pick = torch.rand(b, generator=gen, device=gen.device) < high_iso_frac
        shot = torch.where(pick, high, shot)
    read = torch.exp(2.18 * torch.log(shot) + 1.20 + 0.26 * torch.randn(b, generator=gen, device=gen.device))
    clean = torch.rand(b, generator=gen, device=gen.device) < clean_frac
    shot[clean] = 0.0
    read[clean] = 0.0
    return shot, read


def saturate(lin, gen, frac, lo=1.2, hi=2.5):
    """Chroma boost for a random `frac` of the samples: linear sRGB pushed away
    from its luminance by a factor U(lo, hi), clipped to [0, 1]. Natural photos
    are mostly low-chroma; this makes saturated colour edges (McMaster-like
    content, where demosaicking is hardest) common in training."""
    b = lin.shape[0]
    pick = (torch.rand(b, generator=gen, device=gen.device) < frac).float()
    s = 1.0 + pick * (urand(gen, b, lo=lo, hi=hi) - 1.0)
    y = (lin * torch.tensor([0.2126, 0.7152, 0.0722], device=lin.device)[None, :, None, None]).sum(1, keepdim=True)
    return (y + s[:, None, None, None] * (lin - y)).clamp(0.0, 1.0)


def raw_batch(rgb, phase, noise_channels, gen, clean_frac=0.08, fixed_noise=None, sat_frac=0.0, dark_stops=4.0,
              high_iso_frac=0.0):
    """The `raw` regime: what `demosaic_denoise_learned` receives in
    pipelines/learned.yaml (black_level -> white_balance(clip_highlights)).

    rgb: (B,3,H,W) sRGB-encoded patches in [0,1]. Steps (as src/synth/unprocess.rs):
    inverse sRGB, random camera matrix, inverse WB (red U(1.9,2.4), blue
    U(1.5,1.9)) and exposure with Brooks' highlight-safe inversion, clip to
    [0,1] (truth); mosaic; Poisson-Gaussian noise var = shot*x + read on the
    raw signal; quantisation to 10..14 bits above a black level (values below
    black kept down to -black, clipped at white); white balance (gains / min,
    clip at 1). Returns (noisy WB'd mosaic (B,1,H,W), noise std map
    (B,nc,H/2,W/2) from the noisy values as the Rust stage computes it,
    target = WB'd truth clipped at 1 (B,3,H,W), ccm (B,3,3) = the
    `color_correct` matrix taking WB'd camera RGB to linear sRGB)."""
    b, _, h, w = rgb.shape
    lin = srgb_to_linear(rgb)
    if sat_frac > 0:
        lin = saturate(lin, gen, sat_frac)
    m = random_srgb_to_cam(b, gen)
    cam = torch.einsum("bij,bjhw->bihw", m, lin)
    dev = gen.device
    wb = torch.stack([urand(gen, b, lo=1.9, hi=2.4), torch.ones(b, device=dev), urand(gen, b, lo=1.5, hi=1.9)], 1)
    # exposure: Brooks' 1/N(0.8, 0.1) for most, a darker scene (up to
    # `dark_stops` stops under, uniform in stops) for 40 %
    expo = 1.0 / (0.8 + 0.1 * torch.randn(b, generator=gen, device=dev)).clamp(0.5, 1.2)
    dark = torch.rand(b, generator=gen, device=dev) < 0.4
    expo = torch.where(dark, expo * torch.exp2(urand(gen, b, lo=0.0, hi=dark_stops)), expo)
    inv_gain = 1.0 / (wb * expo[:, None])
    gray = cam.mean(1, keepdim=True)
    t = ((gray - HIGHLIGHT_INFLECTION).clamp(min=0) / (1 - HIGHLIGHT_INFLECTION)).clamp(max=1.0)
    mask = t * t
    ig = inv_gain[:, :, None, None]
    safe = torch.maximum(mask + (1 - mask) * ig, ig)
    truth = (cam * safe).clamp(0.0, 1.0)
    masks = cfa_masks(h, w, phase, dev)
    clean = (truth * masks).sum(1, keepdim=True)
    if fixed_noise is None:
        shot, read = sample_noise(b, gen, clean_frac, high_iso_frac)
    else:
        shot, read = torch.full((b,), fixed_noise[0], device=dev), torch.full((b,), fixed_noise[1], device=dev)
    # Poisson photon counts (shot = signal per photon) plus Gaussian read noise
    s4 = shot[:, None, None, None]
    lam = torch.where(s4 > 0, clean / s4.clamp(min=1e-12), torch.zeros_like(clean))
    photons = torch.poisson(lam, generator=gen) * s4
    noisy = torch.where(s4 > 0, photons, clean)
    noisy = noisy + read[:, None, None, None].sqrt() * torch.randn(clean.shape, generator=gen, device=dev)
    bits = torch.randint(10, 15, (b,), generator=gen, device=dev).float()
    white = torch.exp2(bits) - 1
    black = 64 * torch.exp2(bits - 10)
    rng_ = (white - black)[:, None, None, None]
    dn = (noisy * rng_ + black[:, None, None, None]).round()
    dn = torch.minimum(dn.clamp(min=0), white[:, None, None, None])
    noisy = (dn - black[:, None, None, None]) / rng_
    g = wb / wb.min(1, keepdim=True).values
    gm = (g[:, :, None, None] * masks).sum(1, keepdim=True)
    noisy_wb = (noisy * gm).clamp(max=1.0)
    target = (truth * g[:, :, None, None]).clamp(max=1.0)
    # per-pixel std of the WB'd signal from the noisy value (std_map in the stage)
    a = (shot[:, None, None, None] * gm)
    bb = (read[:, None, None, None] * gm * gm)
    std = (a * noisy_wb.clamp(min=0) + bb).clamp(min=0).sqrt()
    nmap = torch.sqrt(F.avg_pool2d(std * std, 2)).expand(b, noise_channels, h // 2, w // 2)
    ccm = torch.linalg.inv(m)
    return noisy_wb, nmap.contiguous(), target, ccm


def srgb_encode(x):
    """sRGB transfer (IEC 61966-2-1), extended linearly below 0 and by the
    power law above 1, so gradients survive out-of-range values."""
    lin = 12.92 * x
    pw = 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return torch.where(x <= 0.0031308, lin, pw)


def rendered(x, ccm, clip=False):
    """WB'd camera RGB (B,3,H,W) -> sRGB-encoded rendering as the default
    pipeline tail does it (color_correct, 0 EV, srgb_encode)."""
    y = torch.einsum("bij,bjhw->bihw", ccm, x)
    if clip:
        y = y.clamp(0.0, 1.0)
    return srgb_encode(y)


def sample_patches(patches, idx, psize, gen):
    """Random `psize` crops of the cached patches `idx` (a uint8 (N,3,P,P)
    NumPy array, or a torch tensor on the generator's device) with random
    flips and transposes, as float (B,3,psize,psize) in [0,1]."""
    dev = gen.device
    if torch.is_tensor(patches):
        src = patches[torch.tensor(idx, device=patches.device)].to(dev).float() / 255.0
    else:
        src = torch.from_numpy(np.stack([patches[i] for i in idx])).to(dev).float() / 255.0
    full = src.shape[-1]
    n = len(idx)
    ys = torch.randint(0, full - psize + 1, (n,), generator=gen, device=dev).tolist()
    xs = torch.randint(0, full - psize + 1, (n,), generator=gen, device=dev).tolist()
    flips = (torch.rand(n, 3, generator=gen, device=dev) < 0.5).tolist()
    out = []
    for i in range(n):
        p = src[i, :, ys[i]: ys[i] + psize, xs[i]: xs[i] + psize]
        if flips[i][0]:
            p = p.flip(-1)
        if flips[i][1]:
            p = p.flip(-2)
        if flips[i][2]:
            p = p.transpose(-1, -2)
        out.append(p)
    return torch.stack(out)


def make_batch(patches, batch, psize, regime, phase, noise_channels, gen, zero_frac=0.2, idx=None, sat_frac=0.0,
               dark_stops=4.0, high_iso_frac=0.0, n_proc=0, proc_pool=None):
    """A training batch; `n_proc` crops of the procedural pool (uint8 like the
    cache, from `procedural_patches`) are appended after the cached patches
    `idx`, so they are the batch's last rows."""
    if idx is None:
        idx = torch.randint(0, patches.shape[0], (batch - n_proc,), generator=gen, device=gen.device).tolist()
    rgb = sample_patches(patches, idx, psize, gen)
    if n_proc:
        pidx = torch.randint(0, proc_pool.shape[0], (n_proc,), generator=gen, device=gen.device).tolist()
        rgb = torch.cat([rgb, sample_patches(proc_pool, pidx, psize, gen)], 0)
    b = len(idx) + n_proc
    h = w = psize
    if regime == "srgb":
        target = rgb
        mos = mosaic_of(target, phase)
        sig = torch.rand(b, generator=gen, device=gen.device) * (20.0 / 255.0)
        sig[torch.rand(b, generator=gen, device=gen.device) < zero_frac] = 0.0
        noisy = mos + sig[:, None, None, None] * torch.randn(mos.shape, generator=gen, device=gen.device)
        nmap = sig[:, None, None, None].expand(b, noise_channels, h // 2, w // 2).contiguous()
        return noisy, nmap, target, None
    return raw_batch(rgb, phase, noise_channels, gen, clean_frac=min(zero_frac, 0.08), sat_frac=sat_frac,
                     dark_stops=dark_stops, high_iso_frac=high_iso_frac)


def hsv_colours(n, rng, sat_lo=0.0):
    """n random colours (n,3) in sRGB [0,1] (NumPy `rng`): hue U(0,1),
    saturation U(sat_lo,1), value U(0.05,1) (HSV, the hexcone model)."""
    h = rng.random(n) * 6.0
    s = sat_lo + (1.0 - sat_lo) * rng.random(n)
    v = 0.05 + 0.95 * rng.random(n)
    k = (np.array([5.0, 3.0, 1.0])[None, :] + h[:, None]) % 6.0
    f = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (v[:, None] * (1.0 - s[:, None] * f)).astype(np.float32)


def stroke_alpha(xx, yy, p0, p1, width):
    """Coverage (float32, like `xx`) of a straight stroke from `p0` to `p1`
    ((x, y) in pixels) `width` pixels wide, anti-aliased over one pixel."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((xx - p0[0]) * dx + (yy - p0[1]) * dy) / (dx * dx + dy * dy + 1e-6), 0.0, 1.0)
    d = np.sqrt((xx - p0[0] - t * dx) ** 2 + (yy - p0[1] - t * dy) ** 2)
    return np.clip(width / 2 - d + 0.5, 0.0, 1.0).astype(np.float32)


def procedural_patches(n, size, gen, shapes=250, strokes=12):
    """`n` procedural "paint" patches (n,3,size,size) on the generator's
    device, sRGB-encoded in [0,1]: a dead-leaves picture (250 discs of radius
    density ~ r^-3 between 1.5 and size/2 pixels, drawn over each other,
    random colours, 70 % of them strongly saturated) with up to 12 thin paint
    strokes on top (straight segments 0.6-3 px wide). Edges are anti-aliased
    over one pixel. They put sharp, saturated colour edges and thin coloured
    lines into every batch: the content where the learned model lost to
    residual-interpolation demosaics on McMaster (paint splatter, thin
    leaves). Not a data source: the generator is procedural (NumPy, seeded
    from `gen`, so runs stay reproducible)."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, 3, size, size), np.float32)
    rmin, rmax = 1.5, size / 2.0
    for i in range(n):
        img = np.repeat(np.repeat(hsv_colours(1, rng)[0][:, None, None], size, 1), size, 2)
        u = rng.random(shapes)
        r = (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5
        cx = rng.random(shapes) * (size + 2 * r) - r
        cy = rng.random(shapes) * (size + 2 * r) - r
        sat = rng.random(shapes) < 0.7
        col = np.where(sat[:, None], hsv_colours(shapes, rng, sat_lo=0.6), hsv_colours(shapes, rng))
        box = np.clip(np.stack([cy - r - 1, cy + r + 2, cx - r - 1, cx + r + 2], 1), 0, size).astype(int)
        for j in range(shapes):
            y0, y1, x0, x1 = box[j]
            if y1 <= y0 or x1 <= x0:
                continue
            d = np.sqrt((xx[y0:y1, x0:x1] - cx[j]) ** 2 + (yy[y0:y1, x0:x1] - cy[j]) ** 2)
            a = np.clip(r[j] - d + 0.5, 0.0, 1.0)
            sub = img[:, y0:y1, x0:x1]
            sub += a[None] * (col[j][:, None, None] - sub)
        m = int(rng.integers(0, strokes + 1))
        if m:
            p0 = rng.random((m, 2)) * size
            ang = rng.random(m) * math.pi
            ln = (0.1 + 0.9 * rng.random(m)) * size
            p1 = p0 + ln[:, None] * np.stack([np.cos(ang), np.sin(ang)], 1)
            wid = 0.6 + 2.4 * rng.random(m)
            scol = hsv_colours(m, rng, sat_lo=0.5)
            for j in range(m):
                a = stroke_alpha(xx, yy, p0[j], p1[j], wid[j])
                img += a[None] * (scol[j][:, None, None] - img)
        out[i] = img
    return torch.from_numpy(out).to(gen.device)


def smooth_patches(n, size, gen, objects=6, strokes=4):
    """`n` procedural "still life" patches (n,3,size,size) on the generator's
    device, sRGB-encoded in [0,1], with large smooth areas and no texture: a
    background that is a bicubic-smooth colour field (a random 2x2 to 4x4 grid
    of colours, upsampled), up to `objects` shaded discs (radius size/10 to
    size/2, a saturated colour, Lambertian shading of a sphere under a random
    light with a soft specular spot; edges anti-aliased over one pixel) and up
    to `strokes` thin dark or coloured lines (a drawing on a fridge door).
    Natural training photos (BSD, Urban100, Sun-Hays) rarely hold a flat or
    smoothly shaded area whose truth is free of grain and JPEG noise; without
    one the network learns to leave grain-like noise in flat regions
    (McMaster's fruit and fridge doors). Procedural and seeded from `gen`."""
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=gen, device=gen.device))
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        k = int(rng.integers(2, 5))
        grid = torch.from_numpy(hsv_colours(k * k, rng, sat_lo=0.0).T.reshape(1, 3, k, k).copy())
        img = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=True)[0].clamp(0, 1).numpy()
        light = rng.normal(size=3)
        light[2] = abs(light[2]) + 0.5
        light /= np.linalg.norm(light)
        for _ in range(int(rng.integers(0, objects + 1))):
            r = size * (0.1 + 0.4 * rng.random())
            cx, cy = rng.random(2) * size
            col = hsv_colours(1, rng, sat_lo=0.5)[0]
            dx, dy = (xx - cx) / r, (yy - cy) / r
            d2 = dx * dx + dy * dy
            nz = np.sqrt(np.clip(1.0 - d2, 0.0, 1.0))
            lam = np.clip(dx * light[0] + dy * light[1] + nz * light[2], 0.0, 1.0)
            spec = 0.5 * rng.random() * np.clip(lam, 0, 1) ** 40
            shade = (0.25 + 0.75 * lam)[None] * col[:, None, None] + spec[None]
            a = np.clip(r - np.sqrt(d2) * r + 0.5, 0.0, 1.0)[None]
            img = img + a * (np.clip(shade, 0, 1) - img)
        m = int(rng.integers(0, strokes + 1))
        for _ in range(m):
            p0 = rng.random(2) * size
            ang = rng.random() * math.pi
            p1 = p0 + (0.1 + 0.9 * rng.random()) * size * np.array([math.cos(ang), math.sin(ang)])
            wid = 0.8 + 2.2 * rng.random()
            scol = hsv_colours(1, rng, sat_lo=0.3)[0] * (0.3 + 0.7 * rng.random())
            a = stroke_alpha(xx, yy, p0, p1, wid)
            img = img + a[None] * (scol[:, None, None] - img)
        out[i] = img
    return torch.from_numpy(out).to(gen.device)


def bilinear_hardness(patches, chunk=512):
    """Initial hard-patch score per cached patch: mean squared error of a
    bilinear demosaic of its (linear, RGGB) mosaic over the centre — high on
    moire-prone detail, zipper-prone edges and saturated colour edges."""
    k_g = torch.tensor([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=torch.float32) / 4
    k_rb = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32) / 4
    out = []
    for s in range(0, patches.shape[0], chunk):
        rgb = srgb_to_linear(torch.from_numpy(np.asarray(patches[s: s + chunk])).float() / 255.0)
        m = cfa_masks(rgb.shape[-2], rgb.shape[-1], "rggb")
        sparse = rgb * m
        est = torch.cat([
            F.conv2d(sparse[:, 0:1], k_rb[None, None], padding=1),
            F.conv2d(sparse[:, 1:2], k_g[None, None], padding=1),
            F.conv2d(sparse[:, 2:3], k_rb[None, None], padding=1)], 1)
        d = (est - rgb)[..., 4:-4, 4:-4]
        out.append((d * d).mean((1, 2, 3)))
    return torch.cat(out)


# ---------------------------------------------------------------- eval

def load_eval_set(name):
    from PIL import Image
    d = os.path.join(DATA, name)
    files = sorted(f for f in glob.glob(os.path.join(d, "*")) if f.lower().endswith((".png", ".tif", ".tiff")))
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def cpsnr8(out, ref, border=10):
    o = np.clip(np.round(out * 255.0), 0, 255)
    r = ref.astype(np.float64)
    d = (o - r)[border:-border, border:-border]
    mse = np.mean(d * d)
    return 10 * math.log10(255.0 ** 2 / max(mse, 1e-10))


def evaluate(model, sets=("kodak24", "mcmaster18"), sigmas=(0, 5, 10, 15), limit=None, seed=0):
    model.eval()
    model.fold_noise_weights()
    res = {}
    for s in sets:
        ims = load_eval_set(s)[:limit]
        for sig in sigmas:
            rng = np.random.default_rng(seed + sig)
            vals = []
            for im in ims:
                rgb = torch.from_numpy(im).permute(2, 0, 1).float()[None] / 255.0
                mos = mosaic_of(rgb, "rggb")[0, 0]
                if sig > 0:
                    mos = mos + torch.from_numpy(rng.standard_normal(mos.shape).astype(np.float32)) * (sig / 255.0)
                out = run_full(model, mos, "rggb", sig / 255.0)
                vals.append(cpsnr8(out.permute(1, 2, 0).numpy(), im))
            res[f"{s}/sigma{sig}"] = round(float(np.mean(vals)), 2)
            print(f"  {s} sigma={sig}: {res[f'{s}/sigma{sig}']:.2f} dB", flush=True)
    model.train()
    return res


# ---------------------------------------------------------------- export

UNET_LAYERS = ["e1a", "e1b", "e2a", "e2b", "e3a"]


def unet_tensor_names(model):
    deep = ["e4a"] + [f"e4.{i}" for i in range(model.deep)] + ["u3"] if len(model.widths) == 4 else []
    names = UNET_LAYERS + deep + [f"e3.{i}" for i in range(model.bottom)] + ["u2", "d2", "u1", "d1", "head", "fr1", "fr2"]
    names += ["gate"] if model.gate_radii else []
    names += ["cgate"] if getattr(model, "chroma_radii", ()) else []
    names += ["lgate"] if getattr(model, "lum_radii", ()) else []
    return names + (["bgate"] if model.base != "bilinear" else [])


def unet_module(model, name):
    if name.startswith("e3."):
        return model.e3[int(name[3:])]
    if name.startswith("e4."):
        return model.e4[int(name[3:])]
    return getattr(model, name)


def export(model, size, regime, path, extra_meta=None):
    from safetensors.torch import save_file
    model.fold_noise_weights()
    t = {}
    if isinstance(model, DMDNUNet):
        for name in unet_tensor_names(model):
            m = unet_module(model, name)
            scale = GATE_SCALE if name in GATES else 1.0  # files hold the gates' logits as used
            t[f"{name}.weight"] = m.weight.detach() * scale
            t[f"{name}.bias"] = m.bias.detach() * scale
        macs = model.macs_per_pixel()
        meta = {
            "arch": "dmdn_unet", "version": "1", "size": size, "regime": regime,
            "widths": ",".join(str(c) for c in model.widths), "bottom": str(model.bottom),
            "deep": str(model.deep),
            "fullres_width": str(model.fullres_width), "phase": model.phase,
            "noise_channels": str(model.noise_channels),
            "macs_per_pixel": str(round(macs)), "flops_per_pixel": str(round(2 * macs)),
            "base": model.base,
            **({"gate_radii": ",".join(str(r) for r in model.gate_radii)} if model.gate_radii else {}),
            **({"chroma_radii": ",".join(str(r) for r in model.chroma_radii),
                "chroma_eps_k": str(CHROMA_EPS_K), "chroma_eps_floor": str(CHROMA_EPS_FLOOR)}
               if model.chroma_radii else {}),
            **({"lum_radii": ",".join(str(r) for r in model.lum_radii), "lum_eps_k": str(LUM_EPS_K)}
               if model.lum_radii else {}),
            **({"guided_subsample": str(model.subsample)} if model.chroma_radii else {}),
            "noise_units": "std of the white-balanced mosaic in [0,1] units, per pixel, RMS-pooled over 2x2",
            "input": "black-level-subtracted, white-balanced (gains/min, clipped at 1) Bayer mosaic, 1.0 = white",
            "output": "white-balanced linear camera RGB in the input's units",
            "padding": "zero per conv (stride-2 convs: 1); caller reflect-pads the mosaic by the halo, "
                       f"padded size a multiple of {2 ** len(model.widths)}",
            "halo": str(model.halo()),
        }
    else:
        hp = SIZES[size]
        for i, conv in enumerate(model.body):
            t[f"body.{i}.weight"] = conv.weight.detach()
            t[f"body.{i}.bias"] = conv.bias.detach()
        for name in ("head", "fr1", "fr2"):
            m = getattr(model, name)
            t[f"{name}.weight"] = m.weight.detach()
            t[f"{name}.bias"] = m.bias.detach()
        meta = {
            "arch": "dmdn", "version": "1", "size": size, "regime": regime,
            "depth": str(hp["depth"]), "width": str(hp["width"]),
            "gated": str(hp["gated"]).lower(), "fullres_width": str(hp["fullres_width"]),
            "fullres_residual": str(hp["fullres_residual"]).lower(),
            "phase": hp["phase"], "noise_channels": str(hp["noise_channels"]),
            "noise_units": "std of the input signal in [0,1] units",
            "input": "white-balanced Bayer mosaic in [0,1] (srgb regime: 8-bit sRGB / 255)",
            "output": "RGB in the input's units",
            "padding": "same (zero) per conv; caller reflect-pads the mosaic by the halo",
            "halo": str(model.halo()),
        }
        if size == "quality":
            meta["license"] = ("MIT. Derived from demosaicnet's released Bayer weights, "
                               "Copyright (c) 2016 Michael Gharbi; see calibration/models/demosaic_quality.LICENSE")
    t = {k: v.to(torch.float32).contiguous() for k, v in t.items()}
    if extra_meta:
        meta.update({k: str(v) for k, v in extra_meta.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    save_file(t, tmp, metadata=meta)
    os.replace(tmp, path)
    print(f"exported {path} ({os.path.getsize(path)} bytes)")


def load_unet_weights(model, path):
    """Loads shipped `dmdn_unet` weights into `model`; returns the metadata.

    A model deeper at 1/8 resolution than the file (`--bottom` above the
    file's `bottom`) is grown without changing its function: each extra
    bottom conv is the identity (centre tap 1 on its own channel, bias 0),
    which ReLU passes unchanged because its input is already non-negative."""
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
        if meta.get("arch") != "dmdn_unet":
            raise ValueError(f"{path}: arch {meta.get('arch')!r} is not dmdn_unet")
        file_bottom = int(meta.get("bottom", model.bottom))
        file_levels = len(meta.get("widths", "").split(","))
        file_widths = tuple(int(c) for c in meta.get("widths", "").split(","))
        if file_widths != model.widths[:file_levels] or file_levels > len(model.widths):
            raise ValueError(f"{path}: widths {file_widths} do not fit the model's {model.widths}")
        if file_bottom > model.bottom:
            raise ValueError(f"{path}: bottom {file_bottom} is deeper than the model's {model.bottom}")
        with torch.no_grad():
            for name in unet_tensor_names(model):
                m = unet_module(model, name)
                if name.startswith("e3.") and int(name[3:]) >= file_bottom:
                    c = m.weight.shape[0]
                    m.weight.zero_()
                    m.weight[torch.arange(c), torch.arange(c), 1, 1] = 1.0
                    m.bias.zero_()
                    continue
                if file_levels == 3 and (name == "e4a" or name.startswith("e4.") or name == "u3"):
                    if name == "u3":  # the new level starts silent: same function as the file
                        m.weight.zero_()
                        m.bias.zero_()
                    continue
                if name in GATES and f"{name}.weight" not in f.keys():
                    continue  # a file without the gate: it keeps its near-silent start
                scale = GATE_SCALE if name in GATES else 1.0
                w = f.get_tensor(f"{name}.weight")
                if name == "cgate" and w.shape[0] < m.weight.shape[0]:
                    # a file with fewer chroma radii: the new ones keep their near-silent start
                    m.weight[: w.shape[0]] = w / scale
                    m.bias[: w.shape[0]] = f.get_tensor("cgate.bias") / scale
                    continue
                if name == "fr1" and w.shape[1] < m.weight.shape[1]:
                    # a file over the bilinear base: the new inputs (base - bilinear) start at 0
                    m.weight.zero_()
                    m.weight[:, : w.shape[1]] = w
                    m.bias.copy_(f.get_tensor("fr1.bias"))
                    continue
                m.weight.copy_(w / scale)
                m.bias.copy_(f.get_tensor(f"{name}.bias") / scale)
        grown = []
        if file_bottom < model.bottom:
            grown.append(f"bottom {file_bottom} -> {model.bottom} (identity-initialised)")
        if file_levels < len(model.widths):
            grown.append(f"levels {file_levels} -> {len(model.widths)} (u3 zero-initialised)")
        file_chroma = tuple(int(r) for r in meta.get("chroma_radii", "").split(",") if r)
        model_chroma = getattr(model, "chroma_radii", ())
        if file_chroma != model_chroma and model_chroma:
            if file_chroma != model_chroma[: len(file_chroma)]:
                raise ValueError(f"{path}: chroma radii {file_chroma} do not fit the model's {model_chroma}")
            grown.append(f"chroma smoothing {file_chroma} -> {model_chroma} (near-silent start)")
        if not meta.get("lum_radii") and getattr(model, "lum_radii", ()):
            grown.append(f"luminance smoothing {model.lum_radii} (near-silent start)")
        file_sub = int(meta.get("guided_subsample", "1"))
        if model_chroma and file_sub != getattr(model, "subsample", 1):
            grown.append(f"guided filters at 1/{file_sub} -> 1/{model.subsample} resolution")
        if meta.get("base", "bilinear") != model.base:
            grown.append(f"base {meta.get('base', 'bilinear')} -> {model.base} (gate at sigmoid({BASE_GATE_INIT:g}))")
        if grown:
            meta["grown"] = "; ".join(grown)
            print(f"grew {path}: {meta['grown']}", flush=True)
    return meta


# ---------------------------------------------------------------- main

def ckpt_path(args):
    arch = "" if args.arch == "flat" else "unet_"
    return os.path.join(CACHE, "ckpt", f"dmdn_{arch}{args.size}_{args.regime}{args.tag}.pt")


def shipped_path(args, init=True):
    """The weights a run starts from: `--init` when given, else the shipped file."""
    if init and getattr(args, "init", None):
        return args.init
    suffix = "" if args.regime == "srgb" else "_raw"
    # `fast4`, `fastg` and `fastb` are the `fast` model grown: they ship in the
    # `fast` file. `fastc` ships in its own (`fastc_raw`, pipelines/learned_fastc.yaml)
    # and grows from the `fast` file when that is absent.
    name = "fast" if args.size in ("fast4", "fastg", "fastb") else args.size
    if args.size == "fastc":
        own = os.path.join(REPO, "calibration", "models", f"demosaic_fastc{suffix}.safetensors")
        name = "fastc" if os.path.exists(own) or not init else "fast"
    if args.size == "fastd":
        # `fastd` ships in its own file and grows from `fastc`'s when that is absent
        own = os.path.join(REPO, "calibration", "models", f"demosaic_fastd{suffix}.safetensors")
        name = "fastd" if os.path.exists(own) or not init else "fastc"
    if args.size == "qualityd":
        # `qualityd` ships in its own file and grows from `quality`'s when that is absent
        own = os.path.join(REPO, "calibration", "models", f"demosaic_qualityd{suffix}.safetensors")
        name = "qualityd" if os.path.exists(own) or not init else "quality"
    return os.path.join(REPO, "calibration", "models", f"demosaic_{name}{suffix}.safetensors")


def load_model(args):
    """Model + training state: the cache checkpoint if there is one, else the
    shipped weights in calibration/models (the resume point that travels with
    the repository: step, patches and minutes come from its metadata, the
    optimiser restarts), else a fresh model."""
    bottom = args.bottom
    file_meta = None
    if args.arch == "unet" and os.path.exists(shipped_path(args)) and not args.fresh:
        from safetensors import safe_open
        with safe_open(shipped_path(args), "pt") as f:
            file_meta = f.metadata() or {}
        if bottom is None and file_meta.get("bottom") is not None:
            bottom = int(file_meta["bottom"])
    model = build(args.size, args.arch, bottom, file_meta)
    if args.noise_lr:
        model.split_noise_weights()
    p = ckpt_path(args)
    state = None
    if os.path.exists(p):
        state = torch.load(p, map_location="cpu", weights_only=False)
        if "noise_w" in state["model"] and model.noise_w is None:
            model.split_noise_weights()
        model.load_state_dict(state["model"])
        print(f"checkpoint {p}", flush=True)
    elif args.arch == "unet" and os.path.exists(shipped_path(args)) and not args.fresh:
        meta = load_unet_weights(model, shipped_path(args))
        state = {"opt": None, "step": int(meta.get("train_steps", 0)),
                 "patches": int(meta.get("patches_seen", 0)),
                 "total_minutes": float(meta.get("train_minutes", 0)),
                 "curve": json.loads(meta.get("eval_curve", "[]")), "elapsed": 0.0,
                 "gen": None, "hard": None, "session": int(meta.get("sessions", 0))}
        if "grown" in meta:
            state["curve"].append({"step": state["step"], "patches": state["patches"],
                                   "minutes": round(state["total_minutes"], 1), "note": meta["grown"]})
        print(f"resuming from weights {shipped_path(args)} (step {state['step']})", flush=True)
    elif args.size == "quality" and args.arch == "flat":
        load_demosaicnet_into(model)
        if args.noise_lr:
            model.split_noise_weights()
    return model, state


def raw_val_set(device="cpu", n_images=6, crop=192, seed=123):
    """Fixed raw-regime validation batches (kodak24 centre crops, the test
    set, used only for the training curve; the official numbers come from
    `rawgraph eval`): {iso: (noisy, nmap, target)}, the same scenes, cameras
    and white balances at every ISO (0 = noise-free)."""
    ims = load_eval_set("kodak24")[:n_images]
    rgb = torch.stack([torch.from_numpy(im[(im.shape[0] - crop) // 2:][:crop, (im.shape[1] - crop) // 2:][:, :crop]
                                        .copy()).permute(2, 0, 1).float() / 255.0 for im in ims])
    out = {}
    for iso in (0, 100, 400, 1600, 6400):
        shot = 1e-4 * iso / 100.0
        read = math.exp(2.18 * math.log(shot) + 1.20) if iso else 0.0
        gen = torch.Generator().manual_seed(seed)
        out[iso] = tuple(t.to(device) for t in raw_batch(rgb, "rggb", 1, gen, fixed_noise=(shot, read)))
    return out


def raw_val(model, val):
    """PSNR (dB) per ISO of the rendering (color_correct + sRGB encoding,
    clipped to [0, 1], 16-px border) against the ideal rendering."""
    model.eval()
    res = {}
    with torch.no_grad():
        for iso, (noisy, nmap, target, ccm) in val.items():
            noisy_p = F.pad(noisy, (16, 16, 16, 16), mode="reflect")
            nmap_p = F.pad(nmap, (8, 8, 8, 8), mode="reflect")
            cb = classical_base(model, noisy)
            cb = F.pad(cb, (16, 16, 16, 16), mode="reflect") if cb is not None else None
            y = model(noisy_p, nmap_p, cb)[..., 16:-16, 16:-16]
            d = (rendered(y, ccm, clip=True) - rendered(target, ccm, clip=True))[..., 16:-16, 16:-16]
            mse = (d * d).mean((1, 2, 3))
            res[str(iso)] = round(float((-10 * torch.log10(mse)).mean()), 2)
    model.train()
    return res


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, state = load_model(args)
    hp = SIZES[args.size] if args.arch == "flat" else UNET_SIZES[args.size]
    lr0 = args.lr if args.lr else (1e-4 if (args.size == "quality" and args.arch == "flat") else 2e-3)
    if args.noise_lr:
        rest = [p for n, p in model.named_parameters() if n != "noise_w"]
        opt = torch.optim.Adam([{"params": rest, "lr": lr0, "base": lr0},
                                {"params": [model.noise_w], "lr": args.noise_lr, "base": args.noise_lr}])
    else:
        opt = torch.optim.Adam([{"params": list(model.parameters()), "lr": lr0, "base": lr0}])
    dev = torch.device(args.device)
    model.to(dev)
    gen = torch.Generator(device=dev).manual_seed(args.seed)
    elapsed, step, patches_seen, prior_minutes, curve = 0.0, 0, 0, 0.0, []
    hard = None
    session_start_step = 0
    if state is not None:
        if state.get("opt") is not None:
            opt.load_state_dict(state["opt"])
            for st in opt.state.values():
                for k, v in st.items():
                    if torch.is_tensor(v) and k != "step":
                        st[k] = v.to(dev)
        elapsed, step = state["elapsed"], state["step"]
        patches_seen = state.get("patches", step * args.batch)
        prior_minutes = state.get("total_minutes", 0.0) - elapsed / 60.0 if "total_minutes" in state else 0.0
        curve = state.get("curve", [])
        session_start_step = state.get("session_start_step", step if state.get("opt") is None else 0)
        if state.get("gen") is not None and state.get("gen_device", "cpu") == dev.type:
            gen.set_state(state["gen"])
        hard = state.get("hard")
        for g in opt.param_groups:
            g.setdefault("base", lr0)
        print(f"resumed at step {step}, {elapsed / 60:.1f} min of this run", flush=True)
    patches = load_patches(args.patches) if args.patches else patch_cache()
    if dev.type != "cpu":
        patches = torch.from_numpy(np.ascontiguousarray(patches)).to(dev)
    n_patches = patches.shape[0]
    if args.hard_frac > 0 and hard is None:
        hard = bilinear_hardness(patches.cpu().numpy() if torch.is_tensor(patches) else patches)
        hard = hard / hard.mean()
        print(f"hard-patch scores from bilinear error: top 10 % mean {hard.topk(n_patches // 10).values.mean():.2f}x",
              flush=True)
    have_val = os.path.isdir(os.path.join(DATA, "kodak24"))
    if args.regime == "raw" and not have_val:
        print(f"no validation images at {DATA}/kodak24: training without the validation curve", flush=True)
    val = raw_val_set(dev) if args.regime == "raw" and have_val else None
    budget = args.minutes * 60.0
    last_ck = time.time()
    last_val = time.time()
    t0 = time.time() - elapsed
    run_loss, n_loss = 0.0, 0
    border = args.border
    n_hard = int(round(args.batch * args.hard_frac))
    n_proc = int(round(args.batch * args.proc_frac))
    if n_hard + n_proc > args.batch:
        sys.exit("--hard-frac + --proc-frac exceed the batch")
    proc_pool = None
    if n_proc:
        # a pool of procedural patches, made once per run from the run's generator
        t_pool = time.time()
        full = patches.shape[-1]
        n_smooth = int(round(args.proc_pool * args.proc_smooth / 64)) * 64
        kinds = [smooth_patches] * (n_smooth // 64) + [procedural_patches] * ((args.proc_pool - n_smooth) // 64)
        proc_pool = torch.cat([(make(64, full, gen) * 255.0).round().to(torch.uint8) for make in kinds], 0)
        if dev.type == "cpu":
            proc_pool = proc_pool.numpy()
        print(f"procedural pool: {proc_pool.shape[0]} patches of {full} px in {time.time() - t_pool:.0f} s",
              flush=True)
    hard_pool = None
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget or (args.max_steps and step - session_start_step >= args.max_steps):
            break
        frac = elapsed / budget
        # linear warm-up over the first 100 steps of every fresh optimiser (also
        # when resuming from shipped weights, whose Adam moments are not shipped)
        warm = min(1.0, (step - session_start_step + 1) / 100.0)
        lr = lr0 * warm * (args.lr_floor + (1 - args.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = g["base"] * lr / lr0
        idx = torch.randint(0, n_patches, (args.batch - n_hard - n_proc,), generator=gen, device=dev).tolist()
        if n_hard:
            if hard_pool is None or step % 100 == 0:
                hard_pool = hard.topk(max(n_patches // 10, n_hard)).indices
            pick = torch.randint(0, hard_pool.numel(), (n_hard,), generator=gen, device=dev).cpu()
            idx += hard_pool[pick].tolist()
        noisy, nmap, target, ccm = make_batch(patches, args.batch, args.patch, args.regime, hp["phase"],
                                              hp["noise_channels"], gen, args.zero_frac, idx=idx,
                                              sat_frac=args.sat_frac, dark_stops=args.dark_stops,
                                              high_iso_frac=args.high_iso_frac, n_proc=n_proc,
                                              proc_pool=proc_pool)
        out = model(noisy, nmap, classical_base(model, noisy))
        if ccm is not None and args.loss == "rendered":
            # the error as the eval sees it: after colour correction and sRGB encoding
            d = (rendered(out, ccm) - rendered(target, ccm, clip=True))[..., border:-border, border:-border]
        else:
            d = (out - target)[..., border:-border, border:-border]
        per = (d * d).mean((1, 2, 3))
        if args.tint_weight > 0:
            # colour cast: the squared per-channel mean error of each sample (already
            # inside the MSE once; this weights it up so flat casts cost more than grain)
            per = per + args.tint_weight * (d.mean((2, 3)) ** 2).mean(1)
        loss = per.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if hard is not None:
            # model-driven mining: a patch's score becomes its loss relative to the
            # batch mean (noise-level independent enough for ranking)
            rel = (per.detach() / per.detach().mean().clamp(min=1e-12)).float().cpu()[: len(idx)]
            hard[torch.tensor(idx)] = 0.5 * hard[torch.tensor(idx)] + 0.5 * rel
        step += 1
        patches_seen += args.batch
        run_loss += loss.item()
        n_loss += 1
        if step % 50 == 0:
            l = run_loss / n_loss
            print(f"step {step} {elapsed / 60:.1f}min lr {lr:.2e} loss {l:.3e} psnr~{-10 * math.log10(l):.2f}",
                  flush=True)
            run_loss, n_loss = 0.0, 0
        if val is not None and time.time() - last_val > args.val_every * 60:
            r = raw_val(model, val)
            curve.append({"step": step, "patches": patches_seen,
                          "minutes": round(prior_minutes + (time.time() - t0) / 60.0, 1), "val_psnr": r})
            print(f"val step {step}: {r}", flush=True)
            last_val = time.time()
        if time.time() - last_ck > 120:
            save_ckpt(args, model, opt, time.time() - t0, step, gen, patches_seen, prior_minutes, curve, hard,
                      session_start_step)
            last_ck = time.time()
    if val is not None:
        r = raw_val(model, val)
        curve.append({"step": step, "patches": patches_seen,
                      "minutes": round(prior_minutes + min(budget, time.time() - t0) / 60.0, 1), "val_psnr": r})
        print(f"val step {step}: {r}", flush=True)
    elapsed = min(budget, time.time() - t0)
    save_ckpt(args, model, opt, elapsed, step, gen, patches_seen, prior_minutes, curve, hard, session_start_step)
    print(f"training done: step {step}, {patches_seen} patches, {prior_minutes + elapsed / 60:.1f} min in all",
          flush=True)


def save_ckpt(args, model, opt, elapsed, step, gen, patches=0, prior_minutes=0.0, curve=None, hard=None,
              session_start_step=0):
    p = ckpt_path(args)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed, "step": step,
                "gen": gen.get_state(), "gen_device": gen.device.type, "args": vars(args), "patches": patches,
                "total_minutes": prior_minutes + elapsed / 60.0, "curve": curve or [], "hard": hard,
                "session_start_step": session_start_step}, p + ".tmp")
    os.replace(p + ".tmp", p)


def cmd_eval(args):
    torch.set_num_threads(args.threads)
    model, state = load_model(args)
    print(f"eval {args.arch}/{args.size}/{args.regime} step {state['step'] if state else 0}", flush=True)
    if args.regime == "raw":
        print(json.dumps(raw_val(model, raw_val_set())))
        return
    res = evaluate(model, sigmas=[int(s) for s in args.sigmas.split(",")], limit=args.limit)
    print(json.dumps(res))


def cmd_flat(args):
    """Diagnostic: how much of the noise the model removes on flat patches.
    Eight flat 128-px patches of random colours (seeded), unprocessed and
    noised as in training at a fixed ISO (shot = 1e-4 ISO/100, read from
    Brooks' fit); prints the RMS error (white-balanced camera RGB, 16-px
    border excluded) of the bilinear base and of the model, their ratio
    (an ideal flat-field denoiser averaging N pixels gives ~sqrt(N)), and
    the mean gate weights of a gated model. The non-local-means baseline
    (denoise.yaml) reaches ~49 dB on a flat frame at ISO 1600 in the
    project eval where the run-19 net reached 38."""
    torch.set_num_threads(args.threads)
    model, state = load_model(args)
    model.eval()
    rng = np.random.default_rng(args.seed)
    rgb = torch.from_numpy(hsv_colours(8, rng)).float()[:, :, None, None].expand(8, 3, 128, 128).contiguous()
    seen = {}
    if getattr(model, "gate_radii", ()):
        model.gate.register_forward_hook(lambda mod, inp, out: seen.__setitem__("g", out))
    print(f"flat patches, {args.arch}/{args.size} step {state['step'] if state else 0}")
    for iso in (400, 1600, 6400):
        shot = 1e-4 * iso / 100
        read = math.exp(2.18 * math.log(shot) + 1.20)
        g = torch.Generator().manual_seed(args.seed + iso)
        noisy, nmap, target = raw_batch(rgb, model.phase, model.noise_channels, g, clean_frac=0.0,
                                        fixed_noise=(shot, read))[:3]
        with torch.no_grad():
            out = model(noisy, nmap, classical_base(model, noisy))
        base = F.conv2d(masked_mosaic(noisy, model.phase), BILINEAR, padding=1, groups=3)
        rms = [((x - target)[..., 16:-16, 16:-16]).pow(2).mean().sqrt().item() for x in (base, out)]
        line = f"ISO {iso:5d}: rms base {rms[0]:.5f}  model {rms[1]:.5f}  ratio {rms[0] / rms[1]:.2f}"
        if "g" in seen:
            lg = F.pixel_shuffle(seen["g"], 2) * GATE_SCALE
            w = torch.softmax(torch.cat([torch.zeros_like(lg[:, :1]), lg], 1), 1).mean((0, 2, 3))
            line += "  gate (keep, " + ", ".join(f"r{r}" for r in model.gate_radii) + ") " + \
                " / ".join(f"{v:.3f}" for v in w.tolist())
        print(line, flush=True)


def cmd_export(args):
    model, state = load_model(args)
    path = args.out or shipped_path(args, init=False)
    extra = {"train_steps": state["step"] if state else 0}
    if state is not None and args.arch == "unet":
        extra.update({
            "patches_seen": state.get("patches", 0),
            "train_minutes": round(state.get("total_minutes", 0.0), 1),
            "eval_curve": json.dumps(state.get("curve", [])),
            "train_data": "train/{cbsd432,urban100,sunhays80}, patches_128_32_0 (19,360 crops)",
            "train_command": f"train_dmdn.py train --arch unet --size {args.size} --regime {args.regime}",
        })
        last = state.get("args") or {}
        if last:
            # the flags of the run that wrote the checkpoint (earlier runs: training/README.md)
            flags = ("minutes", "batch", "patch", "seed", "lr", "sat_frac", "dark_stops", "tint_weight",
                     "high_iso_frac", "hard_frac", "proc_frac", "proc_smooth", "bottom")
            extra["train_command"] += "".join(f" --{k.replace('_', '-')} {last[k]}" for k in flags
                                              if last.get(k) not in (None, 0, 0.0))
            if last.get("patches"):
                # the run's patch file (`cut`, or `cache --downsample`), in place of the default cache
                extra["train_data"] = f"train/{{cbsd432,urban100,sunhays80}}, {os.path.basename(last['patches'])}"
            if last.get("proc_frac"):
                extra["train_data"] += f" + procedural paint patches ({last['proc_frac']:g} of each batch)"
    export(model, args.size, args.regime, path, extra)


def cmd_fixture(args):
    """Tiny random models + inputs + PyTorch outputs for tests/nn_ops.rs (dmdn) and
    tests/nn_dmdn_unet.rs (dmdn_unet, three and four levels)."""
    from safetensors.torch import save_file
    torch.manual_seed(1)
    hp = dict(depth=3, width=8, gated=True, fullres_width=8, fullres_residual=True, phase="gbrg", noise_channels=1)
    model = DMDN(**hp)
    for p in model.parameters():
        p.data = (p.data * 2).half().float()
    h, w = 20, 26
    mos = torch.rand(h, w).half().float()
    noise = (torch.rand(h, w) * 0.1).half().float()
    out = run_full(model, mos, "rggb", noise)
    t = {}
    for i, conv in enumerate(model.body):
        t[f"body.{i}.weight"] = conv.weight.detach().half()
        t[f"body.{i}.bias"] = conv.bias.detach().half()
    for name in ("head", "fr1", "fr2"):
        m = getattr(model, name)
        t[f"{name}.weight"] = m.weight.detach().half()
        t[f"{name}.bias"] = m.bias.detach().half()
    meta = {"arch": "dmdn", "version": "1", "depth": "3", "width": "8", "gated": "true",
            "fullres_width": "8", "fullres_residual": "true", "phase": "gbrg", "noise_channels": "1"}
    d = os.path.join(REPO, "tests", "fixtures")
    os.makedirs(d, exist_ok=True)
    save_file(t, os.path.join(d, "nn_dmdn_tiny.safetensors"), metadata=meta)
    save_file({"mosaic": mos.contiguous(), "noise_std": noise.contiguous(), "output": out.contiguous()},
              os.path.join(d, "nn_dmdn_tiny_io.safetensors"),
              metadata={"phase": "rggb", "layout": "mosaic/noise_std (H,W); output (3,H,W)"})
    # the raw-path U-Nets: tiny widths, odd frame sizes, a phase different
    # from the model's; three levels, then four (a 1/16 level, `deep` 1)
    um = write_unet_fixture(d, "nn_dmdn_unet_tiny", 2, dict(widths=(4, 6, 8), bottom=1), 45, 70)
    # PyTorch's reflect pad needs the frame larger than the halo
    u4 = write_unet_fixture(d, "nn_dmdn_unet4_tiny", 3, dict(widths=(4, 6, 8, 5), bottom=1, deep=1), 83, 98)
    # gated smoothing (radii 2 and 6, as fastg), random gate weights
    ug = write_unet_fixture(d, "nn_dmdn_unet_gate_tiny", 4, dict(widths=(4, 6, 8), bottom=1, gate=(2, 6)), 61, 74)
    # over a classical base (`demosaic_rcd_mlri`, from the engine), gated
    write_unet_fixture(d, "nn_dmdn_unet_base_tiny", 5,
                       dict(widths=(4, 6, 8), bottom=1, gate=(2, 6), base="rcd_mlri"), 53, 66)
    # with chroma smoothing (`fastc`: guided filters of radii 2 and 4); a
    # frame taller than its halo for the reflect pad
    write_unet_fixture(d, "nn_dmdn_unet_chroma_tiny", 6,
                       dict(widths=(4, 6, 8), bottom=1, gate=(2, 6), base="rcd_mlri", chroma=(2, 4)), 69, 78)
    # with luminance smoothing too (`fastd`: chroma radii 2, 4, 8, luminance 2, 4, 8)
    write_unet_fixture(d, "nn_dmdn_unet_lum_tiny", 7,
                       dict(widths=(4, 6, 8), bottom=1, gate=(2, 6), base="rcd_mlri", chroma=(2, 4, 8),
                            lum=(2, 4, 8)), 85, 94)
    # the same with the guided filters at half resolution (`fastd` since run 35)
    write_unet_fixture(d, "nn_dmdn_unet_half_tiny", 8,
                       dict(widths=(4, 6, 8), bottom=1, gate=(2, 6), base="rcd_mlri", chroma=(2, 4, 8),
                            lum=(2, 4, 8), subsample=2), 87, 98)
    print(f"fixture written (unet halo {um.halo()}, four-level unet halo {u4.halo()}, "
          f"gated unet halo {ug.halo()})")


def write_unet_fixture(d, name, seed, shape, h, w):
    """A tiny `dmdn_unet` (f16-exact weights, GBRG model) and its PyTorch
    output on a random GRBG frame: `{name}.safetensors` and `{name}_io.safetensors`."""
    from safetensors.torch import save_file
    torch.manual_seed(seed)
    um = DMDNUNet(fullres_width=4, phase="gbrg", noise_channels=1, **shape)
    for p in um.parameters():
        p.data = (p.data * 2).half().float()
    # the gates start at zero weights: random ones instead, f16-exact as
    # written (the file holds them x GATE_SCALE, as `export`)
    with torch.no_grad():
        for g in [unet_module(um, n) for n in unet_tensor_names(um) if n in GATES]:
            for p in (g.weight, g.bias):
                p.copy_((torch.randn_like(p) * 0.5).half().float() / GATE_SCALE)
    mos = torch.rand(h, w).half().float()
    noise = (torch.rand(h, w) * 0.1).half().float()
    out = run_full(um, mos, "grbg", noise)
    io = {"mosaic": mos.contiguous(), "noise_std": noise.contiguous(), "output": out.contiguous()}
    if um.base != "bilinear":
        # the engine's classical demosaic of the frame, as run_full fed it
        io["base"] = classical_base(um, mos[None, None], "grbg")[0].contiguous()
    ut = {}
    for n in unet_tensor_names(um):
        m = unet_module(um, n)
        scale = GATE_SCALE if n in GATES else 1.0
        ut[f"{n}.weight"] = (m.weight.detach() * scale).half()
        ut[f"{n}.bias"] = (m.bias.detach() * scale).half()
    meta = {"arch": "dmdn_unet", "version": "1", "base": um.base,
            "widths": ",".join(str(c) for c in um.widths), "bottom": str(um.bottom), "fullres_width": "4",
            "phase": "gbrg", "noise_channels": "1", "halo": str(um.halo())}
    if um.deep:
        meta["deep"] = str(um.deep)
    if um.gate_radii:
        meta["gate_radii"] = ",".join(str(r) for r in um.gate_radii)
    if um.chroma_radii:
        meta["chroma_radii"] = ",".join(str(r) for r in um.chroma_radii)
        meta["chroma_eps_k"] = str(CHROMA_EPS_K)
        meta["chroma_eps_floor"] = str(CHROMA_EPS_FLOOR)
    if um.lum_radii:
        meta["lum_radii"] = ",".join(str(r) for r in um.lum_radii)
        meta["lum_eps_k"] = str(LUM_EPS_K)
    if um.subsample != 1:
        meta["guided_subsample"] = str(um.subsample)
    save_file(ut, os.path.join(d, f"{name}.safetensors"), metadata=meta)
    save_file(io, os.path.join(d, f"{name}_io.safetensors"),
              metadata={"phase": "grbg", "layout": "mosaic/noise_std (H,W); output, base (3,H,W)"})
    return um


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "eval", "export", "fixture", "cache", "cut", "flat"])
    ap.add_argument("--size", choices=sorted(set(SIZES) | set(UNET_SIZES)), default="fast")
    ap.add_argument("--regime", choices=["srgb", "raw"], default="srgb")
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=96)
    ap.add_argument("--border", type=int, default=8)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sigmas", default="0,5,10,15")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--tag", default="", help="checkpoint name suffix")
    ap.add_argument("--noise-lr", type=float, default=None,
                    help="separate learning rate for the noise-input weights of body.0")
    ap.add_argument("--zero-frac", type=float, default=0.2, help="fraction of noise-free samples")
    ap.add_argument("--arch", choices=["flat", "unet"], default="unet",
                    help="unet: dmdn_unet (raw-path models); flat: the original dmdn")
    ap.add_argument("--hard-frac", type=float, default=0.25,
                    help="fraction of each batch drawn from the hardest 10 %% of patches")
    ap.add_argument("--sat-frac", type=float, default=0.0,
                    help="raw regime: fraction of samples whose chroma is boosted (saturated-colour training)")
    ap.add_argument("--proc-frac", type=float, default=0.0,
                    help="raw regime: fraction of each batch that is procedural paint patches "
                         "(dead leaves + thin strokes, saturated colours; see procedural_patches)")
    ap.add_argument("--proc-smooth", type=float, default=0.0,
                    help="raw regime: fraction of the procedural pool that is smooth shaded still lifes "
                         "(see smooth_patches) instead of paint patches")
    ap.add_argument("--proc-pool", type=int, default=2048,
                    help="procedural patches made at the start of a run (multiple of 64)")
    ap.add_argument("--dark-stops", type=float, default=4.0,
                    help="raw regime: 40 %% of samples are exposed up to this many stops under (low-light scenes)")
    ap.add_argument("--high-iso-frac", type=float, default=0.0,
                    help="raw regime: fraction of samples whose noise is drawn from ISO 1600..12800 only")
    ap.add_argument("--tint-weight", type=float, default=0.0,
                    help="extra weight on each sample's squared per-channel mean error (colour casts)")
    ap.add_argument("--bottom", type=int, default=None,
                    help="unet: 3x3 convs at 1/8 resolution (default: the shipped weights' or the size's); "
                         "more than the shipped weights grows them by identity convs")
    ap.add_argument("--lr-floor", type=float, default=0.05, help="cosine decays to lr * this")
    ap.add_argument("--val-every", type=float, default=15.0, help="minutes between validation points")
    ap.add_argument("--fresh", action="store_true", help="ignore shipped weights (start from scratch)")
    ap.add_argument("--init", default=None,
                    help="train: start a new run from this exported weights file (a candidate that was "
                         "not shipped) instead of calibration/models; step, patches, minutes and the "
                         "curve continue from its metadata")
    ap.add_argument("--device", default="cpu", help="torch device: cpu, cuda")
    ap.add_argument("--loss", choices=["rendered", "linear"], default="rendered",
                    help="raw regime: MSE after color_correct + sRGB encoding (as eval scores), or linear")
    ap.add_argument("--downsample", type=int, default=1,
                    help="cache: reduce each training photo k x k (linear-light box) before cutting")
    ap.add_argument("--patches", default=None, help="patch file from `cut` (default: the full cache)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (dry runs)")
    ap.add_argument("--max-mib", type=float, default=60.0, help="cut: size limit of the patch file")
    ap.add_argument("--jpeg-quality", type=int, default=0,
                    help="cut: pack patches as 4:4:4 JPEG of this quality (~4x more patches per MiB); 0: lossless")
    args = ap.parse_args()
    if args.cmd == "train":
        cmd_train(args)
    elif args.cmd == "eval":
        cmd_eval(args)
    elif args.cmd == "export":
        cmd_export(args)
    elif args.cmd == "fixture":
        cmd_fixture(args)
    elif args.cmd == "cache":
        patch_cache(downsample=args.downsample)
    elif args.cmd == "cut":
        cmd_cut(args)
    elif args.cmd == "flat":
        cmd_flat(args)


if __name__ == "__main__":
    main()
