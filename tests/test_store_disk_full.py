"""Preparing onto a real, small, full file system (a tmpfs): one clear line, exit 1, no crash
(HDF5 used to segfault while closing), nothing left behind (issue 10)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import run_cli

NEED_MNIST_SAMPLE = 5000 * (28 * 28 + 8)  # pixel + label bytes the writer checks for


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``mount(size)``: a fresh tmpfs of that size (``mount -o size=``); skips where the test
    cannot mount one (not root, no mount permission in this container)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        where = tmp_path / f"fs{len(mounted)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(where)], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a small tmpfs to fill: {proc.stderr.strip()}")
        mounted.append(where)
        return where

    try:
        yield mount
    finally:
        for where in reversed(mounted):
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _raw_cache(cache_dir: Path, name: str) -> Path:
    """``cache_dir`` with ``name``'s raw files fetched (from the bundled copy)."""
    proc = run_cli("fetch", name, "--offline", "-q", cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    return cache_dir / "raw" / name


def _prepare_on(fs: Path, raw: Path, name: str) -> subprocess.CompletedProcess[str]:
    cache = fs / "cache"
    shutil.copytree(raw, cache / "raw" / name)
    return run_cli("fetch", name, "--offline", cache_dir=cache)


def _assert_clean_failure(proc: subprocess.CompletedProcess[str], fs: Path, name: str) -> None:
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])  # not 139 (SIGSEGV)
    assert proc.stderr.startswith("error: disk full") and proc.stderr.count("\n") == 1, \
        proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    prepared = fs / "cache" / "prepared" / name
    assert not list(prepared.glob("*.h5")) and not list(prepared.glob(".tmp-*"))
    assert not (prepared / "latest").exists()


@pytest.mark.parametrize("size", ["1200k", "2m", "3m"])
def test_text_set_onto_a_full_disk(cache_dir: Path, small_fs: Callable[[str], Path],
                                   size: str) -> None:
    """No size is known up front for sequences: the disk fills inside HDF5's own writes, and the
    unfinished file must still close without a crash."""
    raw = _raw_cache(cache_dir, "gutenberg-sample")
    fs = small_fs(size)
    _assert_clean_failure(_prepare_on(fs, raw, "gutenberg-sample"), fs, "gutenberg-sample")


def test_image_set_too_big_for_the_disk_is_refused_before_writing(
        cache_dir: Path, small_fs: Callable[[str], Path]) -> None:
    raw = _raw_cache(cache_dir, "mnist-sample")
    fs = small_fs("2m")
    proc = _prepare_on(fs, raw, "mnist-sample")
    _assert_clean_failure(proc, fs, "mnist-sample")
    assert "5,000 images of 28x28x1 need 4.0 MB" in proc.stderr


def test_image_set_that_fills_the_disk_while_writing(cache_dir: Path,
                                                     small_fs: Callable[[str], Path]) -> None:
    """Free space passes the up-front check by a few KB, and the file's metadata then does not
    fit: the failure comes from the pixel writes or HDF5's flush, after the check."""
    raw = _raw_cache(cache_dir, "mnist-sample")
    fs = small_fs("16m")
    shutil.copytree(raw, fs / "cache" / "raw" / "mnist-sample")
    used = 16 * 2**20 - shutil.disk_usage(fs).free
    size = (used + NEED_MNIST_SAMPLE + 8192 + 4095) // 4096 * 4096
    subprocess.run(["mount", "-o", f"remount,size={size}", str(fs)], check=True)
    assert shutil.disk_usage(fs).free >= NEED_MNIST_SAMPLE
    proc = run_cli("fetch", "mnist-sample", "--offline", cache_dir=fs / "cache")
    _assert_clean_failure(proc, fs, "mnist-sample")
    assert "need" not in proc.stderr  # it got past the check
    subprocess.run(["mount", "-o", f"remount,size={size + 256 * 1024}", str(fs)], check=True)
    again = run_cli("fetch", "mnist-sample", "--offline", "-q", cache_dir=fs / "cache")
    assert again.returncode == 0, again.stderr  # with room, the same cache prepares fine
