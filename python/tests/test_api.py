"""The Python API against the CLI: metadata, pixels, round trips, errors."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import rawgraph as rg
from conftest import random_mosaic, run_cli


def test_module_surface() -> None:
    assert "demosaic_menon" in rg.ops()
    assert {"default", "fast", "auto"} <= set(rg.pipelines())
    assert rg.__version__
    assert issubclass(rg.FileError, OSError)
    assert issubclass(rg.PipelineError, ValueError)
    assert issubclass(rg.UnsupportedError, rg.DecodeError)


def test_imread_shapes_dtypes_and_meta(cli: Path, demo_dng: Path) -> None:
    raw = rg.imread(demo_dng)
    info = json.loads(run_cli(cli, "info", str(demo_dng), "--json").stdout)
    assert raw.meta == info
    m = raw.mosaic
    assert m.dtype == np.uint16 and m.shape == (info["height"], info["width"])
    assert m.flags["OWNDATA"] or m.base is not None
    assert raw.cfa == info["layout"]["bayer"]
    layout = {"RGGB": [0, 1, 1, 2], "BGGR": [2, 1, 1, 0], "GRBG": [1, 0, 2, 1], "GBRG": [1, 2, 0, 1]}
    assert raw.raw_pattern.tolist() == np.array(layout[raw.cfa]).reshape(2, 2).tolist()
    b = info["black"]
    assert raw.black_level.shape == (b["repeat_height"], b["repeat_width"])
    assert len(raw.black_level_per_channel) == 4
    assert raw.white_level == min(info["white"])
    assert list(raw.white_level_per_channel) == info["white"]
    assert list(raw.camera_whitebalance) == info["wb_gains"]
    assert len(raw.color_matrices) == len(info["color_matrices"])
    for got, want in zip(raw.color_matrices, info["color_matrices"]):
        assert got["illuminant"] == want["illuminant"]
        np.testing.assert_array_equal(got["xyz_to_cam"], np.array(want["xyz_to_cam"], np.float32))
    np.testing.assert_array_equal(raw.rgb_xyz_matrix, raw.color_matrices[0]["xyz_to_cam"])
    assert raw.width == info["width"] and raw.height == info["height"]
    # Samples in range and not all equal.
    assert m.max() <= raw.white_level and m.std() > 0


def test_imread_bytes_and_file_objects(demo_dng: Path) -> None:
    a = rg.imread(demo_dng)
    b = rg.imread(demo_dng.read_bytes())
    with open(demo_dng, "rb") as f:
        c = rg.imread(f)
    d = rg.imread(io.BytesIO(demo_dng.read_bytes()))
    for other in (b, c, d):
        np.testing.assert_array_equal(a.mosaic, other.mosaic)
        ma, mo = dict(a.meta), dict(other.meta)
        ma.pop("source"), mo.pop("source")
        assert ma == mo
    assert b.source == "<bytes>"
    assert c.source == str(demo_dng)


@pytest.mark.parametrize("name", ["default", "fast"])
def test_run_equals_cli_bit_for_bit(cli: Path, demo_dng: Path, tmp_path: Path, name: str) -> None:
    out_cli = tmp_path / "cli.png"
    tj = tmp_path / "t.json"
    run_cli(cli, "process", str(demo_dng), "-p", name, "-o", str(out_cli), "--timings-json", str(tj))
    p = rg.Pipeline(name)
    res = p.run(rg.imread(demo_dng))
    img = res.image
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    out_py = tmp_path / "py.png"
    rg.imwrite(out_py, img)
    assert out_py.read_bytes() == out_cli.read_bytes()
    # Same pixels through process(): decode + run in one call, from a
    # path, bytes or a file object.
    np.testing.assert_array_equal(p.process(demo_dng), img)
    np.testing.assert_array_equal(p.process(demo_dng.read_bytes()), img)
    with open(demo_dng, "rb") as f:
        np.testing.assert_array_equal(p.process(f), img)
    # Timings: the --timings-json schema, same stages.
    want = json.loads(tj.read_text())
    full = p.process_full(demo_dng)
    assert set(full.timings) == set(want)
    assert [s["id"] for s in full.timings["stages"]] == [s["id"] for s in want["stages"]]
    assert set(full.timings["stages"][0]) == set(want["stages"][0])
    assert full.timings["decode_ms"] > 0 and res.timings["decode_ms"] is None
    assert list(res.outputs) == ["orient" if name == "default" else list(res.outputs)[0]]


def test_run_16_bit_equals_cli(cli: Path, demo_dng: Path, tmp_path: Path) -> None:
    out_cli = tmp_path / "cli.tif"
    run_cli(cli, "process", str(demo_dng), "-p", "fast", "-o", str(out_cli))
    img = rg.Pipeline("fast").run(rg.imread(demo_dng), bits=16).image
    assert img.dtype == np.uint16
    out_py = tmp_path / "py.tif"
    rg.imwrite(out_py, img)
    assert out_py.read_bytes() == out_cli.read_bytes()


def linear_yaml(demosaic: str) -> str:
    """A pipeline ending in linear camera RGB: raw -> black level -> `demosaic`."""
    return f"""
version: 1
name: linear
stages:
  - {{ id: raw, op: raw_source }}
  - {{ id: bl, op: black_level }}
  - {{ id: dm, op: {demosaic} }}
"""


def test_linear_output_is_float32() -> None:
    yaml = linear_yaml("demosaic_bilinear")
    raw = rg.from_bayer(random_mosaic(64, 80), bits=12, black=64)
    res = rg.Pipeline(yaml=yaml).run(raw)
    assert res.image.dtype == np.float32 and res.image.shape == (64, 80, 3)
    assert list(res.outputs) == ["dm"]
    two = rg.Pipeline(yaml=yaml + "  - { id: out, op: srgb_encode }\noutputs: [out, dm]\n").run(raw)
    assert list(two.outputs) == ["out", "dm"]
    assert two.image.dtype == np.uint8 and two.outputs["out"] is two.image
    assert two.outputs["dm"].dtype == np.float32
    # The sRGB output is delivered as 8-bit samples: quantised after the
    # run here (dm is an output too, so out does not fuse), a timed row.
    assert [s["id"] for s in two.timings["stages"]] == ["raw", "bl", "dm", "out", "out.deliver"]


def test_from_bayer_round_trip(tmp_path: Path) -> None:
    mos = random_mosaic(96, 128, seed=3)
    m = np.array([[1.6, -0.4, -0.2], [-0.3, 1.5, -0.2], [0.0, -0.5, 1.5]])
    raw = rg.from_bayer(mos, cfa="BGGR", bits=12, black=[64, 65, 66, 67], wb=[1.9, 1.0, 1.6], cam_to_srgb=m)
    np.testing.assert_array_equal(raw.mosaic, mos)
    assert raw.cfa == "BGGR" and raw.bits == 12
    assert raw.black_level_per_channel == [64, 65, 66, 67]
    assert raw.white_level == 4095
    np.testing.assert_allclose(raw.camera_whitebalance, [1.9, 1.0, 1.6], rtol=1e-6)
    np.testing.assert_allclose(raw.cam_to_srgb, m, rtol=1e-6)
    mos[0, 0] = 0  # the RawImage owns its copy
    assert raw.mosaic[0, 0] != 0 or random_mosaic(96, 128, seed=3)[0, 0] == 0
    dng = tmp_path / "dump.dng"
    raw.to_dng(dng)
    back = rg.imread(dng)
    np.testing.assert_array_equal(back.mosaic, raw.mosaic)
    assert back.cfa == "BGGR"
    assert back.black_level_per_channel == raw.black_level_per_channel
    assert back.white_level == raw.white_level
    np.testing.assert_allclose(back.camera_whitebalance, raw.camera_whitebalance, rtol=1e-5)
    # Every dtype of mosaic is accepted; uint8 defaults to 8 bits.
    assert rg.from_bayer(np.full((8, 8), 10, np.uint8)).white_level == 255
    assert rg.from_bayer(np.full((8, 8), 0.5, np.float32), white=1.0).white_level == 1.0


def test_to_dng_then_imread_identical(demo_dng: Path, tmp_path: Path) -> None:
    raw = rg.imread(demo_dng)
    out = tmp_path / "copy.dng"
    raw.to_dng(out)
    back = rg.imread(out)
    np.testing.assert_array_equal(back.mosaic, raw.mosaic)
    a, b = dict(raw.meta), dict(back.meta)
    assert a.pop("source") == str(demo_dng) and b.pop("source") == str(out)
    assert a == b
    # In memory: the same bytes.
    assert raw.to_dng() == out.read_bytes()
    np.testing.assert_array_equal(rg.imread(raw.to_dng()).mosaic, raw.mosaic)


def test_pickle_and_params(demo_dng: Path) -> None:
    raw = rg.imread(demo_dng)
    p = rg.Pipeline("default", params={"exp.ev": 1.0}, threads=1)
    q = pickle.loads(pickle.dumps(p))
    assert q.yaml == p.yaml and q.file == p.file == "builtin:default"
    a, b = p.run(raw).image, q.run(raw).image
    np.testing.assert_array_equal(a, b)
    base = rg.Pipeline("default").run(raw).image
    assert a.mean() > base.mean() + 5
    same = rg.Pipeline("default", params={"exp": {"ev": 1.0}}).run(raw).image
    np.testing.assert_array_equal(a, same)
    with pytest.raises(rg.InvalidInputError, match="nosuch"):
        rg.Pipeline("default", params={"nosuch.ev": 1.0})
    with pytest.raises(rg.PipelineError, match="exp"):
        rg.Pipeline("default", params={"exp.bogus_param": 1.0})


def test_backend_choice(bayer_raw: rg.RawImage) -> None:
    a = rg.Pipeline("fast", backend="cpu").run(bayer_raw).image
    b = rg.Pipeline("fast", backend="auto").run(bayer_raw).image
    np.testing.assert_array_equal(a, b)  # auto: CUDA where it exists, else the CPU
    with pytest.raises(rg.InvalidInputError, match="backend"):
        rg.Pipeline("fast", backend="tpu")
    try:
        rg.Pipeline("fast", backend="cuda").run(bayer_raw)
    except rg.BackendError as e:
        assert "CUDA" in str(e)


def test_bench(bayer_raw: rg.RawImage) -> None:
    rep = rg.Pipeline("fast").bench(bayer_raw, warmup=1, iters=3)
    assert rep["iters"] == 3 and rep["width"] == 128 and rep["height"] == 96
    assert [s["id"] for s in rep["stages"]][0] == "raw"
    assert rep["total_median_ms"] > 0


def test_fuse_false_runs_every_stage_alone_with_the_same_output(bayer_raw: rg.RawImage) -> None:
    fused, alone = rg.Pipeline("fast"), rg.Pipeline("fast", fuse=False)
    assert fused.fuse and not alone.fuse
    a, b = fused.run(bayer_raw, bits=16), alone.run(bayer_raw, bits=16)
    np.testing.assert_array_equal(a.image, b.image)
    segs = {s["id"]: s.get("fused") for s in fused.bench(bayer_raw, warmup=0, iters=1)["stages"]}
    assert segs["dm"] and "dm" in segs["dm"]
    rep = alone.bench(bayer_raw, warmup=0, iters=1)
    assert all(s.get("fused") is None for s in rep["stages"])
    assert not pickle.loads(pickle.dumps(alone)).fuse


def test_imwrite_dtypes(tmp_path: Path) -> None:
    f = np.random.default_rng(1).random((20, 30, 3), dtype=np.float32)
    rg.imwrite(tmp_path / "a.png", f)
    rg.imwrite(tmp_path / "b.png", (f * 255 + 0.5).astype(np.uint8))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    rg.imwrite(tmp_path / "c.tif", (f * 65535 + 0.5).astype(np.uint16))
    rg.imwrite(tmp_path / "d.tif", f)
    assert (tmp_path / "c.tif").read_bytes() == (tmp_path / "d.tif").read_bytes()
    with pytest.raises(rg.InvalidInputError):
        rg.imwrite(tmp_path / "e.bmp", f)
    with pytest.raises(rg.InvalidInputError):
        rg.imwrite(tmp_path / "e.png", f[:, :, :2])


def stderr_line(r) -> str:
    lines = [l for l in r.stderr.splitlines() if l.startswith("error: ")]
    assert len(lines) == 1, r.stderr
    return lines[0][len("error: "):]


def test_errors_are_typed_with_cli_messages(cli: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.dng"
    bad.write_bytes(b"II*\x00" + b"\x07" * 500)
    with pytest.raises(rg.DecodeError) as e:
        rg.imread(bad)
    assert str(e.value) == stderr_line(run_cli(cli, "info", str(bad), check=False))
    assert e.value.filename == str(bad)

    missing = tmp_path / "missing.dng"
    with pytest.raises(rg.FileError) as e:
        rg.imread(missing)
    assert isinstance(e.value, OSError) and e.value.errno == 2
    assert str(e.value) == stderr_line(run_cli(cli, "info", str(missing), check=False))

    # process(): the message `rawgraph process` prints for the same input.
    out = tmp_path / "o.png"
    with pytest.raises(rg.DecodeError) as e:
        rg.Pipeline("fast").process(bad)
    r = run_cli(cli, "process", str(bad), "-p", "fast", "-o", str(out), check=False)
    assert r.returncode == 1 and str(e.value) == stderr_line(r)
    with open(bad, "rb") as f, pytest.raises(rg.DecodeError) as e2:
        rg.Pipeline("fast").process(io.BytesIO(f.read()))
    assert str(e2.value) == str(e.value).replace(str(bad), "<file>")
    with pytest.raises(rg.InvalidInputError, match="path, bytes or a binary file"):
        rg.Pipeline("fast").process(12)
    with pytest.raises(rg.InvalidInputError, match="path, bytes or a binary file"):
        rg.imread(12)

    # A YAML error keeps file:line:column.
    y = tmp_path / "bad.yaml"
    y.write_text("version: 1\nstages:\n  - { id: raw, op: raw_source }\n  - { id: x, op: no_such_op }\n")
    with pytest.raises(rg.PipelineError) as e:
        rg.Pipeline(str(y))
    assert (e.value.file, e.value.line) == (str(y), 4) and e.value.column > 0
    assert str(e.value).startswith(f"{y}:4:")
    r = run_cli(cli, "process", str(bad), "-p", str(y), "-o", str(out), check=False)
    assert str(e.value) == stderr_line(r)
    with pytest.raises(rg.PipelineError) as e:
        rg.Pipeline(yaml="version: 1\nstages: [ {id: raw, op: raw_source, bogus: 1} ]\n")
    assert e.value.file == "<yaml>" and e.value.line == 2

    with pytest.raises(rg.InvalidInputError, match="no such pipeline"):
        rg.Pipeline("nonexistent_pipeline")
    with pytest.raises(rg.LimitError):
        rg.from_bayer(random_mosaic(64, 64)).to_dng(tmp_path / "x.dng") or rg.imread(
            tmp_path / "x.dng", max_megapixels=0.001
        )
    with pytest.raises(rg.InvalidInputError):
        rg.from_bayer(np.zeros((4, 4, 2), np.uint16))
    with pytest.raises(rg.InvalidInputError, match="cfa"):
        rg.from_bayer(np.zeros((4, 4), np.uint16), cfa="XYZW")


def test_demosaic_equals_the_pipeline_op() -> None:
    mos = random_mosaic(48, 64)
    yaml = linear_yaml("demosaic_rcd_mlri")
    res = rg.Pipeline(yaml=yaml).run(rg.from_bayer(mos, cfa="GBRG", bits=12, black=64))
    norm = ((mos.astype(np.float32) - 64) / (4095 - 64)).astype(np.float32)
    one = rg.demosaic(norm, cfa="GBRG")
    assert one.dtype == np.float32 and one.shape == (3, 48, 64)
    # the same op; the pipeline's mosaic arrives in its own scale, so the
    # f32 rounding differs a little
    np.testing.assert_allclose(one.transpose(1, 2, 0), res.image, rtol=0, atol=2e-4)
    # a flat colour comes back only under its own CFA
    col = np.array([0.2, 0.5, 0.8], np.float32)
    gbrg = np.tile(np.array([[col[1], col[2]], [col[0], col[1]]], np.float32), (8, 8))
    np.testing.assert_allclose(rg.demosaic(gbrg, cfa="GBRG"), np.broadcast_to(col[:, None, None], (3, 16, 16)),
                               atol=1e-5)
    assert abs(float(rg.demosaic(gbrg, cfa="RGGB")[0].mean()) - 0.2) > 0.1
    # a batch is frame by frame the same; params reach the op
    batch = rg.demosaic(np.stack([norm, norm[::-1].copy()]), cfa="GBRG")
    assert batch.shape == (2, 3, 48, 64)
    np.testing.assert_array_equal(batch[0], one)
    flat = rg.demosaic(np.full((16, 16), 0.25, np.float32), op="demosaic_bilinear")
    np.testing.assert_allclose(flat, 0.25, atol=1e-6)
    soft = rg.demosaic(norm, cfa="GBRG", params={"mlri_weight": 0.0})
    assert not np.array_equal(soft, one)


def test_demosaic_bad_input_is_typed() -> None:
    good = np.zeros((8, 8), np.float32)
    with pytest.raises(rg.InvalidInputError, match="cfa"):
        rg.demosaic(good, cfa="RGBX")
    with pytest.raises(rg.InvalidInputError, match="classical demosaic"):
        rg.demosaic(good, op="sharpen")
    with pytest.raises(rg.InvalidInputError, match="float32"):
        rg.demosaic(np.zeros((8, 8), np.uint16))
    with pytest.raises(rg.InvalidInputError, match="shape"):
        rg.demosaic(np.zeros((2, 2, 8, 8), np.float32))
    with pytest.raises(rg.InvalidInputError, match="mlri_weight"):
        rg.demosaic(good, params={"mlri_weight": 7.0})
