"""Bit rot: every dataset carries a CRC-32 written while the rows were written; `cache verify`
finds a flipped byte in any dataset; damaged labels, split rows and `latest` pointers are refused
with one clear line (issue 10)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from dlprep.cli import main
from dlprep.data import PreparedFile
from dlprep.errors import StoreError
from dlprep.store import ImageTensorWriter, SequenceWriter, atomic_output
from dlprep.store.checksum import combine_blocks, crc32_combine


def _fetch_sample(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["--cache-dir", str(cache_dir), "-q", "fetch", "mnist-sample"]) == 0
    return Path(capsys.readouterr().out.strip().splitlines()[-1])


def _expected_crc(dset: h5py.Dataset) -> str:
    """The checksum docs/FORMAT.md defines, computed independently of dlprep."""
    data = dset[()]
    if h5py.check_string_dtype(dset.dtype) is not None:
        raw = b"".join(struct.pack("<Q", len(v)) + v for v in np.asarray(data).reshape(-1))
    else:
        raw = np.ascontiguousarray(data).tobytes()
    return f"crc32:{zlib.crc32(raw):08x}"


def _all_datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    f.visititems(lambda name, obj: found.__setitem__(name, obj)
                 if isinstance(obj, h5py.Dataset) else None)
    return found


def _flip_byte(path: Path, dataset: str, index: int = 0, mask: int = 0x01) -> None:
    """Flip bits of one stored byte of ``dataset`` in the file itself (what bit rot does)."""
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    assert offset is not None
    with open(path, "r+b") as fh:
        fh.seek(offset + index)
        byte = fh.read(1)[0]
        fh.seek(offset + index)
        fh.write(bytes([byte ^ mask]))


def test_crc32_combine_matches_zlib_for_blocks_in_any_order() -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes()
    cuts = [0, *sorted(rng.choice(np.arange(1, len(data)), 30, replace=False).tolist()),
            len(data)]
    blocks = [(a, b - a, zlib.crc32(data[a:b])) for a, b in zip(cuts, cuts[1:], strict=False)]
    rng.shuffle(blocks)
    assert combine_blocks(blocks, len(data)) == zlib.crc32(data)
    assert combine_blocks(blocks[1:], len(data)) is None  # a gap: no value
    assert crc32_combine(zlib.crc32(b"abc"), zlib.crc32(b""), 0) == zlib.crc32(b"abc")


def test_every_dataset_of_a_prepared_file_carries_its_checksum(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _fetch_sample(cache_dir, capsys)
    with h5py.File(path, "r") as f:
        datasets = _all_datasets(f)
        assert {"images", "labels", "classes", "mean", "std", "splits/train",
                "splits/test"} <= set(datasets)
        for name, dset in datasets.items():
            assert dset.attrs["checksum"] == _expected_crc(dset), name


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_image_rows_written_out_of_order_in_the_background_get_the_right_checksum(
        tmp_path: Path, compression: str | None) -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (50, 6, 5, 3), dtype=np.uint8)
    out = tmp_path / "x.h5"
    with atomic_output(out) as tmp:
        w = ImageTensorWriter(tmp, 50, (6, 5, 3), compression=compression, chunk_rows=8)
        for start in (30, 0, 45, 10):  # rows 30-44, 0-9, 45-49, 10-29
            stop = {30: 45, 0: 10, 45: 50, 10: 30}[start]
            w.write_at(start, images[start:stop], np.zeros(stop - start), split="train",
                       background=True)
        w.finish(recipe="toy", recipe_version="", splits={"train": np.arange(50)},
                 classes=["a"])
    with h5py.File(out, "r") as f:
        assert f["images"].attrs["checksum"] == f"crc32:{zlib.crc32(images.tobytes()):08x}"
        assert "recipe_version" not in f.attrs  # no recipe, no recipe version


def _sequence_file(cache_dir: Path) -> Path:
    out = cache_dir / "prepared" / "toytext" / "0123456789abcdef.h5"
    rng = np.random.default_rng(2)
    with atomic_output(out) as tmp:
        w = SequenceWriter(tmp, chunk=64)
        for _ in range(40):
            w.append(rng.integers(4, 50, int(rng.integers(5, 300)), dtype=np.int32))
        w.finish(recipe="toytext", recipe_version="1", splits={"train": np.arange(30),
                                                               "test": np.arange(30, 40)},
                 labels=rng.integers(0, 2, 40), classes=["x", "y"],
                 vocab=["<pad>", "<unk>", "<bos>", "<eos>"] + [f"w{i}" for i in range(46)],
                 tokenizer={"type": "word"})
    (out.parent / "latest").write_text(out.name + "\n")
    return out


def test_sequence_files_carry_checksums_too(cache_dir: Path) -> None:
    path = _sequence_file(cache_dir)
    with h5py.File(path, "r") as f:
        for name, dset in _all_datasets(f).items():
            assert dset.attrs["checksum"] == _expected_crc(dset), name


@pytest.mark.parametrize("dataset, index", [("images", 4000 * 784 + 300), ("labels", 8 * 17),
                                            ("splits/train", 8 * 100)])
def test_cache_verify_names_the_dataset_with_a_flipped_byte(
        cache_dir: Path, capsys: pytest.CaptureFixture[str], dataset: str, index: int) -> None:
    path = _fetch_sample(cache_dir, capsys)
    assert main(["--cache-dir", str(cache_dir), "cache", "verify"]) == 0
    capsys.readouterr()
    _flip_byte(path, dataset, index)  # stays in range: only the checksum can tell
    assert main(["--cache-dir", str(cache_dir), "cache", "verify", "mnist-sample"]) == 1
    out, err = capsys.readouterr()
    bad = [line for line in out.splitlines() if line.startswith("BAD")]
    assert bad == [f"BAD  {path}: dataset {dataset!r} is damaged (content crc32:"
                   + bad[0].split("content crc32:")[1]] if bad else False
    assert err.startswith("error: 1 cached file(s) failed verification") and err.count("\n") == 1
    # --quick reads metadata only: an in-range flip inside the data goes unseen there
    assert main(["--cache-dir", str(cache_dir), "cache", "verify", "--quick"]) == 0
    assert f"ok   {path}" in capsys.readouterr().out


def test_cache_verify_finds_a_flipped_token(cache_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _sequence_file(cache_dir)
    assert main(["--cache-dir", str(cache_dir), "cache", "verify", "toytext"]) == 0
    capsys.readouterr()
    with h5py.File(path, "r") as f:
        assert f["tokens"].chunks  # chunked: flip a byte of the first chunk on disk
        offset = f["tokens"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as fh:
        fh.seek(offset + 5)
        byte = fh.read(1)[0]
        fh.seek(offset + 5)
        fh.write(bytes([byte ^ 0x02]))
    assert main(["--cache-dir", str(cache_dir), "cache", "verify", "toytext"]) == 1
    out = capsys.readouterr().out
    assert f"BAD  {path}: dataset 'tokens' is damaged" in out


@pytest.mark.parametrize("dataset, index, mask, what", [
    ("labels", 8 * 17 + 7, 0x80, "dataset 'labels' holds -"),  # sign bit: a negative label
    ("labels", 8 * 17 + 1, 0x01, "dataset 'labels' holds 2"),  # 256 + label: no such class
    ("splits/test", 8 * 3 + 2, 0x01, "dataset 'splits/test' holds row"),
])
def test_out_of_range_labels_and_split_rows_are_refused_on_open(
        cache_dir: Path, capsys: pytest.CaptureFixture[str], dataset: str, index: int,
        mask: int, what: str) -> None:
    path = _fetch_sample(cache_dir, capsys)
    _flip_byte(path, dataset, index, mask)
    with pytest.raises(StoreError, match="damaged") as exc:
        PreparedFile(path)
    assert str(exc.value).startswith(f"{path}: {what}")
    for argv in (["info", "mnist-sample"], ["cache", "verify", "--quick"]):
        code = main(["--cache-dir", str(cache_dir), *argv])
        out, err = capsys.readouterr()
        assert code == 1, argv
        assert what in out + err and "internal error" not in err and "Traceback" not in err


def test_files_without_checksums_verify_structure_only(cache_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = _fetch_sample(cache_dir, capsys)
    with h5py.File(path, "r+") as f:  # as written before checksums existed
        for dset in _all_datasets(f).values():
            del dset.attrs["checksum"]
    assert main(["--cache-dir", str(cache_dir), "cache", "verify", "mnist-sample"]) == 0
    assert "(structure only: written before dataset checksums" in capsys.readouterr().out


@pytest.mark.parametrize("pointer", ["../../../outside.h5", "/etc/passwd", "..", "sub/x.h5"])
def test_latest_pointer_naming_a_file_outside_its_folder_is_refused(
        cache_dir: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        pointer: str) -> None:
    path = _fetch_sample(cache_dir, capsys)
    outside = cache_dir / "outside.h5"
    outside.write_bytes(path.read_bytes())  # a valid file, but not in the dataset's folder
    (path.parent / "latest").write_text(pointer + "\n")
    code = main(["--cache-dir", str(cache_dir), "info", "mnist-sample"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {path.parent / 'latest'}: names {pointer!r}")
    assert main(["--cache-dir", str(cache_dir), "cache", "prune"]) == 0
    assert path.is_file() and outside.is_file()  # prune kept the folder as it is


def test_latest_pointer_through_a_symlink_out_of_the_folder_is_refused(
        cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _fetch_sample(cache_dir, capsys)
    outside = cache_dir / "elsewhere.h5"
    outside.write_bytes(path.read_bytes())
    (path.parent / "link.h5").symlink_to(outside)
    (path.parent / "latest").write_text("link.h5\n")
    assert main(["--cache-dir", str(cache_dir), "info", "mnist-sample"]) == 1
    assert "not a file in" in capsys.readouterr().err


def test_mean_std_reduced_from_per_image_sums(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Image shards return exact per-image sums; the writer reduces the train split's mean/std
    from them (the same float32 values as reading the pixels back) without reading rows."""
    from dlprep.pixelstats import image_sums, mean_std

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (40, 7, 5, 3), dtype=np.uint8)
    images[5] = 255  # the largest squares
    sums = image_sums(images)
    x = images.reshape(40, -1, 3).astype(np.uint64)
    assert sums.dtype == np.uint64 and sums.shape == (40, 2, 3)
    assert (sums[:, 0] == x.sum(1)).all() and (sums[:, 1] == (x * x).sum(1)).all()
    assert image_sums(images[:0]).shape == (0, 2, 3)
    monkeypatch.setattr("dlprep.pixelstats._IMAGE_SUMS_VALUES", 100)  # blocks of 2 images
    assert (image_sums(images) == sums).all()
    monkeypatch.undo()
    train = np.array([0, 3, 5, 6, 11, 17, 30, 39])

    def build(name: str, row_sums: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        out = tmp_path / name
        with atomic_output(out) as tmp:
            w = ImageTensorWriter(tmp, 40, (7, 5, 3))
            w.write(images, np.zeros(40))
            if row_sums is not None:
                w.set_row_sums(row_sums)
            w.finish(recipe="toy", recipe_version="", splits={"train": train}, classes=["a"])
        with h5py.File(out, "r") as f:
            return f["mean"][()], f["std"][()]

    read_back = build("read.h5", None)
    reduced = build("sums.h5", sums)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(read_back, reduced, strict=True))
    want = mean_std(x[train].sum((0, 1)), (x[train] ** 2).sum((0, 1)), len(train) * 35, 3)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(want, reduced, strict=True))
    # the sums given are what counts (no read-back): all-zero sums give a zero mean
    zero_mean, _ = build("zeros.h5", np.zeros((40, 2, 3), np.uint64))
    assert (zero_mean == 0).all() and (reduced[0] > 0).all()
    with atomic_output(tmp_path / "bad.h5") as tmp:
        w = ImageTensorWriter(tmp, 40, (7, 5, 3))
        with pytest.raises(StoreError, match=r"row sums must be uint64 \(40, 2, 3\)"):
            w.set_row_sums(np.zeros((40, 3), np.uint64))
        w.close()


def test_crc_append_is_the_crc_of_the_concatenation() -> None:
    import os
    import zlib

    from dlprep.store.checksum import CrcAppend, crc32_combine

    for length in (1, 7, 4096, 16 * 64 * 64 * 4):
        append = CrcAppend(length)
        assert append(0x12345678, 0x9ABCDEF0) == crc32_combine(0x12345678, 0x9ABCDEF0, length)
        for head in (b"", os.urandom(1000)):
            block = os.urandom(length)
            assert append(zlib.crc32(head), zlib.crc32(block)) == zlib.crc32(head + block)
