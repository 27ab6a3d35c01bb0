"""Loader throughput: one shuffled epoch, batch 256, ratios against baselines timed in the same run.

Data: N x 32x32x3 uint8 (default N = 50,000, CIFAR-sized) written with dlprep's store writer into
a temp dir, plus a few thousand 224x224x3 images. Timed (best of --repeat):
  * numpy in-memory fancy-index gather (x[idx], y[idx]) - baseline for `batches`;
  * dlprep.batches (memory-mapped contiguous file) and on a gzip-chunked copy (chunk-aware);
  * a naive h5py per-sample Dataset (the common user code), batches built with np.stack;
  * HF `datasets` Arrow (Array3D, numpy format, ds[list_of_indices] per batch);
  * a PNG folder + Pillow per sample (torchvision ImageFolder style), on --png-n files;
  * DataLoader(num_workers=2, batch_size=256, shuffle=True) over dlprep.load vs over the naive
    h5py Dataset;
  * 224x224x3: dlprep.batches vs numpy gather, in MB/s.
Usage: python benchmarks/loader_bench.py [--n 50000] [--big-n 2000] [--png-n 5000] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_of  # noqa: E402

import dlprep  # noqa: E402
from dlprep.store import ImageTensorWriter, atomic_output  # noqa: E402

BATCH = 256


def write_set(path: Path, x: np.ndarray, y: np.ndarray, compression: str | None = None) -> Path:
    with atomic_output(path) as tmp:
        w = ImageTensorWriter(tmp, len(x), x.shape[1:], compression=compression)
        for s in range(0, len(x), 4096):
            w.write(x[s:s + 4096], y[s:s + 4096])
        w.finish(recipe="bench", recipe_version="1", classes=[str(i) for i in range(10)],
                 splits={"train": np.arange(len(x))})
    return path


def best(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    """(seconds, samples) of the fastest of ``repeat`` runs of ``fn`` (which returns samples)."""
    return best_of(fn, repeat)


def consume(batches: Iterable[Any]) -> int:
    n = 0
    for x, _ in batches:
        n += len(x)
    return n


class NaiveH5Dataset:
    """What users typically write: one h5py read per sample (file opened lazily per process)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.f: Any = None
        import h5py

        with h5py.File(path, "r") as f:
            self.n = f["images"].shape[0]

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        if self.f is None:
            import h5py

            self.f = h5py.File(self.path, "r")
        return self.f["images"][i], int(self.f["labels"][i])


def numpy_epoch(x: np.ndarray, y: np.ndarray, seed: int = 0) -> int:
    order = np.random.default_rng(seed).permutation(len(x))
    n = 0
    for s in range(0, len(order), BATCH):
        idx = order[s:s + BATCH]
        xb, _ = x[idx], y[idx]
        n += len(xb)
    return n


def naive_epoch(ds: NaiveH5Dataset, limit: int | None = None) -> int:
    order = np.random.default_rng(0).permutation(len(ds))[:limit]
    n = 0
    for s in range(0, len(order), BATCH):
        items = [ds[int(i)] for i in order[s:s + BATCH]]
        xb = np.stack([it[0] for it in items])
        n += len(xb)
    return n


def hf_epoch(hf: Any, limit: int | None = None) -> int:
    order = np.random.default_rng(0).permutation(len(hf))[:limit]
    n = 0
    for s in range(0, len(order), BATCH):
        batch = hf[order[s:s + BATCH].tolist()]
        n += len(batch["image"])
    return n


def png_epoch(files: list[tuple[str, int]]) -> int:
    from PIL import Image

    order = np.random.default_rng(0).permutation(len(files))
    n = 0
    for s in range(0, len(order), BATCH):
        xb = np.stack([np.asarray(Image.open(files[i][0]).convert("RGB"))
                       for i in order[s:s + BATCH]])
        n += len(xb)
    return n


def write_png_folder(root: Path, x: np.ndarray, y: np.ndarray) -> list[tuple[str, int]]:
    from PIL import Image

    files = []
    for i, (img, label) in enumerate(zip(x, y, strict=True)):
        d = root / str(int(label))
        d.mkdir(parents=True, exist_ok=True)
        p = d / f"{i:06d}.png"
        Image.fromarray(img).save(p, compress_level=1)
        files.append((str(p), int(label)))
    return files


def dataloader_epoch(ds: Any, workers: int) -> int:
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))
    return consume(loader)


def row(name: str, secs: float, n: int, base: tuple[float, int] | None, target: str = "") -> str:
    rate = n / secs
    ratio = f"{rate / (base[1] / base[0]):8.2f}x" if base else "       -"
    return f"{name:<52} {secs:8.3f} s {rate:12,.0f} /s  {ratio}  {target}"


def bench_small(args: argparse.Namespace, tmp: Path, rng: np.random.Generator,
                lines: list[str]) -> None:
    """The 32x32x3 comparisons."""
    x = rng.integers(0, 256, size=(args.n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=args.n).astype(np.int64)
    plain = write_set(tmp / "plain.h5", x, y)
    packed = write_set(tmp / "gzip.h5", x, y, compression="gzip")

    base = best(lambda: numpy_epoch(x, y), args.repeat)
    lines.append(row("numpy in-memory fancy-index gather (baseline)", *base, None))
    res = best(lambda: consume(dlprep.batches(plain, batch_size=BATCH, seed=1)), args.repeat)
    lines.append(row("dlprep.batches (memmap)", *res, base, "target >= 0.5x"))
    res = best(lambda: consume(dlprep.batches(packed, batch_size=BATCH, seed=1)), args.repeat)
    lines.append(row("dlprep.batches (gzip chunks, chunk-aware shuffle)", *res, base))

    naive = NaiveH5Dataset(plain)
    nv = best(lambda: naive_epoch(naive, args.naive_n), 1)
    lines.append(row("naive h5py per-sample Dataset", *nv, base))
    dl = best(lambda: consume(dlprep.batches(plain, batch_size=BATCH, seed=1)), args.repeat)
    lines.append(row("dlprep.batches vs naive h5py", *dl, nv, "target >= 20x"))

    try:
        import datasets

        datasets.disable_progress_bars()
        feats = datasets.Features({"image": datasets.Array3D((32, 32, 3), "uint8"),
                                   "label": datasets.Value("int64")})
        hf = datasets.Dataset.from_dict({"image": x, "label": y}, features=feats)
        hf.save_to_disk(str(tmp / "hf"))
        hf = datasets.load_from_disk(str(tmp / "hf")).with_format("numpy")
        hv = best(lambda: hf_epoch(hf, args.naive_n), 1)
        lines.append(row("HF datasets Arrow (Array3D, numpy format)", *hv, base))
        lines.append(row("dlprep.batches vs HF datasets", *dl, hv, "target >= 10x"))
    except ImportError:
        lines.append("HF datasets: not installed, skipped")

    files = write_png_folder(tmp / "png", x[:args.png_n], y[:args.png_n])
    pv = best(lambda: png_epoch(files), 1)
    lines.append(row(f"PNG folder + Pillow ({args.png_n:,} files)", *pv, base))
    lines.append(row("dlprep.batches vs PNG folder + Pillow", *dl, pv, "report"))

    if not args.skip_dataloader:
        dv = best(lambda: dataloader_epoch(NaiveH5Dataset(plain), 2), 1)
        lines.append(row("DataLoader(workers=2) over naive h5py Dataset", *dv, base))
        lv = best(lambda: dataloader_epoch(dlprep.load(plain), 2), 1)
        lines.append(row("DataLoader(workers=2) over dlprep.load", *lv, dv, "target >= 5x"))


def bench_big(args: argparse.Namespace, tmp: Path, rng: np.random.Generator,
              lines: list[str]) -> None:
    """224x224x3: dlprep.batches vs numpy gather in MB/s."""
    bx = rng.integers(0, 256, size=(args.big_n, 224, 224, 3), dtype=np.uint8)
    by = rng.integers(0, 10, size=args.big_n).astype(np.int64)
    big = write_set(tmp / "big.h5", bx, by)
    mb = bx[0].nbytes / 1e6
    bb = best(lambda: numpy_epoch(bx, by), args.repeat)
    lines.append(f"224x224x3, N={args.big_n:,}:")
    lines.append(row("  numpy gather (baseline)", *bb, None) +
                 f"  {bb[1] * mb / bb[0]:8,.0f} MB/s")
    br = best(lambda: consume(dlprep.batches(big, batch_size=BATCH, seed=1)), args.repeat)
    lines.append(row("  dlprep.batches", *br, bb) + f"  {br[1] * mb / br[0]:8,.0f} MB/s")


class _Lines(list):
    """Result lines, printed as they come (a slow baseline should not hide the others)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--big-n", type=int, default=2_000)
    ap.add_argument("--png-n", type=int, default=5_000)
    ap.add_argument("--naive-n", type=int, default=None,
                    help="samples for the naive h5py/HF baselines (default: all)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-dataloader", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    lines = _Lines()
    lines.append(f"loader_bench: N={args.n:,} x 32x32x3 uint8, batch {BATCH}, one shuffled "
                 f"epoch, best of {args.repeat}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="dlprep-loader-bench-") as tmp_name:
        bench_small(args, Path(tmp_name), rng, lines)
        bench_big(args, Path(tmp_name), rng, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
