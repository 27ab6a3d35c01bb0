"""dlprep: public deep-learning data -> verified, cached, normalized HDF5 tensors -> loaders.

``import dlprep`` is cheap: torch and other heavy dependencies are imported only when used.
"""

from ._version import __version__
from .errors import DlprepError, FormatError

__all__ = ["DlprepError", "FormatError", "__version__", "batches", "load"]


def __getattr__(name: str) -> object:
    """``dlprep.load`` / ``dlprep.batches`` come from ``dlprep.data``, imported on first use."""
    if name in ("load", "batches"):
        from . import data

        return getattr(data, name)
    raise AttributeError(f"module 'dlprep' has no attribute {name!r}")


def __dir__() -> list[str]:
    """``dir(dlprep)`` lists the lazily imported ``load`` and ``batches`` too."""
    return sorted(set(globals()) | {"batches", "load"})
