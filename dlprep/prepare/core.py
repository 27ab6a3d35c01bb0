"""Orchestrate recipe -> fetch -> parse/normalize -> HDF5, idempotently and atomically.

Each recipe names a *builder*: ``parser = "idx"`` (a file-based format) or
``connector = "gutenberg"`` (a parameterized source). A builder module exports ``PARAMS`` (its
options), optionally ``collect(ctx) -> list[Path]`` (connectors: fetch what the options select),
and ``build(ctx, out_path)`` (write the HDF5 file with the store writers). What ``collect``
returns (a small dataclass of the builder's own, e.g. the listed samples) is kept in
``ctx.collected`` for ``build``; read it back with ``ctx.collected_as(TheClass)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from ..cache import Cache, safe_component
from ..errors import DlprepError, FetchError, FormatError
from ..fetch.download import FileSpec, fetch_file, fetch_many, hash_file
from ..fetch.options import FetchOptions
from ..fetch.verify import has_checksum
from ..locks import PathLock
from ..recipes import Recipe
from ..redact import redact_url
from ..store import FORMAT_VERSION, atomic_output
from ..store.latest import latest_target
from .params import resolve_options

log = logging.getLogger("dlprep")
T = TypeVar("T")
#: a value in ``PrepareContext.inputs`` (stored as JSON in the ``config`` attribute)
ConfigInput = str | int | list[int]

# builder id -> module. Add a line here when adding a format or a source.
BUILDERS: dict[str, str] = {
    "idx": "dlprep.prepare.idx",
    "cifar10-bin": "dlprep.prepare.cifar",
    "cifar100-bin": "dlprep.prepare.cifar",
    "image-folder": "dlprep.prepare.images",
    "quickdraw": "dlprep.prepare.quickdraw",
    "oxford-pets": "dlprep.prepare.pets",
    "text-files": "dlprep.prepare.text_files",
    "csv-text": "dlprep.prepare.text_csv",
    "gutenberg": "dlprep.prepare.gutenberg",
    "osm": "dlprep.prepare.osm",
    "hf": "dlprep.prepare.hf",
    "warc": "dlprep.prepare.web",
    "commoncrawl": "dlprep.prepare.web_commoncrawl",
    "wikipedia": "dlprep.prepare.wikipedia",
    "wikidata-images": "dlprep.prepare.wikidata_images",
    "x-posts": "dlprep.prepare.x_posts",
    "internet-archive": "dlprep.prepare.internet_archive",
    "flickr": "dlprep.prepare.flickr",
    "stackexchange": "dlprep.prepare.stackexchange",
}


def builder_module(recipe: Recipe) -> ModuleType:
    """The builder of ``recipe``, after its optional ``check_recipe(recipe)`` passed."""
    key = recipe.parser or recipe.connector or ""
    target = BUILDERS.get(key)
    if target is None:
        what = "parser" if recipe.parser else "connector"
        raise DlprepError(f"{recipe.path}: {what}: unknown {what} {key!r}; known: "
                          f"{', '.join(sorted(BUILDERS))}")
    module = importlib.import_module(target)
    if hasattr(module, "check_recipe"):  # the builder's own recipe checks (e.g. its [splits])
        module.check_recipe(recipe)
    return module


@dataclass
class PrepareContext:
    """What a builder sees: the recipe, resolved options, the cache and how to fetch.

    ``options``: the resolved builder options (part of the config hash). ``workers`` and
    ``scheduler`` (a Dask scheduler address, for sharded builders): runtime options (how, not
    what: not in the hash). ``inputs``: further config-hash inputs a
    builder computes in ``collect`` (e.g. a listing digest, the chosen book ids). ``collected``:
    whatever ``collect`` returned, for ``build``. ``build_version``: the builder module's
    ``BUILD_VERSION`` (a string bumped when the same inputs start giving other bytes), part of
    the config hash only when the builder defines it, so other hashes stay as they were.
    """

    recipe: Recipe
    options: dict[str, Any]
    cache: Cache
    name: str
    fetch_options: FetchOptions = field(default_factory=FetchOptions)
    workers: int = 1
    scheduler: str | None = None
    files: dict[str, Path] = field(default_factory=dict)
    sources: list[dict[str, Any]] = field(default_factory=list)
    inputs: dict[str, ConfigInput] = field(default_factory=dict)
    collected: object | None = None
    raw_files: dict[Path, bool] = field(default_factory=dict)  # path -> checksum published?
    build_version: str | None = None

    @property
    def raw_dir(self) -> Path:
        return self.cache.raw_dir(self.recipe.name)

    @property
    def offline(self) -> bool:
        return self.fetch_options.offline

    @property
    def force_download(self) -> bool:
        return self.fetch_options.force

    @property
    def progress(self) -> bool | None:
        return self.fetch_options.progress

    def collected_as(self, kind: type[T]) -> T:
        """``collected`` checked to be a ``kind`` (what this builder's ``collect`` returned)."""
        if not isinstance(self.collected, kind):
            raise TypeError(f"{self.recipe.name}: build() expected collect() to return "
                            f"{kind.__name__}, got {type(self.collected).__name__}")
        return self.collected

    def fetch(self, spec: FileSpec, subdir: str | None = None) -> Path:
        """Fetch one file into ``raw/<recipe>[/subdir]`` and record it as a source."""
        dest = self.raw_dir / subdir if subdir else self.raw_dir
        path = fetch_file(spec, dest, self.fetch_options)
        self._record(spec, path, subdir)
        return path

    def fetch_all(self, specs: Sequence[FileSpec], subdir: str | None = None) -> list[Path]:
        """Fetch several files concurrently (``fetch_many``) and record them, in order.
        Offline there is nothing to overlap, and the first missing file is the clearest error."""
        if self.offline or len(specs) < 2:
            return [self.fetch(spec, subdir) for spec in specs]
        dest = self.raw_dir / subdir if subdir else self.raw_dir
        paths = fetch_many(specs, dest, self.fetch_options)
        for spec, path in zip(specs, paths, strict=True):
            self._record(spec, path, subdir)
        return paths

    def _record(self, spec: FileSpec, path: Path, subdir: str | None) -> None:
        self.add_source(spec.name if not subdir else f"{subdir}/{spec.name}",
                        spec.urls[0] if spec.urls else "", path,
                        sha256=self._source_sha256(spec, path), checksum=has_checksum(spec))

    def add_source(self, name: str, url: str, path: Path, *, sha256: str | None = None,
                   checksum: bool = False) -> None:
        """Record a raw file as a source of the prepared file. ``checksum``: whether a
        published checksum vouched for it; a file without one that fails to parse is dropped
        from the cache so that the next run downloads it again."""
        self.sources.append({"name": name, "url": redact_url(url),
                             "sha256": sha256 or file_sha256(path)})
        self.raw_files[path] = checksum

    @staticmethod
    def _source_sha256(spec: FileSpec, path: Path) -> str:
        """The file's real sha256: the published one unless a content hash may have let a
        re-compressed copy through, in which case it is computed (and memoised)."""
        if spec.sha256 and not (spec.content_sha256 or spec.content_md5):
            return spec.sha256
        return file_sha256(path)

    def finish_kwargs(self) -> dict[str, Any]:
        """Provenance keyword arguments for the store writers' ``finish``."""
        # a recipe is a TOML file; imports build their Recipe from the input: no recipe version
        has_recipe = self.recipe.path.suffix == ".toml"
        return {"recipe": self.name, "recipe_version": self.recipe.version if has_recipe else "",
                "sources": self.sources, "license": self.recipe.license,
                "citation": self.recipe.citation, "config": self.config()}

    def config(self) -> dict[str, Any]:
        config = {"format": FORMAT_VERSION, "recipe": self.recipe.name, "name": self.name,
                  "version": self.recipe.version,
                  "builder": self.recipe.parser or self.recipe.connector,
                  "options": self.options, "inputs": self.inputs,
                  "sources": sorted((s["name"], s["sha256"]) for s in self.sources)}
        if self.build_version is not None:
            config["build_version"] = self.build_version
        return config

    def config_hash(self) -> str:
        blob = json.dumps(self.config(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """sha256 of a cached raw file, memoised in a ``.sha256`` sidecar keyed by size and mtime."""
    st = path.stat()
    side = path.with_name(path.name + ".sha256")
    key = f"{st.st_size}:{st.st_mtime_ns}"
    try:
        stored_key, digest = side.read_text().split()
        if stored_key == key:
            return digest
    except (OSError, ValueError):
        pass
    digest = hash_file(path, "sha256")
    try:
        side.write_text(f"{key} {digest}\n")
    except OSError:
        pass
    return digest


def latest_pointer(cache: Cache, name: str) -> Path:
    return cache.prepared_dir(name) / "latest"


def find_prepared(cache: Cache, name: str) -> Path | None:
    """The most recently prepared file for ``name`` (a recipe or a ``--name``), if present."""
    return latest_target(cache.prepared_dir(name))


def _write_latest(cache: Cache, name: str, out: Path) -> None:
    pointer = latest_pointer(cache, name)
    try:
        if pointer.read_text().strip() == out.name:
            return  # nothing to write (and a read-only cache stays untouched)
    except OSError:
        pass
    tmp = pointer.with_name(".latest.tmp")
    tmp.write_text(out.name + "\n")
    tmp.replace(pointer)


def _context(recipe: Recipe, cache: Cache, module: ModuleType, options: Mapping[str, Any],
             name: str | None, fetch: FetchOptions, scheduler: str | None) -> PrepareContext:
    where = f"dataset {recipe.name}"
    resolved = resolve_options(getattr(module, "PARAMS", ()), recipe.options, options, where)
    runtime = {k: resolved.pop(k) for k in getattr(module, "RUNTIME_OPTIONS", ()) if k in resolved}
    unknown = sorted(set(runtime) - {"workers"})
    if unknown:
        raise DlprepError(f"{where}: unknown runtime option(s) {', '.join(unknown)}")
    if scheduler and not hasattr(module, "plan_shards"):
        raise DlprepError(f"{where}: --scheduler: this dataset is prepared in one process "
                          f"(its builder does not shard)")
    if fetch.lock_dir is None:
        fetch = fetch.with_(lock_dir=cache.locks_dir)
    return PrepareContext(recipe=recipe, options=resolved, cache=cache,
                          name=safe_component(name or recipe.name, "dataset name"),
                          fetch_options=fetch, workers=int(runtime.get("workers", 1)),
                          scheduler=scheduler or None,
                          build_version=getattr(module, "BUILD_VERSION", None))


@contextlib.contextmanager
def _raw_files_checked(ctx: PrepareContext) -> Iterator[None]:
    """When a builder fails: say so if a raw file vanished meanwhile, and drop raw files that
    no published checksum vouches for and that did not parse (the next run fetches them
    again instead of trusting them)."""
    try:
        yield
    except (DlprepError, OSError) as exc:
        gone = [p for p in ctx.raw_files if not p.exists()]
        if gone:
            raise FetchError(f"{gone[0]}: the raw file was deleted while {ctx.name} was being "
                             f"prepared (by another process, e.g. `dlprep cache clear`?); "
                             f"rerun to download it again") from exc
        if isinstance(exc, FormatError):
            _distrust(ctx, exc)
        raise


def _distrust(ctx: PrepareContext, exc: FormatError) -> None:
    unverified = [p for p, checksum in ctx.raw_files.items() if not checksum]
    culprits = [p for p in ctx.raw_files if exc.file.startswith(str(p))]
    if culprits:  # the error names the file: drop it only if nothing vouched for it
        unverified = [p for p in unverified if p in culprits]
    for path in unverified:
        path.unlink(missing_ok=True)
        path.with_name(path.name + ".sha256").unlink(missing_ok=True)
        log.warning("%s has no published checksum and did not parse; removed it from the "
                    "cache, so the next run downloads it again", path)


def prepare(recipe: Recipe, cache: Cache, *, options: Mapping[str, Any] | None = None,
            name: str | None = None, fetch: FetchOptions | None = None,
            scheduler: str | None = None) -> Path:
    """Fetch, verify and prepare ``recipe``; return the prepared HDF5 path (idempotent).

    ``fetch``: how to download (mirrors, offline, ...); ``fetch.force`` re-downloads the files
    and rebuilds the HDF5 file. ``name`` stores the result under another dataset name (for
    parameterized sources such as ``gutenberg --name nietzsche``). A file that is already
    prepared is returned without taking any lock, so a read-only cache can be read.
    ``scheduler``: a Dask scheduler address for a sharded builder (``dlprep.scale``; None:
    ``$DLPREP_SCHEDULER`` if set, else ``--workers`` decides).
    """
    fetch = fetch or FetchOptions()
    module = builder_module(recipe)
    ctx = _context(recipe, cache, module, options or {}, name, fetch, scheduler)
    with _raw_files_checked(ctx):
        if hasattr(module, "collect"):
            ctx.collected = module.collect(ctx)
        else:
            paths = ctx.fetch_all(recipe.files)
            ctx.files.update({spec.name: path for spec, path in zip(recipe.files, paths,
                                                                    strict=True)})
    out_dir = cache.prepared_dir(ctx.name)
    out = out_dir / f"{ctx.config_hash()}.h5"
    if out.is_file() and not fetch.force:  # complete (atomic rename): no lock needed to read
        log.info("already prepared: %s", out)
        try:
            _write_latest(cache, ctx.name, out)
        except OSError as exc:  # a read-only cache: the file is there, the pointer stays
            log.info("could not update %s: %s", latest_pointer(cache, ctx.name), exc)
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    cache.locks_dir.mkdir(parents=True, exist_ok=True)
    with PathLock(cache.locks_dir / f"prepare.{ctx.name}.{out.stem}.lock"):
        if out.is_file() and not fetch.force:  # another process built it while we waited
            log.info("already prepared: %s", out)
        else:
            log.info("preparing %s -> %s", ctx.name, out)
            with _raw_files_checked(ctx), atomic_output(out) as tmp:
                if hasattr(module, "plan_shards"):  # a sharded builder (dlprep.scale)
                    from ..scale import build_sharded

                    build_sharded(module, ctx, tmp)
                else:
                    module.build(ctx, tmp)
        _write_latest(cache, ctx.name, out)
    return out


def prepared_or_prepare(name_or_path: str, cache: Cache, *,
                        fetch: FetchOptions | None = None) -> Path:
    """Resolve a path or a dataset name to a prepared file, preparing with defaults if needed."""
    from ..recipes import find_recipe

    p = Path(name_or_path)
    if p.suffix in {".h5", ".hdf5"} or p.is_file():
        return p
    found = find_prepared(cache, name_or_path)
    if found is not None:
        return found
    return prepare(find_recipe(name_or_path), cache, fetch=fetch)
