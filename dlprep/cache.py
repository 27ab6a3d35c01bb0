"""Cache root resolution and layout.

Root, one rule wherever dlprep runs: ``--cache-dir`` > ``$DLPREP_CACHE`` > the user cache dir
(``$XDG_CACHE_HOME/dlprep`` or ``~/.cache/dlprep``). The working directory never matters, so a
dataset prepared in one folder is found from any other (``dlprep info`` shows the root).

Layout under the root::

    raw/<recipe>/<file>            verified downloads (never modified after the atomic rename)
    prepared/<recipe>/<hash>.h5    prepared HDF5 files (name depends only on local inputs)
    api/<source>/<query-hash>/     API responses, replayable offline
    locks/                         file locks
    runs/                          baseline training runs
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MARKER = ".dlprep-cache"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def resolve_cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Return the cache root following the documented precedence (the folder may not exist yet)."""
    if cache_dir:
        return Path(cache_dir).expanduser().resolve()
    env = os.environ.get("DLPREP_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return (base / "dlprep").resolve()


def safe_component(name: str, what: str = "name") -> str:
    """Check that ``name`` is usable as one path component (no separators, no '..')."""
    if not _SAFE.match(name) or name in {".", ".."}:
        from .errors import DlprepError

        raise DlprepError(f"invalid {what} {name!r}: use letters, digits, '.', '_', '+', '-'")
    return name


@dataclass(frozen=True)
class Cache:
    """The folders of one cache root."""

    root: Path

    @classmethod
    def open(cls, cache_dir: str | os.PathLike[str] | None = None) -> Cache:
        root = resolve_cache_root(cache_dir)
        root.mkdir(parents=True, exist_ok=True)
        marker = root / MARKER
        if not marker.exists():
            marker.write_text("dlprep-cache 1\n")
        return cls(root)

    def raw_dir(self, recipe: str) -> Path:
        return self.root / "raw" / safe_component(recipe, "recipe name")

    def prepared_dir(self, recipe: str) -> Path:
        return self.root / "prepared" / safe_component(recipe, "recipe name")

    def api_dir(self, source: str) -> Path:
        return self.root / "api" / safe_component(source, "source name")

    @property
    def locks_dir(self) -> Path:
        return self.root / "locks"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"
