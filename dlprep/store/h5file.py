"""Opening and abandoning HDF5 files being written, safely on a full disk.

HDF5 writes some bytes only when an object or the file is closed; on a full disk such a write
fails where the error cannot be reported, h5py prints tracebacks and the interpreter later
crashes (SIGSEGV). :func:`create_file` turns off the buffer that delays small writes, so a
failing write raises where it happens; :func:`abandon_file` closes an unfinished file without
touching the disk; :func:`check_free_space` refuses a write that cannot fit before it starts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import h5py

from ..errors import StoreError

_ABANDONED: list[h5py.File] = []


def _redirect_to_memory(f: h5py.File) -> bool:
    """Point HDF5's own descriptor of ``f`` at an anonymous in-memory file (Linux memfd), so
    what it flushes on close cannot fail for want of disk space; False where not possible."""
    memfd_create = getattr(os, "memfd_create", None)
    if memfd_create is None:
        return False
    try:
        handle = int(f.id.get_vfd_handle())
        fd = memfd_create("dlprep-abandoned", getattr(os, "MFD_CLOEXEC", 0))
    except (OSError, TypeError, ValueError, RuntimeError):
        return False
    try:
        os.ftruncate(fd, os.fstat(handle).st_size)  # same length: HDF5's EOF checks still hold
        os.dup2(fd, handle)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def abandon_file(f: h5py.File, path: Path) -> None:
    """Close an unfinished file that is being thrown away, safely even on a full disk.

    Closing makes HDF5 flush its caches; on a full disk that fails and leaves handles that
    crash the interpreter when they are freed (h5py tracebacks, then SIGSEGV). So HDF5's
    descriptor is first pointed at memory (or, without memfd, the file's bytes are released),
    and a handle that still fails to close is kept alive rather than freed."""
    if not f.id.valid:
        return
    if not _redirect_to_memory(f):
        with contextlib.suppress(OSError):
            os.truncate(path, 0)
    try:
        f.close()
    except Exception:  # noqa: BLE001 - the file is discarded; only the crash must not happen
        _ABANDONED.append(f)


def create_file(path: Path) -> h5py.File:
    """A new HDF5 file for writing, with HDF5's small-write buffer (the sieve buffer) off:
    buffered bytes would be written when an object is freed, where an error (a full disk)
    cannot be reported and leaves HDF5 broken; unbuffered, the write that fails raises."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_sieve_buf_size(0)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_alignment(1 << 20, 4096)  # big datasets start on a page: direct writes (osio)
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fapl=fapl))


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise ``StoreError`` (one line) unless ``folder``'s file system has ``needed`` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if needed > free:
        raise StoreError(f"disk full: {what} need {needed / 1e6:,.1f} MB in {folder}, only "
                         f"{free / 1e6:,.1f} MB free; free space (or point DLPREP_CACHE at a "
                         f"bigger disk) and rerun")
