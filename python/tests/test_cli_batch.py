"""CLI batch features used for scale-out without an engine: --shard, JSON schema."""

from __future__ import annotations

import json
from pathlib import Path

import rawgraph as rg
from conftest import random_mosaic, run_cli


def test_shards_cover_every_input_exactly_once(cli: Path, tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    names = {f"IMG_{i:03d}.dng" for i in range(12)}
    for i, n in enumerate(sorted(names)):
        rg.from_bayer(random_mosaic(32, 48, seed=i), bits=12, black=64).to_dng(src / n)
    out = tmp_path / "out"
    seen: list[str] = []
    for k in range(3):
        rep = tmp_path / f"r{k}.json"
        run_cli(cli, "process", str(src), "-p", "fast", "-o", str(out), "--shard", f"{k}/3",
                "--report-json", str(rep))
        r = json.loads(rep.read_text())
        assert r["schema_version"] == 1 and r["failed"] == 0 and r["skipped"] == 0
        seen += [Path(f["input"]).name for f in r["files"] if f["status"] == "ok"]
    assert sorted(seen) == sorted(names)
    assert {p.name for p in out.iterdir()} == {n.replace(".dng", ".png") for n in names}
    bad = run_cli(cli, "process", str(src), "-o", str(out), "--shard", "3/3", check=False)
    assert bad.returncode != 0 and "K/N" in bad.stderr


def test_json_outputs_carry_schema_version(cli: Path, demo_dng: Path, tmp_path: Path) -> None:
    assert json.loads(run_cli(cli, "info", str(demo_dng), "--json").stdout)["schema_version"] == 1
    tj = tmp_path / "t.json"
    run_cli(cli, "process", str(demo_dng), "-p", "fast", "-o", str(tmp_path / "o.png"),
            "--timings-json", str(tj))
    assert json.loads(tj.read_text())["schema_version"] == 1
    b = json.loads(run_cli(cli, "bench", str(demo_dng), "-p", "fast", "--warmup", "0",
                           "--iters", "1", "--json").stdout)
    assert b["schema_version"] == 1
