"""Exceptions. Every dlprep error is a ``DlprepError`` whose message is one line that names the
file, URL or field at fault; the CLI prints it and exits non-zero (no traceback)."""

from __future__ import annotations

from typing import Any


class DlprepError(Exception):
    """Base class: a user-facing, one-line error."""

    exit_code = 1


class RecipeError(DlprepError):
    """A recipe file is missing, unreadable, or has a bad key/value."""


class FetchError(DlprepError):
    """A download failed on every mirror."""


class ChecksumError(FetchError):
    """Downloaded bytes do not match the recipe's size or hash."""


class OfflineError(FetchError):
    """Offline mode is on and a needed file is not in the cache."""


class NoNetworkError(FetchError):
    """A host name did not resolve (no network, or no DNS): said once, however many files."""

    def __init__(self, hosts: list[str], detail: str = "") -> None:
        self.hosts = list(dict.fromkeys(hosts))
        self.detail = detail
        shown = ", ".join(self.hosts[:3]) + (f" and {len(self.hosts) - 3} more"
                                             if len(self.hosts) > 3 else "")
        more = f" ({detail})" if detail else ""
        super().__init__(f"no network (DNS lookup failed for {shown}); use --offline or "
                         f"--mirror{more}")


class ExtractionError(DlprepError):
    """An archive is unsafe (traversal, links, devices, bomb) or corrupt."""


class FormatError(DlprepError):
    """Upstream bytes do not follow their format.

    ``file`` and ``offset`` locate the problem (offset in bytes of the *decoded* stream, or -1
    when unknown); ``what`` says what was expected.
    """

    def __init__(self, file: object, offset: int, what: str) -> None:
        self.file = str(file)
        self.offset = offset
        self.what = what
        where = f"{self.file} at byte {offset}" if offset >= 0 else self.file
        super().__init__(f"{where}: {what}")

    def __reduce__(self) -> tuple[Any, ...]:
        # pickled when raised in a Dask worker: rebuilt from the three fields, not from args
        return (type(self), (self.file, self.offset, self.what), self.__dict__)


class StoreError(DlprepError):
    """A prepared HDF5 file is missing, of the wrong format version, or lacks a dataset."""


class MissingDependencyError(DlprepError):
    """An optional dependency (torch, datasets, tokenizers, ...) is not installed."""


def require(module: str, extra: str) -> object:
    """Import an optional dependency or raise a clear ``MissingDependencyError``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module} is not installed: pip install 'dlprep[{extra}]' (or pip install {module})"
        ) from exc
