"""dlprep cache ls | du | verify | rm | prune."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from ..errors import DlprepError
from .common import State, common_options


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n} B"


@click.group("cache")
def cache_group() -> None:
    """Inspect and clean the cache (raw downloads, prepared HDF5 files, API responses)."""


@cache_group.command("ls")
@common_options
def cache_ls(state: State) -> None:
    """List cached datasets: raw files and prepared HDF5 files with sizes."""
    cache = state.cache()
    click.echo(f"cache root: {cache.root}")
    names = set()
    for area in ("raw", "prepared", "api"):
        folder = cache.root / area
        if folder.is_dir():
            names.update((area, p.name) for p in folder.iterdir() if p.is_dir())
    if not names:
        click.echo("(empty)")
    for area, name in sorted(names, key=lambda t: (t[1], t[0])):
        folder = cache.root / area / name
        files = [p for p in sorted(folder.rglob("*")) if p.is_file()
                 and not p.name.endswith((".sha256", ".lock")) and p.name != "latest"]
        click.echo(f"{name} [{area}] {_human(_size(folder))}")
        for p in files:
            click.echo(f"  {p.relative_to(folder)}  {_human(p.stat().st_size)}")


@cache_group.command("du")
@common_options
def cache_du(state: State) -> None:
    """Disk usage per cache area and in total."""
    cache = state.cache()
    total = 0
    for area in ("raw", "prepared", "api", "runs", "locks"):
        folder = cache.root / area
        size = _size(folder) if folder.exists() else 0
        total += size
        click.echo(f"{area:<9} {_human(size)}")
    click.echo(f"{'total':<9} {_human(total)}  ({cache.root})")


@cache_group.command("verify")
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True,
              help="Check metadata only: sizes of raw files, and the structure, label and split "
                   "ranges of prepared files, without reading their data.")
@common_options
def cache_verify(state: State, names: tuple[str, ...], quick: bool) -> None:
    """Re-check cached raw files against their recipes' sizes/hashes, and every prepared file
    against the checksum stored with each of its datasets (default: all cached datasets).
    Exit 1 if anything is wrong."""
    from ..fetch.download import verify_file
    from ..recipes import find_recipe
    from ..store.reader import verify_prepared

    cache = state.cache()
    raw_root, prep_root = cache.root / "raw", cache.root / "prepared"
    if not names:
        found = {p.name for root in (raw_root, prep_root) if root.is_dir() for p in root.iterdir()}
        names = tuple(sorted(found))
    bad = 0
    for name in names:
        try:
            recipe = find_recipe(name)
        except DlprepError:
            recipe = None
        if recipe is not None:
            for spec in recipe.files:
                path = cache.raw_dir(name) / spec.name
                if not path.is_file():
                    continue
                if quick:
                    size = path.stat().st_size
                    if spec.size is not None and size != spec.size:
                        bad += 1
                        click.echo(f"BAD  {path}: {size:,} bytes, the recipe says {spec.size:,}")
                    else:
                        click.echo(f"ok   {path} (size only)")
                    continue
                try:
                    verify_file(path, spec, str(path))
                    click.echo(f"ok   {path}")
                except DlprepError as exc:
                    bad += 1
                    click.echo(f"BAD  {exc}")
        folder = prep_root / name
        if folder.is_dir():
            for h5 in sorted(folder.glob("*.h5")):
                if h5.name.startswith(".tmp-"):
                    continue
                problems, checked = verify_prepared(h5, quick=quick)
                bad += bool(problems)
                for line in problems:
                    click.echo(f"BAD  {line}")
                if not problems:
                    note = "" if checked else (" (structure only: written before dataset "
                                               "checksums; `dlprep fetch NAME --force` adds them)")
                    click.echo(f"ok   {h5}{note}")
    if bad:
        raise DlprepError(f"{bad} cached file(s) failed verification; `dlprep fetch NAME --force` "
                          f"re-downloads and re-prepares them")


@cache_group.command("rm")
@click.argument("name")
@click.option("--raw/--no-raw", default=True, help="Remove raw downloads.")
@click.option("--prepared/--no-prepared", default=True, help="Remove prepared files.")
@common_options
def cache_rm(state: State, name: str, raw: bool, prepared: bool) -> None:
    """Remove a dataset's cached files."""
    cache = state.cache()
    removed = 0
    targets = ([cache.raw_dir(name)] if raw else []) + ([cache.prepared_dir(name)] if prepared
                                                        else [])
    for folder in targets:
        if folder.exists():
            removed += _size(folder)
            shutil.rmtree(folder)
            click.echo(f"removed {folder}")
    if not removed and not any(t.exists() for t in targets):
        click.echo(f"nothing cached for {name}")
    else:
        click.echo(f"freed {_human(removed)}")


@cache_group.command("prune")
@click.option("--older-than", default=1.0, show_default=True,
              help="Only remove leftovers (partial downloads, temp files) older than this many "
                   "hours; superseded prepared files are always removed.")
@common_options
def cache_prune(state: State, older_than: float) -> None:
    """Remove leftovers: stale partial downloads and temp files from interrupted runs, the
    shard parts of interrupted sharded preparations, empty raw folders left by failed
    fetches, and prepared files superseded by a newer preparation of the same dataset."""
    from ..store.latest import latest_target

    cache = state.cache()
    cutoff = time.time() - older_than * 3600
    freed = 0
    for p in list(cache.root.rglob("*")):
        if not p.is_file():
            continue
        stale = (p.name.endswith((".part", ".part.json")) or p.name.startswith(".tmp-")) and \
            p.stat().st_mtime < cutoff
        if stale:
            freed += p.stat().st_size
            p.unlink()
            click.echo(f"removed {p}")
    prep_root = cache.root / "prepared"
    freed += _prune_parts(cache, prep_root, cutoff)
    if prep_root.is_dir():
        for folder in prep_root.iterdir():
            try:
                latest = latest_target(folder)
            except DlprepError as exc:
                click.echo(f"kept {folder}: {exc}")
                continue
            if latest is None:
                continue
            keep = latest.name
            for h5 in folder.glob("*.h5"):
                if h5.name != keep and not h5.name.startswith(".tmp-"):
                    freed += h5.stat().st_size
                    h5.unlink()
                    click.echo(f"removed {h5} (superseded by {keep})")
    raw_root = cache.root / "raw"
    if raw_root.is_dir():  # deepest first, so a folder holding only empty folders goes too
        for folder in sorted((d for d in raw_root.rglob("*") if d.is_dir()),
                             key=lambda d: len(d.parts), reverse=True):
            if not any(folder.iterdir()):
                folder.rmdir()
                click.echo(f"removed {folder} (empty)")
    click.echo(f"freed {_human(freed)}")


def _prune_parts(cache, prep_root: Path, cutoff: float) -> int:  # type: ignore[no-untyped-def]
    """Remove the parts folders (``prepared/<name>/.<hash>.parts``) of interrupted sharded
    runs: untouched since ``cutoff`` and not locked by a run in progress. Returns bytes."""
    from ..locks import PathLock
    from ..scale.build import PARTS_SUFFIX

    freed = 0
    for parts in sorted(prep_root.glob(f"*/.*{PARTS_SUFFIX}")) if prep_root.is_dir() else []:
        files = [p for p in parts.rglob("*") if p.is_file()]
        if not parts.is_dir() or max((p.stat().st_mtime for p in files),
                                     default=parts.stat().st_mtime) >= cutoff:
            continue
        stem = parts.name[1:-len(PARTS_SUFFIX)]
        lock = PathLock(cache.locks_dir / f"prepare.{parts.parent.name}.{stem}.lock")
        if cache.locks_dir.is_dir() and not lock.acquire(timeout=0):
            click.echo(f"kept {parts}: a run of that dataset is in progress")
            continue
        try:
            size = sum(p.stat().st_size for p in files)
            shutil.rmtree(parts)
            freed += size
            click.echo(f"removed {parts} (parts of an interrupted run)")
        finally:
            lock.release()
    return freed


COMMANDS = [cache_group]
