"""Shared fixtures: the rawgraph CLI and small synthetic captures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import rawgraph as rg

REPO = Path(__file__).resolve().parents[2]


def cli_path() -> Path:
    """The `rawgraph` binary: $RAWGRAPH_BIN, else the repository's build."""
    env = os.environ.get("RAWGRAPH_BIN")
    if env:
        return Path(env)
    for p in (REPO / "target/debug/rawgraph", REPO / "target/release/rawgraph"):
        if p.is_file():
            return p
    pytest.fail("no rawgraph binary: build it (cargo build) or set RAWGRAPH_BIN")


@pytest.fixture(scope="session")
def cli() -> Path:
    return cli_path()


def run_cli(cli: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(cli), *args], capture_output=True, text=True, timeout=300)
    if check and r.returncode != 0:
        raise AssertionError(f"rawgraph {' '.join(args)} failed: {r.stderr}")
    return r


@pytest.fixture(scope="session")
def demo_dng(cli: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in scene as a noisy 12-bit synthetic DNG (256x192)."""
    d = tmp_path_factory.mktemp("synth")
    run_cli(cli, "synth", "--demo", "--demo-size", "256x192", "-o", str(d))
    p = d / "demo.dng"
    assert p.is_file()
    return p


def random_mosaic(h: int, w: int, seed: int = 0, bits: int = 12, black: int = 64) -> np.ndarray:
    """A smooth random scene with noise, as uint16 DN."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.4 + 0.3 * np.sin(x / 17.0 + seed) * np.cos(y / 23.0)
    white = (1 << bits) - 1
    v = black + base * (white - black) + rng.normal(0, 8, (h, w))
    return np.clip(np.round(v), 0, white).astype(np.uint16)


@pytest.fixture(scope="session")
def bayer_raw() -> rg.RawImage:
    return rg.from_bayer(
        random_mosaic(96, 128), cfa="GRBG", bits=12, black=64, wb=[2.0, 1.0, 1.5]
    )
