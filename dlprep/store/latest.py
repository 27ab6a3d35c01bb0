"""The ``latest`` pointer of a prepared dataset's folder: the file name of its newest
preparation (docs/FORMAT.md). A pointer must name a file in its own folder; anything else
(a path, ``..``, a link out of the folder) is refused."""

from __future__ import annotations

from pathlib import Path

from ..errors import StoreError

POINTER = "latest"


def latest_target(folder: Path) -> Path | None:
    """The prepared file ``folder/latest`` names, or None when there is no pointer or its file
    is gone. Raises ``StoreError`` when the pointer names anything outside ``folder``."""
    pointer = Path(folder) / POINTER
    try:
        name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    target = pointer.parent / name
    inside = (name not in ("", ".", "..") and "/" not in name and "\\" not in name
              and "\0" not in name)
    if inside and target.exists():
        inside = target.resolve().parent == pointer.parent.resolve()
    if not inside:
        raise StoreError(f"{pointer}: names {name!r}, which is not a file in {pointer.parent}; "
                         f"refusing it (delete the pointer or run dlprep fetch NAME --force)")
    return target if target.is_file() else None
