"""Fill ``sha256``/``size`` into a recipe file from verified downloads (text edit, keeps comments)."""

from __future__ import annotations

import re
from pathlib import Path

from .cache import Cache
from .fetch.download import fetch_file, hash_file
from .fetch.options import FetchOptions
from .recipes import Recipe, load_recipe_file


def _set_key(block: list[str], key: str, value: str) -> list[str]:
    pattern = re.compile(rf"^\s*{key}\s*=")
    for i, line in enumerate(block):
        if pattern.match(line):
            block[i] = f"{key} = {value}\n"
            return block
    insert_at = len(block)
    while insert_at > 0 and not block[insert_at - 1].strip():
        insert_at -= 1
    block.insert(insert_at, f"{key} = {value}\n")
    return block


def fill_checksums(recipe: Recipe, cache: Cache,
                   fetch: FetchOptions | None = None) -> dict[str, tuple[str, int]]:
    """Fetch each file (verified against what the recipe already states), then write its
    sha256 and size into the recipe file. Returns ``{file: (sha256, size)}``."""
    fetch = (fetch or FetchOptions()).with_(lock_dir=(fetch and fetch.lock_dir) or cache.locks_dir)
    values: dict[str, tuple[str, int]] = {}
    for spec in recipe.files:
        path = fetch_file(spec, cache.raw_dir(recipe.name), fetch)
        values[spec.name] = (hash_file(path, "sha256"), path.stat().st_size)
    lines = Path(recipe.path).read_text(encoding="utf-8").splitlines(keepends=True)
    out: list[str] = []
    block: list[str] | None = None
    block_name: str | None = None

    def flush() -> None:
        nonlocal block, block_name
        if block is not None:
            if block_name in values:
                sha, size = values[block_name]
                block = _set_key(block, "sha256", f'"{sha}"')
                block = _set_key(block, "size", str(size))
            out.extend(block)
        block, block_name = None, None

    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            flush()
            if stripped == "[[files]]":
                block = [line]
                continue
        if block is not None:
            block.append(line)
            m = re.match(r'^\s*name\s*=\s*"([^"]+)"', line)
            if m:
                block_name = m.group(1)
        else:
            out.append(line)
    flush()
    tmp = Path(recipe.path).with_suffix(".toml.tmp")
    tmp.write_text("".join(out), encoding="utf-8")
    load_recipe_file(tmp)  # the edited file must still validate
    tmp.replace(recipe.path)
    return values
