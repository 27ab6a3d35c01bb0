"""Fetch stage: mirrors, resume, retries, verification, locks, offline mode, safe extraction."""

from .download import FileSpec, fetch_file, fetch_many
from .http import RetryPolicy

__all__ = ["FileSpec", "RetryPolicy", "fetch_file", "fetch_many"]
