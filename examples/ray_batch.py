"""Develop a folder of raw captures on Ray Data, one compiled pipeline per actor.

    python examples/ray_batch.py IN_DIR OUT_DIR [-p default] [--actors 2]
        [--format png] [--bits 8] [--status status.parquet] [--num-cpus 2]

* Input: ``ray.data.read_binary_files`` of the raw files under ``IN_DIR``
  (a local folder; any filesystem Ray/pyarrow reads, e.g. ``s3://``, works
  the same way, outputs then go to a local ``OUT_DIR``).
* Work: ``map_batches`` with a class UDF, ``compute=ActorPoolStrategy(size=N)``:
  each actor compiles the pipeline once (it arrives pickled: YAML text plus
  overrides) and runs every file of its batches with the GIL released.
  ``num_cpus=0.5`` per actor: on a 2-CPU machine two actors at 1 CPU each
  starve Ray's read task forever. ``--num-gpus`` per actor for CUDA
  pipelines (``--backend cuda``).
* Output: ``OUT_DIR/STEM.FORMAT``, written atomically (temporary file and
  rename: ``rawgraph.imwrite``), so a killed run never leaves a partial file.
* Status: one row per input file in a parquet file (``--status``, default
  ``OUT_DIR/_status.parquet``): path, output, status (ok / failed / skipped),
  error (the CLI's one-line message), decode_ms, total_ms, per-stage
  timings (JSON, the ``--timings-json`` schema).
* Resume: files whose output already exists are skipped (reported as
  ``skipped``), and so are files the previous status file records as
  failed (their row is kept; ``--retry-failed`` tries them again); a rerun
  after a crash or after deleting outputs processes exactly the missing
  ones.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

import rawgraph as rg

NOT_INPUTS = {".yaml", ".yml", ".json", ".txt", ".md", ".csv", ".html", ".partial", ".parquet"}


def list_inputs(in_dir: Path) -> list[Path]:
    """Raw files of a folder, as `rawgraph process` expands it."""
    return sorted(
        p
        for p in in_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in NOT_INPUTS
    )


def output_for(path: str, out_dir: str, fmt: str) -> str:
    return os.path.join(out_dir, Path(path).stem + "." + fmt)


class Develop:
    """Ray Data class UDF: one compiled pipeline per actor."""

    def __init__(self, pipeline: rg.Pipeline, out_dir: str, fmt: str, bits: int) -> None:
        self.pipeline = pipeline  # unpickled (compiled) once per actor
        self.out_dir, self.fmt, self.bits = out_dir, fmt, bits

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[Any]]:
        rows: dict[str, list[Any]] = {
            k: [] for k in ("path", "output", "status", "error", "decode_ms", "total_ms", "stages")
        }
        for path, data in zip(batch["path"], batch["bytes"]):
            out = output_for(str(path), self.out_dir, self.fmt)
            t0 = time.perf_counter()
            err, decode_ms, stages = None, None, None
            try:
                src = io.BytesIO(bytes(data))
                src.name = str(path)  # errors name the file
                res = self.pipeline.process_full(src, bits=self.bits)
                if res.image is None:
                    raise rg.InvalidInputError(f"{path}: the pipeline's first output is not an image")
                rg.imwrite(out, res.image, bits=self.bits)  # temp file + rename
                decode_ms = res.timings["decode_ms"]
                stages = json.dumps(res.timings["stages"])
                status = "ok"
            except rg.RawgraphError as e:
                status, err = "failed", str(e)
            rows["path"].append(str(path))
            rows["output"].append(out if status == "ok" else None)
            rows["status"].append(status)
            rows["error"].append(err)
            rows["decode_ms"].append(decode_ms)
            rows["total_ms"].append((time.perf_counter() - t0) * 1e3)
            rows["stages"].append(stages)
        return rows


def write_status(rows: list[dict[str, Any]], path: Path) -> None:
    """The per-file status as parquet, written atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = ("path", "output", "status", "error", "decode_ms", "total_ms", "stages")
    schema = pa.schema(
        [
            ("path", pa.string()),
            ("output", pa.string()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("decode_ms", pa.float64()),
            ("total_ms", pa.float64()),
            ("stages", pa.string()),
        ]
    )
    table = pa.table({c: [r.get(c) for r in rows] for c in cols}, schema=schema)
    tmp = path.with_name("." + path.name + ".partial")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def previous_failures(status: Path) -> dict[str, dict[str, Any]]:
    """Rows of files the last run's status file records as failed."""
    if not status.exists():
        return {}
    import pyarrow.parquet as pq

    rows = pq.read_table(status).to_pylist()
    return {r["path"]: r for r in rows if r["status"] == "failed"}


def run(
    in_dir: Path,
    out_dir: Path,
    pipeline: rg.Pipeline,
    *,
    actors: int = 2,
    fmt: str = "png",
    bits: int = 8,
    status: Path | None = None,
    num_gpus: float = 0.0,
    batch_size: int = 4,
    retry_failed: bool = False,
) -> dict[str, int]:
    """Develops every raw file of `in_dir` into `out_dir`; returns counts."""
    import ray
    from ray.data import ActorPoolStrategy

    out_dir.mkdir(parents=True, exist_ok=True)
    status = status or out_dir / "_status.parquet"
    inputs = list_inputs(in_dir)
    failed_before = {} if retry_failed else previous_failures(status)
    rows: list[dict[str, Any]] = []
    pending: list[Path] = []
    for p in inputs:
        out = output_for(str(p), str(out_dir), fmt)
        if os.path.exists(out):
            rows.append({"path": str(p), "output": out, "status": "skipped"})
        elif str(p) in failed_before:
            rows.append(failed_before[str(p)])
        else:
            pending.append(p)
    if pending:
        ds = ray.data.read_binary_files([str(p) for p in pending], include_paths=True)
        ds = ds.map_batches(
            Develop,
            fn_constructor_args=(pipeline, str(out_dir), fmt, bits),
            batch_size=batch_size,
            compute=ActorPoolStrategy(size=actors),
            num_cpus=0.5,
            num_gpus=num_gpus or None,
        )
        rows += ds.take_all()
    rows.sort(key=lambda r: r["path"])
    write_status(rows, status)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", "failed")}
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("in_dir", type=Path)
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("-p", "--pipeline", default="default", help="shipped name or YAML file")
    ap.add_argument("--backend", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--actors", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="worker threads per actor")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs for ray.init (default: all)")
    ap.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor")
    ap.add_argument("--format", default="png", choices=["png", "tif", "jpg"])
    ap.add_argument("--bits", type=int, default=8, choices=[8, 16])
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--status", type=Path)
    ap.add_argument("--retry-failed", action="store_true", help="try files that failed last time again")
    a = ap.parse_args()

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=a.num_cpus, include_dashboard=False, log_to_driver=False)
    p = rg.Pipeline(a.pipeline, backend=a.backend, threads=a.threads)
    t0 = time.perf_counter()
    c = run(
        a.in_dir,
        a.out_dir,
        p,
        actors=a.actors,
        fmt=a.format,
        bits=16 if a.format == "tif" else a.bits,
        status=a.status,
        num_gpus=a.num_gpus,
        batch_size=a.batch_size,
        retry_failed=a.retry_failed,
    )
    dt = time.perf_counter() - t0
    print(
        f"{c['ok']} ok, {c['skipped']} skipped (output exists), {c['failed']} failed "
        f"in {dt:.1f} s ({c['ok'] / dt:.2f} files/s)"
    )
    return 1 if c["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
