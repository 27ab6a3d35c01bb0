"""dlprep.load / dlprep.batches: sharding, determinism, pickling, workers, splits, errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

import dlprep
from dlprep.data import load, open_file, stratified_split
from dlprep.errors import StoreError
from dlprep.store import ImageTensorWriter, atomic_output

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

N, TRAIN = 600, 480


def make_images(path: Path, n: int = N, train: int = TRAIN, compression: str | None = None,
                chunk_rows: int = 32, shape: tuple[int, int, int] = (6, 5, 3)) -> Path:
    """Images whose first two pixel bytes encode the sample index; labels = index % 5."""
    x = np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) % 256
    x[:, 0, 0, 1] = np.arange(n) // 256
    with atomic_output(path) as tmp:
        w = ImageTensorWriter(tmp, n, shape, compression=compression, chunk_rows=chunk_rows)
        w.write(x, np.arange(n) % 5)
        w.finish(recipe="toy", recipe_version="1", classes=list("abcde"),
                 splits={"train": np.arange(train), "test": np.arange(train, n)})
    return path


def ids_of(x: object) -> list[int]:
    arr = np.asarray(x)
    return (arr[:, 0, 0, 0].astype(np.int64) + 256 * arr[:, 0, 0, 1].astype(np.int64)).tolist()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("loaders")
    return {"contiguous": make_images(d / "plain.h5"),
            "chunked": make_images(d / "gzip.h5", compression="gzip")}


def test_load_basics(files: dict[str, Path]) -> None:
    ds = load(files["contiguous"])
    assert isinstance(ds, torch.utils.data.Dataset)
    assert ds.kind == "image" and len(ds) == TRAIN and ds.classes == list("abcde")
    assert ds.file.memory_mapped
    x, y = ds[7]
    assert x.dtype == np.uint8 and x.shape == (6, 5, 3) and ids_of(x[None]) == [7] and y == 2
    assert ds.mean.shape == (3,) and ds.std.dtype == np.float32
    assert ds.info["splits"] == {"train": TRAIN, "test": N - TRAIN}
    assert np.array_equal(ds.indices, np.arange(TRAIN))
    xs, ys = ds.as_numpy()
    with h5py.File(files["contiguous"]) as f:
        assert np.array_equal(xs, f["images"][:TRAIN])
        assert np.array_equal(ys, f["labels"][:TRAIN])
    items = ds.__getitems__([3, 1, 400])
    assert [ids_of(i[0][None])[0] for i in items] == [3, 1, 400]
    assert [i[1] for i in items] == [3, 1, 0]


def test_chunked_file_reads_same_bytes(files: dict[str, Path]) -> None:
    plain, packed = load(files["contiguous"], "test"), load(files["chunked"], "test")
    assert not packed.file.memory_mapped and packed.file.chunk_rows == 32
    assert np.array_equal(plain.as_numpy()[0], packed.as_numpy()[0])
    order = [5, 99, 0, 64, 5]
    a = np.stack([x for x, _ in plain.__getitems__(order)])
    b = np.stack([x for x, _ in packed.__getitems__(order)])
    assert np.array_equal(a, b)


def test_load_by_name_resolves_cache_and_prepares(cache_dir: Path) -> None:
    """The real MNIST sample (bundled upstream IDX files) prepared on first load by name."""
    ds = dlprep.load("mnist-sample", cache_dir=cache_dir, offline=True)
    assert len(ds) == 4000 and ds.classes == [str(i) for i in range(10)]
    x, y = ds.as_numpy()
    assert x.shape == (4000, 28, 28, 1) and x.dtype == np.uint8 and y.dtype == np.int64
    assert abs(float(ds.mean[0]) - x.mean() / 255) < 1e-4
    assert np.bincount(y, minlength=10).min() > 300
    test = dlprep.load("mnist-sample", "test", cache_dir=cache_dir, offline=True)
    assert len(test) == 1000 and test.path == ds.path


@pytest.mark.parametrize("layout", ["contiguous", "chunked"])
@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 2])
def test_batches_every_sample_once(files: dict[str, Path], layout: str, world: int,
                                   workers: int) -> None:
    seen: list[int] = []
    for rank in range(world):
        stream = dlprep.batches(files[layout], "train", batch_size=32, seed=11, rank=rank,
                                world_size=world, epoch=1)
        source = DataLoader(stream, batch_size=None, num_workers=workers) if workers else stream
        for x, y in source:
            ids = ids_of(x)
            assert np.array_equal(np.asarray(y), np.asarray(ids) % 5)
            seen += ids
    assert sorted(seen) == list(range(TRAIN))


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [0, 2])
def test_dataset_sampler_every_sample_once(files: dict[str, Path], world: int,
                                           workers: int) -> None:
    ds = load(files["contiguous"])
    seen: list[int] = []
    for rank in range(world):
        sampler = ds.sampler(seed=4, rank=rank, world_size=world)
        sampler.set_epoch(2)
        loader = DataLoader(ds, batch_size=50, sampler=sampler, num_workers=workers)
        for x, _ in loader:
            seen += ids_of(x)
    assert sorted(seen) == list(range(TRAIN))


def test_same_seed_same_order(files: dict[str, Path]) -> None:
    def order(path: Path, seed: int, epoch: int) -> list[int]:
        return [i for x, _ in dlprep.batches(path, batch_size=64, seed=seed, epoch=epoch)
                for i in ids_of(x)]

    for layout in ("contiguous", "chunked"):
        a = order(files[layout], 1, 0)
        assert a == order(files[layout], 1, 0)
        assert a != order(files[layout], 1, 1) and a != order(files[layout], 2, 0)
        assert sorted(a) == list(range(TRAIN))
    unshuffled = [i for x, _ in dlprep.batches(files["contiguous"], shuffle=False, batch_size=100)
                  for i in ids_of(x)]
    assert unshuffled == list(range(TRAIN))


def test_batches_shapes_drop_last_and_torch(files: dict[str, Path]) -> None:
    stream = dlprep.batches(files["contiguous"], "test", batch_size=50, drop_last=True,
                            as_torch=True)
    got = list(stream)
    assert len(got) == len(stream) == (N - TRAIN) // 50
    x, y = got[0]
    assert isinstance(x, torch.Tensor) and x.dtype == torch.uint8
    assert tuple(x.shape) == (50, 6, 5, 3)
    assert y.dtype == torch.int64
    x0, _ = next(dlprep.batches(files["contiguous"], "test", batch_size=7))
    assert isinstance(x0, np.ndarray) and x0.shape == (7, 6, 5, 3)


def test_pickle_dataset_with_open_file(files: dict[str, Path]) -> None:
    for layout in ("contiguous", "chunked"):
        ds = load(files[layout])
        first = ds[10][0]  # opens the memmap / h5py handle
        assert ds.file._array is not None
        clone = pickle.loads(pickle.dumps(ds))
        assert clone.file._array is None
        assert np.array_equal(clone[10][0], first) and len(clone) == len(ds)
        assert type(clone) is type(ds)


def test_dataloader_fork_workers(files: dict[str, Path]) -> None:
    ds = load(files["chunked"])
    loader = DataLoader(ds, batch_size=64, shuffle=True, num_workers=2,
                        generator=torch.Generator().manual_seed(0))
    seen = [i for x, _ in loader for i in ids_of(x)]
    assert sorted(seen) == list(range(TRAIN))


def test_dataloader_spawn_workers(files: dict[str, Path]) -> None:
    ds = load(files["contiguous"], "test")
    loader = DataLoader(ds, batch_size=40, num_workers=2, multiprocessing_context="spawn")
    xs, ys = zip(*loader, strict=True)
    assert sorted(i for x in xs for i in ids_of(x)) == list(range(TRAIN, N))
    assert torch.cat(ys).tolist() == [i % 5 for i in range(TRAIN, N)]


def test_missing_split_and_wrong_version(files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no split 'nope' \(have: test, train\)"):
        load(files["contiguous"], "nope")
    with pytest.raises(StoreError, match="val_fraction"):
        load(files["contiguous"], "val")
    with pytest.raises(StoreError, match="no split"):
        dlprep.batches(files["contiguous"], "validation")
    old = tmp_path / "old.h5"
    make_images(old)
    with h5py.File(old, "r+") as f:
        f.attrs["format"] = "dlprep-hdf5/0"
    with pytest.raises(StoreError, match=r"format 'dlprep-hdf5/0' is not 'dlprep-hdf5/1'"):
        load(old)
    with pytest.raises(StoreError, match="no such prepared file"):
        load(tmp_path / "absent.h5")


def test_val_fraction_split(files: dict[str, Path]) -> None:
    train = load(files["contiguous"], "train", val_fraction=0.2, seed=3)
    val = load(files["contiguous"], "val", val_fraction=0.2, seed=3)
    assert len(train) + len(val) == TRAIN and len(val) == 96
    assert not set(train.indices) & set(val.indices)
    assert np.bincount(val.labels).tolist() == [96 // 5] * 5 or \
        np.abs(np.bincount(val.labels) - 96 / 5).max() <= 1
    again = load(files["contiguous"], "val", val_fraction=0.2, seed=3)
    assert np.array_equal(again.indices, val.indices)
    with h5py.File(files["contiguous"], "r") as f:  # the one stratified split, on train
        base = f["splits/train"][()]
        want = stratified_split(f["labels"][()][base], {"val": 0.2}, 3)
    assert np.array_equal(val.indices, base[want["val"]])
    assert np.array_equal(train.indices, base[want["train"]])
    other = load(files["contiguous"], "val", val_fraction=0.2, seed=4)
    assert not np.array_equal(other.indices, val.indices)


def test_open_file_from_path_string(files: dict[str, Path]) -> None:
    f = open_file(str(files["contiguous"]))
    assert f.kind == "image" and f.num_samples == N and set(f.splits) == {"train", "test"}


def test_readme_training_loop_trains(cache_dir: Path) -> None:
    """The README's 10-line loop, on the bundled real MNIST sample: a linear model learns."""
    from dlprep.data.transforms import Compose, Normalize, RandomCrop

    torch.manual_seed(0)
    train = dlprep.load("mnist-sample", "train", transform=Compose([RandomCrop(28, padding=1),
                        Normalize()]), cache_dir=cache_dir, offline=True)
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=2,
                        persistent_workers=True)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, len(train.classes)))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    for _ in range(2):
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    test = dlprep.load("mnist-sample", "test", transform=Normalize(), cache_dir=cache_dir)
    x, y = next(iter(DataLoader(test, batch_size=1000)))
    assert x.shape == (1000, 1, 28, 28) and x.dtype == torch.float32
    accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.8


def test_import_stays_light(files: dict[str, Path]) -> None:
    """`import dlprep` and numpy-only use of the loaders never import torch."""
    import subprocess
    import sys

    code = ("import sys, dlprep, dlprep.data; "
            f"x, y = next(iter(dlprep.batches({str(files['contiguous'])!r}, batch_size=8))); "
            "assert x.shape == (8, 6, 5, 3), x.shape; "
            "assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


def _ddp_rank_ids(rank: int, world: int, path: str, init: str, out_dir: str) -> None:
    """One torch.distributed (gloo) rank: read its share with rank/world taken from the group."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        stream = dlprep.batches(path, batch_size=32, seed=5)
        sampler = load(path).sampler(seed=5)
        assert (stream.rank, stream.world_size) == (rank, world)
        assert (sampler.rank, sampler.world_size) == (rank, world)
        ids = [i for x, _ in stream for i in ids_of(x)]
        np.save(Path(out_dir) / f"rank{rank}.npy", np.array(ids))
    finally:
        dist.destroy_process_group()


def test_rank_and_world_from_initialised_group(files: dict[str, Path], tmp_path: Path) -> None:
    """In-process gloo group of one: batches/sampler read rank and world size from it."""
    import torch.distributed as dist

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rdv'}", rank=0,
                            world_size=1)
    try:
        stream = dlprep.batches(files["contiguous"], batch_size=100)
        assert (stream.rank, stream.world_size) == (0, 1)
        assert sorted(i for x, _ in stream for i in ids_of(x)) == list(range(TRAIN))
        with pytest.raises(ValueError, match="outside world_size"):
            dlprep.batches(files["contiguous"], rank=1)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_rank_and_world_from_torch_distributed(files: dict[str, Path], tmp_path: Path) -> None:
    """Two real gloo ranks (spawned processes) split an epoch without overlap."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed not available")
    init = f"file://{tmp_path / 'rendezvous'}"
    mp.spawn(_ddp_rank_ids, args=(2, str(files["contiguous"]), init, str(tmp_path)), nprocs=2,
             join=True)
    parts = [np.load(tmp_path / f"rank{r}.npy").tolist() for r in range(2)]
    assert not set(parts[0]) & set(parts[1])
    assert sorted(parts[0] + parts[1]) == list(range(TRAIN))


def test_random_reads_of_compressed_file_warn_once(files: dict[str, Path],
                                                   caplog: pytest.LogCaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    monkeypatch.setattr(logging.getLogger("dlprep"), "propagate", True)  # CLI tests turn it off
    ds = load(files["chunked"])
    ds.file.close()
    spread = list(range(0, TRAIN, 30))  # 16 rows in 15 different chunks
    def warned() -> list[str]:
        return [r.getMessage() for r in caplog.records if "chunk-aware" in r.getMessage()]

    with caplog.at_level("WARNING", logger="dlprep"):
        ds.__getitems__(spread)
        first = warned()
        ds.__getitems__(spread)
        assert warned() == first
    assert first and "gzip.h5" in first[0]


def test_batches_is_keyword_only_like_load_and_listed_in_dir(files: dict[str, Path]) -> None:
    """``batches(path, split, *, ...)``: a third positional argument is refused, as for ``load``
    after its transforms; ``dir(dlprep)`` names both lazily imported entry points."""
    with pytest.raises(TypeError, match="positional"):
        dlprep.batches(files["contiguous"], "train", 32)  # type: ignore[misc]
    x, _ = next(dlprep.batches(files["contiguous"], "train", batch_size=32))
    assert len(x) == 32
    assert {"load", "batches"} <= set(dir(dlprep))
