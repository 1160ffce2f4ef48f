"""GIL release, fork safety and multiprocessing."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import threading
import time

import numpy as np
import pytest

import rawgraph as rg
from conftest import random_mosaic


@pytest.fixture(scope="module")
def big_raw() -> rg.RawImage:
    """Large enough that a default run takes a good fraction of a second."""
    return rg.from_bayer(random_mosaic(1200, 1600, seed=5), bits=12, black=64, wb=[2.0, 1.0, 1.5])


def test_gil_released_during_run(big_raw: rg.RawImage) -> None:
    p = rg.Pipeline("default", threads=1)
    done = threading.Event()
    t_run = []

    def work() -> None:
        # Runs until 0.3 s have passed, however fast one run has become.
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 0.3:
            p.run(big_raw)
        t_run.append(time.perf_counter() - t0)
        done.set()

    th = threading.Thread(target=work)
    ticks = 0
    th.start()
    time.sleep(0.01)
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    th.join()
    # With the GIL held for the run this thread would get no ticks in
    # between; released, it ticks about once per millisecond.
    assert t_run[0] > 0.1, f"run too short to tell ({t_run[0]:.3f} s)"
    assert ticks >= 0.2 * t_run[0] * 1000 * 0.5, (ticks, t_run[0])


def _child_work(p: rg.Pipeline, raw_bytes: bytes) -> int:
    raw = rg.imread(raw_bytes)
    img = p.run(raw).image
    return int(img.shape[0])


def test_fork_after_run_finishes(big_raw: rg.RawImage) -> None:
    p = rg.Pipeline("fast", threads=2)
    small = rg.from_bayer(random_mosaic(96, 128), bits=12, black=64)
    p.run(big_raw)  # the pipeline's pool (and the module's) are running
    dng = small.to_dng()
    pid = os.fork()
    if pid == 0:  # child: a pool is rebuilt here, or this hangs
        code = 1
        try:
            code = 0 if _child_work(p, dng) == 96 else 2
            rg.Pipeline("fast").run(small)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("forked child did not finish within 20 s (rayon pool not rebuilt?)")


def test_multiprocessing_ships_pickled_pipelines(big_raw: rg.RawImage) -> None:
    p = rg.Pipeline("fast", params={"wb.mode": "gray_world"})
    p.run(big_raw)
    dng = rg.from_bayer(random_mosaic(96, 128), bits=12, black=64).to_dng()
    ctx = mp.get_context("fork")
    with ctx.Pool(2) as pool:
        res = pool.starmap_async(_child_work, [(p, dng), (pickle.loads(pickle.dumps(p)), dng)])
        assert res.get(timeout=60) == [96, 96]


def test_parallel_runs_from_threads(big_raw: rg.RawImage) -> None:
    p = rg.Pipeline("fast", threads=1)
    ref = p.run(big_raw).image
    out: list[np.ndarray] = []
    ths = [threading.Thread(target=lambda: out.append(p.run(big_raw).image)) for _ in range(3)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert len(out) == 3
    for o in out:
        np.testing.assert_array_equal(o, ref)
