"""IDX / CIFAR-binary -> HDF5 conversion time vs `cp` of the same bytes (target: <= 2x).

Generates MNIST-sized IDX files (60,000 + 10,000 images) and CIFAR-10-sized binary batches
(50,000 + 10,000 records, in a tar like upstream's), then times, in one run:
  * `cp` of the input bytes (the baseline), and `gzip -dc` for the gzipped variants;
  * dlprep's builder (parse -> HDF5 with mean/std), fsync included, inputs already in the cache.
Prints a table of ratios; exits 0. Usage: python benchmarks/convert_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlprep.cache import Cache  # noqa: E402
from dlprep.prepare.core import PrepareContext, builder_module  # noqa: E402
from dlprep.recipes import parse_recipe  # noqa: E402
from dlprep.store.hdf5 import atomic_output  # noqa: E402


def idx(arr: np.ndarray) -> bytes:
    return bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.tobytes()


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cp_time(files: list[Path], out_dir: Path, repeat: int) -> float:
    def run() -> None:
        for f in files:
            subprocess.run(["cp", str(f), str(out_dir / f.name)], check=True)
        subprocess.run(["sync"], check=True)
    return best(run, repeat)


def gunzip_time(files: list[Path], out_dir: Path, repeat: int) -> float:
    def run() -> None:
        for f in files:
            with open(out_dir / (f.name + ".raw"), "wb") as out:
                subprocess.run(["gzip", "-dc", str(f)], check=True, stdout=out)
        subprocess.run(["sync"], check=True)
    return best(run, repeat)


def build_time(recipe_data: dict, files: dict[str, Path], work: Path, repeat: int) -> float:
    recipe = parse_recipe(recipe_data, work / "bench.toml")
    module = builder_module(recipe)
    opts = {p.name: p.default for p in getattr(module, "PARAMS", ())}
    ctx = PrepareContext(recipe=recipe, options=opts, cache=Cache(work / "cache"),
                         name=recipe.name, files=files)
    out = work / "out.h5"

    def run() -> None:
        with atomic_output(out) as tmp:
            module.build(ctx, tmp)
    return best(run, repeat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = Path(tmp)
        (work / "cp").mkdir()
        # --- IDX (MNIST-sized)
        files = {}
        for split, n in (("train", 60000), ("t10k", 10000)):
            files[f"{split}-images"] = idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            files[f"{split}-labels"] = idx(rng.integers(0, 10, n, dtype=np.uint8))
        for gz in (False, True):
            paths = {}
            for name, data in files.items():
                fname = name + (".gz" if gz else "")
                p = work / fname
                p.write_bytes(gzip.compress(data, 6) if gz else data)
                paths[fname] = p
            sfx = ".gz" if gz else ""
            recipe = {"name": "bench-idx", "title": "b", "version": "1", "kind": "image",
                      "parser": "idx",
                      "files": [{"name": n, "urls": ["file:///x"]} for n in paths],
                      "splits": {"train": {"images": f"train-images{sfx}",
                                           "labels": f"train-labels{sfx}"},
                                 "test": {"images": f"t10k-images{sfx}",
                                          "labels": f"t10k-labels{sfx}"}}}
            t_build = build_time(recipe, paths, work, args.repeat)
            t_cp = cp_time(list(paths.values()), work / "cp", args.repeat)
            label = "IDX gz (MNIST-sized)" if gz else "IDX raw (MNIST-sized)"
            rows.append((label, sum(p.stat().st_size for p in paths.values()), t_cp, t_build))
            if gz:
                rows.append(("  gz baseline: gzip -dc", 0,
                             gunzip_time(list(paths.values()), work / "cp", args.repeat), t_build))
        # --- CIFAR-10 binary (tar, like upstream)
        members = {}
        for i in range(1, 6):
            members[f"cifar-10-batches-bin/data_batch_{i}.bin"] = rng.integers(
                0, 256, (10000, 3073), dtype=np.uint8)
        members["cifar-10-batches-bin/test_batch.bin"] = rng.integers(0, 256, (10000, 3073),
                                                                      dtype=np.uint8)
        for arr in members.values():
            arr[:, 0] %= 10
        for gz in (False, True):
            name = "cifar-10-binary.tar" + (".gz" if gz else "")
            archive = work / name
            with tarfile.open(archive, "w:gz" if gz else "w") as tar:
                for mname, arr in members.items():
                    data = arr.tobytes()
                    info = tarfile.TarInfo(mname)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            recipe = {"name": "bench-cifar", "title": "b", "version": "1", "kind": "image",
                      "parser": "cifar10-bin", "files": [{"name": name, "urls": ["file:///x"]}],
                      "classes": [str(i) for i in range(10)],
                      "splits": {"train": [m for m in members if "data_batch" in m],
                                 "test": ["cifar-10-batches-bin/test_batch.bin"]}}
            t_build = build_time(recipe, {name: archive}, work, args.repeat)
            t_cp = cp_time([archive], work / "cp", args.repeat)
            rows.append((f"CIFAR-10 {'tar.gz' if gz else 'tar'}", archive.stat().st_size, t_cp,
                         t_build))
            if gz:
                rows.append(("  gz baseline: gzip -dc", 0,
                             gunzip_time([archive], work / "cp", args.repeat), t_build))
            archive.unlink()
    print(f"{'input':<26}{'bytes':>13}{'baseline s':>12}{'dlprep s':>10}{'ratio':>8}  target <= 2x")
    for label, size, base, ours in rows:
        ratio = ours / base
        verdict = "PASS" if ratio <= 2 else "MISS"
        size_s = f"{size:,}" if size else ""
        print(f"{label:<26}{size_s:>13}{base:>12.3f}{ours:>10.3f}{ratio:>7.2f}x  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
