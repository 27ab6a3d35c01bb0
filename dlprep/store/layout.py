"""What every prepared file shares (docs/FORMAT.md): the format tag, provenance attributes,
axis labels, and the ``splits``/``classes``/``meta`` datasets."""

from __future__ import annotations

import datetime as _dt
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._version import __version__
from ..errors import StoreError
from ..redact import redact_text

FORMAT_VERSION = "dlprep-hdf5/1"
STR_DTYPE = h5py.string_dtype(encoding="utf-8")


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that made a file, as ``dlprep ARGS`` (program name, not a cwd-relative path),
    with credentials in URLs masked (``dlprep.redact``)."""
    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]).name if argv else "python"
    if prog in {"__main__.py", "dlprep"} or prog.startswith("dlprep"):
        prog = "dlprep"
    return redact_text(shlex.join([prog, *argv[1:]]))


def write_provenance(
    f: h5py.File, kind: str, recipe: str, recipe_version: str, sources: Sequence[Mapping[str, Any]],
    license: str, citation: str, config: Mapping[str, Any], extra: Mapping[str, Any] | None,
) -> None:
    """The root attributes of docs/FORMAT.md (``recipe_version`` only for sets with a recipe)."""
    f.attrs["format"] = FORMAT_VERSION
    f.attrs["kind"] = kind
    f.attrs["recipe"] = recipe
    if recipe_version:
        f.attrs["recipe_version"] = recipe_version
    f.attrs["dlprep_version"] = __version__
    f.attrs["created"] = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    f.attrs["command"] = command_line()
    f.attrs["sources"] = redact_text(json.dumps(list(sources), sort_keys=True))
    f.attrs["license"] = license
    f.attrs["citation"] = citation
    f.attrs["config"] = json.dumps(dict(config), sort_keys=True)
    for key, value in (extra or {}).items():
        f.attrs[key] = value


def label_axes(dset: h5py.Dataset, labels: Sequence[str]) -> None:
    """Name the axes of ``dset`` (``dims[i].label``)."""
    for i, label in enumerate(labels):
        dset.dims[i].label = label


def write_common(f: h5py.File, splits: Mapping[str, np.ndarray], classes: Sequence[str] | None,
                 meta: Mapping[str, Sequence[Any]] | None, n: int) -> None:
    """``splits/<name>`` (checked to lie in ``[0, n)``), ``classes`` and ``meta/<field>``."""
    grp = f.create_group("splits")
    for name, idx in splits.items():
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise StoreError(f"split {name!r} has indices outside [0, {n})")
        grp.create_dataset(name, data=idx)
    if classes is not None:
        f.create_dataset("classes", data=np.array(list(classes), dtype=object), dtype=STR_DTYPE)
    if meta:
        mgrp = f.create_group("meta")
        for key, values in meta.items():
            arr = np.asarray(values)
            if len(arr) != n:
                raise StoreError(f"meta/{key} has {len(arr)} entries for {n} samples")
            if arr.dtype.kind in "OUS":
                mgrp.create_dataset(key, data=np.array([str(v) for v in arr], dtype=object),
                                    dtype=STR_DTYPE)
            else:
                mgrp.create_dataset(key, data=arr)
