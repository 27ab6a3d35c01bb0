"""Safe extraction: traversal, absolute paths, link escapes, devices, bombs, atomicity."""

from __future__ import annotations

import gzip
import io
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from dlprep.errors import ExtractionError
from dlprep.fetch.extract import ExtractLimits, archive_kind, decompress_file, extract_archive


def _tar(path: Path, entries: list[tuple[str, str, bytes | str]], mode: str = "w:gz") -> Path:
    """Write a tar: entries are (kind, name, data-or-linkname), kind in
    file/dir/sym/hard/chr/fifo."""
    with tarfile.open(path, mode) as tf:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                         "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = str(payload)
            tf.addfile(info)
    return path


def _zip(path: Path, entries: list[tuple[str, bytes, int | None]]) -> Path:
    """Write a zip: (name, data, unix mode or None)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".tmp-"))


def test_tar_extracts_files_dirs_and_inside_links(tmp_path: Path) -> None:
    arc = _tar(tmp_path / "ok.tar.gz", [
        ("dir", "data", b""), ("file", "data/a.txt", b"alpha"),
        ("file", "data/sub/b.bin", b"\x00\x01"),
        ("sym", "data/link-to-a", "a.txt"), ("hard", "data/hard-a", "data/a.txt"),
    ])
    assert archive_kind(arc) == "tar"
    out = extract_archive(arc, tmp_path / "out")
    assert (out / "data/a.txt").read_bytes() == b"alpha"
    assert (out / "data/sub/b.bin").read_bytes() == b"\x00\x01"
    link = out / "data/link-to-a"
    assert link.is_symlink() and link.read_bytes() == b"alpha"
    assert (out / "data/hard-a").read_bytes() == b"alpha"
    assert _leftovers(tmp_path) == []
    # idempotent: an existing destination is complete (it only appears by rename)
    assert extract_archive(arc, tmp_path / "out") == out


@pytest.mark.parametrize("entries, what", [
    ([("file", "ok.txt", b"fine"), ("file", "../evil.txt", b"pwned")], "'..'"),
    ([("file", "a/../../evil.txt", b"pwned")], "'..'"),
    ([("sym", "link", "../"), ("file", "link/evil.txt", b"pwned")], "leaves"),
    ([("sym", "abs-link", "/etc/passwd")], "absolute"),
    ([("hard", "hard", "../evil.txt")], "leaves"),
    ([("chr", "dev/null0", "")], "device or fifo"),
    ([("fifo", "pipe", "")], "device or fifo"),
    # a chain that only escapes once the first link exists on disk: s -> ., s/s2 -> ..
    ([("sym", "s", "."), ("sym", "s/s2", ".."), ("file", "s2/evil.txt", b"pwned")], ""),
])
def test_tar_unsafe_members_are_rejected_and_nothing_is_written(tmp_path: Path, entries: list,
                                                                 what: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    arc = _tar(work / "bad.tar.gz", entries)
    with pytest.raises(ExtractionError) as err:
        extract_archive(arc, work / "out")
    assert str(arc) in str(err.value) and what in str(err.value)
    assert not (work / "out").exists() and _leftovers(work) == []
    assert not (tmp_path / "evil.txt").exists() and not (work / "evil.txt").exists()


def test_tar_absolute_member_path_is_rejected(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    arc = _tar(tmp_path / "abs.tar", [("file", str(victim), b"pwned")], mode="w")
    with pytest.raises(ExtractionError, match="absolute path"):
        extract_archive(arc, tmp_path / "out")
    assert not victim.exists() and not (tmp_path / "out").exists()


def test_zip_extracts_and_rejects_unsafe(tmp_path: Path) -> None:
    ok = _zip(tmp_path / "ok.zip", [("d/", b"", None), ("d/x.txt", b"x" * 100, 0o100644)])
    assert archive_kind(ok) == "zip"
    out = extract_archive(ok, tmp_path / "ok")
    assert (out / "d/x.txt").read_bytes() == b"x" * 100

    cases = {
        "trav.zip": ([("fine.txt", b"1", None), ("../evil.txt", b"pwned", None)], "'..'"),
        "abs.zip": ([("/abs/evil.txt", b"pwned", None)], "absolute"),
        "drive.zip": ([("C:\\evil.txt", b"pwned", None)], "absolute"),
        "link.zip": ([("link", b"../../outside", stat.S_IFLNK | 0o777)], "leaves"),
        "fifo.zip": ([("pipe", b"", stat.S_IFIFO | 0o644)], "fifo"),
    }
    for name, (entries, what) in cases.items():
        arc = _zip(tmp_path / name, entries)
        with pytest.raises(ExtractionError) as err:
            extract_archive(arc, tmp_path / f"out-{name}")
        assert str(arc) in str(err.value) and what in str(err.value), name
        assert not (tmp_path / f"out-{name}").exists()
    assert not (tmp_path.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert _leftovers(tmp_path) == []


def test_gzip_bomb_is_stopped_by_the_default_ratio_limit(tmp_path: Path) -> None:
    bomb = tmp_path / "zeros.bin.gz"
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    with open(bomb, "wb") as fh:
        block = bytes(1 << 20)
        for _ in range(80):  # 80 MiB of zeros -> ~80 KB
            fh.write(comp.compress(block))
        fh.write(comp.flush())
    with pytest.raises(ExtractionError, match="compression ratio above 200:1") as err:
        extract_archive(bomb, tmp_path / "out")
    assert "zeros.bin" in str(err.value)
    assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []


def test_total_size_limit_stops_tar_and_zip_bombs(tmp_path: Path) -> None:
    limits = ExtractLimits(max_total_bytes=1 << 20)
    tar_bomb = _tar(tmp_path / "bomb.tar.gz", [("file", f"part{i}.bin", bytes(400_000))
                                               for i in range(4)])
    with pytest.raises(ExtractionError, match="part2.bin: extracted size passes the limit"):
        extract_archive(tar_bomb, tmp_path / "t", limits=limits)
    zip_bomb = _zip(tmp_path / "bomb.zip", [(f"p{i}", bytes(400_000), None) for i in range(4)])
    with pytest.raises(ExtractionError, match="declared size 1,600,000 bytes"):
        extract_archive(zip_bomb, tmp_path / "z", limits=limits)
    with pytest.raises(ExtractionError, match="more than 2 members"):
        extract_archive(tar_bomb, tmp_path / "m", limits=ExtractLimits(max_members=2))
    assert not any((tmp_path / d).exists() for d in ("t", "z", "m")) and _leftovers(tmp_path) == []


def test_single_streams_and_corrupt_archives(tmp_path: Path) -> None:
    payload = b"".join(b"%d,%x\n" % (i, i * 2654435761 % 2**32) for i in range(3000))
    src = tmp_path / "table.csv.gz"
    src.write_bytes(gzip.compress(payload))
    out = extract_archive(src, tmp_path / "x")
    assert (out / "table.csv").read_bytes() == payload
    assert decompress_file(src, tmp_path / "t.csv").read_bytes() == payload

    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(payload)[:200])
    with pytest.raises(ExtractionError, match="broken.csv.gz: corrupt gz"):
        extract_archive(broken, tmp_path / "y")
    with pytest.raises(ExtractionError, match="broken.csv.gz: corrupt gz"):
        decompress_file(broken, tmp_path / "y.csv")
    assert not (tmp_path / "y").exists() and not (tmp_path / "y.csv").exists()
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"hello")
    with pytest.raises(ExtractionError, match="not a tar, zip"):
        extract_archive(junk, tmp_path / "z")
    assert _leftovers(tmp_path) == []
