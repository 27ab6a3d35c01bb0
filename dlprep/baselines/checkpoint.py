"""Checkpoints: ``state_dict``s + the spec that rebuilds the modules + the run's config.

Saved with ``torch.save`` to a temp file and renamed; loaded with ``weights_only=True`` (only
tensors, numbers, strings, lists and dicts: nothing is unpickled as code).
"""

from __future__ import annotations

import importlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import DlprepError, require
from ..recipes import FAMILIES

FORMAT = "dlprep-baseline/1"


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``model`` is the main module in eval mode (the classifier, the
    autoencoder, the language model or the GAN generator); ``modules`` holds all of them."""

    family: str
    model: Any
    modules: dict[str, Any]
    spec: dict[str, Any]
    config: dict[str, Any]
    info: dict[str, Any]


def build_modules(family: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Rebuild a family's modules (untrained) from the spec stored in its checkpoint.

    Only the known families (``dlprep.recipes.FAMILIES``) are imported; anything else raises
    ``DlprepError``.
    """
    if not isinstance(family, str) or family not in FAMILIES:
        raise DlprepError(f"unknown baseline family {family!r}; known: {', '.join(FAMILIES)}")
    module = importlib.import_module(f"dlprep.baselines.{family}")
    return module.build_modules(spec)


def save_checkpoint(path: Path, *, family: str, modules: dict[str, Any], spec: dict[str, Any],
                    config: dict[str, Any], info: dict[str, Any]) -> Path:
    """Write ``path`` atomically: ``state_dict`` per module, ``spec``, ``config``, ``info``."""
    torch = require("torch", "torch")
    payload = {
        "format": FORMAT, "family": family, "dlprep_version": __version__,
        "state_dict": {name: {k: v.detach().cpu() for k, v in m.state_dict().items()}
                       for name, m in modules.items()},
        "spec": spec, "config": config, "info": info,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pt", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike[str], map_location: str = "cpu") -> Checkpoint:
    """Load a baseline checkpoint (a ``checkpoint.pt`` or its run folder) into eval-mode modules.

    Raises ``DlprepError`` when the file is missing, not a dlprep baseline checkpoint, names a
    family that is not one of ``FAMILIES`` (checked before anything is imported), or holds
    weights that do not fit its spec.
    """
    torch = require("torch", "torch")
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise DlprepError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise DlprepError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise DlprepError(f"{path}: not a {FORMAT} checkpoint")
    family = payload.get("family")
    if not isinstance(family, str) or family not in FAMILIES:
        raise DlprepError(f"{path}: unknown baseline family {family!r} in the checkpoint; "
                          f"known: {', '.join(FAMILIES)}")
    parts = {key: payload.get(key) for key in ("spec", "state_dict", "config", "info")}
    bad = [key for key, value in parts.items() if not isinstance(value, dict)]
    if bad:
        raise DlprepError(f"{path}: damaged {family} checkpoint (no {', '.join(bad)})")
    try:
        modules = build_modules(family, parts["spec"])
        for name, m in modules.items():
            m.load_state_dict(parts["state_dict"][name])
            m.eval()
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise DlprepError(f"{path}: the {family} checkpoint's weights do not fit its spec "
                          f"({type(exc).__name__}: {_first_line(exc)})") from exc
    main = modules.get("model", modules.get("generator"))
    return Checkpoint(family=family, model=main, modules=modules, spec=parts["spec"],
                      config=parts["config"], info=parts["info"])


def _first_line(exc: BaseException, limit: int = 200) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:limit] if lines else ""
