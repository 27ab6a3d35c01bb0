"""import-images and the image archive readers against odd inputs: names that are not UTF-8,
FIFOs, links to devices and folders, huge or bomb members, a full disk, bad options."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import claim_huge_first_tar_member, invoke_cli, run_cli
from PIL import Image

from dlprep.errors import ExtractionError, FormatError
from dlprep.formats import images as image_formats
from dlprep.formats.images import ImageRef, tar_refs
from dlprep.limits import ExtractLimits


def png(color: tuple[int, int, int], size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "PNG")
    return buf.getvalue()


def class_tree(root: Path, per_class: int = 3) -> Path:
    for k, cls in enumerate(("cats", "dogs")):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            (root / cls / f"{i}.png").write_bytes(png((40 * k, 10 * i, 100)))
    return root


def last_line_path(proc: subprocess.CompletedProcess[str]) -> Path:
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    err = proc.stderr.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ")
    return err


def test_odd_files_in_a_folder_are_skipped_and_reported_once(tmp_path: Path) -> None:
    root = class_tree(tmp_path / "src")
    bad_name = os.fsencode(root / "cats") + b"/caf\xe9-latin1.png"  # not UTF-8
    with open(bad_name, "wb") as fh:
        fh.write(png((1, 2, 3)))
    os.mkfifo(root / "dogs" / "pipe.png")  # reading it would hang
    os.symlink("/dev/zero", root / "dogs" / "zero.png")  # reading it would never end
    os.symlink(root / "cats" / "0.png", root / "dogs" / "linked.png")  # a link to a file: read
    os.symlink(root / "nowhere.png", root / "cats" / "broken.png")
    elsewhere = class_tree(tmp_path / "elsewhere", 1)
    os.symlink(elsewhere / "cats", root / "birds")  # a linked folder: not followed
    proc = run_cli("import-images", str(root), "--name", "odd", "--size", "8",
                   cache_dir=tmp_path / "c", timeout=120)
    out = last_line_path(proc)
    with h5py.File(out, "r") as f:
        ids = sorted(i.decode() for i in f["meta/ids"][()])
        assert ids == ["cats/0.png", "cats/1.png", "cats/2.png", "cats/caf\\xe9-latin1.png",
                       "dogs/0.png", "dogs/1.png", "dogs/2.png", "dogs/linked.png"]
        assert [c.decode() for c in f["classes"][()]] == ["cats", "dogs"]
        skipped = {s["name"]: s["reason"] for s in json.loads(f.attrs["skipped"])}
    assert set(skipped) == {"dogs/pipe.png", "dogs/zero.png", "cats/broken.png", "birds"}
    assert "FIFO" in skipped["dogs/pipe.png"]
    assert "character device" in skipped["dogs/zero.png"]
    assert "broken link" in skipped["cats/broken.png"]
    assert "link to a folder: not followed" in skipped["birds"]
    text = proc.stdout + proc.stderr
    for name in skipped:  # one reason per skipped file, in one place
        assert sum(line.strip().startswith(f"{name}:") for line in text.splitlines()) == 1, text
        assert text.count(name) == 1, text
    assert "object at 0x" not in text


def test_a_fifo_named_in_a_csv_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(image_formats.ImageDecodeError, match="FIFO"):
        ImageRef("pipe.png", str(tmp_path / "pipe.png")).read()
    with pytest.raises(image_formats.ImageDecodeError, match="character device"):
        ImageRef("zero.png", "/dev/zero").read()


def test_undecodable_files_are_reported_once_with_a_readable_reason(tmp_path: Path) -> None:
    root = class_tree(tmp_path / "src")
    (root / "cats" / "junk.png").write_bytes(b"\x89PNG not really")
    proc = invoke_cli("import-images", str(root), "--name", "junk", "--size", "8",
                      cache_dir=tmp_path / "c")
    last_line_path(proc)
    text = proc.stdout + proc.stderr
    assert text.count("cats/junk.png") == 1, text
    assert "cats/junk.png: not an image format Pillow reads" in text
    assert "object at 0x" not in text


def _tar_bytes(members: dict[str, bytes], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_tar_gz_members_are_streamed_not_held(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    members = {f"set/{c}/{i}.png": png((50 * k, i, 9)) for k, c in enumerate(("a", "b"))
               for i in range(3)}
    members["set/a/zeros.png"] = bytes(300_000)  # over the lowered per-file limit
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(_tar_bytes(members, "w:gz"))
    refs = tar_refs(archive)
    assert all(r.data is None and r.packed_tar for r in refs.values())  # names only, no bytes
    assert refs["set/a/zeros.png"].size == 300_000

    from click.testing import CliRunner

    from dlprep.cli import cli

    monkeypatch.setattr(image_formats, "MAX_FILE_BYTES", 100_000)
    result = CliRunner().invoke(cli, ["--cache-dir", str(tmp_path / "c"), "import-images",
                                      str(archive), "--name", "tgz", "--size", "8"])
    assert result.exit_code == 0, result.output
    out = Path(result.stdout.strip().splitlines()[-1])
    with h5py.File(out, "r") as f:
        assert f["images"].shape == (6, 8, 8, 3)
        skipped = json.loads(f.attrs["skipped"])
    assert skipped == [{"name": "set/a/zeros.png", "reason": "300,000 bytes is over the "
                                                             "100,000-byte limit for one image "
                                                             "file"}]
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")
                and not p.name.startswith(".latest")]  # no scratch tar, no spool left


def test_tar_gz_bomb_is_stopped_while_listing(tmp_path: Path) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    small = png((1, 1, 1))
    first = tarfile.TarInfo("a/x.png")
    first.size = len(small)
    head = first.tobuf() + small + bytes(-len(small) % 512)
    info = tarfile.TarInfo("a/zeros.png")
    info.size = 16 << 20
    body = [comp.compress(head + info.tobuf())]
    zeros = bytes(1 << 20)
    body += [comp.compress(zeros) for _ in range(16)]
    body.append(comp.flush())
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(b"".join(body))
    assert archive.stat().st_size < 100_000
    with pytest.raises(ExtractionError, match=r"bomb.tar.gz.*compression ratio above 200:1"):
        tar_refs(archive, limits=ExtractLimits(ratio_grace_bytes=1 << 20))


def test_plain_tar_member_claiming_2_60_bytes_names_member_and_size(tmp_path: Path) -> None:
    members = {f"{c}/{i}.png": png((9, 9, 9)) for c in ("a", "b") for i in range(2)}
    archive = tmp_path / "huge.tar"
    archive.write_bytes(claim_huge_first_tar_member(_tar_bytes(members, "w")))
    with pytest.raises(FormatError, match=r"member a/0.png declares 1,152,921,504,606,846,976 "
                                          r"bytes, but only"):
        tar_refs(archive)
    proc = run_cli("import-images", str(archive), "--name", "huge", cache_dir=tmp_path / "c")
    err = one_line_error(proc)
    assert "huge.tar" in err and "a/0.png" in err and "1,152,921,504,606,846,976" in err


def test_max_pixels_must_be_positive(tmp_path: Path) -> None:
    root = class_tree(tmp_path / "src", 1)
    proc = invoke_cli("import-images", str(root), "--name", "x", "--max-pixels", "-1",
                      cache_dir=tmp_path / "c")
    assert "--max-pixels must be a positive pixel count, got -1" in one_line_error(proc)


@pytest.fixture
def small_fs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """An 8 MiB tmpfs (a real filesystem that fills up); skipped where mounting is impossible."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_disk_while_spooling_is_one_clear_line_and_leaves_nothing(
        tmp_path: Path, small_fs: Path) -> None:
    root = tmp_path / "src"
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(60):  # 120 x 128x128x3 = 5.9 MB of pixels, twice (spool + HDF5)
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), np.uint8)).save(
                root / cls / f"{i}.png")
    (small_fs / "filler").write_bytes(bytes(3 << 20))  # leaves ~5 MiB
    proc = invoke_cli("import-images", str(root), "--name", "full", "--size", "128",
                      cache_dir=small_fs / "cache")
    err = one_line_error(proc)
    assert "no space left on the device while writing decoded images" in err, err
    leftovers = [p for p in (small_fs / "cache").rglob("*") if p.is_file()
                 and (p.name.startswith(".") or p.suffix in (".spool", ".h5"))
                 and "locks" not in p.parts and p.name != ".dlprep-cache"]
    assert leftovers == []
    shutil.rmtree(small_fs / "cache", ignore_errors=True)
