"""dlprep import-images end to end: folders, CSV, tar/zip, skip reports, workers, dedupe."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli, run_cli
from test_images_pipeline import png_bomb_header

from dlprep.prepare.splits import stratified_split

CLASSES = {"flowers": ["flower.jpg", "china.jpg", "road-to-versailles-at-louveciennes.jpg"],
           "space": ["hubble_deep_field.jpg", "rocket.jpg", "retina.jpg"]}


@pytest.fixture
def photo_tree(tmp_path: Path, realdata: Path) -> Path:
    """An ImageFolder tree of the real photos, plus a truncated JPEG, a bomb PNG and clutter."""
    root = tmp_path / "photos"
    for cls, names in CLASSES.items():
        (root / cls).mkdir(parents=True)
        for n in names:
            shutil.copy(realdata / "images" / n, root / cls / n)
    whole = (realdata / "images" / "china.jpg").read_bytes()
    (root / "flowers" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "space" / "huge.png").write_bytes(png_bomb_header())
    (root / "space" / "notes.txt").write_text("not an image")
    (root / "space" / "._rocket.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    return root


def import_images(cache: Path, source: Path, *extra: str, run=invoke_cli) -> tuple[str, Path]:
    """``dlprep import-images`` (in process; ``run=run_cli`` where worker processes fork)."""
    proc = run("import-images", str(source), "--name", "photos", "--size", "32", *extra,
                   cache_dir=cache)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, Path(proc.stdout.strip().splitlines()[-1])


def datasets(path: Path) -> dict[str, bytes]:
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tobytes() if obj.dtype.kind != "O" else repr(obj[()]).encode()
        f.visititems(visit)
    return out


def test_folder_import_skips_and_reports_bad_files(tmp_path: Path, photo_tree: Path) -> None:
    stdout, path = import_images(tmp_path / "c", photo_tree)
    assert "skipped 2 file(s)" in stdout
    assert "flowers/cut.jpg: cannot decode: image file is truncated" in stdout
    assert "space/huge.png: decompression bomb refused" in stdout
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (6, 32, 32, 3) and f["images"].dtype == np.uint8
        assert [c.decode() for c in f["classes"][()]] == ["flowers", "space"]
        ids = [i.decode() for i in f["meta/ids"][()]]
        assert ids == sorted(f"{c}/{n}" for c, ns in CLASSES.items() for n in ns)
        np.testing.assert_array_equal(f["labels"][()], [0, 0, 0, 1, 1, 1])
        skipped = json.loads(f.attrs["skipped"])
        assert sorted(s["name"] for s in skipped) == ["flowers/cut.jpg", "space/huge.png"]
        train, test = f["splits/train"][()], f["splits/test"][()]
        want = stratified_split(f["labels"][()], {"test": 0.2}, 0)
        np.testing.assert_array_equal(train, want["train"])
        np.testing.assert_array_equal(test, want["test"])
        assert sorted(np.concatenate([train, test])) == list(range(6))
        assert len(test) == 1  # round(0.2 * 6)
        assert json.loads(f.attrs["config"])["options"]["seed"] == 0
    # a second run is a cache hit with the same path and the same report
    stdout2, path2 = import_images(tmp_path / "c", photo_tree)
    assert path2 == path and "skipped 2 file(s)" in stdout2


def test_grayscale_and_pad(tmp_path: Path, photo_tree: Path) -> None:
    _, path = import_images(tmp_path / "c", photo_tree, "--grayscale", "--resize", "pad",
                            "--size", "24x40")
    with h5py.File(path, "r") as f:
        assert f["images"].shape == (6, 24, 40, 1) and f["mean"].shape == (1,)


def test_serial_and_parallel_import_give_identical_datasets(tmp_path: Path,
                                                            photo_tree: Path) -> None:
    for i in range(12):  # enough files for several chunks per worker
        shutil.copy(photo_tree / "space" / "rocket.jpg", photo_tree / "space" / f"r{i:02d}.jpg")
    _, serial = import_images(tmp_path / "c1", photo_tree, "--workers", "1")
    _, parallel = import_images(tmp_path / "c2", photo_tree, "--workers", "2", run=run_cli)
    assert serial.name == parallel.name  # workers is not part of the configuration
    a, b = datasets(serial), datasets(parallel)
    assert a.keys() == b.keys() and "images" in a
    for key in a:
        assert a[key] == b[key], key
    with h5py.File(serial, "r") as f1, h5py.File(parallel, "r") as f2:
        assert f1.attrs["skipped"] == f2.attrs["skipped"]


def test_tar_zip_and_csv_sources_match_the_folder(tmp_path: Path, photo_tree: Path) -> None:
    _, folder = import_images(tmp_path / "c0", photo_tree)
    tgz = tmp_path / "photos.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(photo_tree, "photos")  # one wrapping folder, stripped on import
    zpath = tmp_path / "photos.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        for p in sorted(photo_tree.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(photo_tree).as_posix())
    csv_path = photo_tree / "labels.csv"
    lines = ["path,label"] + [f"{c}/{n},{c}" for c, ns in CLASSES.items() for n in sorted(ns)]
    lines.append("flowers/cut.jpg,flowers")
    csv_path.write_text("\n".join(lines) + "\n")
    ref = datasets(folder)
    for i, source in enumerate((tgz, zpath, csv_path)):
        stdout, path = import_images(tmp_path / f"c{i + 1}", source)
        got = datasets(path)
        assert got["images"] == ref["images"] and got["labels"] == ref["labels"], source
        assert "flowers/cut.jpg" in stdout


def test_exact_dedupe_drops_copies(tmp_path: Path, photo_tree: Path) -> None:
    shutil.copy(photo_tree / "space" / "rocket.jpg", photo_tree / "space" / "rocket2.jpg")
    stdout, path = import_images(tmp_path / "c", photo_tree, "--dedupe", "exact")
    assert "dropped as duplicates 1 file(s)" in stdout and "same as space/rocket.jpg" in stdout
    with h5py.File(path, "r") as f:
        assert f["images"].shape[0] == 6
        assert json.loads(f.attrs["duplicates"])[0]["name"] == "space/rocket2.jpg"


def test_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = invoke_cli("import-images", str(empty), "--name", "x", cache_dir=tmp_path / "c")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "no images found" in \
        proc.stderr and "Traceback" not in proc.stderr
    (empty / "a").mkdir()
    (empty / "a" / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    proc = invoke_cli("import-images", str(empty), "--name", "x", cache_dir=tmp_path / "c")
    assert proc.returncode == 1 and "no image could be decoded" in proc.stderr
    assert not list((tmp_path / "c" / "prepared" / "x").glob("*.h5"))
    assert not list((tmp_path / "c" / "prepared" / "x").glob(".tmp-*"))


@pytest.mark.slow
def test_cnn_baseline_trains_on_an_imported_folder(tmp_path: Path, photo_tree: Path) -> None:
    pytest.importorskip("torch")
    _, path = import_images(tmp_path / "c", photo_tree)
    proc = run_cli("train-baseline", "cnn", str(path), "--epochs", "1", "--out",
                   str(tmp_path / "run"), cache_dir=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["final"]["accuracy"] <= 1.0
