"""Declarative dataset recipes (TOML), their schema validation and lookup.

Lookup order for a name: an explicit ``--recipe FILE`` > folders in ``$DLPREP_RECIPES``
(``dir1:dir2``, first wins) > the built-in recipes. Schema: ``docs/RECIPES.md``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import RecipeError
from .fetch.download import FileSpec

KINDS = ("image", "sequence")
FAMILIES = ("mlp", "cnn", "rnn", "autoencoder", "gan")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_HEX = re.compile(r"^[0-9a-f]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TOP_KEYS = {
    "name": str, "title": str, "version": str, "kind": str, "homepage": str, "license": str,
    "citation": str, "description": str, "parser": str, "connector": str, "files": list,
    "splits": dict, "classes": list, "options": dict, "baselines": list, "notes": str,
}
_FILE_KEYS = {"name": str, "urls": list, "sha256": str, "md5": str, "size": int, "note": str,
              "content_sha256": str, "content_md5": str}
_REQUIRED = ("name", "title", "version", "kind")
_LOCAL_SCHEMES = ("file://", "pkgdata:")


@dataclass
class Recipe:
    """A validated recipe. ``files`` are the upstream files with ordered mirror URLs."""

    name: str
    title: str
    version: str
    kind: str
    path: Path
    homepage: str = ""
    license: str = ""
    citation: str = ""
    description: str = ""
    parser: str | None = None
    connector: str | None = None
    files: list[FileSpec] = field(default_factory=list)
    splits: dict[str, Any] = field(default_factory=dict)
    classes: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    baselines: list[str] = field(default_factory=list)
    notes: str = ""


def _err(path: Path, key: str, what: str) -> RecipeError:
    return RecipeError(f"{path}: {key}: {what}")


def _check_type(path: Path, key: str, value: Any, typ: type) -> None:
    if typ is int and isinstance(value, bool) or not isinstance(value, typ):
        raise _err(path, key, f"expected {typ.__name__}, got {type(value).__name__} {value!r}")


def _parse_file(path: Path, index: int, raw: Any) -> FileSpec:
    key = f"files[{index}]"
    if not isinstance(raw, dict):
        raise _err(path, key, "expected a table with name, urls, sha256/md5, size")
    for k, v in raw.items():
        if k not in _FILE_KEYS:
            raise _err(path, f"{key}.{k}", f"unknown key (allowed: {', '.join(_FILE_KEYS)})")
        _check_type(path, f"{key}.{k}", v, _FILE_KEYS[k])
    name = raw.get("name")
    if not name:
        raise _err(path, f"{key}.name", "missing")
    if "/" in name or "\\" in name or name in {".", ".."} or name.startswith(".") \
            or _CONTROL.search(name):
        raise _err(path, f"{key}.name", f"{name!r} must be a plain file name (no '/', '\\', "
                                        f"leading '.' or control characters such as NUL)")
    urls = raw.get("urls")
    if not urls:
        raise _err(path, f"{key}.urls", "missing or empty (give at least one URL)")
    for i, url in enumerate(urls):
        if not isinstance(url, str):
            raise _err(path, f"{key}.urls[{i}]", f"expected a string, got {url!r}")
        if _CONTROL.search(url):
            raise _err(path, f"{key}.urls[{i}]", f"{url!r}: control characters (such as NUL) "
                                                 f"are not allowed in a URL")
        if url.startswith("http://"):
            raise _err(path, f"{key}.urls[{i}]",
                       f"{url}: remote URLs in recipes must be https (pass --mirror for others)")
        if not (url.startswith("https://") or url.startswith(_LOCAL_SCHEMES)):
            raise _err(path, f"{key}.urls[{i}]", f"{url}: unsupported URL scheme")
    for alg, length in (("sha256", 64), ("md5", 32), ("content_sha256", 64), ("content_md5", 32)):
        value = raw.get(alg)
        if value is not None and (len(value) != length or not _HEX.match(value)):
            raise _err(path, f"{key}.{alg}",
                       f"expected {length} lowercase hex digits, got {value!r}")
    size = raw.get("size")
    if size is not None and size < 0:
        raise _err(path, f"{key}.size", f"must be >= 0, got {size}")
    return FileSpec(name=name, urls=list(urls), sha256=raw.get("sha256"), md5=raw.get("md5"),
                    size=size, note=raw.get("note", ""), content_sha256=raw.get("content_sha256"),
                    content_md5=raw.get("content_md5"))


def parse_recipe(data: dict[str, Any], path: Path) -> Recipe:
    """Validate a decoded TOML table; errors name the file and the key."""
    for k, v in data.items():
        if k not in _TOP_KEYS:
            raise _err(path, k, f"unknown key (allowed: {', '.join(_TOP_KEYS)})")
        _check_type(path, k, v, _TOP_KEYS[k])
    for k in _REQUIRED:
        if not data.get(k):
            raise _err(path, k, "missing (required keys: " + ", ".join(_REQUIRED) + ")")
    if not _NAME.match(data["name"]):
        raise _err(path, "name", f"{data['name']!r}: use lowercase letters, digits, '.', '_', '-'")
    if data["kind"] not in KINDS:
        raise _err(path, "kind", f"{data['kind']!r}: must be one of {', '.join(KINDS)}")
    if bool(data.get("parser")) == bool(data.get("connector")):
        raise _err(path, "parser", "give exactly one of 'parser' (files) or 'connector' (a source)")
    if data.get("parser") and not data.get("files"):
        raise _err(path, "files", "a recipe with a parser needs at least one file")
    files = [_parse_file(path, i, f) for i, f in enumerate(data.get("files", []))]
    names = [f.name for f in files]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise _err(path, "files", f"duplicate file names: {', '.join(sorted(dupes))}")
    for i, fam in enumerate(data.get("baselines", [])):
        if fam not in FAMILIES:
            raise _err(path, f"baselines[{i}]", f"{fam!r}: must be one of {', '.join(FAMILIES)}")
    classes = data.get("classes")
    if classes is not None:
        for i, c in enumerate(classes):
            if not isinstance(c, str):
                raise _err(path, f"classes[{i}]", f"expected a string, got {c!r}")
            if "\x00" in c:
                raise _err(path, f"classes[{i}]", f"{c!r}: a NUL is not allowed in a class name")
    return Recipe(
        name=data["name"], title=data["title"], version=data["version"], kind=data["kind"],
        path=path, homepage=data.get("homepage", ""), license=data.get("license", ""),
        citation=data.get("citation", ""), description=data.get("description", ""),
        parser=data.get("parser"), connector=data.get("connector"), files=files,
        splits=data.get("splits", {}), classes=classes, options=data.get("options", {}),
        baselines=data.get("baselines", []), notes=data.get("notes", ""),
    )


def load_recipe_file(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate one recipe file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read recipe: {exc.strerror or exc}") from exc
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RecipeError(f"{path}: not UTF-8 text at byte {exc.start}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: invalid TOML: {exc}") from exc
    return parse_recipe(data, path)


def builtin_recipe_dir() -> Path:
    """The built-in recipes: ``recipes/`` in a checkout, ``dlprep/builtin_recipes`` when
    installed."""
    package = Path(__file__).resolve().parent
    checkout = package.parent / "recipes"
    if (package.parent / "setup.cfg").is_file() and checkout.is_dir():
        return checkout
    return package / "builtin_recipes"


def recipe_dirs() -> list[Path]:
    """Folders searched for ``<name>.toml``, highest priority first."""
    dirs = [Path(p).expanduser()
            for p in os.environ.get("DLPREP_RECIPES", "").split(os.pathsep) if p]
    dirs.append(builtin_recipe_dir())
    return dirs


def find_recipe(name: str, recipe_file: str | os.PathLike[str] | None = None) -> Recipe:
    """Resolve a recipe by name (or load ``recipe_file``); unknown names list what exists."""
    if recipe_file:
        recipe = load_recipe_file(recipe_file)
        if name and recipe.name != name:
            raise RecipeError(f"{recipe_file}: name: recipe is {recipe.name!r}, asked for {name!r}")
        return recipe
    for folder in recipe_dirs():
        candidate = folder / f"{name}.toml"
        if candidate.is_file():
            recipe = load_recipe_file(candidate)
            if recipe.name != name:
                raise RecipeError(f"{candidate}: name: {recipe.name!r} differs from the file name")
            return recipe
    known = ", ".join(sorted(all_recipes())) or "(none)"
    raise RecipeError(f"unknown dataset {name!r}; known: {known} (or pass --recipe FILE)")


def all_recipes() -> dict[str, Path]:
    """Map of recipe name -> file for every recipe visible (first folder wins)."""
    found: dict[str, Path] = {}
    for folder in recipe_dirs():
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found.setdefault(path.stem, path)
    return found
