"""QuickDraw: real raw ndjson -> stroke-3 -> raster; binary records; checked .npy; fetch over
loopback (bitmaps and strokes) and previews."""

from __future__ import annotations

import hashlib
import io
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import ROOT, invoke_cli, run_cli
from loopback import LoopbackServer
from PIL import Image

from dlprep.errors import FormatError
from dlprep.formats.npy import read_npy_header, read_npy_rows
from dlprep.formats.quickdraw import (
    drawing_bbox,
    fit_transform,
    iter_binary,
    iter_ndjson,
    render_stroke3,
    stroke3_to_strokes,
    to_stroke3,
)


@pytest.fixture
def server() -> LoopbackServer:
    with LoopbackServer() as srv:
        yield srv


@pytest.fixture
def cat_ndjson(realdata: Path) -> Path:
    return realdata / "quickdraw" / "cat.ndjson"


def encode_binary(drawings: list[tuple[int, bytes, int, int, list[np.ndarray]]]) -> bytes:
    """Records in the documented little-endian layout (synthetic bytes, faithful format)."""
    out = bytearray()
    for key_id, country, recognized, ts, strokes in drawings:
        out += struct.pack("<Q2sbIH", key_id, country, recognized, ts, len(strokes))
        for s in strokes:
            out += struct.pack("<H", len(s)) + bytes(s[:, 0].astype(np.uint8)) + bytes(
                s[:, 1].astype(np.uint8))
    return bytes(out)


def simplified(strokes: list[np.ndarray]) -> list[np.ndarray]:
    """Align to the top-left and scale to 0..255 like upstream's simplified drawings."""
    pts = np.concatenate(strokes)
    lo, span = pts.min(0), (pts.max(0) - pts.min(0)).max()
    return [np.round((s - lo) * 255 / span) for s in strokes]


def test_real_raw_ndjson_parses(cat_ndjson: Path) -> None:
    drawings = list(iter_ndjson(cat_ndjson))
    assert len(drawings) == 25 and {d.word for d in drawings} == {"cat"}
    first = drawings[0]
    assert first.key_id == "5201136883597312" and first.countrycode == "VE" and first.recognized
    assert len(first.strokes) == 9 and all(s.shape[1] == 2 for s in first.strokes)
    assert list(iter_ndjson(cat_ndjson, limit=3))[2].key_id == drawings[2].key_id


def test_stroke3_round_trip_and_raster_matches_bbox(cat_ndjson: Path) -> None:
    for drawing in iter_ndjson(cat_ndjson):
        values = to_stroke3(drawing.strokes)
        assert values.dtype == np.float32 and values.shape == (
            sum(len(s) for s in drawing.strokes), 3)
        assert values[:, 2].sum() == len(drawing.strokes) and values[-1, 2] == 1
        back = stroke3_to_strokes(values)
        assert len(back) == len(drawing.strokes)
        for a, b in zip(back, drawing.strokes, strict=True):
            np.testing.assert_allclose(a, b, atol=1e-2)
        size, margin = 64, 3
        img = render_stroke3(values, size, margin=margin)
        assert img.shape == (size, size) and img.dtype == np.uint8 and (img > 0).sum() > 30
        ys, xs = np.nonzero(img)
        scale, sx, sy = fit_transform(drawing_bbox(drawing.strokes), size, margin)
        x0, y0, x1, y1 = drawing_bbox(drawing.strokes)
        want = np.array([x0 * scale + sx, y0 * scale + sy, x1 * scale + sx, y1 * scale + sy])
        got = np.array([xs.min(), ys.min(), xs.max(), ys.max()])
        assert np.abs(got - want).max() <= 1.0, (drawing.key_id, got, want)
        # the longer side spans the canvas minus the margins
        assert max(got[2] - got[0], got[3] - got[1]) >= size - 1 - 2 * margin - 1


def test_binary_records_parse_and_truncation_is_located(cat_ndjson: Path, tmp_path: Path) -> None:
    drawings = list(iter_ndjson(cat_ndjson, limit=5))
    records = [(1000 + i, b"VE", 1, 1488496000 + i, simplified(d.strokes))
               for i, d in enumerate(drawings)]
    path = tmp_path / "cat.bin"
    path.write_bytes(encode_binary(records))
    parsed = list(iter_binary(path))
    assert [d.key_id for d in parsed] == [str(1000 + i) for i in range(5)]
    assert parsed[0].countrycode == "VE" and parsed[0].word == "cat"
    for d, (_, _, _, _, strokes) in zip(parsed, records, strict=True):
        for a, b in zip(d.strokes, strokes, strict=True):
            np.testing.assert_array_equal(a, b)
    assert len(list(iter_binary(path, limit=2))) == 2
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    with pytest.raises(FormatError, match="cat.bin at byte") as info:
        list(iter_binary(path))
    assert info.value.offset > 0


def test_npy_header_check(tmp_path: Path) -> None:
    arr = np.arange(20 * 784, dtype=np.uint8).reshape(20, 784)
    good = tmp_path / "good.npy"
    np.save(good, arr)
    header = read_npy_header(good)
    assert header.shape == (20, 784) and header.dtype == np.uint8
    np.testing.assert_array_equal(read_npy_rows(good, 5), arr[:5])
    np.testing.assert_array_equal(read_npy_rows(good, 4, start=10), arr[10:14])
    v2 = tmp_path / "v2.npy"
    with open(v2, "wb") as fh:
        np.lib.format.write_array(fh, arr, version=(2, 0))
    np.testing.assert_array_equal(read_npy_rows(v2), arr)

    pickled = tmp_path / "pickle.npy"
    np.save(pickled, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(FormatError, match="refused") as info:
        read_npy_rows(pickled)
    assert str(pickled) in str(info.value)
    structured = tmp_path / "struct.npy"
    np.save(structured, np.zeros(3, dtype=[("a", "<i4"), ("b", "O")]), allow_pickle=True)
    with pytest.raises(FormatError, match="structured dtype"):
        read_npy_header(structured)
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(FormatError, match="truncated .npy data"):
        read_npy_rows(cut)
    evil = tmp_path / "evil.npy"
    payload = b"__import__('os').system('true')\n"
    evil.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(payload)) + payload)
    with pytest.raises(FormatError, match="unreadable .npy header"):
        read_npy_header(evil)
    with pytest.raises(FormatError, match="magic"):
        read_npy_header(_write(tmp_path / "x.npy", b"PK\x03\x04 not an npy"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _test_recipe(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """The shipped quickdraw recipe with its [[files]] replaced by ours (https URLs, real hashes
    of the served bytes), so the checksum path is exercised."""
    text = (ROOT / "recipes" / "quickdraw.toml").read_text()
    head = text.split("[[files]]", 1)[0]
    for name, data in files.items():
        head += (f'\n[[files]]\nname = "{name}"\nurls = ["https://storage.googleapis.com/'
                 f'quickdraw_dataset/full/numpy_bitmap/{name}"]\n'
                 f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nsize = {len(data)}\n')
    path = tmp_path / "quickdraw.toml"
    path.write_text(head)
    return path


def test_fetch_bitmaps_over_loopback(tmp_path: Path, server: LoopbackServer) -> None:
    rng = np.random.default_rng(1)
    arrays = {"cat": rng.integers(0, 256, (60, 784), dtype=np.uint8),
              "dog": rng.integers(0, 256, (30, 784), dtype=np.uint8),
              "The Eiffel Tower": rng.integers(0, 256, (50, 784), dtype=np.uint8)}
    served = {"cat.npy": _npy_bytes(arrays["cat"]), "dog.npy": _npy_bytes(arrays["dog"]),
              "The%20Eiffel%20Tower.npy": _npy_bytes(arrays["The Eiffel Tower"])}
    for name, data in served.items():
        server.serve(name, data)
    recipe = _test_recipe(tmp_path, {k: v for k, v in served.items() if k != "dog.npy"})
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", server.base_url,
                   "--categories", "cat,dog,The Eiffel Tower", "--per-class", "40",
                   cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (110, 28, 28, 1)
        assert [c.decode() for c in f["classes"][()]] == ["cat", "dog", "The Eiffel Tower"]
        np.testing.assert_array_equal(f["labels"][()], np.repeat([0, 1, 2], [40, 30, 40]))
        images = f["images"][()].reshape(110, 784)
        np.testing.assert_array_equal(images[:40], arrays["cat"][:40])
        np.testing.assert_array_equal(images[40:70], arrays["dog"])
        np.testing.assert_array_equal(images[70:], arrays["The Eiffel Tower"][:40])
        test = f["splits/test"][()]
        np.testing.assert_array_equal(np.bincount(f["labels"][()][test]), [4, 3, 4])
    assert (tmp_path / "c" / "raw" / "quickdraw" / "The%20Eiffel%20Tower.npy").is_file()
    # a pickled .npy under a category's name is refused with a one-line error
    server.serve("cow.npy", _pickled_npy())
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", server.base_url,
                   "--categories", "cow", cache_dir=tmp_path / "c")
    assert proc.returncode == 1 and "refused" in proc.stderr and "Traceback" not in proc.stderr


def _pickled_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array([object()] * 2, dtype=object), allow_pickle=True)
    return buf.getvalue()


def test_fetch_strokes_from_real_raw_ndjson(tmp_path: Path, server: LoopbackServer,
                                            cat_ndjson: Path) -> None:
    server.serve("cat.raw.ndjson", cat_ndjson)
    recipe = _test_recipe(tmp_path, {})
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", server.base_url,
                   "--categories", "cat", "--format", "strokes", "--source", "raw",
                   cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    path = Path(proc.stdout.strip().splitlines()[-1])
    drawings = list(iter_ndjson(cat_ndjson))
    with h5py.File(path, "r") as f:
        assert f.attrs["kind"] == "sequence" and f["values"].dtype == np.float32
        assert [d.label for d in f["values"].dims] == ["time", "feature"]
        offsets = f["offsets"][()]
        assert len(offsets) == 26 and offsets[-1] == f["values"].shape[0]
        values = f["values"][()]
        for i, d in enumerate(drawings):
            np.testing.assert_array_equal(values[offsets[i]:offsets[i + 1]], to_stroke3(d.strokes))
        assert [k.decode() for k in f["meta/key_id"][()]] == [d.key_id for d in drawings]
        img = render_stroke3(values[offsets[3]:offsets[4]], 28)
        assert (img > 0).sum() > 20
    out = tmp_path / "strokes.png"
    proc = invoke_cli("preview", str(path), "--out", str(out), "--count", "12",
                   cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    grid = np.asarray(Image.open(out).convert("L"))
    assert (grid < 128).sum() > 500  # dark strokes drawn on white tiles


def test_fetch_strokes_from_binary(tmp_path: Path, server: LoopbackServer,
                                   cat_ndjson: Path) -> None:
    drawings = list(iter_ndjson(cat_ndjson, limit=8))
    records = [(7 + i, b"DE", int(i != 1), 0, simplified(d.strokes))
               for i, d in enumerate(drawings)]
    server.serve("cat.bin", encode_binary(records))
    args = ["fetch", "quickdraw", "--recipe", str(_test_recipe(tmp_path, {})), "--mirror",
            server.base_url, "--categories", "cat", "--format", "strokes", "--source", "binary",
            "--per-class", "6"]
    proc = invoke_cli(*args, cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(Path(proc.stdout.strip().splitlines()[-1]), "r") as f:
        assert f["offsets"].shape == (7,)
        np.testing.assert_array_equal(f["values"][: f["offsets"][1]],
                                      to_stroke3(records[0][4]))
        np.testing.assert_array_equal(f["meta/recognized"][()], [1, 0, 1, 1, 1, 1])
    proc = invoke_cli(*args, "--recognized-only", cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(Path(proc.stdout.strip().splitlines()[-1]), "r") as f:
        assert [k.decode() for k in f["meta/key_id"][()]] == ["7", "9", "10", "11", "12", "13"]


def test_fetch_strokes_from_simplified_ndjson_default_source(tmp_path: Path,
                                                             server: LoopbackServer,
                                                             cat_ndjson: Path) -> None:
    import json

    lines = []
    for d in iter_ndjson(cat_ndjson, limit=10):
        strokes = simplified(d.strokes)
        lines.append(json.dumps({"word": "cat", "countrycode": d.countrycode,
                                 "timestamp": d.timestamp, "recognized": d.recognized,
                                 "key_id": d.key_id,
                                 "drawing": [[s[:, 0].astype(int).tolist(),
                                              s[:, 1].astype(int).tolist()] for s in strokes]}))
    server.serve("cat.ndjson", ("\n".join(lines) + "\n").encode())
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(_test_recipe(tmp_path, {})), "--mirror",
                   server.base_url, "--categories", "cat", "--format", "strokes",
                   cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(Path(proc.stdout.strip().splitlines()[-1]), "r") as f:
        assert f["offsets"].shape == (11,)
        values, offsets = f["values"][()], f["offsets"][()]
        for i in range(10):
            points = np.cumsum(values[offsets[i]:offsets[i + 1], :2], axis=0)
            assert points.min() == 0 and points.max() == 255  # simplified: the 0..255 box


@pytest.mark.slow
def test_rnn_baseline_trains_on_strokes(tmp_path: Path, server: LoopbackServer,
                                        cat_ndjson: Path) -> None:
    import json

    pytest.importorskip("torch")
    lines = cat_ndjson.read_text().splitlines()
    mirrored = []
    for line in lines:  # a synthetic second class: the real cats mirrored left-right
        obj = json.loads(line)
        obj["drawing"] = [[[-x for x in s[0]], *s[1:]] for s in obj["drawing"]]
        mirrored.append(json.dumps(obj))
    server.serve("cat.raw.ndjson", "\n".join(lines).encode())
    server.serve("dog.raw.ndjson", "\n".join(mirrored).encode())
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(_test_recipe(tmp_path, {})), "--mirror",
                   server.base_url, "--categories", "cat,dog", "--format", "strokes",
                   "--source", "raw", "--test-fraction", "0.2", cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    path = proc.stdout.strip().splitlines()[-1]
    proc = run_cli("train-baseline", "rnn", path, "--epochs", "1", "--out", str(tmp_path / "run"),
                   cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "run" / "metrics.json").is_file()


def test_category_specs_use_the_bucket_layout_and_published_hashes(tmp_path: Path) -> None:
    from dlprep.cache import Cache
    from dlprep.prepare.core import PrepareContext
    from dlprep.prepare.quickdraw import category_spec
    from dlprep.recipes import find_recipe

    recipe = find_recipe("quickdraw")
    ctx = PrepareContext(recipe=recipe, options={}, cache=Cache.open(tmp_path), name="quickdraw")
    cat = category_spec(ctx, "cat", "numpy_bitmap")
    assert cat.sha256 == "21a281839d3f2eef601d57d2338a4eafdf24649f8d0a0e42d3ec3e595911463e"
    assert cat.size == 96_590_448
    assert cat.urls == ["https://storage.googleapis.com/quickdraw_dataset/full/numpy_bitmap/cat.npy"]
    eiffel = category_spec(ctx, "The Eiffel Tower", "simplified")
    assert eiffel.name == "The%20Eiffel%20Tower.ndjson" and eiffel.sha256 is None
    assert eiffel.urls == ["https://storage.googleapis.com/quickdraw_dataset/full/simplified/"
                           "The%20Eiffel%20Tower.ndjson"]
    raw = category_spec(ctx, "cat", "raw")
    assert raw.name == "cat.raw.ndjson" and raw.urls[0].endswith("/full/raw/cat.ndjson")
    assert category_spec(ctx, "cat", "binary").urls[0].endswith("/full/binary/cat.bin")
