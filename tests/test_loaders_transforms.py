"""Batched transforms (dtype, shape, seeding, values), class weights, balanced sampler, split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_loaders import TRAIN, ids_of, make_images

import dlprep
from dlprep.data import ClassBalancedSampler, class_weights
from dlprep.data.transforms import (
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
    ToFloat,
)


@pytest.fixture
def batch() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)


def test_normalize_values_and_layout(batch: np.ndarray) -> None:
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    out = Normalize(mean, std)(batch)
    assert out.dtype == np.float32 and out.shape == (16, 3, 32, 32)
    ref = (batch.astype(np.float64) / 255 - mean) / std
    assert np.allclose(out, ref.transpose(0, 3, 1, 2), atol=1e-5)
    single = Normalize(mean, std)(batch[0])
    assert single.shape == (3, 32, 32) and np.allclose(single, out[0])
    with pytest.raises(ValueError, match="uint8"):
        Normalize(mean, std)(out.transpose(0, 2, 3, 1))


def test_to_float(batch: np.ndarray) -> None:
    out = ToFloat()(batch)
    assert out.dtype == np.float32 and out.shape == (16, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    assert np.allclose(out[3, 1], batch[3, :, :, 1] / 255)


def test_random_crop_keeps_dtype_shape_and_is_seeded(batch: np.ndarray) -> None:
    a = RandomCrop(32, padding=4, seed=5)(batch)
    b = RandomCrop(32, padding=4, seed=5)(batch)
    c = RandomCrop(32, padding=4, seed=6)(batch)
    assert a.dtype == np.uint8 and a.shape == batch.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # each crop is a window of the zero-padded image
    padded = np.pad(batch, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(len(batch)):
        hits = [(y, x) for y in range(9) for x in range(9)
                if np.array_equal(padded[i, y:y + 32, x:x + 32], a[i])]
        assert hits
    small = RandomCrop((20, 24), seed=0)(batch)
    assert small.shape == (16, 20, 24, 3)


def test_flip_and_reseed(batch: np.ndarray) -> None:
    flip = RandomHorizontalFlip(0.5, seed=0)
    out = flip(batch)
    assert out.dtype == np.uint8 and out.shape == batch.shape
    flipped = [np.array_equal(out[i], batch[i, :, ::-1]) for i in range(16)]
    kept = [np.array_equal(out[i], batch[i]) for i in range(16)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and any(flipped) and any(kept)
    assert np.array_equal(RandomHorizontalFlip(1.0)(batch), batch[:, :, ::-1])
    r1, r2 = RandomHorizontalFlip(seed=0), RandomHorizontalFlip(seed=0)
    r1.reseed(7)
    r2.reseed(7)
    assert np.array_equal(r1(batch), r2(batch))


def test_resize_and_compose(batch: np.ndarray) -> None:
    small = Resize(16)(batch)
    assert small.dtype == np.uint8 and small.shape == (16, 16, 16, 3)
    gray = Resize((8, 12))(batch[..., :1])
    assert gray.shape == (16, 8, 12, 1)
    pipe = Compose([RandomCrop(32, 4, seed=1), RandomHorizontalFlip(seed=2), Resize(24),
                    Normalize([0.5] * 3, [0.5] * 3)])
    out = pipe(batch)
    assert out.dtype == np.float32 and out.shape == (16, 3, 24, 24)
    with pytest.raises(ValueError, match="before ToFloat"):
        Compose([ToFloat(), RandomCrop(8)])(batch)


def test_transforms_in_loaders_use_stored_stats(tmp_path: Path) -> None:
    path = make_images(tmp_path / "t.h5", shape=(8, 8, 3))
    ds = dlprep.load(path, transform=Compose([RandomCrop(8, 2, seed=0), Normalize()]))
    x, y = ds[0]
    assert x.dtype == np.float32 and x.shape == (3, 8, 8)
    norm = ds.transform.transforms[1]
    assert np.array_equal(norm.mean, ds.mean) and np.array_equal(norm.std, ds.std)
    xb, yb = next(iter(dlprep.batches(path, batch_size=10, transform=Normalize())))
    assert xb.dtype == np.float32 and xb.shape == (10, 3, 8, 8) and yb.shape == (10,)
    plain, _ = next(iter(dlprep.batches(path, batch_size=10)))
    expect = (plain / 255.0 - ds.mean) / ds.std
    assert np.allclose(xb, expect.transpose(0, 3, 1, 2), atol=1e-4)
    a = [x for x, _ in dlprep.batches(path, batch_size=50, transform=RandomCrop(8, 2, seed=3))]
    b = [x for x, _ in dlprep.batches(path, batch_size=50, transform=RandomCrop(8, 2, seed=3))]
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))


def test_augmentation_in_workers_reproducible_with_torch_seed(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    path = make_images(tmp_path / "t.h5", shape=(8, 8, 2))
    ds = dlprep.load(path, transform=RandomCrop(8, 3, seed=0))
    torch.manual_seed(0)
    run1 = [x for x, _ in DataLoader(ds, batch_size=40, num_workers=2)]
    torch.manual_seed(0)
    run2 = [x for x, _ in DataLoader(ds, batch_size=40, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(run1, run2, strict=True))
    assert len(run1) == TRAIN // 40


def test_class_weights_and_balanced_sampler() -> None:
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    w = class_weights(labels)
    assert w.dtype == np.float32 and w.shape == (3,)
    assert np.allclose(w, [100 / (3 * 90), 100 / (3 * 9), 100 / 3])
    assert class_weights(labels, 4)[3] == 0
    sampler = ClassBalancedSampler(labels, num_samples=30000, seed=1)
    drawn = labels[np.fromiter(sampler, np.int64)]
    freq = np.bincount(drawn, minlength=3) / len(drawn)
    assert np.allclose(freq, 1 / 3, atol=0.02)
    assert list(ClassBalancedSampler(labels, 50, seed=1)) == list(ClassBalancedSampler(labels, 50,
                                                                                       seed=1))
    halves = [list(ClassBalancedSampler(labels, 51, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(halves[0]) + len(halves[1]) == 51


def test_balanced_sampler_with_dataloader(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    path = make_images(tmp_path / "t.h5")
    ds = dlprep.load(path)
    sampler = ClassBalancedSampler(ds.labels, num_samples=500, seed=0)
    ids = [i for x, _ in DataLoader(ds, batch_size=100, sampler=sampler) for i in ids_of(x)]
    assert len(ids) == 500 and set(ids) <= set(range(TRAIN))
    assert np.allclose(ds.class_weights(), 1.0)


def test_workers_do_not_repeat_each_others_augmentation(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader

    from dlprep.store import ImageTensorWriter, atomic_output

    same = np.random.default_rng(0).integers(0, 256, size=(80, 8, 8, 3), dtype=np.uint8)
    same[:] = same[0]
    path = tmp_path / "same.h5"
    with atomic_output(path) as tmp:
        w = ImageTensorWriter(tmp, 80, (8, 8, 3))
        w.write(same, np.zeros(80, np.int64))
        w.finish(recipe="same", recipe_version="1", classes=["x"], splits={"train": np.arange(80)})
    ds = dlprep.load(path, transform=RandomCrop(8, 3, seed=0))
    first, second = [x for x, _ in DataLoader(ds, batch_size=40, num_workers=2)]
    assert not torch.equal(first, second)
