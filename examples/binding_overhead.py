"""Binding overhead: `Pipeline.process` (decode + pipeline, no file write)
against `rawgraph process` minus its PNG write, side by side on one file.

    python examples/binding_overhead.py target/release/rawgraph IN.dng [-p default] [-n 5]

Prints medians (seconds) and the ratio python / (cli - png write) as JSON.
The CLI's time also holds process start-up and pipeline compilation.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import rawgraph as rg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cli")
    ap.add_argument("input")
    ap.add_argument("-p", "--pipeline", default="default")
    ap.add_argument("-n", "--runs", type=int, default=5)
    a = ap.parse_args()
    p = rg.Pipeline(a.pipeline)
    p.process(a.input)  # warm-up
    py, cli, write = [], [], []
    with tempfile.TemporaryDirectory() as d:
        for i in range(a.runs):
            t0 = time.perf_counter()
            img = p.process(a.input)
            py.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rg.imwrite(os.path.join(d, "w.png"), img)
            write.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            out = os.path.join(d, f"c{i}.png")
            subprocess.run([a.cli, "process", a.input, "-p", a.pipeline, "-o", out], check=True)
            cli.append(time.perf_counter() - t0)
    m = statistics.median
    print(
        json.dumps(
            {
                "python_process_s": m(py),
                "cli_process_s": m(cli),
                "png_write_s": m(write),
                "cli_minus_write_s": m(cli) - m(write),
                "ratio": m(py) / (m(cli) - m(write)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
