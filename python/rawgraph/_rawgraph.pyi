"""Type stubs of the compiled extension (see rawgraph/__init__.py)."""

from __future__ import annotations

import os
from typing import IO, Any, Literal, Mapping, Sequence

import numpy as np
import numpy.typing as npt

__version__: str
DEFAULT_MAX_MEGAPIXELS: float

_Source = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

class RawImage:
    """A decoded raw capture: the mosaic (DN) and its metadata."""

    @property
    def mosaic(self) -> npt.NDArray[np.uint16]:
        """(height, width) uint16 DN; a fresh copy on every access."""
    @property
    def width(self) -> int: ...
    @property
    def height(self) -> int: ...
    @property
    def cfa(self) -> str | None:
        """Bayer phase, e.g. "RGGB" (None for LinearRaw frames)."""
    @property
    def raw_pattern(self) -> npt.NDArray[np.uint8] | None:
        """(2, 2) colour index per site: 0 = R, 1 = G, 2 = B."""
    @property
    def black_level_per_channel(self) -> list[float]:
        """Black level of the 2x2 sites, row-major (DN)."""
    @property
    def black_level(self) -> npt.NDArray[np.float32]:
        """The black level repeat pattern (DN)."""
    @property
    def white_level(self) -> float: ...
    @property
    def white_level_per_channel(self) -> list[float]:
        """Saturation level per colour (R, G, B), DN."""
    @property
    def bits(self) -> int: ...
    @property
    def camera_whitebalance(self) -> list[float] | None:
        """As-shot gains (R, G, B), normalised to G = 1."""
    @property
    def color_matrices(self) -> list[dict[str, Any]]:
        """[{"illuminant": ..., "xyz_to_cam": (3, 3) float32}, ...]"""
    @property
    def rgb_xyz_matrix(self) -> npt.NDArray[np.float32] | None: ...
    @property
    def cam_to_srgb(self) -> npt.NDArray[np.float32] | None: ...
    @property
    def meta(self) -> dict[str, Any]:
        """Exactly what ``rawgraph info --json`` prints."""
    @property
    def source(self) -> str: ...
    def to_dng(self, path: str | os.PathLike[str] | None = None) -> bytes | None:
        """Writes an uncompressed DNG atomically; returns its bytes when path is None."""

class RunResult:
    @property
    def image(self) -> npt.NDArray[Any] | None:
        """First output, HxWx3: uint8/uint16 (sRGB-encoded) or float32 (linear)."""
    @property
    def outputs(self) -> dict[str, Any]: ...
    @property
    def timings(self) -> dict[str, Any]:
        """The ``--timings-json`` schema."""

class Pipeline:
    def __init__(
        self,
        name_or_path: str | os.PathLike[str] | None = None,
        *,
        yaml: str | None = None,
        backend: Literal["cpu", "cuda", "auto"] | None = None,
        params: Mapping[str, Any] | None = None,
        threads: int | None = None,
        fuse: bool = True,
    ) -> None: ...
    @property
    def name(self) -> str: ...
    @property
    def fuse(self) -> bool: ...
    @property
    def file(self) -> str: ...
    @property
    def yaml(self) -> str: ...
    @property
    def stages(self) -> list[tuple[str, str]]: ...
    def run(self, raw: RawImage, bits: Literal[8, 16] = 8) -> RunResult: ...
    def process(
        self,
        src: _Source,
        sidecar: str | os.PathLike[str] | None = None,
        bits: Literal[8, 16] = 8,
        max_megapixels: float = ...,
        max_file_mb: int = 1024,
    ) -> npt.NDArray[Any]: ...
    def process_full(
        self,
        src: _Source,
        sidecar: str | os.PathLike[str] | None = None,
        bits: Literal[8, 16] = 8,
        max_megapixels: float = ...,
        max_file_mb: int = 1024,
    ) -> RunResult: ...
    def bench(self, raw: RawImage, warmup: int = 2, iters: int = 10) -> dict[str, Any]: ...
    def __reduce__(self) -> tuple[Any, ...]: ...

def imread(
    src: _Source,
    sidecar: str | os.PathLike[str] | None = None,
    max_megapixels: float = ...,
    max_file_mb: int = 1024,
) -> RawImage: ...
def from_bayer(
    array: npt.ArrayLike,
    cfa: str = "RGGB",
    bits: int | None = None,
    black: float | Sequence[float] | None = None,
    white: float | None = None,
    wb: Sequence[float] | None = None,
    cam_to_srgb: npt.ArrayLike | None = None,
    source: str = "<array>",
) -> RawImage: ...
def demosaic(
    mosaic: npt.NDArray[np.float32],
    cfa: str = "RGGB",
    op: str = "demosaic_rcd_mlri",
    params: Mapping[str, Any] | None = None,
) -> npt.NDArray[np.float32]: ...
def imwrite(
    path: str | os.PathLike[str], img: npt.NDArray[Any], bits: Literal[8, 16] | None = None
) -> None: ...
def ops() -> list[str]: ...
def pipelines() -> list[str]: ...
def _pipeline_from_state(
    yaml: str, file: str, params: str, backend: str | None, threads: int
) -> Pipeline: ...
