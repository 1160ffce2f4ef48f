#!/usr/bin/env python3
"""Trains the small sky segmenter used by the `sky_segment` stage.

Method: a tiny encoder-decoder CNN (three stride-2 3x3 convs, two 3x3 convs
at 1/8 resolution, two sub-pixel-convolution upsamplers (Shi et al. 2016,
"Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network") with additive skips, U-Net style
(Ronneberger et al. 2015)) that predicts a sky logit at half the input
resolution. The Rust stage (src/stages/sky_segment.rs, network in
src/nn/sky_seg.rs) runs the same graph and upsamples the probability with
a guided filter (He, Sun & Tang 2010).

Data: CamVid (Brostow et al. 2008) 480x360 train split from
$RAWGRAPH_DATA/sky/camvid (label 0 = Sky, 11 = unlabelled, ignored).

Input of the network (4 x H x W, H = 96, W = 128 for training):
  * RGB: the linear image box-downsampled, scaled so that its log-average
    luminance is 0.18, clipped to [0, 1] and sRGB-encoded;
  * a row-position plane: y / (H - 1) in [0, 1] (0 = top row).
JPEGs are linearised with the inverse sRGB curve and augmented with random
exposure (clipping) and white-balance gains, so the stage can run on the
linear camera frame before exposure is decided.

Commands:
  train_sky.py train --minutes 30        # resumable, time-boxed (1 thread)
  train_sky.py eval                      # IoU on CamVid val
  train_sky.py export                    # calibration/models/sky.safetensors
  train_sky.py fixture                   # tests/fixtures/nn_sky_tiny*.safetensors
"""

import argparse
import glob
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("RAWGRAPH_DATA", os.path.join(REPO, "..", "shared", "data"))
CACHE = os.environ.get("RAWGRAPH_CACHE", "/root/.cache/rawgraph")
CAMVID = os.path.join(DATA, "sky", "camvid")

IN_H, IN_W = 96, 128
SKY, IGNORE = 0, 11
WIDTHS = (16, 32, 48)


class SkySeg(nn.Module):
    """Mirrors src/nn/sky_seg.rs. Output: sky logit (N, 1, H/2, W/2)."""

    def __init__(self, widths=WIDTHS):
        super().__init__()
        a, b, c = widths
        self.e1 = nn.Conv2d(4, a, 3, 2, 1)
        self.e2 = nn.Conv2d(a, b, 3, 2, 1)
        self.e3 = nn.Conv2d(b, c, 3, 2, 1)
        self.b1 = nn.Conv2d(c, c, 3, 1, 1)
        self.b2 = nn.Conv2d(c, c, 3, 1, 1)
        self.u2 = nn.Conv2d(c, 4 * b, 3, 1, 1)
        self.u1 = nn.Conv2d(b, 4 * a, 3, 1, 1)
        self.head = nn.Conv2d(a, 1, 3, 1, 1)

    def forward(self, x):
        e1 = F.relu(self.e1(x))
        e2 = F.relu(self.e2(e1))
        e3 = F.relu(self.e3(e2))
        h = F.relu(self.b1(e3))
        h = F.relu(self.b2(h))
        h = F.relu(F.pixel_shuffle(self.u2(h), 2) + e2)
        h = F.relu(F.pixel_shuffle(self.u1(h), 2) + e1)
        return self.head(h)


def srgb_to_linear(x):
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, x * 12.92, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def net_input(lin):
    """lin: (N, 3, H, W) linear RGB at the network resolution -> (N, 4, H, W).
    Same maths as `prepare_input` in src/nn/sky_seg.rs."""
    n, _, h, w = lin.shape
    lum = 0.2126 * lin[:, 0] + 0.7152 * lin[:, 1] + 0.0722 * lin[:, 2]
    logavg = torch.exp(torch.log(lum.clamp_min(1e-4)).mean(dim=(1, 2)))
    scale = (0.18 / logavg).clamp(2.0 ** -8, 2.0 ** 8)
    rgb = linear_to_srgb(lin * scale[:, None, None, None])
    ys = torch.arange(h, dtype=torch.float32) / max(h - 1, 1)
    ypl = ys[None, None, :, None].expand(n, 1, h, w)
    return torch.cat([rgb, ypl], dim=1)


def load_split(split):
    imgs = sorted(glob.glob(os.path.join(CAMVID, split, "*.png")) + glob.glob(os.path.join(CAMVID, split, "*.jpg")))
    if not imgs:
        raise SystemExit(f"no CamVid images in {os.path.join(CAMVID, split)} (set RAWGRAPH_DATA)")
    X, Y = [], []
    for p in imgs:
        stem = os.path.splitext(os.path.basename(p))[0]
        lp = os.path.join(CAMVID, split + "annot", stem + ".png")
        X.append(np.asarray(Image.open(p).convert("RGB")))
        Y.append(np.asarray(Image.open(lp)))
    return np.stack(X), np.stack(Y)


def targets(lab, oh, ow):
    """lab: (N, H, W) uint8 -> soft sky fraction and weight (labelled fraction) at (oh, ow)."""
    lab = torch.from_numpy(lab).long() if isinstance(lab, np.ndarray) else lab
    sky = (lab == SKY).float()[:, None]
    valid = (lab != IGNORE).float()[:, None]
    s = F.adaptive_avg_pool2d(sky, (oh, ow))
    v = F.adaptive_avg_pool2d(valid, (oh, ow))
    return s / v.clamp_min(1e-6), v


def batch(X, Y, idx, augment, rng):
    xs, ys = [], []
    for i in idx:
        x = torch.from_numpy(X[i]).permute(2, 0, 1).float() / 255.0
        y = torch.from_numpy(Y[i].astype(np.int64))
        h, w = y.shape
        if augment:
            s = rng.uniform(0.7, 1.0)
            ch, cw = int(h * s), int(w * s)
            y0, x0 = rng.randint(0, h - ch), rng.randint(0, w - cw)
            x, y = x[:, y0:y0 + ch, x0:x0 + cw], y[y0:y0 + ch, x0:x0 + cw]
            if rng.random() < 0.5:
                x, y = x.flip(-1), y.flip(-1)
        lin = srgb_to_linear(x)
        if augment:
            gains = torch.tensor([rng.uniform(0.7, 1.4), 1.0, rng.uniform(0.7, 1.4)])
            lin = (lin * gains[:, None, None] * 2.0 ** rng.uniform(-1.0, 2.0)).clamp(0.0, 1.0)
        lin = F.interpolate(lin[None], size=(IN_H, IN_W), mode="area")
        xs.append(lin)
        ys.append(F.interpolate(y[None, None].float(), size=(IN_H * 2, IN_W * 2), mode="nearest")[0, 0].long())
    return net_input(torch.cat(xs)), torch.stack(ys)


def ckpt_path():
    return os.path.join(CACHE, "ckpt", "sky_seg.pt")


def train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    X, Y = load_split("train")
    model = SkySeg()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, elapsed = 0, 0.0
    p = ckpt_path()
    if os.path.exists(p):
        ck = torch.load(p, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        rng.setstate(ck["rng"])
        print(f"resumed at step {step}, {elapsed / 60:.1f} min", flush=True)
    budget = args.minutes * 60.0
    t0 = time.time() - elapsed
    last_save = time.time()
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget
        for g in opt.param_groups:
            g["lr"] = args.lr * 0.5 * (1 + math.cos(math.pi * frac))
        idx = [rng.randrange(len(X)) for _ in range(args.batch)]
        x, y = batch(X, Y, idx, True, rng)
        logit = model(x)
        t, wgt = targets(y, logit.shape[2], logit.shape[3])
        loss = (F.binary_cross_entropy_with_logits(logit, t, reduction="none") * wgt).sum() / wgt.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            print(f"step {step} {elapsed / 60:.1f} min loss {loss.item():.4f}", flush=True)
        if time.time() - last_save > 120:
            save_ckpt(model, opt, time.time() - t0, step, rng)
            last_save = time.time()
    save_ckpt(model, opt, budget, step, rng)
    print(f"done: {step} steps in {budget / 60:.1f} min", flush=True)


def save_ckpt(model, opt, elapsed, step, rng):
    p = ckpt_path()
    os.makedirs(os.path.dirname(p), exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                "elapsed": elapsed, "rng": rng.getstate()}, p + ".tmp")
    os.replace(p + ".tmp", p)


def load_trained():
    model = SkySeg()
    ck = torch.load(ckpt_path(), weights_only=False)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, ck["step"]


def evaluate(args):
    """Dataset IoU of sky (prob > 0.5) on CamVid val at label resolution,
    unlabelled pixels ignored; logits upsampled bilinearly (the Rust stage
    uses a guided filter: see `rawgraph eval-sky`)."""
    torch.set_num_threads(args.threads)
    model, step = load_trained()
    X, Y = load_split("val")
    inter = union = 0
    with torch.no_grad():
        for i in range(len(X)):
            x, _ = batch(X, Y, [i], False, None)
            logit = model(x)
            y = torch.from_numpy(Y[i].astype(np.int64))
            up = F.interpolate(logit, size=y.shape, mode="bilinear", align_corners=False)[0, 0]
            pred = up > 0
            gt = y == SKY
            valid = y != IGNORE
            inter += int((pred & gt & valid).sum())
            union += int(((pred | gt) & valid).sum())
    iou = inter / max(union, 1)
    print(json.dumps({"split": "val", "images": len(X), "steps": step, "iou_bilinear": round(iou, 4)}))


def export(args):
    from safetensors.torch import save_file
    model, step = load_trained()
    t = {k: v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    meta = {
        "arch": "sky_seg", "version": "1", "widths": ",".join(str(w) for w in WIDTHS),
        "train_h": str(IN_H), "train_w": str(IN_W), "steps": str(step),
        "input": "4 planes: sRGB-encoded RGB of the linear image scaled to log-average luminance 0.18, clipped; row position y/(H-1)",
        "output": "sky logit at half the input resolution",
        "data": "CamVid train split (Brostow et al. 2008, research use), label 0 = sky, 11 ignored",
    }
    path = os.path.join(REPO, "calibration", "models", "sky.safetensors")
    save_file(t, path + ".tmp", metadata=meta)
    os.replace(path + ".tmp", path)
    print(f"exported {path} ({os.path.getsize(path)} bytes, {step} steps)")


def fixture(args):
    """Tiny random-weight model + input + PyTorch output for tests/nn_ops-style parity."""
    from safetensors.torch import save_file
    torch.manual_seed(7)
    widths = (4, 6, 8)
    model = SkySeg(widths)
    for prm in model.parameters():
        prm.data.normal_(0, 0.3)
    model.eval()
    x = torch.rand(1, 4, 24, 40)
    with torch.no_grad():
        y = model(x)
    d = os.path.join(REPO, "tests", "fixtures")
    t = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"arch": "sky_seg", "version": "1", "widths": ",".join(str(w) for w in widths),
            "train_h": "24", "train_w": "40", "steps": "0"}
    save_file(t, os.path.join(d, "nn_sky_tiny.safetensors"), metadata=meta)
    save_file({"input": x[0].contiguous(), "output": y[0].contiguous()},
              os.path.join(d, "nn_sky_tiny_io.safetensors"),
              metadata={"layout": "input (4,H,W); output (1,H/2,W/2) logits"})
    print("wrote fixtures", x.shape, y.shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "eval", "export", "fixture"])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    args = ap.parse_args()
    {"train": train, "eval": evaluate, "export": export, "fixture": fixture}[args.cmd](args)


if __name__ == "__main__":
    main()
