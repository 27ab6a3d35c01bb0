"""Shards: deterministic pieces of a build, each a pure function of its spec.

A :class:`ShardSpec` carries only what a worker needs to find its input again (paths, byte or
record ranges, options as plain values): never an open file or an HDF5 handle, so it pickles
to any process or machine. Its ``id`` names its part file and its manifest record, so it must
be stable from run to run for the same inputs and options.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DlprepError

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class ShardSpec:
    """One shard: ``id`` (stable, file-name safe, unique in its plan), the input ``paths``,
    a half-open range ``[start, end)`` in the builder's own unit (bytes, blocks, records) and
    ``options``: ``(name, value)`` pairs of plain JSON values (read them with :meth:`option`).
    """

    id: str
    paths: tuple[str, ...] = ()
    start: int = 0
    end: int = 0
    options: tuple[tuple[str, Any], ...] = field(default=())

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id):
            raise DlprepError(f"shard id {self.id!r}: use letters, digits, '.', '_' or '-' "
                              f"(at most 100, not starting with a dot)")

    @classmethod
    def make(cls, id: str, paths: Sequence[object] = (), start: int = 0, end: int = 0,
             options: Mapping[str, Any] | None = None) -> ShardSpec:
        """A spec with ``paths`` as strings and ``options`` sorted by name."""
        return cls(id=id, paths=tuple(str(p) for p in paths), start=int(start), end=int(end),
                   options=tuple(sorted((options or {}).items())))

    def option(self, name: str, default: Any = None) -> Any:
        for key, value in self.options:
            if key == name:
                return value
        return default

    def digest(self) -> str:
        """sha256 of every field (what the manifest checks a finished shard against)."""
        blob = json.dumps([self.id, list(self.paths), self.start, self.end,
                           [list(kv) for kv in self.options]], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class ShardResult:
    """What a finished shard reports: ``stats`` (the plain JSON values its function returned,
    also kept in the manifest so a resumed run has them without rerunning the shard), the
    seconds it took, the size of its part file (0 without one) and whether this run reused it
    from an earlier run (``resumed``)."""

    id: str
    stats: dict[str, Any]
    seconds: float = 0.0
    size: int = 0
    resumed: bool = False


def check_plan(specs: Sequence[ShardSpec]) -> None:
    """Shard ids must be unique within a plan."""
    seen: set[str] = set()
    for spec in specs:
        if spec.id in seen:
            raise DlprepError(f"shard id {spec.id!r} appears twice in the plan")
        seen.add(spec.id)


def ranges(n: int, per_shard: int) -> list[tuple[int, int]]:
    """``[0, n)`` cut into consecutive ranges of ``per_shard`` (the last may be shorter)."""
    per_shard = max(1, int(per_shard))
    return [(i, min(n, i + per_shard)) for i in range(0, n, per_shard)]


def write_h5_part(path: Path, fill: Callable[[Any], None]) -> None:
    """Write an HDF5 part file: ``fill(f)`` builds it in memory, then its bytes are written
    with plain file I/O, so a full disk is an ``OSError(ENOSPC)`` raised right there (HDF5
    itself may only fail, or crash, when it closes a file on a full disk)."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    with open(path, "wb") as fh:
        fh.write(buf.getbuffer())
