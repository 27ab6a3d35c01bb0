"""Fetch stage: mirrors, resume, retries, verification, locks, offline mode, safe extraction."""

from .download import FileSpec, fetch_file

__all__ = ["FileSpec", "fetch_file"]
