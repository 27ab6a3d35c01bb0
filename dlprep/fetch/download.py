"""Download upstream files into the raw cache: mirrors, verification, locks, offline mode.

``fetch_file`` makes ``dest_dir/<name>`` present and verified: user mirrors first, then the
recipe's URLs (https, ``file://``, a local path or ``pkgdata:``); each is streamed into
``<name>.part`` next to the target (HTTP resumes and retries, see ``fetch.http``), its size and
hash are checked, and only then is it renamed into place. A per-target file lock makes two
processes share one download. ``fetch_many`` does the same for many files on a thread pool.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ChecksumError, DlprepError, FetchError, NoNetworkError, OfflineError
from ..locks import PathLock
from ..progress import progress_bar, progress_enabled
from ..redact import redact_url
from .http import BodyLimit, discard_partial, download_url, shared_session
from .options import FetchOptions
from .verify import CHUNK, has_checksum, hash_file, primary_algorithm, verify_file

__all__ = ["FileSpec", "fetch_file", "fetch_many", "hash_file", "verify_file", "local_source",
           "mirror_urls", "pkgdata_path"]

log = logging.getLogger("dlprep")
_DEFAULTS = FetchOptions()


@dataclass
class FileSpec:
    """One upstream file: its cache name, ordered mirror URLs and published size/hashes.

    ``content_sha256``/``content_md5``: hash of the decompressed gzip/bz2/xz content, accepted
    when a mirror re-compressed the file. ``checksum_optional``: a connector's file with no
    published checksum (no warning when it has none).
    """

    name: str
    urls: list[str] = field(default_factory=list)
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    note: str = ""
    content_sha256: str | None = None
    content_md5: str | None = None
    checksum_optional: bool = False


def pkgdata_path(url: str) -> Path:
    """Resolve ``pkgdata:<rel>`` to a file shipped inside the dlprep package (``dlprep/_data``)."""
    rel = url.removeprefix("pkgdata:")
    base = Path(__file__).resolve().parent.parent / "_data"
    target = (base / rel).resolve()
    if base not in target.parents:
        raise FetchError(f"{url}: pkgdata path leaves the package data folder")
    return target


def local_source(url: str) -> Path | None:
    """Return the local path for file://, pkgdata: or a plain path; None for remote URLs."""
    if url.startswith("pkgdata:"):
        return pkgdata_path(url)
    if url.startswith("file://"):
        return Path(unquote(urlparse(url).path))
    if "://" not in url:
        return Path(url).expanduser()
    return None


def mirror_urls(spec: FileSpec, mirrors: Sequence[str]) -> list[str]:
    """User mirrors first (each looked up as ``BASE/<file name>``), then the recipe's URLs."""
    urls = [base.rstrip("/") + "/" + spec.name for base in mirrors]
    urls.extend(spec.urls)
    return urls


def _copy_local(src: Path, part: Path, *, algorithm: str, progress: bool) -> str:
    """Copy a local file into ``part``, hashing on the way; return the hex digest."""
    if not src.is_file():
        raise FetchError(f"{src}: no such file")
    discard_partial(part)
    h = hashlib.new(algorithm)
    with open(src, "rb") as fin, open(part, "wb") as fout, \
            progress_bar(progress, desc=src.name, total=src.stat().st_size) as bar:
        while chunk := fin.read(CHUNK):
            fout.write(chunk)
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def _lock_path(target: Path, lock_dir: Path | None) -> Path:
    if lock_dir is None:
        return target.with_name(f".{target.name}.lock")
    key = hashlib.sha1(str(target.resolve()).encode()).hexdigest()[:12]
    return lock_dir / f"fetch.{key}.{target.name[:80]}.lock"


def _offline_error(spec: FileSpec, target: Path, urls: Sequence[str]) -> OfflineError:
    remote = next((u for u in urls if local_source(u) is None), None)
    how = f"run without --offline (and unset DLPREP_OFFLINE) to download it from " \
        f"{redact_url(remote)}, " if remote else ""
    return OfflineError(f"offline: {spec.name} is not in the cache ({target}); {how}"
                        f"or pass --mirror DIR holding {spec.name}")


def fetch_file(spec: FileSpec, dest_dir: Path, options: FetchOptions | None = None, *,
               session: Any = None) -> Path:
    """Make ``dest_dir/spec.name`` present and verified; return its path.

    Tries ``options.mirrors`` (``BASE/<name>``) then ``spec.urls`` in order; a checksum
    mismatch, an HTTP error or an HTML page moves on to the next one. ``options.offline`` uses
    only the cache and local mirrors and never opens a socket; ``options.force`` downloads
    again even if cached (see :class:`FetchOptions` for the rest). ``session``: a requests
    session (default: the shared one).
    Raises ``OfflineError``, ``ChecksumError`` (naming expected and actual hash) or ``FetchError``.
    """
    options = options or _DEFAULTS
    dest_dir = Path(dest_dir)
    target = dest_dir / spec.name
    if target.is_file() and not options.force:
        return target
    urls = mirror_urls(spec, options.mirrors)
    if options.offline and not any(local_source(u) is not None for u in urls):
        raise _offline_error(spec, target, urls)
    _enter_folder(dest_dir)
    lock_file = _lock_path(target, options.lock_dir)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    lock = PathLock(lock_file)
    if not lock.acquire(timeout=0.2):
        log.info("%s: waiting for another dlprep process that is downloading it", spec.name)
        lock.acquire()
    try:
        if target.is_file() and not options.force:  # another process finished it meanwhile
            return target
        return _fetch_locked(spec, target, urls, options, session=session,
                             progress=progress_enabled(options.progress))
    finally:
        lock.release()
        _leave_folder(dest_dir)


# Raw folders that fetches of this process are downloading into, and those this process made.
# A folder made by a fetch that then failed is removed only when it is empty and no other
# fetch (thread) is still using it: removing it under a concurrent download made that one
# fail with "disappeared while it was being downloaded".
_folders_lock = threading.Lock()
_folders_in_use: Counter[Path] = Counter()
_folders_made: set[Path] = set()


def _enter_folder(folder: Path) -> None:
    with _folders_lock:
        if not folder.exists():
            _folders_made.add(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _folders_in_use[folder] += 1


def _leave_folder(folder: Path) -> None:
    """The last fetch out of a folder this process made drops it if it is still empty (a
    failed fetch; the lock lives there when no ``lock_dir`` is set, and then it is kept)."""
    with _folders_lock:
        _folders_in_use[folder] -= 1
        if _folders_in_use[folder] > 0:
            return
        del _folders_in_use[folder]
        if folder in _folders_made:
            _folders_made.discard(folder)
            try:
                folder.rmdir()
            except OSError:
                pass


def _body_limit(spec: FileSpec, options: FetchOptions) -> BodyLimit:
    """The recipe's ``size`` is exact, unless a content hash may accept a re-compressed copy
    of another size; then (and for files of unknown size) the cap applies."""
    exact = spec.size if spec.size is not None and not (spec.content_sha256 or
                                                        spec.content_md5) else None
    return BodyLimit(exact, options.byte_cap)


def _fetch_locked(spec: FileSpec, target: Path, urls: Sequence[str], options: FetchOptions, *,
                  session: Any, progress: bool) -> Path:
    offline = options.offline
    part = target.with_name(target.name + ".part")
    algorithm = primary_algorithm(spec)
    errors: list[str] = []
    no_dns: list[str] = []
    mismatch = False
    for url in urls:
        shown = redact_url(url)
        src = local_source(url)
        if src is None and offline:
            errors.append(f"{shown}: skipped (offline)")
            continue
        try:
            if src is not None:
                digest = _copy_local(src, part, algorithm=algorithm, progress=progress)
            else:
                digest = download_url(url, part, name=spec.name,
                                      session=session or shared_session(),
                                      retry=options.retry_policy, algorithm=algorithm,
                                      progress=progress, limit=_body_limit(spec, options))
            verify_file(part, spec, shown, digest=digest)
            os.replace(part, target)
        except ChecksumError as exc:
            mismatch = True
            errors.append(str(exc))
            discard_partial(part)
            log.warning("%s; trying the next source", exc)
            continue
        except NoNetworkError as exc:
            no_dns.extend(exc.hosts)
            errors.append(f"{shown}: cannot resolve the host name (DNS lookup failed)")
            log.info("%s: %s", shown, exc)
            continue
        except FetchError as exc:
            errors.append(str(exc))
            log.info("%s", exc)
            continue
        except FileNotFoundError as exc:  # the partial file or its folder was removed under us
            discard_partial(part)
            raise FetchError(f"{spec.name}: {exc.filename or part} disappeared while it was "
                             f"being downloaded (was the cache folder removed, e.g. by `dlprep "
                             f"cache clear`?); rerun to download it again") from None
        discard_partial(part)  # the resume sidecar
        if not has_checksum(spec) and not spec.checksum_optional:
            sha = digest if algorithm == "sha256" else hash_file(target, "sha256")
            log.warning("%s: the recipe has no checksum for %s; downloaded from %s, sha256 %s, "
                        "%d bytes (add them with `dlprep recipes checksum RECIPE_FILE`)",
                        spec.name, spec.name, shown, sha, target.stat().st_size)
        return target
    if not urls:
        raise FetchError(f"could not fetch {spec.name}: no URL and no mirror given")
    if no_dns and len(no_dns) == len(errors):  # every source failed on DNS: say it once
        raise NoNetworkError(no_dns, f"could not fetch {spec.name}")
    message = f"could not fetch {spec.name}: " + "; ".join(errors)
    if offline:
        message += " (offline: only the cache and local mirrors were tried)"
    raise (ChecksumError if mismatch else FetchError)(message)


SMALL_FILE = 1 << 20


def _auto_workers(specs: Sequence[FileSpec]) -> int:
    small = all(s.size is not None and s.size < SMALL_FILE for s in specs)
    return 16 if small else 8


def _fetch_todo(specs: Sequence[FileSpec], todo: list[int], dest_dir: Path,
                options: FetchOptions, session: Any, results: list[Path | None],
                failures: list[tuple[int, DlprepError]]) -> None:
    """Fetch ``specs[i]`` for each ``i`` in ``todo`` on a thread pool; fill ``results`` and
    ``failures``."""
    enabled = progress_enabled(options.progress)
    one_bar = options.with_(progress=enabled and len(todo) == 1)
    workers = options.max_workers or _auto_workers(specs)
    with progress_bar(enabled and len(todo) > 1, desc="files", total=len(todo),
                      unit="file") as bar, \
            ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo)))) as pool:
        futures = {pool.submit(fetch_file, specs[i], dest_dir, one_bar, session=session): i
                   for i in todo}
        for future in as_completed(futures):
            i = futures[future]
            try:
                results[i] = future.result()
            except DlprepError as exc:
                failures.append((i, exc))
            bar.update(1)


def fetch_many(specs: Sequence[FileSpec], dest_dir: Path, options: FetchOptions | None = None,
               *, session: Any = None) -> list[Path]:
    """Fetch many files concurrently (thread pool, one shared session, a lock per file).

    ``options.max_workers``: threads; by default 16 when every file is known to be small
    (under 1 MiB: the time goes to waiting on the server, so more requests in flight help)
    and 8 otherwise (bandwidth-bound, and polite to one host).

    Same guarantees as ``fetch_file`` for each file; returns the paths in the order of
    ``specs``. Every file is attempted; if some fail, raises the error of the single failure,
    or a ``FetchError`` counting the failures and naming the first few.
    """
    options = options or _DEFAULTS
    dest_dir = Path(dest_dir)
    specs = list(specs)
    dupes = sorted(n for n, k in Counter(s.name for s in specs).items() if k > 1)
    if dupes:
        raise FetchError(f"fetch_many: duplicate file names {', '.join(dupes[:5])}")
    if session is None and not options.offline:
        session = shared_session()
    results: list[Path | None] = [None] * len(specs)
    failures: list[tuple[int, DlprepError]] = []
    todo: list[int] = []
    for i, spec in enumerate(specs):
        cached = Path(dest_dir) / spec.name
        if cached.is_file() and not options.force:
            results[i] = cached
        else:
            todo.append(i)
    if todo:  # held for the whole batch: an emptied folder is dropped once, after it
        _enter_folder(dest_dir)
        try:
            _fetch_todo(specs, todo, dest_dir, options, session, results, failures)
        finally:
            _leave_folder(dest_dir)
    if failures:
        failures.sort(key=lambda item: item[0])
        if len(failures) == 1:
            raise failures[0][1]
        if all(isinstance(exc, NoNetworkError) for _, exc in failures):  # one line, not N
            hosts = [h for _, exc in failures for h in exc.hosts]  # type: ignore[attr-defined]
            raise NoNetworkError(hosts, f"{len(failures)} of {len(specs)} files could not be "
                                        f"fetched")
        shown = "; ".join(str(exc) for _, exc in failures[:3])
        more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
        kinds = {type(exc) for _, exc in failures}
        cls = kinds.pop() if len(kinds) == 1 and kinds <= {ChecksumError, OfflineError} \
            else FetchError
        raise cls(f"{len(failures)} of {len(specs)} files could not be fetched: {shown}{more}")
    return [p for p in results if p is not None]
