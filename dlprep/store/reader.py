"""Reading prepared files: open with a format check, and a JSON-able summary."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
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


def check_index_arrays(path: str | os.PathLike[str], *, samples: int,
                       labels: np.ndarray | None = None, classes: int | None = None,
                       splits: Mapping[str, np.ndarray] | None = None,
                       offsets: np.ndarray | None = None, steps: int | None = None) -> None:
    """Refuse index arrays that point outside the data (bit rot, a damaged copy): labels in
    ``[0, classes)``, split rows in ``[0, samples)``, offsets from 0, non-decreasing, to
    ``steps``. Raises ``StoreError`` naming the file and the dataset."""
    def bad(dataset: str, what: str) -> StoreError:
        return StoreError(f"{path}: dataset {dataset!r} {what}; the file is damaged: "
                          f"re-prepare it (dlprep fetch NAME --force)")

    if labels is not None and len(labels):
        if len(labels) != samples:
            raise bad("labels", f"has {len(labels):,} entries for {samples:,} samples")
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or (classes is not None and hi >= classes):
            top = f"{classes:,}" if classes is not None else "..."
            raise bad("labels", f"holds {lo if lo < 0 else hi}, outside [0, {top})")
    for name, rows in (splits or {}).items():
        if len(rows) and (int(rows.min()) < 0 or int(rows.max()) >= samples):
            wrong = int(rows.min()) if int(rows.min()) < 0 else int(rows.max())
            raise bad(f"splits/{name}", f"holds row {wrong:,}, outside [0, {samples:,})")
    if offsets is not None:
        if len(offsets) == 0 or int(offsets[0]) != 0 or np.any(np.diff(offsets) < 0) or (
                steps is not None and int(offsets[-1]) != steps):
            raise bad("offsets", f"is not 0 ... {steps} non-decreasing")


def check_structure(f: h5py.File, path: str | os.PathLike[str]) -> None:
    """:func:`check_index_arrays` on an open prepared file (reads the small index arrays)."""
    n = int(f["offsets"].shape[0] - 1) if "offsets" in f else (
        int(f["images"].shape[0]) if "images" in f else 0)
    data = next((f[k] for k in ("tokens", "values") if k in f), None)
    check_index_arrays(
        path, samples=n, labels=f["labels"][()] if "labels" in f else None,
        classes=int(f["classes"].shape[0]) if "classes" in f else None,
        splits={k: v[()] for k, v in f["splits"].items()} if "splits" in f else {},
        offsets=f["offsets"][()] if "offsets" in f else None,
        steps=int(data.shape[0]) if data is not None else None)


def _str_list(dset: h5py.Dataset) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in dset[()]]


def dataset_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Shapes, dtypes, splits, class counts and provenance of a prepared file (JSON-able)."""
    with open_prepared(path) as f:
        check_structure(f, path)
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
            over = f["mean"].attrs.get("computed_over", "train split, pixels in [0, 1]")
            out["mean_std_over"] = over.decode() if isinstance(over, bytes) else str(over)
        return out


def verify_prepared(path: str | os.PathLike[str], *, quick: bool = False) -> tuple[list[str], bool]:
    """Check a prepared file: format, index ranges (labels, splits, offsets) and, unless
    ``quick``, every dataset's bytes against its ``checksum`` attribute (docs/FORMAT.md).

    Returns ``(problems, checked)``: one line per problem, naming file and dataset; ``checked``
    is False for a file written before checksums existed (only its structure was checked)."""
    from .checksum import has_checksums, verify_checksums

    try:
        with open_prepared(path) as f:
            check_structure(f, path)
            if not has_checksums(f):
                return [], False
            return verify_checksums(f, path, quick=quick), True
    except StoreError as exc:
        return [str(exc)], True
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        return [f"{path}: cannot be read ({exc})"], True
