"""The fast conversion path: streamed tar members, histogram statistics, rows written at any
position by a background thread, and CIFAR archives whose members come in any order."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from dlprep.cache import Cache
from dlprep.errors import FormatError, StoreError
from dlprep.formats.tarstream import TarStream
from dlprep.pixelstats import channel_sums, histogram_sums, pixel_sums, strided_histogram
from dlprep.prepare.core import PrepareContext, builder_module
from dlprep.recipes import parse_recipe
from dlprep.store import ImageTensorWriter, atomic_output


def _tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT,
               extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info in extra or []:
            tar.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _read_all(data: bytes, *, seek: bool = False) -> dict[str, bytes]:
    out = {}
    stream = TarStream(io.BytesIO(data), "t.tar", seek=seek)
    for member in stream:
        if seek:
            out[member.name] = b"%d" % member.size
            continue
        buf = bytearray(member.size)
        stream.read_into(memoryview(buf))
        out[member.name] = bytes(buf)
    return out


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tar_stream_matches_tarfile_for_every_format(fmt: int) -> None:
    long_name = "d/" + "x" * 150 + ".bin" if fmt != tarfile.USTAR_FORMAT else "d/short.bin"
    members = [("a.txt", b"hello"), (long_name, bytes(range(256)) * 5), ("empty", b""),
               ("b/odd", b"z" * 513)]
    data = _tar_bytes(members, fmt, extra=[tarfile.TarInfo("adir")])
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        expected = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert _read_all(data) == expected
    assert _read_all(data, seek=True) == {k: b"%d" % len(v) for k, v in expected.items()}


def test_tar_stream_skips_unread_members_and_names_truncation() -> None:
    data = _tar_bytes([("one", b"1" * 1000), ("two", b"2" * 3000)])
    stream = TarStream(io.BytesIO(data), "t.tar")
    names = []
    for member in stream:  # reads nothing: every member's data is skipped
        names.append((member.name, member.size))
    assert names == [("one", 1000), ("two", 3000)]
    cut = data[:512 + 1024 + 512 + 100]  # inside the second member's data
    stream = TarStream(io.BytesIO(cut), "t.tar")
    with pytest.raises(FormatError, match=r"t\.tar.*member two truncated \(100 of 3,000"):
        for member in stream:
            stream.read_into(memoryview(bytearray(member.size)))
    bad = bytearray(data)
    bad[148:156] = b"0000000\0"  # wrong header checksum
    with pytest.raises(FormatError, match="at byte 0: bad tar header: bad checksum"):
        list(TarStream(io.BytesIO(bytes(bad)), "t.tar"))


def test_strided_histogram_equals_numpy_counts() -> None:
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (37, 3073), dtype=np.uint8)
    view = memoryview(raw.reshape(-1))
    for ch in range(3):
        got = strided_histogram(view, 1 + ch * 1024, 1024, len(raw), 3073)
        plane = raw[:, 1 + ch * 1024:1 + (ch + 1) * 1024]
        np.testing.assert_array_equal(got, np.bincount(plane.ravel(), minlength=256))
        s1, s2 = histogram_sums(got)
        assert s1 == int(plane.sum(dtype=np.uint64))
        assert s2 == int((plane.astype(np.uint64) ** 2).sum())
    assert strided_histogram(view, 0, 1024, 0, 3073).sum() == 0
    with pytest.raises(ValueError, match="exceed"):
        strided_histogram(view, 3000, 1024, 37, 3073)


def test_pixel_sums_fast_and_numpy_paths_agree() -> None:
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (50, 28, 28, 1), dtype=np.uint8)
    fast = channel_sums(gray)
    assert fast is not None
    total, total_sq, count = fast
    assert int(total[0]) == int(gray.sum(dtype=np.uint64))
    assert int(total_sq[0]) == int((gray.astype(np.uint64) ** 2).sum()) and count == gray.size
    rgb = rng.integers(0, 256, (20, 8, 8, 3), dtype=np.uint8)
    assert channel_sums(rgb) is None  # no fast path: NumPy does it
    t, t2, c = pixel_sums(rgb)
    np.testing.assert_array_equal(t, rgb.reshape(-1, 3).sum(0, dtype=np.uint64))
    assert c == 20 * 64 and int(t2[2]) == int((rgb[..., 2].astype(np.uint64) ** 2).sum())


def test_writer_rows_in_any_order_in_the_background(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (30, 4, 4, 3), dtype=np.uint8)
    out = tmp_path / "w.h5"
    with atomic_output(out) as tmp:
        writer = ImageTensorWriter(tmp, 30, (4, 4, 3))
        try:
            for lo in (20, 0, 10):
                writer.write_at(lo, images[lo:lo + 10], np.arange(lo, lo + 10),
                                split="train", background=True)
            writer.finish(recipe="r", recipe_version="1", splits={"train": np.arange(30)},
                          classes=None)
        finally:
            writer.close()
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["images"][()], images)
        np.testing.assert_array_equal(f["labels"][()], np.arange(30))
        mean = images.reshape(-1, 3).mean(0) / 255
        np.testing.assert_allclose(f["mean"][()], mean, rtol=1e-6)
    with pytest.raises(StoreError, match="wrote 10 images, announced 30"):
        with atomic_output(tmp_path / "short.h5") as tmp:
            writer = ImageTensorWriter(tmp, 30, (4, 4, 3))
            try:
                writer.write_at(0, images[:10], split="train", background=True)
                writer.finish(recipe="r", recipe_version="1", splits={}, classes=None)
            finally:
                writer.close()
    assert not (tmp_path / "short.h5").exists()


def _cifar_members(rng: np.random.Generator, counts: dict[str, int]
                   ) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, np.ndarray]]]:
    data, truth = {}, {}
    for name, n in counts.items():
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        planes = images.transpose(0, 3, 1, 2).reshape(n, -1)
        data[name] = np.concatenate([labels[:, None], planes], 1).tobytes()
        truth[name] = (images, labels.astype(np.int64))
    return data, truth


def _build(tmp_path: Path, archive: Path, train: list[str], test: list[str]) -> Path:
    recipe = parse_recipe({"name": "c", "title": "c", "version": "1", "kind": "image",
                           "parser": "cifar10-bin", "classes": [str(i) for i in range(10)],
                           "files": [{"name": archive.name, "urls": ["file:///x"]}],
                           "splits": {"train": train, "test": test}}, tmp_path / "c.toml")
    module = builder_module(recipe)
    ctx = PrepareContext(recipe=recipe, options={}, cache=Cache(tmp_path / "cache"), name="c",
                         files={archive.name: archive})
    out = tmp_path / f"{archive.name}.h5"
    with atomic_output(out) as tmp:
        module.build(ctx, tmp)
    return out


@pytest.mark.parametrize("compress", [False, True])
def test_cifar_members_in_any_archive_order_land_in_recipe_order(tmp_path: Path,
                                                                 compress: bool) -> None:
    rng = np.random.default_rng(6)
    counts = {"b/data_1.bin": 5000, "b/data_2.bin": 7, "b/test.bin": 4100, "b/data_3.bin": 3}
    data, truth = _cifar_members(rng, counts)
    order = ["b/test.bin", "b/readme", "b/data_3.bin", "b/data_1.bin", "b/data_2.bin"]
    tar = _tar_bytes([(n, data.get(n, b"hello")) for n in order])
    archive = tmp_path / ("c.tar.gz" if compress else "c.tar")
    archive.write_bytes(gzip.compress(tar, 1) if compress else tar)
    train = ["b/data_1.bin", "b/data_2.bin", "b/data_3.bin"]
    out = _build(tmp_path, archive, train, ["b/test.bin"])
    with h5py.File(out) as f:
        want = train + ["b/test.bin"]
        np.testing.assert_array_equal(f["images"][()], np.concatenate([truth[m][0] for m in want]))
        np.testing.assert_array_equal(f["labels"][()], np.concatenate([truth[m][1] for m in want]))
        np.testing.assert_array_equal(f["splits/test"][()], np.arange(5010, 9110))
        pixels = np.concatenate([truth[m][0] for m in train]).reshape(-1, 3) / 255
        np.testing.assert_allclose(f["mean"][()], pixels.mean(0), rtol=1e-6)
        np.testing.assert_allclose(f["std"][()], pixels.std(0), rtol=1e-6)


def test_cifar_archive_errors_name_the_member(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data, _ = _cifar_members(rng, {"b/a.bin": 3, "b/t.bin": 2})
    twice = tmp_path / "twice.tar"
    twice.write_bytes(_tar_bytes([("b/a.bin", data["b/a.bin"]), ("b/t.bin", data["b/t.bin"]),
                                  ("b/a.bin", data["b/a.bin"])]))
    with pytest.raises(FormatError, match="member b/a.bin twice"):
        _build(tmp_path, twice, ["b/a.bin"], ["b/t.bin"])
    cut = tmp_path / "cut.tar.gz"
    full = _tar_bytes([("b/a.bin", data["b/a.bin"]), ("b/t.bin", data["b/t.bin"])])
    with tarfile.open(fileobj=io.BytesIO(full)) as tar:
        start = tar.getmember("b/t.bin").offset_data
    cut.write_bytes(gzip.compress(full[:start + 100]))
    with pytest.raises(FormatError, match=r"cut\.tar\.gz.*member b/t.bin truncated"):
        _build(tmp_path, cut, ["b/a.bin"], ["b/t.bin"])
    missing = tmp_path / "missing.tar"
    missing.write_bytes(_tar_bytes([("b/a.bin", data["b/a.bin"])]))
    with pytest.raises(FormatError, match="lacks member.*b/t.bin"):
        _build(tmp_path, missing, ["b/a.bin"], ["b/t.bin"])
    assert not list(tmp_path.glob("*.h5")) and not list(tmp_path.glob(".tmp-*"))


def test_prefetch_yields_in_order_reraises_and_closes_early() -> None:
    from dlprep.background import Prefetch

    with Prefetch(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))

    def failing():  # type: ignore[no-untyped-def]
        yield 1
        raise FormatError("f.bin", 7, "broken")

    with pytest.raises(FormatError, match="f.bin at byte 7: broken"):
        with Prefetch(failing()) as items:
            list(items)
    closed = []

    def endless():  # type: ignore[no-untyped-def]
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.append(True)

    with Prefetch(endless(), depth=2) as items:
        for n in items:
            if n == 5:
                break
    assert closed == [True]


@pytest.mark.parametrize("compress", [False, True])
def test_idx_stream_blocks_and_errors(tmp_path: Path, compress: bool) -> None:
    from dlprep.formats.idx import IdxStream, parse_idx_bytes

    rng = np.random.default_rng(8)
    arr = rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8)
    data = bytes([0, 0, 8, 3]) + np.array(arr.shape, ">u4").tobytes() + arr.tobytes()

    def write(name: str, payload: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(gzip.compress(payload) if compress else payload)
        return path

    with IdxStream(write("ok", data)) as stream:
        blocks = list(stream.blocks(target_bytes=784 * 300))
    assert [len(b) for b in blocks] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate(blocks), parse_idx_bytes(data))
    def consume(path: Path) -> None:  # a plain file is checked on opening, a stream on reading
        with IdxStream(path) as stream:
            list(stream.blocks())

    with pytest.raises(FormatError, match="truncated IDX data") as err:
        consume(write("cut", data[:-100]))
    assert err.value.offset == len(data) - 100 and "cut" in str(err.value)
    with pytest.raises(FormatError, match="trailing bytes") as err:
        consume(write("long", data + b"xx"))
    assert err.value.offset == len(data)
    with pytest.raises(FormatError, match="bad IDX magic"):
        IdxStream(write("magic", b"\x01" + data[1:]))


def test_byte_histogram_on_mostly_black_images() -> None:
    from dlprep.pixelstats import byte_histogram

    rng = np.random.default_rng(9)
    x = rng.integers(0, 256, 200_003, dtype=np.uint8)
    x[rng.random(x.size) < 0.8] = 0  # mostly black, like MNIST
    np.testing.assert_array_equal(byte_histogram(memoryview(x)), np.bincount(x, minlength=256))
    assert byte_histogram(b"").sum() == 0 and byte_histogram(b"\x07")[7] == 1
    got = channel_sums(x[:200_000].reshape(-1, 20, 10, 1))
    assert got is not None and int(got[0][0]) == int(x[:200_000].sum(dtype=np.uint64))
    assert int(got[1][0]) == int((x[:200_000].astype(np.uint64) ** 2).sum())
    raw = rng.integers(0, 256, (9, 3074), dtype=np.uint8)  # RGBA view at odd offsets/strides
    got = strided_histogram(memoryview(raw.reshape(-1)), 2 + 1024, 1024, 9, 3074)
    np.testing.assert_array_equal(got, np.bincount(raw[:, 1026:2050].ravel(), minlength=256))


def test_prefetch_idle_hook_runs_while_waiting() -> None:
    import time

    from dlprep.background import Prefetch

    def slow():  # type: ignore[no-untyped-def]
        for i in range(3):
            time.sleep(0.05)
            yield i

    ticks = []
    with Prefetch(slow()) as items:
        assert list(items.items(idle=lambda: ticks.append(1), every=0.005)) == [0, 1, 2]
        assert not items.ready()
    assert len(ticks) >= 3
