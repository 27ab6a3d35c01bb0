"""JPEG folder -> resized HDF5 (dlprep import-images) against Pillow decode + resize alone.

The real photos of tests/data/realdata/images (640x427 to 1411x1411 JPEGs) are replicated (hard
links) into an ImageFolder tree of a few thousand files. Measured in one run, on the same files:

* baseline: a plain loop of ``Image.open`` + ``draft`` + ``convert("RGB")`` + ``resize`` to the
  same centre crop (what any hand-written converter does; draft mode included, to be fair);
* dlprep, 1 worker: the whole ``import-images`` preparation (listing, decode with EXIF/mode
  handling, HDF5 write, train-split statistics), images/s;
* dlprep, 2 workers: the same with two processes; output bytes are checked to be identical.

Targets (DESIGN.md): 1 worker >= 0.8x the baseline rate; 2 workers >= 1.7x 1 worker.
Usage: python benchmarks/image_bench.py [--files 2000] [--size 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlprep.cache import Cache  # noqa: E402
from dlprep.fetch.options import FetchOptions  # noqa: E402
from dlprep.prepare.core import prepare  # noqa: E402
from dlprep.recipes import Recipe  # noqa: E402

PHOTOS = ROOT / "tests" / "data" / "realdata" / "images"


def make_tree(dest: Path, files: int) -> list[Path]:
    photos = sorted(PHOTOS.glob("*.jpg"))
    if not photos:
        sys.exit(f"no photos in {PHOTOS}")
    out = []
    for i in range(files):
        src = photos[i % len(photos)]
        cls = dest / src.stem[:12]
        cls.mkdir(parents=True, exist_ok=True)
        target = cls / f"{i:05d}.jpg"
        try:
            os.link(src, target)
        except OSError:
            shutil.copy(src, target)
        out.append(target)
    return out


def pillow_alone(paths: list[Path], size: int) -> float:
    """Seconds for decode + resize of every file with plain Pillow (the baseline)."""
    t0 = time.perf_counter()
    sink = 0
    for p in paths:
        with Image.open(p) as img:
            img.draft("RGB", (size, size))
            img = img.convert("RGB")
            w, h = img.size
            s = min(w, h)
            box = ((w - s) / 2, (h - s) / 2, (w + s) / 2, (h + s) / 2)
            arr = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR, box=box))
            sink += int(arr[0, 0, 0])
    return time.perf_counter() - t0


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (user + system)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def dlprep_import(tree: Path, cache_dir: Path, size: int, workers: int
                  ) -> tuple[float, float, Path]:
    """(wall seconds, CPU seconds incl. worker processes, prepared path)."""
    recipe = Recipe(name="image-folder", title="bench", version="1", kind="image", path=tree,
                    parser="image-folder")
    c0, t0 = cpu_seconds(), time.perf_counter()
    out = prepare(recipe, Cache.open(cache_dir), name="bench", fetch=FetchOptions(force=True),
                  options={"source": str(tree), "size": str(size), "workers": workers})
    return time.perf_counter() - t0, cpu_seconds() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs for each measurement")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dlprep-image-bench-") as tmp:
        tmp_path = Path(tmp)
        paths = make_tree(tmp_path / "tree", args.files)
        n = len(paths)
        pillow_alone(paths[:50], args.size)  # warm the page cache
        # interleaved rounds, best of each: other load on the machine hits all three alike
        base = one = two = cpu0 = cpu1 = cpu2 = float("inf")
        for _ in range(args.repeat):
            c0 = cpu_seconds()
            base = min(base, pillow_alone(paths, args.size))
            cpu0 = min(cpu0, cpu_seconds() - c0)
            t1, c1, out1 = dlprep_import(tmp_path / "tree", tmp_path / "c1", args.size, 1)
            t2, c2, out2 = dlprep_import(tmp_path / "tree", tmp_path / "c2", args.size, 2)
            one, two, cpu1, cpu2 = min(one, t1), min(two, t2), min(cpu1, c1), min(cpu2, c2)
        with h5py.File(out1, "r") as a, h5py.File(out2, "r") as b:
            identical = a["images"][()].tobytes() == b["images"][()].tobytes()
        r1, r2 = base / one, one / two
        print(f"files: {n} real JPEGs (6 photos replicated), {args.size}x{args.size} RGB, "
              f"{os.cpu_count()} CPUs, best of {args.repeat}")
        print(f"Pillow decode+resize alone : {n / base:8.1f} img/s  ({base:.2f} s)")
        print(f"dlprep import, 1 worker    : {n / one:8.1f} img/s  ({one:.2f} s)  "
              f"= {r1:.2f}x baseline (target >= 0.8) {'OK' if r1 >= 0.8 else 'MISS'}")
        print(f"dlprep import, 2 workers   : {n / two:8.1f} img/s  ({two:.2f} s)  "
              f"= {r2:.2f}x 1 worker (target >= 1.7) {'OK' if r2 >= 1.7 else 'MISS'}")
        print(f"CPU seconds: Pillow alone {cpu0:.2f}, dlprep 1 worker {cpu1:.2f} "
              f"({cpu0 / cpu1:.2f}x baseline by CPU time)")
        print(f"CPU seconds, 1 worker {cpu1:.2f} / 2 workers {cpu2:.2f} (all processes): "
              f"{cpu1 / cpu2:.2f}x = the 2-worker speed-up on 2 otherwise idle cores")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"1 vs 2 workers images byte-identical: {identical}")


if __name__ == "__main__":
    main()
