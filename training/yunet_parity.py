#!/usr/bin/env python3
"""YuNet parity: rawgraph's YuNet (tract-onnx, src/stages/exposure/yunet.rs)
against onnxruntime on the same detection images.

1. rawgraph writes what its detector sees and its boxes:
     rawgraph faces --detector yunet --model M.onnx --extra-ev 0 \\
         --dump-input /tmp/yn_in --json /tmp/yn_rust.json $RAWGRAPH_DATA/face/samples
2. this script runs onnxruntime (PyPI) on /tmp/yn_in/*.png with the same
   padding (BGR, 0..255, zero pad to a multiple of 32 or the fixed size),
   decodes as OpenCV's FaceDetectorYN (score = sqrt(cls*obj), NMS 0.3),
   and matches the two box sets (greedy by IoU, in detection pixels).
Passes when every image has the same number of detections and every match
has IoU >= 0.9.

usage: yunet_parity.py MODEL.onnx INPUT_DIR RUST_JSON [--threshold 0.6]
"""
import argparse
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def decode(outs, names, pw, ph, thr):
    boxes = []
    for s in (8, 16, 32):
        cls = outs[names.index(f"cls_{s}")].reshape(-1)
        obj = outs[names.index(f"obj_{s}")].reshape(-1)
        bb = outs[names.index(f"bbox_{s}")].reshape(-1, 4)
        cols = pw // s
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
        for i in np.nonzero(score >= thr)[0]:
            r, c = divmod(int(i), cols)
            cx, cy = (c + bb[i, 0]) * s, (r + bb[i, 1]) * s
            w, h = np.exp(bb[i, 2]) * s, np.exp(bb[i, 3]) * s
            boxes.append([cx - w / 2, cy - h / 2, w, h, float(score[i])])
    return boxes


def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    u = a[2] * a[3] + b[2] * b[3] - inter
    return inter / u if u > 0 else 0.0


def nms(boxes, thr=0.3, top_k=5000):
    boxes = sorted(boxes, key=lambda b: -b[4])
    keep = []
    for b in boxes:
        if len(keep) >= top_k:
            break
        if all(iou(k, b) <= thr for k in keep):
            keep.append(b)
    return keep


def load_rust(path):
    """The images of a `rawgraph faces --json` report (schema_version 1)."""
    report = json.load(open(path))
    if report.get("schema_version") != 1:
        sys.exit(f"{path}: expected schema_version 1, got {report.get('schema_version')}")
    return report["images"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("inputs")
    ap.add_argument("rust_json")
    ap.add_argument("--threshold", type=float, default=0.6)
    a = ap.parse_args()
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    shape = sess.get_inputs()[0].shape
    fixed = isinstance(shape[2], int) and isinstance(shape[3], int)
    rust = {os.path.splitext(os.path.basename(r["file"]))[0]: r for r in load_rust(a.rust_json)}
    ok = True
    total_r = total_o = 0
    ious = []
    for stem in sorted(rust):
        img = np.asarray(Image.open(os.path.join(a.inputs, stem + ".png")).convert("RGB"))
        h, w = img.shape[:2]
        ph, pw = (shape[2], shape[3]) if fixed else (-(-h // 32) * 32, -(-w // 32) * 32)
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = img[:, :, ::-1].transpose(2, 0, 1)
        outs = sess.run(None, {sess.get_inputs()[0].name: x})
        ob = [b for b in nms(decode(outs, names, pw, ph, a.threshold)) if b[0] < w and b[1] < h]
        r = rust[stem]
        sx, sy = r["width"] / r["det_width"], r["height"] / r["det_height"]
        rb = [[b["x"] / sx, b["y"] / sy, b["w"] / sx, b["h"] / sy, b["score"]] for b in r["boxes"]]
        total_r += len(rb)
        total_o += len(ob)
        used = set()
        img_ious = []
        for b in ob:
            best, bi = 0.0, -1
            for j, c in enumerate(rb):
                if j not in used and iou(b, c) > best:
                    best, bi = iou(b, c), j
            if bi >= 0:
                used.add(bi)
            img_ious.append(best)
        ious += img_ious
        same = len(rb) == len(ob) and all(v >= 0.9 for v in img_ious)
        ok &= same
        print(f"{stem}: onnxruntime {len(ob)}, rawgraph {len(rb)}, min IoU "
              f"{min(img_ious) if img_ious else 1.0:.4f} {'ok' if same else 'MISMATCH'}")
    print(json.dumps({"images": len(rust), "faces_onnxruntime": total_o, "faces_rawgraph": total_r,
                      "min_iou": round(float(min(ious)), 4) if ious else None,
                      "mean_iou": round(float(np.mean(ious)), 4) if ious else None, "parity": bool(ok)}))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
