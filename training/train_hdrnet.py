"""HDRnet (Gharbi, Chen, Barron, Hasinoff & Durand 2017, "Deep Bilateral
Learning for Real-Time Image Enhancement") trained to reproduce rawgraph's
`local_laplacian` tone mapper (the operator-approximation setting of the
paper's Table 2).

The graph below is mirrored by src/nn/hdrnet.rs (coefficients) and
src/stages/hdrnet/{guide,slice_apply}.rs; the two must stay identical.

    x: linear RGB (B, 3, H, W), >= 0, scene-referred (values may exceed 1)
    t = adaptive_avg_pool2d(x, net_size)              (B, 3, S, S)  S = 256
    t = (log2(t + 2^-8) + 8) / 10                      fixed log encoding
    splat: n_ds = log2(S / grid) convs 3x3 stride 2 pad 1 + ReLU,
           channels cm*lb*2^i                          -> (B, 8 cm lb / 2.., grid, grid)
    local: conv3x3 + ReLU, conv3x3 (no bias)           F = 8*cm*lb channels
    global: 2 x (conv3x3 stride 2 + ReLU), flatten (C, H, W order),
            fc 32cm*lb + ReLU, fc 16cm*lb + ReLU, fc F
    fused = relu(local + global[:, :, None, None])
    grid = conv1x1(fused) -> (B, 12 * lb, grid, grid), channel = c * lb + z,
           c = out * 4 + in (in 3 = bias): out_o = sum_i A[o][i] x_i + A[o][3]
    guide: y = ccm @ x + ccm_bias; curve_c(y) = sum_k slope[c,k] relu(y_c - shift[c,k]);
           g = clamp(sum_c mix_w[c] curve_c + mix_b, 0, 1)
    slice: trilinear at ((x+0.5) grid/W - 0.5, (y+0.5) grid/H - 0.5, g lb - 0.5),
           coordinates clamped to the grid (border)
    out = clamp(apply(coeffs, x), 0, 1): display-linear RGB

Commands:
    train   time-boxed (--minutes), checkpointed every 2 min to
            ~/.cache/rawgraph/ckpt/hdrnet.pt, resumes from it
    export  calibration/models/hdrnet.safetensors (hyper-parameters in metadata)
    fixture tiny random model + input + output for tests/hdrnet.rs

Data: pairs written by `rawgraph tonemap pairs` (linear input, teacher output
as .npy, HWC float32) from $RAWGRAPH_DATA/train/* only.
"""

import argparse
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.expanduser("~/.cache/rawgraph")
LOG_EPS = 2.0 ** -8


def srgb(x):
    """sRGB transfer (IEC 61966-2-1), extended linearly below 0."""
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


class HDRNet(nn.Module):
    def __init__(self, net_size=256, grid=16, luma_bins=8, cm=1, knots=16):
        super().__init__()
        self.net_size, self.grid, self.lb, self.cm, self.knots = net_size, grid, luma_bins, cm, knots
        n_ds = int(round(math.log2(net_size // grid)))
        assert grid * 2 ** n_ds == net_size and grid % 4 == 0
        self.n_ds = n_ds
        fch = 8 * cm * luma_bins
        self.splat = nn.ModuleList()
        cin = 3
        for i in range(n_ds):
            cout = cm * luma_bins * 2 ** i
            self.splat.append(nn.Conv2d(cin, cout, 3, 2, 1))
            cin = cout
        self.global_conv = nn.ModuleList([nn.Conv2d(cin, fch, 3, 2, 1), nn.Conv2d(fch, fch, 3, 2, 1)])
        g4 = grid // 4
        self.fc = nn.ModuleList([nn.Linear(fch * g4 * g4, 32 * cm * luma_bins),
                                 nn.Linear(32 * cm * luma_bins, 16 * cm * luma_bins),
                                 nn.Linear(16 * cm * luma_bins, fch)])
        self.local1 = nn.Conv2d(cin, fch, 3, 1, 1)
        self.local2 = nn.Conv2d(fch, fch, 3, 1, 1, bias=False)
        self.pred = nn.Conv2d(fch, 12 * luma_bins, 1)
        # Guide, initialised to a log-like curve of the identity colour.
        self.ccm = nn.Parameter(torch.eye(3))
        self.ccm_bias = nn.Parameter(torch.zeros(3))
        ks = torch.arange(knots + 1, dtype=torch.float64)
        ys = (2.0 ** (ks * 10.0 / knots) - 1.0) / 256.0           # 0 .. ~4
        cs = torch.log2(1.0 + ys * 256.0) / math.log2(1.0 + 4.0 * 256.0)
        seg = (cs[1:] - cs[:-1]) / (ys[1:] - ys[:-1])
        slopes = torch.cat([seg[:1], seg[1:] - seg[:-1]])
        self.shifts = nn.Parameter(ys[:-1].float().repeat(3, 1))
        self.slopes = nn.Parameter(slopes.float().repeat(3, 1))
        self.mix_w = nn.Parameter(torch.full((3,), 1.0 / 3.0))
        self.mix_b = nn.Parameter(torch.zeros(1))
        # Start near the identity transform: bias the prediction so every
        # cell is out = in.
        with torch.no_grad():
            self.pred.weight.mul_(0.1)
            b = torch.zeros(12, luma_bins)
            for o in range(3):
                b[o * 4 + o] = 1.0
            self.pred.bias.copy_(b.reshape(-1))

    def coeffs(self, x):
        """x (B, 3, H, W) linear -> grid (B, 12, lb, grid, grid)."""
        t = F.adaptive_avg_pool2d(x.clamp(min=0), self.net_size)
        t = (torch.log2(t + LOG_EPS) + 8.0) / 10.0
        for c in self.splat:
            t = F.relu(c(t))
        loc = self.local2(F.relu(self.local1(t)))
        g = t
        for c in self.global_conv:
            g = F.relu(c(g))
        g = g.flatten(1)
        g = F.relu(self.fc[0](g))
        g = F.relu(self.fc[1](g))
        g = self.fc[2](g)
        fused = F.relu(loc + g[:, :, None, None])
        grid = self.pred(fused)
        b = grid.shape[0]
        return grid.reshape(b, 12, self.lb, self.grid, self.grid)

    def guide(self, x):
        y = torch.einsum("ij,bjhw->bihw", self.ccm, x) + self.ccm_bias[None, :, None, None]
        r = F.relu(y[:, :, None] - self.shifts[None, :, :, None, None])      # B,3,K,H,W
        curves = (r * self.slopes[None, :, :, None, None]).sum(2)            # B,3,H,W
        g = (curves * self.mix_w[None, :, None, None]).sum(1) + self.mix_b
        return g.clamp(0.0, 1.0)                                             # B,H,W

    def slice_apply(self, grid, g, x):
        b, _, h, w = x.shape
        ys = (torch.arange(h, dtype=x.dtype) + 0.5) / h * 2 - 1
        xs = (torch.arange(w, dtype=x.dtype) + 0.5) / w * 2 - 1
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        gz = g * 2 - 1
        samp = torch.stack([gx.expand(b, h, w), gy.expand(b, h, w), gz], dim=-1)[:, None]  # B,1,H,W,3
        coef = F.grid_sample(grid, samp, mode="bilinear", padding_mode="border", align_corners=False)
        coef = coef[:, :, 0]                                                   # B,12,H,W
        outs = []
        for o in range(3):
            a = coef[:, o * 4:o * 4 + 4]
            outs.append(a[:, 0] * x[:, 0] + a[:, 1] * x[:, 1] + a[:, 2] * x[:, 2] + a[:, 3])
        return torch.stack(outs, 1)

    def forward_points(self, x, n, gen):
        """Output at `n` random pixels of x (B = 1): the full-resolution part is
        point-wise given the grid, so a pixel sample is an unbiased estimate of
        the full-image loss at a fraction of the cost. Returns (out (1,3,n), idx)."""
        x = x.clamp(min=0)
        _, _, h, w = x.shape
        grid = self.coeffs(x)
        idx = torch.randint(0, h * w, (n,), generator=gen)
        xp = x.reshape(1, 3, h * w)[:, :, idx][..., None]                     # 1,3,n,1
        g = self.guide(xp)                                                      # 1,n,1
        py = (idx // w).to(x.dtype)
        px = (idx % w).to(x.dtype)
        samp = torch.stack([(px + 0.5) / w * 2 - 1, (py + 0.5) / h * 2 - 1, g[0, :, 0] * 2 - 1], -1)
        coef = F.grid_sample(grid, samp[None, None, None], mode="bilinear", padding_mode="border",
                             align_corners=False)[:, :, 0, 0]                   # 1,12,n
        xs = xp[..., 0]
        outs = [coef[:, o * 4] * xs[:, 0] + coef[:, o * 4 + 1] * xs[:, 1] + coef[:, o * 4 + 2] * xs[:, 2]
                + coef[:, o * 4 + 3] for o in range(3)]
        return torch.stack(outs, 1), idx

    def forward(self, x, clamp=True):
        x = x.clamp(min=0)
        out = self.slice_apply(self.coeffs(x), self.guide(x), x)
        return out.clamp(0, 1) if clamp else out


# ---------------------------------------------------------------- data

def load_pairs(d):
    rows = []
    with open(os.path.join(d, "pairs.tsv")) as f:
        next(f)
        for line in f:
            name, ev, w, h = line.rstrip("\n").split("\t")
            rows.append((name, float(ev)))
    return rows


def get_pair(d, name):
    a = np.load(os.path.join(d, name + ".in.npy"), mmap_mode="r")
    b = np.load(os.path.join(d, name + ".out.npy"), mmap_mode="r")
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None]
    y = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1)[None]
    return x, y


def split(rows, seed=0):
    r = sorted(rows)
    random.Random(seed).shuffle(r)
    nval = max(1, len(r) // 20)
    return r[nval:], r[:nval]


def psnr_srgb(out, ref):
    mse = F.mse_loss(srgb(out.clamp(0, 1)), srgb(ref)).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


def loss_fn(out, ref):
    c = out.clamp(0, 1)
    leaky = c + 0.01 * (out - c)
    return F.mse_loss(srgb(leaky), srgb(ref))


def validate(model, d, val):
    model.eval()
    ps = []
    with torch.no_grad():
        for name, _ in val:
            x, y = get_pair(d, name)
            ps.append(psnr_srgb(model(x), y))
    model.train()
    return float(np.mean(ps))


def ckpt_path(args):
    return os.path.join(CACHE, "ckpt", f"hdrnet{args.tag}.pt")


def cmd_train(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = HDRNet()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rows = load_pairs(args.data)
    train, val = split(rows, args.seed)
    rng = random.Random(args.seed)
    tgen = torch.Generator().manual_seed(args.seed)
    elapsed, step = 0.0, 0
    p = ckpt_path(args)
    if os.path.exists(p):
        st = torch.load(p, map_location="cpu")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        elapsed, step = st["elapsed"], st["step"]
        rng.setstate(st["rng"])
        tgen.set_state(st["tgen"])
        print(f"resumed at step {step}, {elapsed / 60:.1f} min", flush=True)
    print(f"{len(train)} train pairs, {len(val)} val pairs", flush=True)
    budget = args.minutes * 60.0
    t0 = time.time() - elapsed
    last_ck = time.time()
    run, nrun = 0.0, 0
    while True:
        elapsed = time.time() - t0
        if elapsed >= budget:
            break
        frac = elapsed / budget
        lr = args.lr * min(1.0, (step + 1) / 200) * 0.5 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad()
        tot = 0.0
        for _ in range(args.batch):
            name, _ = train[rng.randrange(len(train))]
            x, y = get_pair(args.data, name)
            if rng.random() < 0.5:
                x, y = x.flip(3), y.flip(3)
            out, idx = model.forward_points(x, args.points, tgen)
            yp = y.reshape(1, 3, -1)[:, :, idx]
            loss = loss_fn(out, yp) / args.batch
            loss.backward()
            tot += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        run += tot
        nrun += 1
        if step % 100 == 0:
            print(f"step {step} {elapsed / 60:.1f} min lr {lr:.2e} loss {run / nrun:.3e} "
                  f"(~{10 * math.log10(1 / max(run / nrun, 1e-12)):.2f} dB)", flush=True)
            run, nrun = 0.0, 0
        if time.time() - last_ck > 120:
            save_ckpt(p, model, opt, time.time() - t0, step, rng, tgen)
            last_ck = time.time()
    save_ckpt(p, model, opt, time.time() - t0, step, rng, tgen)
    print(f"done: step {step}, {(time.time() - t0) / 60:.1f} min; val PSNR {validate(model, args.data, val):.2f} dB",
          flush=True)


def save_ckpt(p, model, opt, elapsed, step, rng, tgen):
    os.makedirs(os.path.dirname(p), exist_ok=True)
    tmp = p + ".tmp"
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "elapsed": elapsed, "step": step,
                "rng": rng.getstate(), "tgen": tgen.get_state()}, tmp)
    os.replace(tmp, p)


def tensors_of(model, dtype=torch.float32):
    t = {}
    for i, c in enumerate(model.splat):
        t[f"splat.{i}.weight"], t[f"splat.{i}.bias"] = c.weight, c.bias
    for i, c in enumerate(model.global_conv):
        t[f"global_conv.{i}.weight"], t[f"global_conv.{i}.bias"] = c.weight, c.bias
    for i, l in enumerate(model.fc):
        t[f"fc.{i}.weight"], t[f"fc.{i}.bias"] = l.weight, l.bias
    t["local1.weight"], t["local1.bias"] = model.local1.weight, model.local1.bias
    t["local2.weight"] = model.local2.weight
    t["pred.weight"], t["pred.bias"] = model.pred.weight, model.pred.bias
    for n in ("ccm", "ccm_bias", "shifts", "slopes", "mix_w", "mix_b"):
        t[f"guide.{n}"] = getattr(model, n)
    return {k: v.detach().to(dtype).contiguous() for k, v in t.items()}


def meta_of(model, extra=None):
    m = {"arch": "hdrnet", "version": "1", "net_size": str(model.net_size), "grid": str(model.grid),
         "luma_bins": str(model.lb), "channel_multiplier": str(model.cm), "guide_knots": str(model.knots),
         "net_input": "adaptive_avg_pool2d to net_size, then (log2(x + 2^-8) + 8) / 10",
         "coeff_layout": "channel = c * luma_bins + z, c = out * 4 + in, in 3 = bias",
         "input": "linear RGB >= 0, scene-referred", "output": "display-linear RGB in [0, 1]"}
    if extra:
        m.update({k: str(v) for k, v in extra.items()})
    return m


def cmd_export(args):
    from safetensors.torch import save_file
    st = torch.load(ckpt_path(args), map_location="cpu")
    model = HDRNet()
    model.load_state_dict(st["model"])
    rows = load_pairs(args.data)
    _, val = split(rows, args.seed)
    vp = validate(model, args.data, val)
    meta = meta_of(model, {"teacher": "local_laplacian defaults (detail 0.6, contrast 0.5, sigma_r 1, levels 10)",
                           "train_steps": st["step"], "train_minutes": f"{st['elapsed'] / 60:.1f}",
                           "val_psnr_srgb": f"{vp:.2f}", "seed": args.seed})
    out = args.out or os.path.join(REPO, "calibration", "models", "hdrnet.safetensors")
    tmp = out + ".tmp"
    save_file(tensors_of(model), tmp, metadata=meta)
    os.replace(tmp, out)
    print(f"exported {out} ({os.path.getsize(out)} bytes), val PSNR {vp:.2f} dB")


def cmd_fixture(args):
    """Tiny random model + input + PyTorch output for tests/hdrnet.rs."""
    from safetensors.torch import save_file
    torch.manual_seed(3)
    model = HDRNet(net_size=32, grid=8, luma_bins=4, cm=1, knots=6)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.startswith(("splat", "global", "fc", "local", "pred")):
                p.add_(torch.randn_like(p) * 0.2)
            else:
                p.add_(torch.randn_like(p) * 0.05)
            p.copy_(p.half().float())
    h, w = 21, 27
    x = (torch.rand(1, 3, h, w) * 2.0).half().float()
    with torch.no_grad():
        grid = model.coeffs(x)
        g = model.guide(x)
        out = model(x)
    d = os.path.join(REPO, "tests", "fixtures")
    os.makedirs(d, exist_ok=True)
    save_file(tensors_of(model, torch.float16), os.path.join(d, "hdrnet_tiny.safetensors"), metadata=meta_of(model))
    save_file({"input": x[0].contiguous(), "grid": grid[0].contiguous(), "guide": g[0].contiguous(),
               "output": out[0].contiguous()}, os.path.join(d, "hdrnet_tiny_io.safetensors"),
              metadata={"layout": "input/output (3,H,W); grid (12,lb,grid,grid); guide (H,W)"})
    print("fixture written")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train", "export", "fixture"])
    ap.add_argument("--data", default=os.path.join(CACHE, "hdrnet_pairs"))
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--batch", type=int, default=4, help="images per step")
    ap.add_argument("--points", type=int, default=16384, help="pixels sampled per image")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    {"train": cmd_train, "export": cmd_export, "fixture": cmd_fixture}[args.cmd](args)


if __name__ == "__main__":
    main()
