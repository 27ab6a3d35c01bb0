"""Download one upstream file into the raw cache, verified, atomically.

(Initial version: mirrors, local/file/pkgdata sources, streaming to ``.part``, size + hash check
before the atomic rename, a per-target file lock. Resume/retry/HTML detection are layered on top.)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

from filelock import FileLock

from ..errors import ChecksumError, FetchError, OfflineError

CHUNK = 1 << 20


@dataclass
class FileSpec:
    """One upstream file: its cache name, ordered mirror URLs and published size/hashes."""

    name: str
    urls: list[str] = field(default_factory=list)
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    note: str = ""


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
    urls = []
    for base in mirrors:
        urls.append(base.rstrip("/") + "/" + spec.name)
    urls.extend(spec.urls)
    return urls


def hash_file(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_file(path: Path, spec: FileSpec, source: str) -> None:
    """Check size, then sha256 (or md5 where only that is published); raise naming both hashes."""
    actual_size = path.stat().st_size
    if spec.size is not None and actual_size != spec.size:
        raise ChecksumError(
            f"{source}: size mismatch for {spec.name}: expected {spec.size} bytes, got {actual_size}"
        )
    for alg in ("sha256", "md5"):
        expected = getattr(spec, alg)
        if expected:
            actual = hash_file(path, alg)
            if actual != expected:
                raise ChecksumError(
                    f"{source}: {alg} mismatch for {spec.name}: expected {expected}, got {actual}"
                )
            return


def _copy_local(src: Path, part: Path) -> None:
    if not src.is_file():
        raise FileNotFoundError(str(src))
    shutil.copyfile(src, part)


def _download_http(url: str, part: Path, session) -> None:  # type: ignore[no-untyped-def]
    with session.get(url, stream=True, timeout=(10, 60)) as resp:
        if resp.status_code != 200:
            raise FetchError(f"{url}: HTTP {resp.status_code}")
        with open(part, "wb") as fh:
            for chunk in resp.iter_content(CHUNK):
                fh.write(chunk)


def fetch_file(
    spec: FileSpec,
    dest_dir: Path,
    *,
    mirrors: Sequence[str] = (),
    offline: bool = False,
    force: bool = False,
    session=None,  # type: ignore[no-untyped-def]
    lock_dir: Path | None = None,
) -> Path:
    """Make ``dest_dir/spec.name`` present and verified; return its path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / spec.name
    lock_dir = lock_dir or dest_dir
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"{dest_dir.name}.{spec.name}.lock")):
        if target.exists() and not force:
            return target
        urls = mirror_urls(spec, mirrors)
        if offline:
            urls = [u for u in urls if local_source(u) is not None]
            if not urls:
                raise OfflineError(
                    f"offline: {spec.name} is not in the cache ({target}); run without --offline "
                    f"or pass --mirror DIR holding it"
                )
        part = target.with_name(target.name + ".part")
        errors = []
        for url in urls:
            try:
                src = local_source(url)
                if src is not None:
                    _copy_local(src, part)
                else:
                    if session is None:
                        import requests

                        session = requests.Session()
                    _download_http(url, part, session)
                verify_file(part, spec, url)
            except ChecksumError:
                part.unlink(missing_ok=True)
                raise
            except (OSError, FetchError) as exc:
                part.unlink(missing_ok=True)
                errors.append(f"{url}: {exc}")
                continue
            os.replace(part, target)
            return target
        raise FetchError(f"could not fetch {spec.name}: " + "; ".join(errors))
