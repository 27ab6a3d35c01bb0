"""gzip read path with and without the parallel inflater (rapidgzip, optional): same bytes,
same errors for truncated or corrupt files, same decompression limits, and no crash when a
reader is left open at exit."""

from __future__ import annotations

import gzip
import io
import struct
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from dlprep import parallel_gzip
from dlprep.errors import ExtractionError, FormatError
from dlprep.formats.compressed import open_maybe_compressed
from dlprep.formats.idx import read_idx
from dlprep.parallel_gzip import gzip_threads

HAVE_RAPIDGZIP = parallel_gzip._rapidgzip is not None
BACKENDS = ["isal", pytest.param("rapidgzip", marks=pytest.mark.skipif(
    not HAVE_RAPIDGZIP, reason="rapidgzip (the optional 'fast' extra) is not installed"))]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every gzip file through ISA-L ("off") or through rapidgzip ("on")."""
    monkeypatch.setattr(parallel_gzip, "PARALLEL_GZIP", "off" if request.param == "isal" else "on")
    return str(request.param)


def idx_bytes(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + \
        arr.tobytes()


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """3 MB of compressible uint8 images (several rapidgzip chunks once compressed)."""
    rng = np.random.default_rng(3)
    return np.clip(rng.normal(100, 30, (4000, 28, 28)), 0, 255).astype(np.uint8)


def read_all(path: Path) -> bytes:
    with open_maybe_compressed(path) as fh:
        return fh.read()


def test_same_bytes_through_either_inflater(tmp_path: Path, backend: str,
                                            images: np.ndarray) -> None:
    data = idx_bytes(images)
    plain = tmp_path / "plain.gz"
    plain.write_bytes(gzip.compress(data, 6))
    members = tmp_path / "members.gz"  # two gzip members, as `cat a.gz b.gz` makes
    members.write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    padded = tmp_path / "padded.gz"  # zero padding after the stream (tape blocks) is accepted
    padded.write_bytes(gzip.compress(data) + bytes(512))
    for path in (plain, members, padded):
        with open_maybe_compressed(path) as fh:
            reader = type(fh.raw).__name__  # type: ignore[attr-defined]
            assert reader == ("_ParallelGzip" if backend == "rapidgzip" else "IGzipFile")
            assert fh.read() == data, path.name
    np.testing.assert_array_equal(read_idx(plain), images)


def _broken(tmp_path: Path, data: bytes) -> dict[str, Path]:
    gz = gzip.compress(data, 6)
    mid = len(gz) // 2
    cases = {
        "cut-middle": gz[:mid],
        "cut-trailer": gz[:-4],
        "bad-crc": gz[:-8] + bytes([gz[-8] ^ 0xFF]) + gz[-7:],
        "bad-length": gz[:-1] + bytes([gz[-1] ^ 0xFF]),
        "flipped-data": gz[:mid] + bytes([gz[mid] ^ 0xFF]) + gz[mid + 1:],
        "trailing-garbage": gz + b"not gzip",
        "header-only": gz[:12],
    }
    out = {}
    for name, blob in cases.items():
        out[name] = tmp_path / f"{name}-idx3-ubyte.gz"
        out[name].write_bytes(blob)
    return out


def test_truncated_and_corrupt_gzip_fail_alike(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               images: np.ndarray) -> None:
    """Each broken file is a FormatError naming it, with the same message from both
    inflaters (rapidgzip hands over to ISA-L on any error)."""
    files = _broken(tmp_path, idx_bytes(images))
    modes = ["off", "on"] if HAVE_RAPIDGZIP else ["off"]
    messages: dict[str, dict[str, str]] = {}
    for mode in modes:
        monkeypatch.setattr(parallel_gzip, "PARALLEL_GZIP", mode)
        for name, path in files.items():
            with pytest.raises(FormatError, match=path.name) as err:
                read_idx(path)
            messages.setdefault(name, {})[mode] = str(err.value)
    for name, by_mode in messages.items():
        assert len(set(by_mode.values())) == 1, (name, by_mode)


def test_truncated_cifar_tar_gz_is_a_format_error(tmp_path: Path, backend: str) -> None:
    from dlprep.cache import Cache
    from dlprep.prepare.core import PrepareContext, builder_module
    from dlprep.recipes import parse_recipe
    from dlprep.store import atomic_output

    rng = np.random.default_rng(4)
    member = np.concatenate([rng.integers(0, 10, (500, 1)),
                             rng.integers(0, 256, (500, 3072))], 1).astype(np.uint8).tobytes()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name in ("b/data.bin", "b/test.bin"):
            info = tarfile.TarInfo(name)
            info.size = len(member)
            tar.addfile(info, io.BytesIO(member))
    archive = tmp_path / "cifar.tar.gz"
    archive.write_bytes(gzip.compress(raw.getvalue())[:-2000])
    recipe = parse_recipe({"name": "c", "title": "c", "version": "1", "kind": "image",
                           "parser": "cifar10-bin", "classes": [str(i) for i in range(10)],
                           "files": [{"name": archive.name, "urls": ["file:///x"]}],
                           "splits": {"train": ["b/data.bin"], "test": ["b/test.bin"]}},
                          tmp_path / "c.toml")
    ctx = PrepareContext(recipe=recipe, options={}, cache=Cache(tmp_path / "cache"), name="c",
                         files={archive.name: archive})
    with pytest.raises(FormatError, match=r"cifar\.tar\.gz"):
        with atomic_output(tmp_path / "out.h5") as tmp:
            builder_module(recipe).build(ctx, tmp)
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".tmp-*"))


def test_decompression_limits_hold_through_either_inflater(tmp_path: Path, backend: str) -> None:
    bomb = tmp_path / "z.gz"
    bomb.write_bytes(gzip.compress(bytes(80 << 20), 9))  # ~80 KB inflating to 80 MiB: > 200:1
    with pytest.raises(ExtractionError, match=r"z.gz: compression ratio above 200:1"):
        read_all(bomb)
    with open_maybe_compressed(bomb, max_bytes=1000) as fh, \
            pytest.raises(ExtractionError, match="more than 1,000 decompressed bytes"):
        while fh.read(4096):
            pass


def test_parallel_inflate_only_for_big_files_on_enough_cores(monkeypatch: pytest.MonkeyPatch
                                                               ) -> None:
    monkeypatch.setattr(parallel_gzip, "PARALLEL_GZIP", "off")
    assert gzip_threads(1 << 40) == 1
    monkeypatch.setattr(parallel_gzip, "PARALLEL_GZIP", "auto")
    monkeypatch.setattr(parallel_gzip, "PARALLEL_GZIP_MIN_CORES", 1)
    assert gzip_threads(parallel_gzip.PARALLEL_GZIP_MIN_BYTES - 1) == 1
    big = gzip_threads(parallel_gzip.PARALLEL_GZIP_MIN_BYTES)
    assert big == (parallel_gzip.usable_cores() if HAVE_RAPIDGZIP else 1)
    monkeypatch.setattr(parallel_gzip, "PARALLEL_GZIP_MIN_CORES", parallel_gzip.usable_cores() + 1)
    assert gzip_threads(1 << 40) == 1


@pytest.mark.skipif(not HAVE_RAPIDGZIP, reason="rapidgzip (the 'fast' extra) is not installed")
def test_reader_left_open_at_exit_does_not_crash(tmp_path: Path, images: np.ndarray) -> None:
    """rapidgzip aborts the interpreter when its threads outlive it; dlprep closes what is
    left open at exit."""
    path = tmp_path / "open.gz"
    path.write_bytes(gzip.compress(idx_bytes(images)))
    code = ("import sys; from pathlib import Path\n"
            "from dlprep.formats.compressed import open_maybe_compressed\n"
            "keep = open_maybe_compressed(Path(sys.argv[1]))\n"
            "assert type(keep.raw).__name__ == '_ParallelGzip'\n"
            "print(len(keep.read(1000)))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=120, env={**_env(), "DLPREP_PARALLEL_GZIP": "on"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1000"
    assert "terminate" not in proc.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
