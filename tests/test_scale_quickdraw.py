"""QuickDraw on shards (dlprep.scale): bitmaps by category and row range, strokes by category,
built from the real drawings in tests/data/realdata/quickdraw. Serial, a real LocalCluster of 2
worker processes (``--scheduler``) and ``--workers 2`` give the same bytes, which are also what
the source files hold (checked independently of the builder); a run killed after some shards
resumes without redoing them; bad input stays one line with nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import REALDATA, ROOT, invoke_cli, run_cli
from scale_shards import dask_imports, finished_shards, run_and_kill, same_prepared
from test_quickdraw import encode_binary, simplified

from dlprep.errors import FormatError
from dlprep.formats.quickdraw import Drawing, iter_binary, iter_ndjson, render_stroke3, to_stroke3
from dlprep.pixelstats import mean_std
from dlprep.prepare import quickdraw_shards
from dlprep.prepare.splits import stratified_split
from dlprep.scale import last_timings

pytest.importorskip("distributed")

BITMAPS = ("cat", "dog", "The Eiffel Tower")


def _mirrored(line: str, i: int) -> str:
    """A real drawing mirrored left-right, every third one marked not recognized."""
    obj = json.loads(line)
    obj["drawing"] = [[[-x for x in s[0]], *s[1:]] for s in obj["drawing"]]
    obj["recognized"] = i % 3 != 0
    obj["key_id"] = f"9{obj['key_id']}"
    return json.dumps(obj)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mirror folder of category files made from the 25 real cat drawings: numpy_bitmap
    renders (cat 25 rows, dog 75, The Eiffel Tower 25), raw ndjson and binary records."""
    src = REALDATA / "quickdraw" / "cat.ndjson"
    root = tmp_path_factory.mktemp("mirror")
    drawings = list(iter_ndjson(src))
    img = np.stack([render_stroke3(to_stroke3(d.strokes), 28).reshape(784) for d in drawings])
    np.save(root / "cat.npy", img)
    np.save(root / "dog.npy", np.concatenate([img[:, ::-1], 255 - img, img[::-1]]))
    np.save(root / "The%20Eiffel%20Tower.npy", np.ascontiguousarray(img[::-1, ::-1]))
    lines = src.read_text().splitlines()
    (root / "cat.raw.ndjson").write_bytes(src.read_bytes())
    (root / "dog.raw.ndjson").write_text("\n".join(_mirrored(x, i) for i, x in enumerate(lines)))
    for name, flag in (("cat", lambda i: int(i % 4 != 1)), ("owl", lambda i: 0)):
        records = [(100 + i, b"FR", flag(i), 0, simplified(d.strokes))
                   for i, d in enumerate(drawings)]
        (root / f"{name}.bin").write_bytes(encode_binary(records))
    return root


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped recipe without its [[files]]: every category comes from the mirror."""
    path = tmp_path_factory.mktemp("recipe") / "quickdraw.toml"
    path.write_text((ROOT / "recipes" / "quickdraw.toml").read_text().split("[[files]]", 1)[0])
    return path


def _fetch(cache: Path, recipe: Path, mirror: Path, *args: str,
           env: dict[str, str] | None = None) -> Path:
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", str(mirror),
                      *args, cache_dir=cache, env=env)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])


def _same(a: Path, b: Path) -> None:
    """Every dataset's bytes, and the attributes that describe the data, are equal."""
    same_prepared(a, b)


def test_bitmaps_by_row_range_on_a_cluster_match_serial_and_the_files(
        tmp_path: Path, mirror: Path, recipe: Path, scheduler: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quickdraw_shards, "SHARD_ROWS", 16)  # 2 + 5 + 2 row-range shards
    args = ("--categories", ",".join(BITMAPS), "--per-class", "0")
    serial = _fetch(tmp_path / "c1", recipe, mirror, *args)
    timings = last_timings()
    assert timings["executor"] == "this process" and timings["n_shards"] == 9
    cluster = _fetch(tmp_path / "c2", recipe, mirror, *args, "--scheduler", scheduler)
    assert last_timings()["executor"] == f"the Dask scheduler {scheduler}"
    assert serial.name == cluster.name  # neither the executor nor the shards are configuration
    _same(serial, cluster)
    sources = [np.load(mirror / f"{c.replace(' ', '%20')}.npy") for c in BITMAPS]
    with h5py.File(serial, "r") as f:
        images = f["images"][()]
        labels = f["labels"][()]
        assert images.shape == (125, 28, 28, 1)
        np.testing.assert_array_equal(images.reshape(125, 784), np.concatenate(sources))
        np.testing.assert_array_equal(labels, np.repeat([0, 1, 2], [25, 75, 25]))
        assert [c.decode() for c in f["classes"][()]] == list(BITMAPS)
        want = stratified_split(labels, {"test": 0.1}, 0)
        for name in want:
            np.testing.assert_array_equal(f[f"splits/{name}"][()], want[name])
        # reduced from the shards' per-row sums: exactly what reading the train rows back
        # gives (the exact integer sums of their pixels)
        train = images[np.sort(want["train"])].astype(np.uint64)
        mean, std = mean_std(train.sum(axis=(0, 1, 2)), (train * train).sum(axis=(0, 1, 2)),
                             train[..., 0].size, 1)
        np.testing.assert_array_equal(f["mean"][()], mean)
        np.testing.assert_array_equal(f["std"][()], std)
        np.testing.assert_allclose(f["mean"][()], [train.mean() / 255], rtol=1e-6)
    # --per-class reads only the first rows of each category: 2 shards of 16 + 4 rows each
    few = _fetch(tmp_path / "c1", recipe, mirror, "--categories", ",".join(BITMAPS),
                 "--per-class", "20", "--scheduler", scheduler)
    assert last_timings()["n_shards"] == 6
    with h5py.File(few, "r") as f:
        np.testing.assert_array_equal(f["images"][()].reshape(60, 784),
                                      np.concatenate([s[:20] for s in sources]))
    assert not list(tmp_path.glob("c*/prepared/*/.*.parts"))


def _strokes_of(drawings: list[Drawing]) -> tuple[np.ndarray, np.ndarray]:
    values = [to_stroke3(d.strokes) for d in drawings]
    return np.concatenate(values), np.cumsum([0] + [len(v) for v in values])


def test_strokes_with_two_workers_and_on_a_cluster_match_serial(
        tmp_path: Path, mirror: Path, recipe: Path, scheduler: str) -> None:
    args = ("--categories", "cat,dog", "--format", "strokes", "--source", "raw",
            "--recognized-only", "--per-class", "12")
    serial = _fetch(tmp_path / "c1", recipe, mirror, *args)
    assert last_timings()["n_shards"] == 2
    two = _fetch(tmp_path / "c2", recipe, mirror, *args, "--workers", "2")
    assert last_timings()["executor"] == "a Dask LocalCluster of 2 processes"
    _same(serial, two)
    kept = [[d for d in iter_ndjson(mirror / f"{c}.raw.ndjson") if d.recognized][:12]
            for c in ("cat", "dog")]
    assert len(kept[0]) == len(kept[1]) == 12
    values, offsets = _strokes_of(kept[0] + kept[1])
    with h5py.File(serial, "r") as f:
        np.testing.assert_array_equal(f["values"][()], values)
        np.testing.assert_array_equal(f["offsets"][()], offsets)
        np.testing.assert_array_equal(f["labels"][()], np.repeat([0, 1], 12))
        assert [k.decode() for k in f["meta/key_id"][()]] == [d.key_id for d in
                                                              kept[0] + kept[1]]
        np.testing.assert_array_equal(f["meta/recognized"][()], np.ones(24))
    # binary records on the cluster, all drawings (recognized or not)
    args = ("--categories", "cat", "--format", "strokes", "--source", "binary")
    serial = _fetch(tmp_path / "c1", recipe, mirror, *args)
    cluster = _fetch(tmp_path / "c2", recipe, mirror, *args, "--scheduler", scheduler)
    _same(serial, cluster)
    drawings = list(iter_binary(mirror / "cat.bin"))
    with h5py.File(cluster, "r") as f:
        values, offsets = _strokes_of(drawings)
        np.testing.assert_array_equal(f["values"][()], values)
        np.testing.assert_array_equal(f["offsets"][()], offsets)
        np.testing.assert_array_equal(f["meta/recognized"][()],
                                      [int(d.recognized) for d in drawings])
        assert {c.decode() for c in f["meta/countrycode"][()]} == {"FR"}


def test_whole_ndjson_files_by_byte_range_match_serial_and_the_files(
        tmp_path: Path, mirror: Path, recipe: Path, scheduler: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --per-class an ndjson file is cut into byte ranges at line starts: the drawings
    are those of the whole files, in file order, on any executor."""
    monkeypatch.setattr(quickdraw_shards, "RANGE_BYTES", 20000)
    args = ("--categories", "dog,cat", "--format", "strokes", "--source", "raw",
            "--per-class", "0", "--recognized-only")
    serial = _fetch(tmp_path / "c1", recipe, mirror, *args)
    assert last_timings()["n_shards"] == 11  # dog: 120 kB, cat: 96 kB
    cluster = _fetch(tmp_path / "c2", recipe, mirror, *args, "--scheduler", scheduler)
    _same(serial, cluster)
    kept = [[d for d in iter_ndjson(mirror / f"{c}.raw.ndjson") if d.recognized]
            for c in ("dog", "cat")]
    values, offsets = _strokes_of(kept[0] + kept[1])
    with h5py.File(cluster, "r") as f:
        np.testing.assert_array_equal(f["values"][()], values)
        np.testing.assert_array_equal(f["offsets"][()], offsets)
        np.testing.assert_array_equal(f["labels"][()], np.repeat([0, 1], [len(k) for k in kept]))
        assert [k.decode() for k in f["meta/key_id"][()]] == [d.key_id for d in
                                                              kept[0] + kept[1]]


def test_category_without_drawings_is_one_line_and_leaves_nothing(
        tmp_path: Path, mirror: Path, recipe: Path, scheduler: str) -> None:
    cache = tmp_path / "c"
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", str(mirror),
                      "--categories", "cat,owl", "--format", "strokes", "--source", "binary",
                      "--recognized-only", "--scheduler", scheduler, cache_dir=cache)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "owl.bin" in last
    assert "no drawings for category 'owl'" in last and "Traceback" not in proc.stderr
    assert not list((cache / "prepared").rglob("*.h5"))
    assert not list((cache / "prepared").rglob("*.parts"))  # nothing to resume either


def test_bad_file_read_on_a_worker_is_one_line_naming_it(
        tmp_path: Path, mirror: Path, recipe: Path, scheduler: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A FormatError raised on a worker comes back as itself: one line naming the file and the
    byte (counted from the start of the file, also in a byte-range shard), and the unverified
    file is dropped from the cache, as in one process."""
    monkeypatch.setattr(quickdraw_shards, "RANGE_BYTES", 20000)
    bad = tmp_path / "mirror"
    bad.mkdir()
    (bad / "cat.raw.ndjson").write_bytes((mirror / "cat.raw.ndjson").read_bytes())
    (bad / "dog.raw.ndjson").write_bytes((mirror / "dog.raw.ndjson").read_bytes()[:50000])
    cache = tmp_path / "c"
    proc = invoke_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", str(bad),
                      "--categories", "cat,dog", "--format", "strokes", "--source", "raw",
                      "--per-class", "0", "--scheduler", scheduler, cache_dir=cache)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    with pytest.raises(FormatError) as serial:
        list(iter_ndjson(bad / "dog.raw.ndjson"))
    assert serial.value.offset > 40000  # in the third byte range
    where = cache / "raw" / "quickdraw" / "dog.raw.ndjson"
    assert last == f"error: {where} at byte {serial.value.offset}: {serial.value.what}"
    assert not (cache / "raw" / "quickdraw" / "dog.raw.ndjson").exists()
    assert (cache / "raw" / "quickdraw" / "cat.raw.ndjson").is_file()
    assert not list((cache / "prepared").rglob("*.h5"))


def test_bad_file_with_workers_2_is_one_stderr_line(tmp_path: Path, mirror: Path,
                                                     recipe: Path) -> None:
    """On the LocalCluster that --workers 2 starts (a real process: the workers write to its
    stderr), a bad-input error raised in a shard is the one `error:` line: the workers' own
    log ('Compute Failed' with the task's arguments and a traceback) is silenced."""
    bad = tmp_path / "mirror"
    bad.mkdir()
    (bad / "cat.raw.ndjson").write_bytes((mirror / "cat.raw.ndjson").read_bytes())
    (bad / "dog.raw.ndjson").write_bytes((mirror / "dog.raw.ndjson").read_bytes()[:50000])
    proc = run_cli("fetch", "quickdraw", "--recipe", str(recipe), "--mirror", str(bad),
                   "--categories", "cat,dog", "--format", "strokes", "--source", "raw",
                   "--per-class", "0", "--workers", "2", cache_dir=tmp_path / "c")
    assert proc.returncode == 1
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith("error: ") and "dog.raw.ndjson at byte" in lines[-1]
    # before it only dlprep's warnings (the recipe has no checksums for the mirror's files)
    others = [ln for ln in lines[:-1]
              if "has no checksum" not in ln and "removed it from the cache" not in ln]
    assert not others, proc.stderr
    assert "Traceback" not in proc.stderr and "Compute Failed" not in proc.stderr


def test_killed_run_resumes_without_redoing_shards(tmp_path: Path, realdata: Path,
                                                   recipe: Path) -> None:
    """kill -9 after a few category shards: the rerun takes the recorded shards from the
    manifest, runs only the others, and gives the bytes of an uninterrupted run."""
    lines = (realdata / "quickdraw" / "cat.ndjson").read_bytes().splitlines()
    big = tmp_path / "big.ndjson"
    big.write_bytes(b"\n".join(lines * 12) + b"\n")  # 300 real drawings per category
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    names = [f"c{i:02d}" for i in range(16)]
    for name in names:
        os.link(big, mirror / f"{name}.raw.ndjson")
    opts = ["--categories", ",".join(names), "--format", "strokes", "--source", "raw"]
    args = ["fetch", "quickdraw", "--recipe", str(recipe), "--mirror", str(mirror), *opts]
    cache = tmp_path / "cache"
    manifest = run_and_kill(args, cache, "quickdraw", shards=3)
    assert manifest is not None, "the run finished before it could be killed"
    done = finished_shards(manifest)
    assert 3 <= len(done) < 16
    assert len(list(manifest.parent.glob("strokes-*.shard"))) >= len(done)
    assert not [p for p in cache.glob("prepared/quickdraw/*.h5") if not p.name.startswith(".")]
    resumed = _fetch(cache, recipe, mirror, *opts)
    timings = last_timings()
    assert timings["shards_resumed"] >= len(done) and timings["shards_run"] < 16
    assert timings["shards_resumed"] + timings["shards_run"] == 16
    assert not manifest.parent.exists()  # removed once the file is complete
    fresh = _fetch(tmp_path / "fresh", recipe, mirror, *opts)
    _same(resumed, fresh)


def test_serial_fetch_never_imports_dask(tmp_path: Path, mirror: Path, recipe: Path) -> None:
    proc = dask_imports(["--cache-dir", str(tmp_path), "fetch", "quickdraw", "--recipe",
                         str(recipe), "--mirror", str(mirror), "--categories", "cat,dog", "-q"],
                        hide_dask=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"
