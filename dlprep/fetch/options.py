"""How to fetch: one frozen value built once at the edge (the CLI, ``dlprep.load``) and read
everywhere else (``fetch_file``, ``fetch_many``, ``prepare``, the builders and connectors).

``FetchOptions.from_env`` is the only place that reads the environment variables
``DLPREP_OFFLINE`` (1/true/yes/on: never open a socket) and ``DLPREP_MAX_BYTES`` (the cap for a
download whose size nobody declared, e.g. ``4G``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import DlprepError
from .http import RetryPolicy

__all__ = ["DEFAULT_MAX_BYTES", "FetchOptions", "parse_size"]

#: Cap for a body with no declared size (neither in the recipe nor a Content-Length): 4 GiB.
DEFAULT_MAX_BYTES = 4 * 2**30
_TRUE = {"1", "true", "yes", "on"}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str, what: str = "size") -> int:
    """``"500M"``, ``"4G"``, ``"4GiB"`` or ``"1048576"`` -> bytes (binary multiples)."""
    m = _SIZE.match(str(text))
    if not m:
        raise DlprepError(f"{what}: {text!r} is not a size (e.g. 500M, 4G, 1048576)")
    value = float(m.group(1)) * 1024 ** " kmgt".index(m.group(2).lower() or " ")
    if value < 1:
        raise DlprepError(f"{what}: {text!r} must be at least 1 byte")
    return int(value)


@dataclass(frozen=True)
class FetchOptions:
    """Fetch settings, shared unchanged by every download of one run.

    ``mirrors``: base URLs or folders tried first, each as ``BASE/<file name>``.
    ``offline``: only the cache and local mirrors, never a socket. ``force``: download again
    (and ``prepare`` rebuilds). ``lock_dir``: where per-file lock files go (None: next to the
    file). ``retry``: retries/timeouts per mirror (None: ``RetryPolicy()``). ``progress``:
    True/False, or None for a bar only on a TTY outside CI. ``max_workers``: threads for
    ``fetch_many`` (None: automatic). ``max_bytes``: cap for a body whose size is declared
    neither by the recipe nor by the server (None: ``DEFAULT_MAX_BYTES``); a declared size is
    always the exact limit.
    """

    mirrors: tuple[str, ...] = ()
    offline: bool = False
    force: bool = False
    lock_dir: Path | None = None
    retry: RetryPolicy | None = None
    progress: bool | None = None
    max_workers: int | None = None
    max_bytes: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.mirrors, tuple):  # a list or a single string by mistake
            mirrors = (self.mirrors,) if isinstance(self.mirrors, str) else tuple(self.mirrors)
            object.__setattr__(self, "mirrors", mirrors)
        if self.max_bytes is not None and self.max_bytes < 1:
            raise DlprepError(f"max download size must be at least 1 byte, got {self.max_bytes}")

    @classmethod
    def from_env(cls, **overrides: Any) -> FetchOptions:
        """Options from the environment, then ``overrides`` (the CLI's or the caller's).

        ``offline=True`` or ``DLPREP_OFFLINE=1`` makes it offline (either is enough);
        ``max_bytes`` overrides ``DLPREP_MAX_BYTES``. Other keywords are the fields.
        """
        env_offline = os.environ.get("DLPREP_OFFLINE", "").strip().lower() in _TRUE
        overrides["offline"] = bool(overrides.get("offline")) or env_offline
        if overrides.get("max_bytes") is None:
            env_cap = os.environ.get("DLPREP_MAX_BYTES", "").strip()
            overrides["max_bytes"] = parse_size(env_cap, "DLPREP_MAX_BYTES") if env_cap else None
        return cls(**overrides)

    @property
    def byte_cap(self) -> int:
        """The cap for an undeclared size: ``max_bytes`` or ``DEFAULT_MAX_BYTES``."""
        return self.max_bytes or DEFAULT_MAX_BYTES

    @property
    def retry_policy(self) -> RetryPolicy:
        return self.retry or RetryPolicy()

    def with_(self, **changes: Any) -> FetchOptions:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return replace(self, **changes)
