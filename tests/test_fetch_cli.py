"""`dlprep fetch` end to end over the loopback server and local mirrors (``dlprep.cli.main``).

The test recipes' own URLs are unreachable (https://127.0.0.1:1/...); the data comes from
``--mirror``. Files are the genuine MNIST samples shipped in dlprep/_data and tests/data/realdata.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import h5py
import numpy as np
from conftest import ROOT, invoke_cli

SAMPLE = ROOT / "dlprep" / "_data" / "mnist-sample"
FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def _write_recipe(path: Path, sha_override: dict[str, str] | None = None) -> Path:
    blocks = []
    for name in FILES:
        data = (SAMPLE / name).read_bytes()
        sha = (sha_override or {}).get(name, hashlib.sha256(data).hexdigest())
        blocks.append(f'[[files]]\nname = "{name}"\nurls = ["https://127.0.0.1:1/mnist/{name}"]\n'
                      f'sha256 = "{sha}"\nsize = {len(data)}\n')
    path.write_text(
        'name = "mini"\ntitle = "MNIST sample over loopback"\nversion = "1"\nkind = "image"\n'
        'parser = "idx"\nclasses = ["0","1","2","3","4","5","6","7","8","9"]\n\n'
        + "\n".join(blocks)
        + '\n[splits.train]\nimages = "train-images-idx3-ubyte.gz"\n'
          'labels = "train-labels-idx1-ubyte.gz"\n'
          '[splits.test]\nimages = "t10k-images-idx3-ubyte.gz"\n'
          'labels = "t10k-labels-idx1-ubyte.gz"\n')
    return path


def _serve_sample(loopback, prefix: str = "", **options: object) -> None:
    for name in FILES:
        loopback.serve(f"{prefix}/{name}", SAMPLE / name, **options)


def _prepared(cache: Path, name: str) -> list[Path]:
    folder = cache / "prepared" / name
    return sorted(folder.glob("*.h5")) if folder.is_dir() else []


def test_fetch_through_a_loopback_mirror_with_a_retry(loopback, cache_dir: Path,
                                                      tmp_path: Path) -> None:
    recipe = _write_recipe(tmp_path / "mini.toml")
    _serve_sample(loopback)
    loopback.route("/train-labels-idx1-ubyte.gz").fail_first = 1
    loopback.route("/train-labels-idx1-ubyte.gz").retry_after = "0"
    r = invoke_cli("fetch", "mini", "--recipe", str(recipe), "--mirror", loopback.base_url,
                cache_dir=cache_dir, env={"CI": "1"})
    assert r.returncode == 0, r.stderr
    out = Path(r.stdout.strip().splitlines()[-1])
    assert out.suffix == ".h5" and out.is_file() and out.parent == cache_dir / "prepared" / "mini"
    with h5py.File(out) as f:
        assert f["images"].shape == (5000, 28, 28, 1)
    assert loopback.requests("/train-labels-idx1-ubyte.gz") == 2  # one 503, then OK
    assert all(loopback.requests(f"/{n}") == 1 for n in FILES if n != "train-labels-idx1-ubyte.gz")
    assert all(e.headers["User-Agent"].startswith("dlprep/") for e in loopback.log)
    again = invoke_cli("fetch", "mini", "--recipe", str(recipe), "--mirror", loopback.base_url,
                    cache_dir=cache_dir)
    assert again.returncode == 0 and again.stdout.strip().splitlines()[-1] == str(out)
    assert loopback.requests() == 5  # the second run only checked the cache


def test_wrong_bytes_fail_with_expected_and_actual_and_nothing_is_prepared(
        loopback, cache_dir: Path, tmp_path: Path) -> None:
    wrong = "ab" * 32
    recipe = _write_recipe(tmp_path / "mini.toml", {"t10k-labels-idx1-ubyte.gz": wrong})
    _serve_sample(loopback)
    r = invoke_cli("fetch", "mini", "--recipe", str(recipe), "--mirror", loopback.base_url,
                cache_dir=cache_dir)
    assert r.returncode == 1
    actual = hashlib.sha256((SAMPLE / "t10k-labels-idx1-ubyte.gz").read_bytes()).hexdigest()
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: could not fetch t10k-labels-idx1-ubyte.gz")
    assert f"expected {wrong}, got {actual}" in last and "Traceback" not in r.stderr
    raw = cache_dir / "raw" / "mini"
    assert not (raw / "t10k-labels-idx1-ubyte.gz").exists()
    assert not list(raw.glob("*.part*"))
    assert _prepared(cache_dir, "mini") == []
    assert r.stdout.strip() == ""


def test_html_page_and_404_mirrors_are_skipped_or_reported(loopback, cache_dir: Path,
                                                           tmp_path: Path) -> None:
    recipe = _write_recipe(tmp_path / "mini.toml")
    _serve_sample(loopback, "/portal", html_error=True)
    r = invoke_cli("fetch", "mini", "--recipe", str(recipe), "--mirror", loopback.url("portal"),
                cache_dir=cache_dir)
    assert r.returncode == 1
    assert "got an HTML page" in r.stderr and loopback.url("portal/train-images-idx3-ubyte.gz") \
        in r.stderr
    _serve_sample(loopback, "/ok")
    r = invoke_cli("fetch", "mini", "--recipe", str(recipe), "--mirror", loopback.url("missing"),
                "--mirror", loopback.url("ok"), cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip().splitlines()[-1]).is_file()
    assert loopback.requests("/missing/train-images-idx3-ubyte.gz") == 1


def test_offline_with_an_empty_cache_names_the_missing_file_and_sends_nothing(
        loopback, cache_dir: Path, tmp_path: Path) -> None:
    recipe = _write_recipe(tmp_path / "mini.toml")
    _serve_sample(loopback)
    for args, env in ((["--offline"], {}), ([], {"DLPREP_OFFLINE": "1"})):
        r = invoke_cli(*args, "fetch", "mini", "--recipe", str(recipe), "--mirror",
                    loopback.base_url, cache_dir=cache_dir, env=env)
        assert r.returncode == 1
        line = r.stderr.strip().splitlines()[-1]
        assert line.startswith("error: offline: train-images-idx3-ubyte.gz is not in the cache")
        assert "--mirror DIR" in line
    assert loopback.requests() == 0


def _stand_in_train_images(path: Path) -> None:
    """A 60,000 x 28 x 28 IDX file of zeros (the genuine one is not in tests/data/realdata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(struct.pack(">IIII", 0x803, 60000, 28, 28))
        fh.write(bytes(60000 * 28 * 28))


def test_fetch_mnist_from_a_mirror_of_genuine_regzipped_files(realdata: Path,
                                                              cache_dir: Path) -> None:
    """`dlprep fetch mnist --mirror file:///.../realdata/mnist`: the three genuine files there
    were re-gzipped by a mirror (their .gz sha256 differs from the recipe's); they are accepted
    by the recipe's content_md5. train-images is not in realdata, so a stand-in is placed in
    the raw cache (cached files are not re-fetched)."""
    _stand_in_train_images(cache_dir / "raw" / "mnist" / "train-images-idx3-ubyte.gz")
    mirror = (realdata / "mnist").as_uri()
    r = invoke_cli("--offline", "-v", "fetch", "mnist", "--mirror", mirror, cache_dir=cache_dir)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("re-compressed mirror") == 3
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                 "train-labels-idx1-ubyte.gz"):
        assert (cache_dir / "raw" / "mnist" / name).read_bytes() == \
            (realdata / "mnist" / name).read_bytes()
    out = Path(r.stdout.strip().splitlines()[-1])
    with h5py.File(out) as f:
        test = f["splits/test"][:]
        labels = f["labels"][:][test]
    with gzip.open(realdata / "mnist" / "t10k-labels-idx1-ubyte.gz") as fh:
        genuine = np.frombuffer(fh.read()[8:], dtype=np.uint8)
    assert np.array_equal(labels, genuine)
