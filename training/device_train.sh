#!/usr/bin/env bash
# Trains the raw-path demosaic+denoise models on a machine with a GPU, from
# pre-cut patches, resuming from the shipped weights in calibration/models,
# and exports them back there (and into $OUT when set, for the device tool).
#
#   training/device_train.sh [--dry-run] [--minutes M] [SIZE...]
#
# SIZE: fast and/or quality (default: both, each M minutes; default M = 3.5,
# so both fit in 8 minutes). Patches: training/device_patches.npz (written
# by `python3 training/train_dmdn.py cut --out training/device_patches.npz`,
# < 64 MiB; `--jpeg-quality 92` packs ~6,000 patches in 48 MiB; carry it:
# it is git-ignored). --dry-run: a few steps on the CPU
# into a scratch cache, exported to a scratch folder (checks the whole path
# here without touching the shipped weights).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
minutes=3.5
dry=0
sizes=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --minutes) minutes="$2"; shift ;;
    fast|quality) sizes+=("$1") ;;
    *) echo "device_train.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
[ ${#sizes[@]} -gt 0 ] || sizes=(fast quality)
patches="${PATCHES:-training/device_patches.npz}"
[ -f "$patches" ] || { echo "device_train.sh: no patch file $patches (run train_dmdn.py cut)" >&2; exit 1; }

if [ "$dry" = 1 ]; then
  device=cpu
  export RAWGRAPH_CACHE="$(mktemp -d)"
  outdir="$RAWGRAPH_CACHE/models"
  steps=(--max-steps 3 --batch 4 --val-every 1000)
else
  device=cuda
  export RAWGRAPH_CACHE="${RAWGRAPH_CACHE:-/tmp/rawgraph-cache}"
  outdir=calibration/models
  steps=(--batch 64 --val-every 1)
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device visible to torch')"
fi
mkdir -p "$outdir"
declare -A lr=([fast]=1e-3 [quality]=7e-4)
for s in "${sizes[@]}"; do
  echo "=== $s: $minutes min on $device"
  "$PY" training/train_dmdn.py train --arch unet --size "$s" --regime raw --device "$device" \
    --patches "$patches" --minutes "$minutes" --patch 128 --threads 8 --seed 7 \
    --lr "${lr[$s]}" --lr-floor 0.02 --sat-frac 0.3 --dark-stops 6 "${steps[@]}"
  "$PY" training/train_dmdn.py export --arch unet --size "$s" --regime raw --out "$outdir/demosaic_${s}_raw.safetensors"
  # The eval images live in the shared data, which a device machine lacks.
  if [ -d "${RAWGRAPH_DATA:-../shared/data}/kodak24" ]; then
    "$PY" training/train_dmdn.py eval --arch unet --size "$s" --regime raw --threads 8
  fi
  if [ -n "${OUT:-}" ]; then cp "$outdir/demosaic_${s}_raw.safetensors" "$OUT/"; fi
done
echo "device_train.sh: done"
