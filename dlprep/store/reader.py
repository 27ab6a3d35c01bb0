"""Reading prepared files: open with a format check, and a JSON-able summary."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import StoreError
from .layout import FORMAT_VERSION


def open_prepared(path: str | os.PathLike[str]) -> h5py.File:
    """Open a prepared file read-only after checking it is ``dlprep-hdf5/1``."""
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"{path}: no such prepared file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not an HDF5 file ({exc})") from exc
    version = f.attrs.get("format")
    if isinstance(version, bytes):
        version = version.decode()
    if version != FORMAT_VERSION:
        f.close()
        raise StoreError(f"{path}: format {version!r} is not {FORMAT_VERSION!r}; re-prepare it "
                         f"with this dlprep (dlprep fetch NAME --force)")
    return f


def _str_list(dset: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dset[()]]


def dataset_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shapes, dtypes, splits, class counts and provenance of a prepared file (JSON-able)."""
    with open_prepared(path) as f:
        out: dict[str, Any] = {"path": str(path)}
        for key, value in f.attrs.items():
            out[key] = value.decode() if isinstance(value, bytes) else (
                value.item() if hasattr(value, "item") else value)
        for key in ("sources", "config", "tokenizer"):
            if isinstance(out.get(key), str):
                out[key] = json.loads(out[key])
        arrays = {}
        for key in ("images", "labels", "tokens", "values", "offsets", "mean", "std", "vocab"):
            if key in f:
                arrays[key] = {"shape": list(f[key].shape), "dtype": str(f[key].dtype)}
        out["arrays"] = arrays
        out["splits"] = ({k: int(v.shape[0]) for k, v in f["splits"].items()}
                         if "splits" in f else {})
        if "offsets" in f:
            out["samples"] = int(f["offsets"].shape[0] - 1)
        elif "images" in f:
            out["samples"] = int(f["images"].shape[0])
        if "classes" in f:
            classes = _str_list(f["classes"])
            out["classes"] = classes
            if "labels" in f:
                counts = np.bincount(f["labels"][()], minlength=len(classes))
                out["class_counts"] = {c: int(k) for c, k in zip(classes, counts, strict=False)}
        if "mean" in f:
            out["mean"] = [round(float(v), 6) for v in f["mean"][()]]
            out["std"] = [round(float(v), 6) for v in f["std"][()]]
        return out
