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


def build(size):
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
    bottom = halo + ((top + h) % 2)
    right = halo + ((left + w) % 2)
    x = F.pad(mosaic[None, None], (left, right, top, bottom), mode="reflect")
    ph, pw = x.shape[-2:]
    if torch.is_tensor(noise_std):
        n = F.pad(noise_std[None, None], (left, right, top, bottom), mode="reflect")
        n = torch.sqrt(F.avg_pool2d(n * n, 2))
    else:
        n = torch.full((1, 1, ph // 2, pw // 2), float(noise_std))
    n = n.expand(1, model.noise_channels, ph // 2, pw // 2)
    with torch.no_grad():
        y = model(x, n)
    return y[0, :, top: top + h, left: left + w]


# ---------------------------------------------------------------- data

def list_train_images():
    files = []
    for sub in ("cbsd432", "urban100", "sunhays80"):
        files += sorted(glob.glob(os.path.join(DATA, "train", sub, "*")))
    return [f for f in files if f.lower().endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff"))]


def patch_cache(patch=128, per_image=32, seed=0):
    path = os.path.join(CACHE, f"patches_{patch}_{per_image}_{seed}.npy")
    if os.path.exists(path):
        return np.load(path, mmap_mode="r")
    from PIL import Image
    rng = np.random.default_rng(seed)
    files = list_train_images()
    out = []
    for f in files:
        im = np.asarray(Image.open(f).convert("RGB"))
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


def srgb_to_linear(x):
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055).clamp(min=0) ** 2.4)


# Typical camera->sRGB-linear matrices are inverted here: we sample a random
# sRGB->camera matrix as a perturbation of identity mixing (Brooks et al. 2019 style).
def random_rgb_to_cam(gen):
    m = torch.eye(3) + (torch.rand(3, 3, generator=gen) - 0.5) * 0.4
    m = m / m.sum(1, keepdim=True)
    return m


def make_batch(patches, batch, psize, regime, phase, noise_channels, gen, zero_frac=0.2):
    idx = torch.randint(0, patches.shape[0], (batch,), generator=gen)
    src = torch.from_numpy(np.stack([patches[i] for i in idx.tolist()])).float() / 255.0
    full = src.shape[-1]
    out = []
    for i in range(batch):
        y = int(torch.randint(0, full - psize + 1, (1,), generator=gen))
        x = int(torch.randint(0, full - psize + 1, (1,), generator=gen))
        p = src[i, :, y: y + psize, x: x + psize]
        if torch.rand(1, generator=gen) < 0.5:
            p = p.flip(-1)
        if torch.rand(1, generator=gen) < 0.5:
            p = p.flip(-2)
        if torch.rand(1, generator=gen) < 0.5:
            p = p.transpose(-1, -2)
        out.append(p)
    rgb = torch.stack(out)
    b = batch
    h = w = psize
    if regime == "srgb":
        target = rgb
        mos = mosaic_of(target, phase)
        sig = torch.rand(b, generator=gen) * (20.0 / 255.0)
        sig[torch.rand(b, generator=gen) < zero_frac] = 0.0
        noisy = mos + sig[:, None, None, None] * torch.randn(mos.shape, generator=gen)
        nmap = sig[:, None, None, None].expand(b, noise_channels, h // 2, w // 2).contiguous()
        return noisy, nmap, target
    # raw regime
    lin = srgb_to_linear(rgb)
    targets = []
    noisy_l, nmap_l = [], []
    masks = cfa_masks(h, w, phase)
    for i in range(b):
        m = random_rgb_to_cam(gen)
        cam = torch.einsum("ij,jhw->ihw", m, lin[i]).clamp(0, 1)  # WB'd camera RGB
        wb = torch.tensor([1.5 + torch.rand(1, generator=gen).item(), 1.0,
                           1.3 + 0.9 * torch.rand(1, generator=gen).item()])
        # random exposure scaling so dark scenes are seen
        expo = 0.2 + 0.8 * torch.rand(1, generator=gen).item()
        cam = cam * expo
        raw = cam / wb[:, None, None]
        raw_m = (raw[None] * masks).sum(1, keepdim=True)[0]
        a = 10 ** (math.log10(1e-4) + 2 * torch.rand(1, generator=gen).item())
        bb = 10 ** (math.log10(1e-7) + 3 * torch.rand(1, generator=gen).item())
        if torch.rand(1, generator=gen) < 0.1:
            a, bb = 0.0, 0.0
        std = torch.sqrt(a * raw_m + bb)
        noisy_raw = raw_m + std * torch.randn(raw_m.shape, generator=gen)
        wbm = (wb[None, :, None, None] * masks).sum(1, keepdim=True)[0]
        noisy_l.append(noisy_raw * wbm)
        s = (std * wbm)[None]
        nmap_l.append(torch.sqrt(F.avg_pool2d(s * s, 2))[0].expand(noise_channels, h // 2, w // 2))
        targets.append(cam)
    return torch.stack(noisy_l), torch.stack(nmap_l), torch.stack(targets)


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

def export(model, size, regime, path, extra_meta=None):
    from safetensors.torch import save_file
    model.fold_noise_weights()
    hp = SIZES[size]
    t = {}
    for i, conv in enumerate(model.body):
        t[f"body.{i}.weight"] = conv.weight.detach().contiguous()
        t[f"body.{i}.bias"] = conv.bias.detach().contiguous()
    for name in ("head", "fr1", "fr2"):
        m = getattr(model, name)
        t[f"{name}.weight"] = m.weight.detach().contiguous()
        t[f"{name}.bias"] = m.bias.detach().contiguous()
    t = {k: v.to(torch.float32).contiguous() for k, v in t.items()}
    meta = {
        "arch": "dmdn", "version": "1", "size": size, "regime": regime,
        "depth": str(hp["depth"]), "width": str(hp["width"]),
        "gated": str(hp["gated"]).lower(), "fullres_width": str(hp["fullres_width"]),
        "fullres_residual": str(hp["fullres_residual"]).lower(),
        "phase": hp["phase"], "noise_channels": str(hp["noise_channels"]),
        "noise_units": "std of the input signal in [0,1] units",
        "input": "white-balanced Bayer mosaic in [0,1] (srgb regime: 8-bit sRGB / 255)",
        "output": "RGB in the input's units" ,
        "padding": "same (zero) per conv; caller reflect-pads the mosaic by the halo",
        "halo": str(model.halo()),
    }
    if size == "quality":
        meta["license"] = ("MIT. Derived from demosaicnet's released Bayer weights, "
                           "Copyright (c) 2016 Michael Gharbi; see calibration/models/demosaic_quality.LICENSE")
    if extra_meta:
        meta.update({k: str(v) for k, v in extra_meta.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    save_file(t, tmp, metadata=meta)
    os.replace(tmp, path)
    print(f"exported {path} ({os.path.getsize(path)} bytes)")


# ---------------------------------------------------------------- main

def ckpt_path(args):
    return os.path.join(CACHE, "ckpt", f"dmdn_{args.size}_{args.regime}{args.tag}.pt")


def load_model(args):
    model = build(args.size)
    if args.noise_lr:
        model.split_noise_weights()
    p = ckpt_path(args)
    state = None
    if os.path.exists(p):
        state = torch.load(p, map_location="cpu")
        if "noise_w" in state["model"] and model.noise_w is None:
            model.split_noise_weights()
        model.load_state_dict(state["model"])
    elif args.size == "quality":
        load_demosaicnet_into(model)
        if args.noise_lr:
            model.split_noise_weights()
    return model, state


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, state = load_model(args)
    hp = SIZES[args.size]
    lr0 = args.lr if args.lr else (1e-4 if args.size == "quality" else 2e-3)
    if args.noise_lr:
        rest = [p for n, p in model.named_parameters() if n != "noise_w"]
        opt = torch.optim.Adam([{"params": rest, "lr": lr0, "base": lr0},
                                {"params": [model.noise_w], "lr": args.noise_lr, "base": args.noise_lr}])
    else:
        opt = torch.optim.Adam([{"params": list(model.parameters()), "lr": lr0, "base": lr0}])
    gen = torch.Generator().manual_seed(args.seed)
    elapsed, step = 0.0, 0
    if state is not None:
        opt.load_state_dict(state["opt"])
        elapsed, step = state["elapsed"], state["step"]
        gen.set_state(state["gen"])
        for g in opt.param_groups:
            g.setdefault("base", lr0)
        print(f"resumed at step {step}, {elapsed / 60:.1f} min", flush=True)
    patches = patch_cache()
    budget = args.minutes * 60.0
    last_ck = time.time()
    t0 = time.time() - elapsed
    run_loss, n_loss = 0.0, 0
    border = args.border
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget
        warm = min(1.0, (step + 1) / 100.0) if args.size == "fast" else 1.0
        lr = lr0 * warm * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = g["base"] * lr / lr0
        noisy, nmap, target = make_batch(patches, args.batch, args.patch, args.regime, hp["phase"],
                                         hp["noise_channels"], gen, args.zero_frac)
        out = model(noisy, nmap)
        d = (out - target)[..., border:-border, border:-border]
        loss = (d * d).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        run_loss += loss.item()
        n_loss += 1
        if step % 50 == 0:
            l = run_loss / n_loss
            print(f"step {step} {elapsed / 60:.1f}min lr {lr:.2e} loss {l:.3e} psnr~{-10 * math.log10(l):.2f}",
                  flush=True)
            run_loss, n_loss = 0.0, 0
        if time.time() - last_ck > 120:
            save_ckpt(args, model, opt, time.time() - t0, step, gen)
            last_ck = time.time()
    save_ckpt(args, model, opt, budget, step, gen)
    print("training done", flush=True)


def save_ckpt(args, model, opt, elapsed, step, gen):
    p = ckpt_path(args)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed, "step": step,
                "gen": gen.get_state(), "args": vars(args)}, p + ".tmp")
    os.replace(p + ".tmp", p)


def cmd_eval(args):
    torch.set_num_threads(args.threads)
    model, state = load_model(args)
    print(f"eval {args.size}/{args.regime} step {state['step'] if state else 0}", flush=True)
    res = evaluate(model, sigmas=[int(s) for s in args.sigmas.split(",")], limit=args.limit)
    print(json.dumps(res))


def cmd_export(args):
    model, state = load_model(args)
    suffix = "" if args.regime == "srgb" else "_raw"
    path = args.out or os.path.join(REPO, "calibration", "models", f"demosaic_{args.size}{suffix}.safetensors")
    export(model, args.size, args.regime, path, {"train_steps": state["step"] if state else 0})


def cmd_fixture(args):
    """Tiny random model + input + PyTorch output for tests/nn_ops.rs."""
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
    print("fixture written")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "eval", "export", "fixture", "cache"])
    ap.add_argument("--size", choices=list(SIZES), default="fast")
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
        patch_cache()


if __name__ == "__main__":
    main()
