"""IDX / CIFAR-binary -> HDF5 conversion time vs `cp` of the same bytes (target: <= 2x).

Builds MNIST-sized IDX sets (60,000 + 10,000 images) and CIFAR-10-sized binary batches
(50,000 + 10,000 records, in a tar like upstream's), each uncompressed and gzipped, with two
kinds of content:
  * "random": uniform random bytes, which gzip cannot compress (the .gz is as big as the data);
  * "real-like": MNIST content is the 5,000 real digits bundled as mnist-sample, repeated
    (compresses about 5x, like upstream); CIFAR pixels are drawn from a normal distribution
    (sd 40) so the tar.gz compresses to about 93 %, like upstream's 170 MB of 184 MB.
Times, best of --repeat, in one run: `cp` of the input files + `sync` (the baseline);
dlprep's builder (parse -> HDF5 with train mean/std, fsync, atomic rename; inputs already in the
raw cache); and, for gzipped inputs, ISA-L inflating the files to nowhere (the fastest
single-stream inflate available, a floor that no converter of .gz input can go under).
Prints a table; exits 0. Usage: python benchmarks/convert_bench.py [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import best_of  # noqa: E402

from dlprep.cache import Cache  # noqa: E402
from dlprep.formats.compressed import open_maybe_compressed  # noqa: E402
from dlprep.formats.idx import read_idx  # noqa: E402
from dlprep.prepare.core import PrepareContext, builder_module  # noqa: E402
from dlprep.recipes import parse_recipe  # noqa: E402
from dlprep.store import atomic_output  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "dlprep" / "_data" / "mnist-sample"


def idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.tobytes()


def best(fn: Callable[[], None], repeat: int) -> float:
    return best_of(fn, repeat)[0]


def cp_time(files: list[Path], out_dir: Path, repeat: int) -> float:
    def run() -> None:
        for f in files:
            subprocess.run(["cp", str(f), str(out_dir / f.name)], check=True)
        subprocess.run(["sync"], check=True)
    return best(run, repeat)


def inflate_time(files: list[Path], repeat: int) -> float:
    buf = memoryview(bytearray(8 << 20))

    def run() -> None:
        for f in files:
            with open_maybe_compressed(f) as fh:
                while fh.readinto(buf):  # type: ignore[attr-defined]
                    pass
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


def gz_bytes(data: bytes) -> bytes:
    return gzip.compress(data, 6, mtime=0)


def idx_sets(content: str, rng: np.random.Generator) -> dict[str, bytes]:
    if content == "random":
        train = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        test = rng.integers(0, 256, (10000, 28, 28), dtype=np.uint8)
    else:  # the bundled real digits, repeated to MNIST's size
        real = np.concatenate([read_idx(SAMPLE / "train-images-idx3-ubyte.gz"),
                               read_idx(SAMPLE / "t10k-images-idx3-ubyte.gz")])
        train, test = np.resize(real, (60000, 28, 28)), np.resize(real[::-1], (10000, 28, 28))
    return {"train-images": idx(train), "train-labels": idx(rng.integers(0, 10, 60000, np.uint8)),
            "t10k-images": idx(test), "t10k-labels": idx(rng.integers(0, 10, 10000, np.uint8))}


def cifar_members(content: str, rng: np.random.Generator) -> dict[str, bytes]:
    out = {}
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        if content == "random":
            rec = rng.integers(0, 256, (10000, 3073), dtype=np.uint8)
        else:
            rec = np.clip(rng.normal(128, 40, (10000, 3073)), 0, 255).astype(np.uint8)
        rec[:, 0] = rng.integers(0, 10, 10000)
        out[f"cifar-10-batches-bin/{name}"] = rec.tobytes()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="random content only (no gzip -6 of "
                                                         "the real-like sets, which takes ~30 s)")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows: list[tuple[str, int, float, float, float | None]] = []
    contents = ["random"] if args.quick else ["random", "real-like"]
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as tmp:
        work = Path(tmp)
        (work / "cp").mkdir()
        for content in contents:
            files = idx_sets(content, rng)
            for gz in (False, True):
                sfx = ".gz" if gz else ""
                paths = {}
                for name, data in files.items():
                    p = work / (name + sfx)
                    p.write_bytes(gz_bytes(data) if gz else data)
                    paths[p.name] = p
                recipe = {"name": "bench-idx", "title": "b", "version": "1", "kind": "image",
                          "parser": "idx",
                          "files": [{"name": n, "urls": ["file:///x"]} for n in paths],
                          "splits": {"train": {"images": f"train-images{sfx}",
                                               "labels": f"train-labels{sfx}"},
                                     "test": {"images": f"t10k-images{sfx}",
                                              "labels": f"t10k-labels{sfx}"}}}
                t_build = build_time(recipe, paths, work, args.repeat)
                t_cp = cp_time(list(paths.values()), work / "cp", args.repeat)
                t_inf = inflate_time(list(paths.values()), args.repeat) if gz else None
                rows.append((f"IDX {'gz ' if gz else ''}({content})",
                             sum(p.stat().st_size for p in paths.values()), t_cp, t_build,
                             t_inf))
                for p in paths.values():
                    p.unlink()
            members = cifar_members(content, rng)
            for gz in (False, True):
                name = "cifar-10-binary.tar" + (".gz" if gz else "")
                archive = work / name
                raw = io.BytesIO()
                with tarfile.open(fileobj=raw, mode="w") as tar:
                    for mname, data in members.items():
                        info = tarfile.TarInfo(mname)
                        info.size = len(data)
                        tar.addfile(info, io.BytesIO(data))
                archive.write_bytes(gz_bytes(raw.getvalue()) if gz else raw.getvalue())
                recipe = {"name": "bench-cifar", "title": "b", "version": "1", "kind": "image",
                          "parser": "cifar10-bin",
                          "files": [{"name": name, "urls": ["file:///x"]}],
                          "classes": [str(i) for i in range(10)],
                          "splits": {"train": [m for m in members if "data_batch" in m],
                                     "test": ["cifar-10-batches-bin/test_batch.bin"]}}
                t_build = build_time(recipe, {name: archive}, work, args.repeat)
                t_cp = cp_time([archive], work / "cp", args.repeat)
                t_inf = inflate_time([archive], args.repeat) if gz else None
                rows.append((f"CIFAR-10 {'tar.gz' if gz else 'tar'} ({content})",
                             archive.stat().st_size, t_cp, t_build, t_inf))
                archive.unlink()
            for f in (work / "cp").iterdir():
                f.unlink()
    print(f"machine: {os.cpu_count()} cores; best of {args.repeat}")
    print(f"{'input':<28}{'bytes':>13}{'cp s':>8}{'dlprep s':>10}{'ratio':>8}  {'<= 2x':<6}"
          f"{'inflate-only s':>15}{'its ratio':>10}{'dlprep/it':>10}")
    for label, size, base, ours, inf in rows:
        ratio = ours / base
        verdict = "PASS" if ratio <= 2 else "MISS"
        extra = f"{inf:>15.3f}{inf / base:>9.2f}x{ours / inf:>9.2f}x" if inf else ""
        print(f"{label:<28}{size:>13,}{base:>8.3f}{ours:>10.3f}{ratio:>7.2f}x  {verdict:<6}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
