"""Exception classes of rawgraph.

Every error's ``str()`` is the one line the ``rawgraph`` command prints
after ``error:``; the classes mirror the core crate's error enum.
"""

from __future__ import annotations


class RawgraphError(Exception):
    """Base class of every error rawgraph raises."""


class FileError(RawgraphError, OSError):
    """Reading or writing a file failed (``.filename`` names it, ``.errno``
    is the OS error code when there is one)."""

    def __str__(self) -> str:
        # OSError would format errno/filename; keep the CLI's line.
        return str(self.args[0]) if self.args else OSError.__str__(self)


class DecodeError(RawgraphError, ValueError):
    """The raw decoder rejected the file (or crashed on it)."""


class UnsupportedError(DecodeError):
    """The file is valid but uses something rawgraph does not handle."""


class SidecarError(RawgraphError, ValueError):
    """A sensor-dump sidecar is wrong or does not match the dump."""


class PipelineError(RawgraphError, ValueError):
    """A pipeline (YAML) is malformed; ``.file``, ``.line`` and ``.column``
    (1-based, 0 when unknown) locate the fault."""

    file: str
    line: int
    column: int


class StageError(RawgraphError):
    """A stage failed while running (``.stage`` and ``.op`` name it)."""

    stage: str
    op: str


class BackendError(RawgraphError):
    """CUDA is unavailable, or a stage has no kernel for the backend asked."""


class ModelError(RawgraphError, ValueError):
    """A model weights file is missing, truncated or mismatched."""


class LimitError(RawgraphError, ValueError):
    """A resource limit (megapixels, file size) was exceeded."""


class InvalidInputError(RawgraphError, ValueError):
    """An argument, array or image is invalid."""


__all__ = [
    "RawgraphError",
    "FileError",
    "DecodeError",
    "UnsupportedError",
    "SidecarError",
    "PipelineError",
    "StageError",
    "BackendError",
    "ModelError",
    "LimitError",
    "InvalidInputError",
]
