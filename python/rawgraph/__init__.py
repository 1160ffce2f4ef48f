"""rawgraph: raw Bayer captures through YAML stage graphs (Rust, PyO3).

>>> import rawgraph as rg
>>> raw = rg.imread("IMG_0001.dng")            # doctest: +SKIP
>>> rgb = rg.Pipeline("default").run(raw).image  # HxWx3 uint8  # doctest: +SKIP

Arrays handed out are owned copies. Every decode, run and write releases
the GIL and runs on a thread pool that is rebuilt after ``fork``.
"""

from __future__ import annotations

from rawgraph._errors import (
    BackendError,
    DecodeError,
    FileError,
    InvalidInputError,
    LimitError,
    ModelError,
    PipelineError,
    RawgraphError,
    SidecarError,
    StageError,
    UnsupportedError,
)
from rawgraph._rawgraph import (
    DEFAULT_MAX_MEGAPIXELS,
    Pipeline,
    RawImage,
    RunResult,
    __version__,
    demosaic,
    from_bayer,
    imread,
    imwrite,
    ops,
    pipelines,
)

__all__ = [
    "DEFAULT_MAX_MEGAPIXELS",
    "BackendError",
    "DecodeError",
    "FileError",
    "InvalidInputError",
    "LimitError",
    "ModelError",
    "Pipeline",
    "PipelineError",
    "RawImage",
    "RawgraphError",
    "RunResult",
    "SidecarError",
    "StageError",
    "UnsupportedError",
    "__version__",
    "demosaic",
    "from_bayer",
    "imread",
    "imwrite",
    "ops",
    "pipelines",
]
