"""Export a loaded split to Hugging Face ``datasets`` (in memory, no hub access)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..errors import require

_BLOCK = 4096


def _png_bytes(img: np.ndarray) -> bytes:
    from PIL import Image

    arr = img[..., 0] if img.shape[2] == 1 else img
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def to_hf(dataset: Any, image_feature: str = "image") -> Any:
    """An image split as ``datasets.Dataset`` with columns ``image`` and ``label``.

    ``image_feature="image"``: HF ``Image`` (lossless PNG; grayscale stays one channel, decoded
    as mode ``L``); ``"array"``: ``Array3D((H, W, C), "uint8")``. ``label`` is a ``ClassLabel``
    with the dataset's class names (``Value("int64")`` when it has none). Sequence splits become
    ``ids``/``values`` list columns plus ``label``.
    """
    ds_mod: Any = require("datasets", "hf")
    if dataset.kind == "sequence":
        return _sequences_to_hf(dataset, ds_mod)
    x, y = dataset.as_numpy()
    label_feature = ds_mod.ClassLabel(names=list(dataset.classes)) if dataset.classes \
        else ds_mod.Value("int64")
    if image_feature == "array":
        features = ds_mod.Features({"image": ds_mod.Array3D(shape=tuple(x.shape[1:]),
                                                            dtype="uint8"),
                                    "label": label_feature})
        parts = [ds_mod.Dataset.from_dict({"image": x[i:i + _BLOCK], "label": y[i:i + _BLOCK]},
                                          features=features)
                 for i in range(0, max(len(x), 1), _BLOCK)]
    elif image_feature == "image":
        features = ds_mod.Features({"image": ds_mod.Image(), "label": label_feature})
        parts = []
        for i in range(0, max(len(x), 1), _BLOCK):
            images = [{"bytes": _png_bytes(img), "path": None} for img in x[i:i + _BLOCK]]
            parts.append(ds_mod.Dataset.from_dict({"image": images, "label": y[i:i + _BLOCK]},
                                                  features=features))
    else:
        raise ValueError(f"image_feature must be 'image' or 'array', got {image_feature!r}")
    return parts[0] if len(parts) == 1 else ds_mod.concatenate_datasets(parts)


def _sequences_to_hf(dataset: Any, ds_mod: Any) -> Any:
    seqs, y = dataset.as_numpy()
    column = "ids" if dataset.file.data_key == "tokens" else "values"
    label_feature = ds_mod.ClassLabel(names=list(dataset.classes)) if dataset.classes \
        else ds_mod.Value("int64")
    if column == "ids":
        seq_feature = ds_mod.Sequence(ds_mod.Value("int32"))
    else:
        seq_feature = ds_mod.Sequence(ds_mod.Sequence(ds_mod.Value("float32")))
    features = ds_mod.Features({column: seq_feature, "label": label_feature})
    return ds_mod.Dataset.from_dict({column: [s.tolist() for s in seqs], "label": y},
                                    features=features)
