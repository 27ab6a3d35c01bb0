"""torch-flavoured versions of the loader classes, made on first use (torch stays optional).

``torch_class(cls)`` returns a subclass of ``cls`` and ``torch.utils.data.Dataset`` (or
``IterableDataset``) registered in this module under the same name, so ``isinstance(ds,
torch.utils.data.Dataset)`` holds and instances pickle by reference (spawned DataLoader workers
re-create the class through this module's ``__getattr__``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import require

# name -> (module defining the plain class, torch base class name)
_PLAIN: dict[str, tuple[str, str]] = {
    "ImageDataset": ("dlprep.data.images", "Dataset"),
    "SequenceDataset": ("dlprep.data.sequences", "Dataset"),
    "LMWindowDataset": ("dlprep.data.sequences", "Dataset"),
    "BatchStream": ("dlprep.data.batches", "IterableDataset"),
}
_MADE: dict[str, type] = {}


def _make(name: str) -> type:
    cls = _MADE.get(name)
    if cls is None:
        module, base_name = _PLAIN[name]
        plain = getattr(importlib.import_module(module), name)
        torch_data: Any = require("torch.utils.data", "torch")
        base = getattr(torch_data, base_name)
        cls = type(name, (plain, base), {"__module__": __name__, "__qualname__": name,
                                         "__doc__": plain.__doc__})
        _MADE[name] = cls
    return cls


def torch_class(plain: type) -> type:
    """The torch-Dataset subclass of a plain loader class (imports torch)."""
    return _make(plain.__name__)


def __getattr__(name: str) -> type:
    if name in _PLAIN:
        return _make(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
