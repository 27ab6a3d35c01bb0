"""Fetch stage: mirrors, resume, retries, verification, locks, offline mode, safe extraction."""

from .download import FileSpec, fetch_file, fetch_many
from .http import RetryPolicy
from .options import FetchOptions

__all__ = ["FetchOptions", "FileSpec", "RetryPolicy", "fetch_file", "fetch_many"]
