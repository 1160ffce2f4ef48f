#!/usr/bin/env python3
"""External classical anchor for rawgraph's synthetic evaluation (issue 15,
item 7). Evaluation only: not a runtime dependency of rawgraph.

BM3D on the four raw CFA planes in a variance-stabilised domain with the
KNOWN noise model, then a classical demosaic and the project's own colour
path, scored with the project's own scorer:

1. read each noisy DNG that `rawgraph synth` wrote (the raw mosaic via
   tifffile; black, white and the noise (shot, read) from NAME.json);
2. normalise x = (dn - black) / (white - black); per CFA plane, the
   generalised Anscombe transform f(x) = 2 sqrt(x/a + 3/8 + b/a^2) with
   a = shot, b = read (unit noise variance), BM3D (PyPI `bm3d`, profile
   'np', sigma 1, both stages) on each plane -- or, with --joint, one
   4-channel BM3D on the Hadamard-mixed planes with block matching on
   their sum (CBM3D's idea for a Bayer quad) -- then the closed-form exact
   unbiased inverse (Makitalo & Foi 2011/2013), as src/noise/anscombe.rs;
3. write the denoised mosaic back into a copy of the DNG (same tags, only
   the pixel strips change) next to links to NAME.ideal.png / NAME.json;
4. `rawgraph eval OUT --protocol dng -p default`: the default pipeline
   (Menon 2007 with refinement, the same tail as pipelines/denoise.yaml)
   renders and scores it against NAME.ideal.png (CPSNR, 8 bit, 10-px
   border) -- so the anchor differs from denoise.yaml only in the denoiser.

The `libraw` subcommand renders the same DNGs with LibRaw's wavelet denoise
(`dcraw_emu -n N`) over several thresholds and scores the 16-bit TIFFs with
the eval's CPSNR definition (8-bit rounding, border 10).

Environment: its own venv, e.g.
    python3 -m venv ~/.cache/rawgraph/bm3d-venv
    ~/.cache/rawgraph/bm3d-venv/bin/pip install bm3d numpy pillow tifffile pypng
LibRaw: `apt-get install libraw-bin` (dcraw_emu).

Usage:
    rawgraph synth DIR -o DNGS --seed 0 --matrix brooks --wb brooks --noise iso:1600
    python training/bm3d_anchor.py bm3d DNGS OUT [--names kodim01,kodim02]
    rawgraph eval OUT --protocol dng -p default
    python training/bm3d_anchor.py libraw DNGS WORK --n 0,100,300,1000,3000
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

D_ZERO = 2.0 * np.sqrt(3.0 / 8.0)


def gat(x, a, b):
    """Generalised Anscombe: unit variance for var(x) = a x + b."""
    return 2.0 * np.sqrt(np.maximum(x / a + 0.375 + b / (a * a), 0.0))


def gat_inverse_unbiased(d, a, b):
    """Closed-form approximation of the exact unbiased inverse."""
    d = np.maximum(d, D_ZERO)
    s = np.sqrt(1.5)
    z = 0.25 * d * d + 0.25 * s / d - 1.375 / d**2 + 0.625 * s / d**3 - 0.125 - b / (a * a)
    return a * z


def raw_page(tf):
    """The CFA page of a DNG written by rawgraph (uncompressed strips)."""
    for p in tf.pages:
        if p.photometric == 32803 or int(p.photometric) == 32803:
            return p
    raise SystemExit(f"{tf.filename}: no CFA page")


def read_mosaic(dng):
    with tifffile.TiffFile(dng) as tf:
        p = raw_page(tf)
        if int(p.compression) != 1 or p.dtype != np.uint16:
            raise SystemExit(f"{dng}: expected uncompressed 16-bit strips")
        return p.asarray(), list(p.dataoffsets), list(p.databytecounts), tf.byteorder


def write_patched(src, dst, mosaic, offsets, counts, byteorder):
    """Copies the DNG and overwrites its pixel strips with `mosaic`."""
    shutil.copyfile(src, dst)
    buf = mosaic.astype(byteorder + "u2").tobytes()
    pos = 0
    with open(dst, "r+b") as f:
        for off, n in zip(offsets, counts):
            f.seek(off)
            f.write(buf[pos : pos + n])
            pos += n
    if pos != len(buf):
        raise SystemExit(f"{src}: strips hold {pos} bytes, mosaic {len(buf)}")


def cmd_bm3d(args):
    import bm3d

    src, out = Path(args.dngs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in src.glob("*.dng"))
    if args.names:
        names = [n for n in names if n in args.names.split(",")]
    for name in names:
        t0 = time.time()
        meta = json.load(open(src / f"{name}.json"))["params"]
        black, white = meta["black"], meta["white"]
        a, b = meta["shot"], meta["read"]
        raw, offsets, counts, bo = read_mosaic(src / f"{name}.dng")
        x = (raw.astype(np.float64) - black) / (white - black)
        h2, w2 = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
        y = x.copy()
        sites = [(0, 0), (0, 1), (1, 0), (1, 1)]
        if a > 0 and args.joint:
            # One multichannel BM3D: the 4 stabilised planes through the
            # orthonormal 4-point Hadamard transform (noise stays white,
            # unit variance); BM3D matches blocks on the first (sum) channel.
            had = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.0
            st = np.stack([gat(x[dy:h2:2, dx:w2:2], a, b) for dy, dx in sites], axis=-1)
            den = bm3d.bm3d(st @ had.T, sigma_psd=[1.0] * 4, profile="np") @ had
            for k, (dy, dx) in enumerate(sites):
                y[dy:h2:2, dx:w2:2] = gat_inverse_unbiased(den[..., k], a, b)
        elif a > 0:
            for dy, dx in sites:
                plane = x[dy:h2:2, dx:w2:2]
                den = bm3d.bm3d(gat(plane, a, b), sigma_psd=1.0, profile="np")
                y[dy:h2:2, dx:w2:2] = gat_inverse_unbiased(den, a, b)
        dn = np.clip(np.round(y * (white - black) + black), 0, 65535).astype(np.uint16)
        write_patched(src / f"{name}.dng", out / f"{name}.dng", dn, offsets, counts, bo)
        for ext in ("ideal.png", "json"):
            dst = out / f"{name}.{ext}"
            if not dst.exists():
                os.symlink((src / f"{name}.{ext}").resolve(), dst)
        print(f"{name}: bm3d {time.time() - t0:.1f} s", flush=True)


def load_rgb8(path):
    """8-bit RGB as the project's scorer loads it (16-bit -> 8-bit rounded)."""
    if str(path).lower().endswith((".tif", ".tiff")):
        a = tifffile.imread(path)
    else:
        a = np.asarray(Image.open(path))
    a = a[..., :3]
    if a.dtype == np.uint16:
        a = ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return a.astype(np.float64)


def cpsnr(a, b, crop=10):
    a = a[crop:-crop, crop:-crop]
    b = b[crop:-crop, crop:-crop]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def truth8(dng_dir, name):
    """NAME.ideal.png (16-bit RGB) as 8-bit RGB, rounded as the project's
    loader does ((v + 128) // 257); pypng reads 16-bit PNGs exactly."""
    import png

    w, h, rows, info = png.Reader(filename=str(Path(dng_dir) / f"{name}.ideal.png")).asDirect()
    planes = info["planes"]
    a = np.vstack([np.asarray(r, np.uint32) for r in rows]).reshape(h, w, planes)[..., :3]
    if info["bitdepth"] == 16:
        a = (a + 128) // 257
    return a.astype(np.float64)


def cmd_libraw(args):
    src, work = Path(args.dngs), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    names = sorted(p.stem for p in src.glob("*.dng"))
    ns = [int(v) for v in args.n.split(",")]
    truths = {n: truth8(src, n) for n in names}
    rows = []
    for nval in ns:
        scores = []
        for name in names:
            tif = work / f"{name}.n{nval}.tif"
            cmd = ["dcraw_emu", "-c", "0", "-w", "-q", str(args.q), "-o", "1", "-6", "-g", "2.4",
                   "12.92", "-W", "-T", "-Z", str(tif)]
            if nval > 0:
                cmd += ["-n", str(nval)]
            cmd += args.extra.split() if args.extra else []
            cmd.append(str(src / f"{name}.dng"))
            subprocess.run(cmd, check=True, capture_output=True)
            got = load_rgb8(tif)
            scores.append(cpsnr(got, truths[name]))
            tif.unlink()
        m = float(np.mean(scores))
        rows.append((nval, m))
        print(f"{src.name} -n {nval}: CPSNR {m:.3f} dB over {len(scores)} images", flush=True)
    best = max(rows, key=lambda r: r[1])
    print(f"{src.name} best: -n {best[0]} {best[1]:.3f} dB")


def cmd_score(args):
    """Scores NAME.png / NAME.tif files in OUT against DNGS/NAME.ideal.png."""
    out, src = Path(args.out), Path(args.dngs)
    scores = []
    for f in sorted(out.glob(f"*.{args.ext}")):
        name = f.name.split(".")[0]
        if not (src / f"{name}.ideal.png").exists() or f.name.endswith(".ideal.png"):
            continue
        s = cpsnr(load_rgb8(f), truth8(src, name))
        scores.append(s)
        print(f"{name}: {s:.3f}")
    print(f"mean {np.mean(scores):.3f} dB over {len(scores)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bm3d", help="BM3D on the raw planes -> denoised DNG copies")
    b.add_argument("dngs")
    b.add_argument("out")
    b.add_argument("--names", help="comma-separated stems (default: all)")
    b.add_argument("--joint", action="store_true",
                   help="one 4-channel BM3D on Hadamard-mixed planes (block matching on their sum)")
    b.set_defaults(func=cmd_bm3d)
    l = sub.add_parser("libraw", help="LibRaw wavelet denoise sweep, scored")
    l.add_argument("dngs")
    l.add_argument("work")
    l.add_argument("--n", default="0,100,300,600,1000,2000,3000")
    l.add_argument("--q", type=int, default=3)
    l.add_argument("--extra", default="", help="more dcraw_emu flags, e.g. '-f -m 3'")
    l.set_defaults(func=cmd_libraw)
    s = sub.add_parser("score", help="score rendered images against NAME.ideal.png")
    s.add_argument("out")
    s.add_argument("dngs")
    s.add_argument("--ext", default="png")
    s.set_defaults(func=cmd_score)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    sys.exit(main())
