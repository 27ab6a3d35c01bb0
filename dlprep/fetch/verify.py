"""Integrity checks for downloads: size, sha256 (or md5), and the hash of decompressed content.

Some mirrors re-compress files (e.g. MNIST ``.gz`` files whose gzip header mtime differs): the
file hash then differs while the decompressed bytes are canonical. A recipe may publish
``content_sha256`` / ``content_md5`` (hash of the decompressed gzip/bz2/xz stream) so that such a
file is accepted.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ..errors import ChecksumError
from ..limits import open_decompressed as bounded_open
from ..magic import DECOMPRESS_ERRORS, file_compression

if TYPE_CHECKING:
    from .download import FileSpec

log = logging.getLogger("dlprep")

CHUNK = 1 << 20


def hash_file(path: Path, algorithm: str = "sha256", *, limit: int | None = None) -> str:
    """Hex digest of a file (or of its first ``limit`` bytes), read in 1 MiB chunks."""
    return hash_prefix(path, algorithm, limit).hexdigest()


def hash_prefix(path: Path, algorithm: str, limit: int | None = None) -> hashlib._Hash:
    """A running hash object fed with the file's first ``limit`` bytes (all when None)."""
    h = hashlib.new(algorithm)
    left = limit
    with open(path, "rb") as fh:
        while left is None or left > 0:
            chunk = fh.read(CHUNK if left is None else min(CHUNK, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h


def open_decompressed(path: Path) -> BinaryIO | None:
    """A stream of the decompressed content of a gzip/bz2/xz file, bounded by the default
    :mod:`dlprep.limits` (a bomb raises ExtractionError); None if not compressed."""
    return None if file_compression(path) is None else bounded_open(path)


def content_hash(path: Path, algorithm: str) -> str | None:
    """Hash of the decompressed gzip/bz2/xz content; None if not compressed or corrupt."""
    stream = open_decompressed(path)
    if stream is None:
        return None
    h = hashlib.new(algorithm)
    try:
        with stream:
            while chunk := stream.read(CHUNK):
                h.update(chunk)
    except (OSError, EOFError, *DECOMPRESS_ERRORS):
        return None
    return h.hexdigest()


def primary_algorithm(spec: FileSpec) -> str:
    """The algorithm to hash while downloading: md5 only where the recipe gives md5 alone."""
    return "md5" if spec.md5 and not spec.sha256 else "sha256"


def has_checksum(spec: FileSpec) -> bool:
    return bool(spec.sha256 or spec.md5 or spec.content_sha256 or spec.content_md5)


def _file_problem(path: Path, spec: FileSpec, digest: str | None) -> str | None:
    """What is wrong with the file's own size/hash (None when it matches or nothing is given)."""
    actual_size = path.stat().st_size
    if spec.size is not None and actual_size != spec.size:
        return f"size mismatch for {spec.name}: expected {spec.size} bytes, got {actual_size}"
    for alg in ("sha256", "md5"):
        expected = getattr(spec, alg)
        if expected:
            actual = digest if digest and alg == primary_algorithm(spec) else hash_file(path, alg)
            if actual != expected:
                return f"{alg} mismatch for {spec.name}: expected {expected}, got {actual}"
            return None
    return None


def verify_file(path: Path, spec: FileSpec, source: str, *, digest: str | None = None) -> None:
    """Check ``path`` against ``spec``'s size and sha256 (or md5); raise ``ChecksumError``.

    ``digest``: the hex digest of ``primary_algorithm(spec)`` if already computed while
    streaming. When the file's size/hash mismatch (or only a content hash is published) and
    the recipe gives ``content_sha256``/``content_md5``, the decompressed content is hashed;
    a match is accepted with an info log (a re-compressed mirror). The error names ``source``,
    the expected and the actual values.
    """
    file_hash_given = bool(spec.sha256 or spec.md5)
    problem = _file_problem(path, spec, digest)
    if problem is None and file_hash_given:
        return
    content = [(alg, getattr(spec, f"content_{alg}")) for alg in ("sha256", "md5")
               if getattr(spec, f"content_{alg}")]
    if not content:
        if problem:
            raise ChecksumError(f"{source}: {problem}")
        return
    alg, expected = content[0]
    actual = content_hash(path, alg)
    if actual == expected:
        if problem:
            log.info("%s: %s, but the decompressed content matches content_%s %s "
                     "(a re-compressed mirror); accepted", source, problem, alg, expected)
        return
    got = actual or "not a readable gzip/bz2/xz stream"
    what = f"content_{alg} mismatch for {spec.name}: expected {expected}, got {got}"
    raise ChecksumError(f"{source}: {problem}; {what}" if problem else f"{source}: {what}")


def require_sha1(path: Path, expected: str, source: str, name: str) -> None:
    """For a file whose publisher gives only a sha1 (Wikimedia dump listings, Internet Archive
    item files): hash ``path``; on a mismatch remove it and raise ``ChecksumError`` naming
    ``source``, ``name``, the expected and the actual value."""
    actual = hash_file(path, "sha1")
    if actual != expected:
        path.unlink(missing_ok=True)
        raise ChecksumError(f"{source}: sha1 mismatch for {name}: expected {expected}, "
                            f"got {actual}")
