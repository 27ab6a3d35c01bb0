"""Hostile upstream files through `dlprep fetch`: IDX bombs, a CIFAR tar member claiming 2**60
bytes, a CIFAR recipe with two files. Each ends in one clear line and nothing in the cache."""

from __future__ import annotations

import io
import struct
import subprocess
import tarfile
import zlib
from pathlib import Path

from conftest import claim_huge_first_tar_member, invoke_cli, run_cli, write_recipe

ROOT = Path(__file__).resolve().parent.parent


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "internal error" not in err
    return err


def no_prepared_file(cache: Path) -> bool:
    return not list((cache / "prepared").rglob("*.h5")) if (cache / "prepared").exists() \
        else True


def gzip_of(head: bytes, zeros: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = bytes(1 << 20)
    parts = [comp.compress(head)]
    while zeros:
        n = min(zeros, len(chunk))
        parts.append(comp.compress(chunk[:n]))
        zeros -= n
    parts.append(comp.flush())
    return b"".join(parts)


def test_idx_bomb_through_fetch_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    n = 60_000
    # images: an honest 60,000 x 28 x 28 header; labels declare 2**31 entries (2 GiB)
    (src / "img.gz").write_bytes(gzip_of(bytes([0, 0, 8, 3]) + struct.pack(">3I", n, 28, 28),
                                         n * 784))
    (src / "lab.gz").write_bytes(gzip_of(bytes([0, 0, 8, 1]) + struct.pack(">I", 2**31),
                                         8 << 20))
    r = write_recipe(tmp_path, "idxbomb", "idx",
                     {"img.gz": src / "img.gz", "lab.gz": src / "lab.gz"},
                     '[splits.train]\nimages = "img.gz"\nlabels = "lab.gz"\n')
    cache = tmp_path / "c"
    proc = run_cli("fetch", "idxbomb", "--recipe", str(r), cache_dir=cache)
    err = one_line_error(proc)
    assert "lab.gz" in err and "declares 2,147,483,656 bytes" in err and "bomb" in err
    assert no_prepared_file(cache)


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()





CIFAR_SPLITS = ('[splits]\ntrain = ["cifar-10-batches-bin/data_batch_1.bin"]\n'
                'test = ["cifar-10-batches-bin/test_batch.bin"]\n')


def test_cifar_plain_tar_member_claiming_2_60_bytes_is_named(tmp_path: Path) -> None:
    rec = bytes(3073)
    data = _tar({"cifar-10-batches-bin/readme.html": b"hi",
                 "cifar-10-batches-bin/data_batch_1.bin": rec * 2,
                 "cifar-10-batches-bin/test_batch.bin": rec})
    archive = tmp_path / "cifar-10-binary.tar.gz"  # plain tar, like the name may suggest not
    archive.write_bytes(claim_huge_first_tar_member(data))
    r = write_recipe(tmp_path, "cifar10", "cifar10-bin", {"cifar-10-binary.tar.gz": archive},
               CIFAR_SPLITS)
    cache = tmp_path / "c"
    err = one_line_error(run_cli("fetch", "cifar10", "--recipe", str(r), cache_dir=cache))
    assert "cifar-10-binary.tar.gz" in err and "readme.html" in err
    assert "declares 1,152,921,504,606,846,976 bytes" in err
    assert no_prepared_file(cache)


def test_cifar_recipe_with_two_files_is_a_recipe_error(tmp_path: Path) -> None:
    rec = bytes(3073)
    archive = tmp_path / "a.tar"
    archive.write_bytes(_tar({"cifar-10-batches-bin/data_batch_1.bin": rec,
                              "cifar-10-batches-bin/test_batch.bin": rec}))
    other = tmp_path / "b.txt"
    other.write_text("extra")
    r = write_recipe(tmp_path, "cifar10", "cifar10-bin", {"a.tar": archive, "b.txt": other},
               CIFAR_SPLITS)
    err = one_line_error(invoke_cli("fetch", "cifar10", "--recipe", str(r),
                                    cache_dir=tmp_path / "c"))
    assert "cifar10.toml" in err and "exactly one archive" in err and "a.tar, b.txt" in err
