"""Safe extraction of downloaded archives: tar (any compression), zip, single gz/bz2/xz streams.

Every member is checked before anything is written: no absolute paths, no ``..``, no symlink
or hardlink leaving the tree, no devices or fifos; tar members then go through Python's
``filter="data"`` as a second line of defence. A total-size and a compression-ratio limit stop
decompression bombs. Extraction happens in a temporary folder next to the destination, which
is renamed into place only when everything succeeded: a failure leaves nothing behind.
Errors are ``ExtractionError`` naming the archive and the member.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import stat
import tarfile
import uuid
import zipfile
from pathlib import Path
from typing import BinaryIO

from ..errors import ExtractionError
from ..limits import Budget, ExtractLimits
from ..magic import (
    COMPRESSION_SUFFIXES,
    DECOMPRESS_ERRORS,
    file_compression,
    open_compressed,
    sniff_compression,
)

__all__ = ["ExtractLimits", "archive_kind", "decompress_file", "extract_archive",
           "safe_member_path"]

CHUNK = 1 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")
_STREAM_KINDS = {"gz": "gzip", "bz2": "bz2", "xz": "xz"}  # archive_kind's name -> magic's
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, *DECOMPRESS_ERRORS)


def archive_kind(path: Path) -> str:
    """``"zip"``, ``"tar"`` (plain or compressed), ``"gz"``, ``"bz2"`` or ``"xz"`` (one stream)."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    try:  # a tar (plain or compressed) with at least one valid member header
        with tarfile.open(path, "r:*") as tf:
            if tf.next() is not None:
                return "tar"
    except (*_CORRUPT, OSError):
        pass
    compressed = sniff_compression(head)
    if compressed is not None:
        return next(k for k, v in _STREAM_KINDS.items() if v == compressed)
    raise ExtractionError(f"{path}: not a tar, zip, gz, bz2 or xz archive")


def safe_member_path(archive: Path, name: str) -> str:
    """The normalised relative path of a member; raise if absolute or with a ``..`` part."""
    clean = name.replace("\\", "/")
    if not clean or "\x00" in clean:
        raise ExtractionError(f"{archive}: {name!r}: empty or invalid member name")
    if clean.startswith("/") or _DRIVE.match(clean):
        raise ExtractionError(f"{archive}: {name}: absolute path in archive")
    if ".." in clean.split("/"):
        raise ExtractionError(f"{archive}: {name}: path with '..' leaves the extraction folder")
    return posixpath.normpath(clean)


def _check_link(archive: Path, member: str, link: str, hard: bool) -> None:
    """Reject a link whose target is absolute or resolves outside the tree."""
    target = link.replace("\\", "/")
    if target.startswith("/") or _DRIVE.match(target):
        raise ExtractionError(f"{archive}: {member}: link to absolute path {link!r}")
    base = "" if hard else posixpath.dirname(member)
    resolved = posixpath.normpath(posixpath.join(base, target))
    if resolved == ".." or resolved.startswith("../"):
        raise ExtractionError(f"{archive}: {member}: link to {link!r} leaves the extraction folder")


def _check_tar_member(archive: Path, m: tarfile.TarInfo) -> None:
    name = safe_member_path(archive, m.name)
    if m.ischr() or m.isblk() or m.isfifo():
        raise ExtractionError(f"{archive}: {m.name}: device or fifo entries are not allowed")
    if m.issym() or m.islnk():
        _check_link(archive, name, m.linkname, hard=m.islnk())
    elif not (m.isfile() or m.isdir()):
        raise ExtractionError(f"{archive}: {m.name}: unsupported tar entry type {m.type!r}")


def _extract_tar(archive: Path, out: Path, budget: Budget) -> None:
    with tarfile.open(archive, "r:*") as tf:
        for member in tf:  # streaming: each header is checked before its data is read
            budget.add_member(member.name)
            _check_tar_member(archive, member)
            if member.isfile():
                budget.add_bytes(member.name, member.size)
            try:
                tf.extract(member, out, set_attrs=False, filter="data")
            except tarfile.FilterError as exc:
                raise ExtractionError(f"{archive}: {member.name}: rejected: {exc}") from None
            tf.members = []  # do not keep every TarInfo of a huge archive in memory


def _extract_zip(archive: Path, out: Path, budget: Budget) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        declared = 0
        for info in infos:  # check every entry before writing anything
            budget.add_member(info.filename)
            safe_member_path(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                link = zf.read(info).decode("utf-8", "replace")
                _check_link(archive, posixpath.normpath(info.filename), link, hard=False)
            elif stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise ExtractionError(f"{archive}: {info.filename}: device, fifo or socket "
                                      f"entries are not allowed")
            declared += info.file_size
        if declared > budget.limits.max_total_bytes:
            raise ExtractionError(f"{archive}: declared size {declared:,} bytes passes the limit "
                                  f"of {budget.limits.max_total_bytes:,} (decompression bomb?)")
        for info in infos:
            rel = safe_member_path(archive, info.filename)
            dest = out / rel
            if info.is_dir():
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                _copy_counted(src, dst, budget, info.filename)


def _copy_counted(src: BinaryIO, dst: BinaryIO, budget: Budget, member: str) -> None:
    while chunk := src.read(CHUNK):
        budget.add_bytes(member, len(chunk))
        dst.write(chunk)


def _stream_output_name(archive: Path, kind: str) -> str:
    """``data.csv.gz`` -> ``data.csv``; a name without the usual suffix gets ``.out``."""
    lower = archive.name.lower()
    for suffix in COMPRESSION_SUFFIXES[_STREAM_KINDS[kind]]:
        if lower.endswith(suffix):
            return archive.name[: -len(suffix)]
    return archive.name + ".out"


def _decompress_stream(archive: Path, out_file: Path, kind: str, budget: Budget) -> None:
    budget.add_member(out_file.name)
    with open_compressed(archive, _STREAM_KINDS[kind]) as src, open(out_file, "wb") as dst:
        _copy_counted(src, dst, budget, out_file.name)


def _assert_links_inside(root: Path, archive: Path) -> None:
    """Last check after extraction: no symlink in the tree resolves outside it."""
    real_root = os.path.realpath(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in dirnames + filenames:
            p = os.path.join(dirpath, entry)
            if os.path.islink(p):
                resolved = os.path.realpath(p)
                if resolved != real_root and not resolved.startswith(real_root + os.sep):
                    rel = os.path.relpath(p, root)
                    raise ExtractionError(f"{archive}: {rel}: symlink leaves the extraction folder")


def extract_archive(archive: Path, dest: Path, *, limits: ExtractLimits | None = None,
                    force: bool = False) -> Path:
    """Extract ``archive`` into the folder ``dest`` safely and atomically; return ``dest``.

    tar/zip members keep their relative paths; a single gz/bz2/xz stream becomes one file
    ``dest/<name without the suffix>``. An existing ``dest`` is returned as is (complete: it
    only ever appears by rename) unless ``force``. Raises ``ExtractionError`` naming the archive
    and the member for unsafe entries, bombs (``limits``) and corrupt data.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and not force:
        return dest
    limits = limits or ExtractLimits()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".tmp-extract-{dest.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        kind = archive_kind(archive)
        budget = Budget.for_file(archive, limits)
        try:
            if kind == "tar":
                _extract_tar(archive, tmp, budget)
            elif kind == "zip":
                _extract_zip(archive, tmp, budget)
            else:
                _decompress_stream(archive, tmp / _stream_output_name(archive, kind), kind, budget)
        except _CORRUPT as exc:
            raise ExtractionError(f"{archive}: corrupt {kind} archive: {exc}") from None
        except OSError as exc:
            if exc.errno is None:  # zlib/gzip errors surface as OSError without errno
                raise ExtractionError(f"{archive}: corrupt {kind} archive: {exc}") from None
            raise
        _assert_links_inside(tmp, archive)
        if dest.exists():
            shutil.rmtree(dest)
        try:
            os.rename(tmp, dest)
        except OSError:
            if dest.exists():  # another process finished the same extraction first
                shutil.rmtree(tmp, ignore_errors=True)
                return dest
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def decompress_file(archive: Path, out_file: Path, *, limits: ExtractLimits | None = None) -> Path:
    """Decompress one gz/bz2/xz file (whatever it holds, a tar included) into ``out_file``
    (temp file, then rename) within ``limits``; return it."""
    archive, out_file = Path(archive), Path(out_file)
    kind = next((k for k, v in _STREAM_KINDS.items() if v == file_compression(archive)), None)
    if kind is None:
        raise ExtractionError(f"{archive}: not a gz, bz2 or xz stream")
    tmp = out_file.with_name(f".tmp-{out_file.name}-{uuid.uuid4().hex[:8]}")
    try:
        try:
            _decompress_stream(archive, tmp, kind, Budget.for_file(archive, limits))
        except _CORRUPT as exc:
            raise ExtractionError(f"{archive}: corrupt {kind} stream: {exc}") from None
        except OSError as exc:
            if exc.errno is None:  # zlib/gzip errors surface as OSError without errno
                raise ExtractionError(f"{archive}: corrupt {kind} stream: {exc}") from None
            raise
        os.replace(tmp, out_file)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out_file
