"""End to end through the CLI: fetch -> verify -> prepare -> HDF5, cache commands, preview."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import struct
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import invoke_cli, write_recipe
from PIL import Image

from dlprep.errors import StoreError
from dlprep.recipes import load_recipe_file
from dlprep.store import FORMAT_VERSION, atomic_output, open_prepared


def fetch_sample(cache_dir: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    proc = invoke_cli("fetch", "mnist-sample", *extra, cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    return proc, Path(proc.stdout.strip().splitlines()[-1])


def test_fetch_mnist_sample_offline_end_to_end(cache_dir: Path, realdata: Path) -> None:
    proc, path = fetch_sample(cache_dir, "--offline")
    assert path.is_file() and path.parent == cache_dir / "prepared" / "mnist-sample"
    real_images = np.frombuffer(gzip.open(realdata / "mnist/t10k-images-idx3-ubyte.gz").read(),
                                np.uint8, offset=16).reshape(-1, 28, 28)
    real_labels = np.frombuffer(gzip.open(realdata / "mnist/t10k-labels-idx1-ubyte.gz").read(),
                                np.uint8, offset=8)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT_VERSION and f.attrs["kind"] == "image"
        assert f.attrs["recipe"] == "mnist-sample" and "CC BY-SA 3.0" in f.attrs["license"]
        assert f["images"].shape == (5000, 28, 28, 1) and f["images"].dtype == np.uint8
        assert [d.label for d in f["images"].dims] == ["batch", "height", "width", "channel"]
        assert f["images"].chunks is None and f["images"].compression is None  # contiguous
        np.testing.assert_array_equal(f["images"][:, :, :, 0], real_images[:5000])
        np.testing.assert_array_equal(f["labels"][()], real_labels[:5000])
        np.testing.assert_array_equal(f["splits/train"][()], np.arange(4000))
        np.testing.assert_array_equal(f["splits/test"][()], np.arange(4000, 5000))
        assert [c.decode() for c in f["classes"][()]] == [str(i) for i in range(10)]
        train = real_images[:4000].astype(np.float64) / 255
        np.testing.assert_allclose(f["mean"][()], [train.mean()], rtol=1e-5)
        np.testing.assert_allclose(f["std"][()], [train.std()], rtol=1e-5)
        sources = json.loads(f.attrs["sources"])
        assert {s["name"] for s in sources} == {"train-images-idx3-ubyte.gz",
                                               "train-labels-idx1-ubyte.gz",
                                               "t10k-images-idx3-ubyte.gz",
                                               "t10k-labels-idx1-ubyte.gz"}
        assert all(len(s["sha256"]) == 64 for s in sources)
    # one summary line (commands/summary.py), worded without "image images (5000, ...)"
    assert proc.stdout.splitlines()[0] == ("mnist-sample: 5,000 images of 28x28x1 pixels, 10 "
                                           "classes, splits test=1,000, train=4,000")


def test_fetch_is_idempotent_and_force_rebuilds(cache_dir: Path) -> None:
    _, first = fetch_sample(cache_dir)
    mtime = first.stat().st_mtime_ns
    _, second = fetch_sample(cache_dir)
    assert second == first and first.stat().st_mtime_ns == mtime
    _, third = fetch_sample(cache_dir, "--force")
    assert third == first and first.stat().st_mtime_ns != mtime
    assert not list((cache_dir / "prepared" / "mnist-sample").glob(".tmp-*"))


def test_cache_env_var_and_quiet(cache_dir: Path) -> None:
    proc = invoke_cli("fetch", "mnist-sample", "--quiet", env={"DLPREP_CACHE": str(cache_dir)})
    assert proc.returncode == 0
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip()]  # only the path
    assert Path(proc.stdout.strip()).is_relative_to(cache_dir)


def test_offline_with_empty_cache_names_missing_file(cache_dir: Path) -> None:
    proc = invoke_cli("fetch", "mnist", env={"DLPREP_OFFLINE": "1"}, cache_dir=cache_dir)
    assert proc.returncode == 1
    assert "offline" in proc.stderr and "train-images-idx3-ubyte.gz" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert not (cache_dir / "prepared").exists() or not any((cache_dir / "prepared").rglob("*.h5"))


def test_unknown_option_lists_accepted(cache_dir: Path) -> None:
    proc = invoke_cli("fetch", "cifar100", "--labels", "coarse", cache_dir=cache_dir)
    assert proc.returncode == 1 and "--labels" in proc.stderr and "--label" in proc.stderr


def test_info_preview_and_cache_commands(cache_dir: Path, tmp_path: Path) -> None:
    _, path = fetch_sample(cache_dir)
    info = invoke_cli("info", "mnist-sample", "--json", cache_dir=cache_dir)
    data = json.loads(info.stdout)
    assert data["prepared"]["arrays"]["images"]["shape"] == [5000, 28, 28, 1]
    assert data["prepared"]["splits"] == {"test": 1000, "train": 4000}
    assert sum(data["prepared"]["class_counts"].values()) == 5000
    assert all("cached" in f["state"] for f in data["files"])
    text = invoke_cli("info", "mnist-sample", cache_dir=cache_dir).stdout
    assert "classes  0:460" in text and "splits   test=1,000, train=4,000" in text

    png = tmp_path / "grid.png"
    proc = invoke_cli("preview", "mnist-sample", "--out", str(png), "--count", "20",
                   cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width > 28 * 10 and img.height > 28 * 2

    ls = invoke_cli("cache", "ls", cache_dir=cache_dir).stdout
    assert "mnist-sample [raw]" in ls and "mnist-sample [prepared]" in ls
    assert "total" in invoke_cli("cache", "du", cache_dir=cache_dir).stdout
    ok = invoke_cli("cache", "verify", cache_dir=cache_dir)
    assert ok.returncode == 0 and ok.stdout.count("ok   ") == 5

    raw = cache_dir / "raw" / "mnist-sample" / "t10k-labels-idx1-ubyte.gz"
    data = raw.read_bytes()
    raw.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    bad = invoke_cli("cache", "verify", cache_dir=cache_dir)
    assert bad.returncode == 1 and "BAD" in bad.stdout and "t10k-labels" in bad.stdout

    stale = cache_dir / "prepared" / "mnist-sample" / "0000000000000000.h5"
    stale.write_bytes(b"old")
    leftover = cache_dir / "raw" / "mnist-sample" / "x.part"
    leftover.write_bytes(b"partial")
    os.utime(leftover, (time.time() - 7200, time.time() - 7200))
    prune = invoke_cli("cache", "prune", cache_dir=cache_dir)
    assert prune.returncode == 0 and not stale.exists() and not leftover.exists()
    assert path.exists()

    rm = invoke_cli("cache", "rm", "mnist-sample", cache_dir=cache_dir)
    assert rm.returncode == 0 and not path.exists()
    assert not (cache_dir / "raw" / "mnist-sample").exists()


def test_version_and_help() -> None:
    proc = invoke_cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("dlprep, version ")
    helptext = invoke_cli("fetch", "--help").stdout
    for flag in ("--mirror", "--force", "--offline", "--cache-dir", "--quiet", "--verbose"):
        assert flag in helptext


def test_open_prepared_rejects_other_versions(tmp_path: Path) -> None:
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = "dlprep-hdf5/0"
    with pytest.raises(StoreError, match="dlprep-hdf5/0"):
        open_prepared(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(StoreError, match="not an HDF5 file"):
        open_prepared(path)


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def _idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.tobytes()


def test_kill_9_mid_prepare_then_rerun_recovers(tmp_path: Path, cache_dir: Path) -> None:
    n = 300_000
    images = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
    src = tmp_path / "src"
    src.mkdir()
    (src / "img.idx").write_bytes(_idx(images))
    (src / "lab.idx").write_bytes(_idx((np.arange(n) % 10).astype(np.uint8)))
    recipe = write_recipe(tmp_path, "bigidx", "idx", {"img.idx": src / "img.idx",
                                                 "lab.idx": src / "lab.idx"},
                     '[splits.train]\nimages = "img.idx"\nlabels = "lab.idx"\n')
    prepared = cache_dir / "prepared" / "bigidx"
    cmd = [sys.executable, "-m", "dlprep", "--cache-dir", str(cache_dir), "fetch", "bigidx",
           "--recipe", str(recipe)]
    killed_mid_write = False
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            if prepared.is_dir() and list(prepared.glob(".tmp-*.h5")):
                proc.send_signal(signal.SIGKILL)
                killed_mid_write = True
                break
            time.sleep(0.002)
        proc.wait()
        if killed_mid_write:
            break
        for h5 in prepared.glob("*.h5"):
            h5.unlink()
    assert killed_mid_write, "prepare finished before it could be killed"
    assert not [p for p in prepared.glob("*.h5") if not p.name.startswith(".tmp-")]
    assert not (prepared / "latest").exists()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    out = Path(rerun.stdout.strip().splitlines()[-1])
    with open_prepared(out) as f:
        assert f["images"].shape == (n, 28, 28, 1)
        np.testing.assert_array_equal(f["images"][-5:, :, :, 0], images[-5:])
    prune = invoke_cli("cache", "prune", "--older-than", "0", cache_dir=cache_dir)
    assert prune.returncode == 0 and not list(prepared.glob(".tmp-*"))


def _cifar_tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _records(rng: np.random.Generator, n: int, label_bytes: int, limits: tuple[int, ...]
             ) -> tuple[bytes, np.ndarray, np.ndarray]:
    labels = np.stack([rng.integers(0, lim, n) for lim in limits], 1).astype(np.uint8)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(n, -1)
    return np.concatenate([labels, planes], 1).tobytes(), images, labels.astype(np.int64)


def test_cifar10_archive_end_to_end(tmp_path: Path, cache_dir: Path) -> None:
    rng = np.random.default_rng(0)
    members, expected_imgs, expected_labs = {}, [], []
    names = [f"cifar-10-batches-bin/data_batch_{i}.bin" for i in range(1, 6)]
    names.append("cifar-10-batches-bin/test_batch.bin")
    for name in names:
        data, imgs, labs = _records(rng, 7, 1, (10,))
        members[name] = data
        expected_imgs.append(imgs)
        expected_labs.append(labs[:, 0])
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
               "truck"]
    members["cifar-10-batches-bin/batches.meta.txt"] = ("\n".join(classes) + "\n\n").encode()
    archive = tmp_path / "cifar-10-binary.tar.gz"
    _cifar_tar(archive, members)
    builtin = Path(__file__).resolve().parent.parent / "recipes" / "cifar10.toml"
    splits = builtin.read_text().split("[splits]")[1]
    recipe = write_recipe(tmp_path, "cifar10", "cifar10-bin", {"cifar-10-binary.tar.gz": archive},
                     "[splits]" + splits)
    proc = invoke_cli("fetch", "cifar10", "--recipe", str(recipe), cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    with open_prepared(proc.stdout.strip().splitlines()[-1]) as f:
        assert f["images"].shape == (42, 32, 32, 3)
        np.testing.assert_array_equal(f["images"][()], np.concatenate(expected_imgs))
        np.testing.assert_array_equal(f["labels"][()], np.concatenate(expected_labs))
        assert [c.decode() for c in f["classes"][()]] == classes
        np.testing.assert_array_equal(f["splits/test"][()], np.arange(35, 42))
        train = np.concatenate(expected_imgs[:5]).reshape(-1, 3).astype(np.float64) / 255
        np.testing.assert_allclose(f["mean"][()], train.mean(0), rtol=1e-6)
        np.testing.assert_allclose(f["std"][()], train.std(0), rtol=1e-6)


def test_cifar100_coarse_option_and_truncated_member(tmp_path: Path, cache_dir: Path) -> None:
    rng = np.random.default_rng(1)
    train, _, train_labs = _records(rng, 9, 2, (20, 100))
    test, _, test_labs = _records(rng, 4, 2, (20, 100))
    fine = [f"fine{i}" for i in range(100)]
    coarse = [f"coarse{i}" for i in range(20)]
    members = {"cifar-100-binary/train.bin": train, "cifar-100-binary/test.bin": test,
               "cifar-100-binary/fine_label_names.txt": "\n".join(fine).encode(),
               "cifar-100-binary/coarse_label_names.txt": "\n".join(coarse).encode()}
    archive = tmp_path / "cifar-100-binary.tar.gz"
    _cifar_tar(archive, members)
    builtin = Path(__file__).resolve().parent.parent / "recipes" / "cifar100.toml"
    splits = "[splits]" + builtin.read_text().split("[splits]")[1]
    recipe = write_recipe(tmp_path, "cifar100", "cifar100-bin",
                          {"cifar-100-binary.tar.gz": archive}, splits)
    proc = invoke_cli("fetch", "cifar100", "--recipe", str(recipe), "--label", "coarse",
                   cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    with open_prepared(proc.stdout.strip().splitlines()[-1]) as f:
        all_labs = np.concatenate([train_labs, test_labs])
        np.testing.assert_array_equal(f["labels"][()], all_labs[:, 0])
        np.testing.assert_array_equal(f["meta/fine_labels"][()], all_labs[:, 1])
        assert f["classes"].shape == (20,)

    members["cifar-100-binary/train.bin"] = train[:-5]
    bad_archive = tmp_path / "bad" / "cifar-100-binary.tar.gz"
    bad_archive.parent.mkdir()
    _cifar_tar(bad_archive, members)
    bad_recipe = write_recipe(tmp_path / "bad", "cifar100", "cifar100-bin",
                         {"cifar-100-binary.tar.gz": bad_archive}, splits)
    bad = invoke_cli("fetch", "cifar100", "--recipe", str(bad_recipe), cache_dir=tmp_path / "c2")
    assert bad.returncode == 1
    assert "train.bin at byte 24592" in bad.stderr and "truncated CIFAR record 8" in bad.stderr
    assert not list((tmp_path / "c2" / "prepared").rglob("*.h5"))


def test_recipes_checksum_fills_hashes(tmp_path: Path, cache_dir: Path) -> None:
    data = _idx(np.arange(12, dtype=np.uint8).reshape(3, 2, 2))
    src = tmp_path / "img.idx"
    src.write_bytes(data)
    recipe = tmp_path / "nohash.toml"
    recipe.write_text('# my recipe\nname = "nohash"\ntitle = "t"\nversion = "1"\nkind = "image"\n'
                      f'parser = "idx"\n\n[[files]]\nname = "img.idx"\nurls = ["{src.as_uri()}"]\n')
    proc = invoke_cli("recipes", "checksum", str(recipe), cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    text = recipe.read_text()
    assert text.startswith("# my recipe")
    assert f'sha256 = "{hashlib.sha256(data).hexdigest()}"' in text
    assert f"size = {len(data)}" in text


def test_recipes_checksum_keeps_comments_and_reports_skipped_files(
        tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """tomlkit edit: comments and inline tables survive; a file that cannot be fetched is
    reported as skipped (exit 1), not as "updated" (the regex editor skipped inline tables and
    single-quoted names silently and still said "updated")."""
    from dlprep.cli import main

    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(b"first file")
    two.write_bytes(b"second file!")
    gone = tmp_path / "gone.bin"
    recipe = tmp_path / "mixed.toml"
    recipe.write_text(
        '# header comment\nname = "mixed"  # trailing comment\ntitle = "t"\nversion = "1"\n'
        'kind = "image"\nparser = "idx"\n'
        f"files = [\n  {{ name = 'one.bin', urls = ['{one.as_uri()}'] }},  # inline one\n"
        f"  {{ name = 'gone.bin', urls = ['{gone.as_uri()}'] }},\n"
        f"  {{ name = 'two.bin', urls = ['{two.as_uri()}'], size = 12 }},\n]\n")
    code = main(["--cache-dir", str(cache_dir), "recipes", "checksum", str(recipe)])
    out, err = capsys.readouterr()
    assert code == 1 and err == f"error: {recipe}: skipped 1 file(s): gone.bin\n"
    assert "gone.bin: skipped: " in out and "gone.bin: sha256" not in out
    assert f"one.bin: sha256 {hashlib.sha256(b'first file').hexdigest()}, 10 bytes (updated)" in out
    assert f"updated {recipe} (2 of 3 files)" in out
    text = recipe.read_text()
    assert text.startswith("# header comment\nname = \"mixed\"  # trailing comment\n")
    assert "# inline one" in text
    parsed = load_recipe_file(recipe)
    by_name = {f.name: f for f in parsed.files}
    assert by_name["one.bin"].sha256 == hashlib.sha256(b"first file").hexdigest()
    assert by_name["two.bin"].sha256 == hashlib.sha256(b"second file!").hexdigest()
    assert by_name["two.bin"].size == 12 and by_name["one.bin"].size == 10
    assert by_name["gone.bin"].sha256 is None and by_name["gone.bin"].size is None
    # a second run changes nothing and says so
    gone.write_bytes(b"back")
    code = main(["--cache-dir", str(cache_dir), "recipes", "checksum", str(recipe)])
    out, _ = capsys.readouterr()
    assert code == 0 and "one.bin: sha256" in out and "(unchanged)" in out
    assert "gone.bin: sha256" in out and "(updated)" in out


def test_disk_full_during_prepare_is_a_clear_error_and_leaves_nothing(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    import dlprep.store.atomic as store
    from dlprep.cli import main

    def full_disk(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store.os, "fsync", full_disk)  # the OS says the disk is full
    code = main(["--cache-dir", str(cache_dir), "fetch", "mnist-sample"])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: disk full") and err.count("\n") == 1
    prepared = cache_dir / "prepared" / "mnist-sample"
    assert not list(prepared.glob("*.h5")) and not list(prepared.glob(".tmp-*"))
    assert not (prepared / "latest").exists()
    monkeypatch.undo()
    assert main(["--cache-dir", str(cache_dir), "-q", "fetch", "mnist-sample"]) == 0
    assert len(list(prepared.glob("*.h5"))) == 1


def test_disk_full_while_writing_pixels_in_the_background(
        cache_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import errno

    import dlprep.store.osio as store
    from dlprep.cli import main

    calls = []

    def full_after_one(fd: int, data: object, offset: int) -> int:
        calls.append(offset)
        if len(calls) > 1:  # the second block of pixels finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return len(memoryview(data))  # type: ignore[arg-type]

    monkeypatch.setattr(store.os, "pwrite", full_after_one)
    code = main(["--cache-dir", str(cache_dir), "fetch", "mnist-sample"])
    err = capsys.readouterr().err
    assert len(calls) >= 2
    assert code == 1 and err.startswith("error: disk full") and err.count("\n") == 1
    prepared = cache_dir / "prepared" / "mnist-sample"
    assert not list(prepared.glob("*.h5")) and not list(prepared.glob(".tmp-*"))
    monkeypatch.undo()


def test_builder_version_bump_gives_a_new_prepared_file(cache_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A builder whose output changes bumps BUILD_VERSION: the old file is not reused; a builder
    that defines none keeps the prepared file names it had."""
    import dlprep.prepare.idx as idx_builder

    monkeypatch.delattr(idx_builder, "BUILD_VERSION", raising=False)
    _, plain = fetch_sample(cache_dir)
    monkeypatch.setattr(idx_builder, "BUILD_VERSION", "2", raising=False)
    _, bumped = fetch_sample(cache_dir)
    assert bumped != plain and bumped.parent == plain.parent and plain.is_file()
    with h5py.File(bumped, "r") as f:
        assert json.loads(f.attrs["config"])["build_version"] == "2"
    with h5py.File(plain, "r") as f:
        assert "build_version" not in json.loads(f.attrs["config"])
