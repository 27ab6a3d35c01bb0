"""What a prepared file says about itself, and how `info` shows it (issue 16): mean/std say what
they were computed over, sets made without a recipe carry no recipe_version, and `info` of such
a set has a title line and plain wording."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from dlprep.cli import main


def _image_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(5):
            Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8)).save(
                root / cls / f"{i}.png")
    return root


def test_imported_set_has_no_recipe_version_and_info_has_a_title(
        tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _image_folder(tmp_path / "src")
    assert main(["--cache-dir", str(cache_dir), "import-images", str(src), "--name", "pets2",
                 "--size", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pets2: 10 images of 8x8x3 pixels, 2 classes, splits test=2, train=8"
    path = Path(out[-1])
    with h5py.File(path, "r") as f:
        assert "recipe_version" not in f.attrs and f.attrs["recipe"] == "pets2"
        assert f["mean"].attrs["computed_over"] == "train split, pixels in [0, 1]"
        assert f["std"].attrs["computed_over"] == "train split, pixels in [0, 1]"
    assert main(["--cache-dir", str(cache_dir), "info", "pets2"]) == 0
    info = capsys.readouterr().out.splitlines()
    assert info[0].startswith("pets2: image dataset without a recipe (made by `dlprep ")
    assert "    samples  10 images of 8x8x3 pixels" in info
    assert any(line.endswith("(train split, pixels in [0, 1])") for line in info)


def test_recipe_sets_keep_their_recipe_version(cache_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--cache-dir", str(cache_dir), "-q", "fetch", "mnist-sample"]) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    with h5py.File(path, "r") as f:
        assert f.attrs["recipe_version"] == "1"
    assert main(["--cache-dir", str(cache_dir), "info", "mnist-sample"]) == 0
    info = capsys.readouterr().out.splitlines()
    assert info[0].startswith("mnist-sample: ") and len(info[0]) > len("mnist-sample: ")
    assert "    samples  5,000 images of 28x28x1 pixels" in info
