"""Progress bars for long work (downloads, preparation, training): tqdm on an interactive terminal,
nothing in CI, pipes or --quiet."""

from __future__ import annotations

import os
import sys
from typing import Any


class NullBar:
    """A progress bar that shows nothing (same methods as the tqdm ones we use)."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> NullBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_enabled(progress: bool | None) -> bool:
    """``progress`` True/False forces it; None means: only when stderr is a TTY and CI is unset."""
    if progress is not None:
        return progress
    if os.environ.get("CI"):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def progress_bar(enabled: bool, *, desc: str, total: int | None, unit: str = "B",
                 initial: int = 0) -> Any:
    """A tqdm bar on stderr when ``enabled`` (bytes are shown scaled), else a ``NullBar``."""
    if not enabled:
        return NullBar()
    from tqdm import tqdm

    scaled = unit == "B"
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, unit_scale=scaled,
                unit_divisor=1024 if scaled else 1000, leave=False, file=sys.stderr,
                dynamic_ncols=True, miniters=1)
