"""Fill ``sha256``/``size`` into a recipe file from verified downloads.

The file is edited with ``tomlkit``, which keeps comments, key order and layout; ``[[files]]``
tables and inline ``files = [{...}]`` tables are both handled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import tomlkit

from .cache import Cache
from .errors import FetchError, RecipeError
from .fetch.download import fetch_file, hash_file
from .fetch.options import FetchOptions
from .recipes import Recipe, load_recipe_file


@dataclass(frozen=True)
class ChecksumResult:
    """What ``recipes checksum`` did with one file: ``updated`` (values written),
    ``unchanged`` (the recipe already states them) or ``skipped`` (``reason`` says why)."""

    name: str
    status: str
    sha256: str = ""
    size: int = 0
    reason: str = ""


def fill_checksums(recipe: Recipe, cache: Cache,
                   fetch: FetchOptions | None = None) -> list[ChecksumResult]:
    """Fetch each file (verified against what the recipe already states) and write its sha256
    and size into the recipe file; a file that cannot be fetched is skipped, not guessed."""
    fetch = (fetch or FetchOptions()).with_(lock_dir=(fetch and fetch.lock_dir) or cache.locks_dir)
    path = Path(recipe.path)
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    tables = {str(t.get("name")): t for t in doc.get("files", []) if hasattr(t, "get")}
    results: list[ChecksumResult] = []
    for spec in recipe.files:
        table = tables.get(spec.name)
        if table is None:
            results.append(ChecksumResult(spec.name, "skipped", reason="no files table with "
                                                                       "this name in the file"))
            continue
        try:
            # no "recipe has no checksum" warning: recording it is what this command does
            got = fetch_file(replace(spec, checksum_optional=True), cache.raw_dir(recipe.name),
                             fetch)
        except FetchError as exc:
            results.append(ChecksumResult(spec.name, "skipped", reason=str(exc)))
            continue
        sha, size = hash_file(got, "sha256"), got.stat().st_size
        if table.get("sha256") == sha and table.get("size") == size:
            results.append(ChecksumResult(spec.name, "unchanged", sha, size))
            continue
        table["sha256"] = sha
        table["size"] = size
        results.append(ChecksumResult(spec.name, "updated", sha, size))
    if any(r.status == "updated" for r in results):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(tomlkit.dumps(doc), encoding="utf-8")
        try:
            load_recipe_file(tmp)  # the edited file must still validate
        except RecipeError:
            tmp.unlink()
            raise
        tmp.replace(path)
    return results
