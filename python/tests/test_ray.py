"""examples/ray_batch.py on a folder of synthetic DNGs with one bad file."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import pytest

import rawgraph as rg
from conftest import REPO, random_mosaic

ray = pytest.importorskip(
    "ray",
    reason="ray is not installed in this environment (pip install 'ray[data]'); "
    "the Ray example test cannot run",
)


EXAMPLES = REPO / "examples"


def load_example():
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return importlib.import_module("ray_batch")


@pytest.fixture(scope="module")
def ray_session():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's workers unpickle the UDF class by module name: they need the
    # examples folder on their path (they inherit this environment).
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(EXAMPLES), old]))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def test_ray_example_batch_status_and_resume(ray_session, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    ex = load_example()
    src = tmp_path / "in"
    src.mkdir()
    for i in range(6):
        rg.from_bayer(random_mosaic(64, 96, seed=i), bits=12, black=64).to_dng(src / f"f{i}.dng")
    (src / "bad.dng").write_bytes(b"II*\x00" + b"\x07" * 300)
    out = tmp_path / "out"
    p = rg.Pipeline("fast", threads=1)

    c = ex.run(src, out, p, actors=2, batch_size=2)
    assert c == {"ok": 6, "skipped": 0, "failed": 1}
    for i in range(6):
        assert (out / f"f{i}.png").is_file()
    assert not list(out.glob(".*partial"))
    t = pq.read_table(out / "_status.parquet").to_pylist()
    assert len(t) == 7
    bad = [r for r in t if r["status"] == "failed"]
    assert len(bad) == 1 and bad[0]["path"].endswith("bad.dng")
    assert bad[0]["error"].startswith(str(src / "bad.dng")) and "cannot decode" in bad[0]["error"]
    ok = [r for r in t if r["status"] == "ok"]
    assert all(r["decode_ms"] > 0 and r["stages"] for r in ok)

    (out / "f3.png").unlink()
    c = ex.run(src, out, p, actors=2, batch_size=2)
    assert c == {"ok": 1, "skipped": 5, "failed": 1}
    t = pq.read_table(out / "_status.parquet").to_pylist()
    assert [r["path"] for r in t if r["status"] == "ok"] == [str(src / "f3.png".replace("png", "dng"))]
    assert (out / "f3.png").is_file()
