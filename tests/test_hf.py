"""HF datasets: to_hf() export and `dlprep prepare --from-hf` import (save_to_disk, parquet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import invoke_cli
from test_loaders import make_images

import dlprep
from dlprep.cli import main

datasets = pytest.importorskip("datasets")


def prepare_from_hf(src: Path, name: str, cache_dir: Path, *extra: str,
                    capsys: pytest.CaptureFixture[str]) -> Path:
    code = main(["--cache-dir", str(cache_dir), "prepare", "--from-hf", str(src), "--name", name,
                 *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return Path(out.strip().splitlines()[-1])


@pytest.mark.parametrize("feature", ["image", "array"])
def test_round_trip_hdf5_hf_hdf5(tmp_path: Path, cache_dir: Path, feature: str,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    src = make_images(tmp_path / "src.h5", n=150, train=100, shape=(9, 7, 3))
    train, test = dlprep.load(src, "train"), dlprep.load(src, "test")
    hf_train = train.to_hf(image_feature=feature)
    assert isinstance(hf_train.features["label"], datasets.ClassLabel)
    assert hf_train.features["label"].names == list("abcde") and len(hf_train) == 100
    kind = datasets.Image if feature == "image" else datasets.Array3D
    assert isinstance(hf_train.features["image"], kind)
    saved = tmp_path / "hf"
    datasets.DatasetDict({"train": hf_train, "validation": test.to_hf(feature)}).save_to_disk(
        str(saved))
    out = prepare_from_hf(saved, "toy-hf", cache_dir, capsys=capsys)
    back_train = dlprep.load(out, "train")
    back_val = dlprep.load("toy-hf", "val", cache_dir=cache_dir)
    for a, b in ((train, back_train), (test, back_val)):
        xa, ya = a.as_numpy()
        xb, yb = b.as_numpy()
        assert xb.dtype == np.uint8 and np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert back_train.classes == list("abcde")
    assert np.allclose(back_train.mean, train.mean) and np.allclose(back_train.std, train.std)
    assert back_train.info["recipe"] == "toy-hf"


def test_grayscale_mnist_round_trip_via_parquet(tmp_path: Path, cache_dir: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Real MNIST digits (bundled sample) -> HF Image (mode L) -> parquet -> dlprep."""
    ds = dlprep.load("mnist-sample", "test", cache_dir=cache_dir, offline=True)
    hf = ds.to_hf()
    assert hf[0]["image"].mode == "L" and hf[0]["image"].size == (28, 28)
    folder = tmp_path / "pq"
    folder.mkdir()
    hf.select(range(600)).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    hf.select(range(600, 1000)).to_parquet(str(folder / "test-00000-of-00001.parquet"))
    out = prepare_from_hf(folder, "mnist-pq", cache_dir, capsys=capsys)
    x, y = ds.as_numpy()
    back = dlprep.load(out, "train")
    bx, by = back.as_numpy()
    assert bx.shape == (600, 28, 28, 1) and np.array_equal(bx, x[:600])
    assert np.array_equal(by, y[:600]) and back.classes == ds.classes
    assert np.array_equal(dlprep.load(out, "test").as_numpy()[0], x[600:])


def test_array2d_plain_labels_and_meta(tmp_path: Path, cache_dir: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(20, 6, 4), dtype=np.uint8)
    features = datasets.Features({"pixels": datasets.Array2D((6, 4), "uint8"),
                                  "label": datasets.Value("string"),
                                  "author": datasets.Value("string")})
    hf = datasets.Dataset.from_dict({"pixels": x, "label": ["cat", "dog"] * 10,
                                     "author": [f"a{i}" for i in range(20)]}, features=features)
    hf.save_to_disk(str(tmp_path / "one"))
    out = prepare_from_hf(tmp_path / "one", "plain", cache_dir, capsys=capsys)
    ds = dlprep.load(out, "train")
    bx, by = ds.as_numpy()
    assert bx.shape == (20, 6, 4, 1) and np.array_equal(bx[..., 0], x)
    assert ds.classes == ["cat", "dog"] and by.tolist() == [0, 1] * 10
    import h5py

    with h5py.File(out) as f:
        assert f["meta/author"][3].decode() == "a3"
    again = prepare_from_hf(tmp_path / "one", "plain", cache_dir, capsys=capsys)
    assert again == out  # idempotent: same inputs, same file


def test_text_column_becomes_sequence_set(realdata: Path, tmp_path: Path, cache_dir: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    text = (realdata / "gutenberg" / "11-0.txt").read_text(encoding="utf-8-sig")
    paras = [" ".join(p.split()) for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    hf = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"text": paras[:200]}),
        "test": datasets.Dataset.from_dict({"text": paras[200:250]})})
    hf.save_to_disk(str(tmp_path / "txt"))
    out = prepare_from_hf(tmp_path / "txt", "alice-hf", cache_dir, capsys=capsys)
    ds = dlprep.load(out, "test")
    assert ds.kind == "sequence" and len(ds) == 50
    assert ds.decode(ds[3][0]) == paras[203]


def test_from_hf_errors(tmp_path: Path, cache_dir: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = invoke_cli("prepare", "--from-hf", str(empty), "--name", "x", cache_dir=cache_dir)
    assert res.returncode == 1 and "no .arrow or .parquet files" in res.stderr
    assert "Traceback" not in res.stderr and res.stderr.startswith("error: ")

    def fails(*args: str) -> str:
        code = main(["--cache-dir", str(cache_dir), "prepare", "--name", "x", *args])
        err = capsys.readouterr().err
        assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
        return err

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 not really")
    err = fails("--from-hf", str(bad))
    assert "bad.parquet" in err and "parquet" in err
    datasets.Dataset.from_dict({"n": [1, 2, 3]}).save_to_disk(str(tmp_path / "ints"))
    assert "no image column" in fails("--from-hf", str(tmp_path / "ints"))
    assert "--label-column 'nope' not found" in fails("--from-hf", str(tmp_path / "ints"),
                                                      "--label-column", "nope")
    assert "give a source" in fails()
    assert not list((cache_dir / "prepared").rglob("*.h5"))


def test_labelled_text_and_mixed_image_sizes(tmp_path: Path, cache_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    labelled = datasets.Dataset.from_dict(
        {"review": ["good film", "bad plot", "great cast", "dull"], "label": [1, 0, 1, 0]},
        features=datasets.Features({"review": datasets.Value("string"),
                                    "label": datasets.ClassLabel(names=["neg", "pos"])}))
    labelled.save_to_disk(str(tmp_path / "reviews"))
    out = prepare_from_hf(tmp_path / "reviews", "reviews", cache_dir, "--tokenizer", "word",
                          capsys=capsys)
    ds = dlprep.load(out)
    assert ds.classes == ["neg", "pos"] and ds.labels.tolist() == [1, 0, 1, 0]
    assert ds.tokenizer["type"] == "word" and ds.decode(ds[2][0]) == "great cast"

    from PIL import Image

    rng = np.random.default_rng(0)
    pics = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in
            ((20, 30), (30, 20), (24, 24))]
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    mixed = datasets.Dataset.from_dict({"img": pics, "label": [0, 1, 2]}, features=features)
    mixed.save_to_disk(str(tmp_path / "mixed"))
    code = main(["--cache-dir", str(cache_dir), "prepare", "--from-hf", str(tmp_path / "mixed"),
                 "--name", "mixed"])
    assert code == 1 and "pass --size N" in capsys.readouterr().err
    out = prepare_from_hf(tmp_path / "mixed", "mixed", cache_dir, "--size", "16", capsys=capsys)
    x, y = dlprep.load(out).as_numpy()
    assert x.shape == (3, 16, 16, 3) and y.tolist() == [0, 1, 2]
    assert dlprep.load(out).classes == ["0", "1", "2"]
