"""IDX / CIFAR-binary -> HDF5 conversion time against its DESIGN §2 baseline.

Targets (DESIGN.md §2): uncompressed input <= 2x the time of `cp` of the same bytes (then
`sync` of the copy); gzipped input <= 1.3x the time of the fastest single-stream inflate of
the same file: ISA-L inflating it into a file on the same disk, then fsync (what `cp` is to
plain input; deflate is one sequential stream, so this is the floor for one core). ISA-L
inflating to nowhere (no output written) and `cp` are shown for the gzipped rows too, for
context.

Builds MNIST-sized IDX sets (60,000 + 10,000 images) and CIFAR-10-sized binary batches
(50,000 + 10,000 records, in a tar like upstream's), each uncompressed and gzipped, with two
kinds of content:
  * "random": uniform random bytes, which gzip cannot compress (the .gz is as big as the data);
  * "real-like": MNIST content is the 5,000 real digits bundled as mnist-sample, repeated
    (compresses about 5x, like upstream); CIFAR pixels are drawn from a normal distribution
    (sd 40) so the tar.gz compresses to about 93 %, like upstream's 170 MB of 184 MB.
Sides, run in interleaved rounds (--repeat of them), each run after the same untimed settling
(outputs of the previous run deleted, `sync` and a wait until the kernel has no dirty or
writeback pages left, inputs read into the page cache): `cp` of the input files followed by
`sync` of the copies; ISA-L inflate, to a file and to nowhere (gzipped rows); dlprep's
builder (parse -> HDF5 with the train mean/std, fsync, atomic rename). With rapidgzip
installed the gzipped rows also run dlprep with ISA-L only and with rapidgzip for every file,
and rapidgzip inflating to nowhere (context for the rule in dlprep/parallel_gzip.py).
Verdicts use the median run (the typical one); the best run and the spread of the per-round
ratios are printed beside it.

Usage: python benchmarks/convert_bench.py [--repeat 5] [--quick] [--only TEXT] [--data-dir DIR]
Prints a table; exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import Ratio, Times, load_average, quiesce_disk, rounds, warm  # noqa: E402

from dlprep import parallel_gzip  # noqa: E402
from dlprep.cache import Cache  # noqa: E402
from dlprep.formats.idx import read_idx  # noqa: E402
from dlprep.magic import open_compressed  # noqa: E402
from dlprep.prepare.core import PrepareContext, builder_module  # noqa: E402
from dlprep.recipes import parse_recipe  # noqa: E402
from dlprep.store import atomic_output  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "dlprep" / "_data" / "mnist-sample"
PLAIN_TARGET, GZ_TARGET = 2.0, 1.3

try:
    import rapidgzip
except ImportError:
    rapidgzip = None


def idx(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.tobytes()


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


def tar_bytes(members: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for mname, data in members.items():
            info = tarfile.TarInfo(mname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def write_input(path: Path, make: Callable[[], bytes], reuse: bool) -> Path:
    if not (reuse and path.exists()):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(make())
        tmp.replace(path)
    return path


def inputs(data_dir: Path, contents: list[str], reuse: bool
           ) -> Iterator[tuple[str, dict, dict[str, Path]]]:
    """(row label, recipe table, {file name: path}) for every row, inputs written on demand."""
    rng = np.random.default_rng(0)
    for content in contents:
        sets = idx_sets(content, rng)
        for gz in (False, True):
            sfx = ".gz" if gz else ""
            paths = {}
            for name, data in sets.items():
                p = write_input(data_dir / f"{content}-{name}{sfx}",
                                (lambda d=data: gz_bytes(d)) if gz else (lambda d=data: d), reuse)
                paths[f"{name}{sfx}"] = p
            recipe = {"name": "bench-idx", "title": "b", "version": "1", "kind": "image",
                      "parser": "idx",
                      "files": [{"name": n, "urls": ["file:///x"]} for n in paths],
                      "splits": {"train": {"images": f"train-images{sfx}",
                                           "labels": f"train-labels{sfx}"},
                                 "test": {"images": f"t10k-images{sfx}",
                                          "labels": f"t10k-labels{sfx}"}}}
            yield f"IDX {'gz ' if gz else ''}({content})", recipe, paths
        members = cifar_members(content, rng)
        tar = tar_bytes(members)
        del sets
        for gz in (False, True):
            name = "cifar-10-binary.tar" + (".gz" if gz else "")
            p = write_input(data_dir / f"{content}-{name}",
                            (lambda t=tar: gz_bytes(t)) if gz else (lambda t=tar: t), reuse)
            recipe = {"name": "bench-cifar", "title": "b", "version": "1", "kind": "image",
                      "parser": "cifar10-bin", "files": [{"name": name, "urls": ["file:///x"]}],
                      "classes": [str(i) for i in range(10)],
                      "splits": {"train": [m for m in members if "data_batch" in m],
                                 "test": ["cifar-10-batches-bin/test_batch.bin"]}}
            yield f"CIFAR-10 {'tar.gz' if gz else 'tar'} ({content})", recipe, {name: p}


@contextlib.contextmanager
def gzip_mode(mode: str | None) -> Iterator[None]:
    """Run with dlprep.parallel_gzip.PARALLEL_GZIP set to ``mode`` ("off", "on"; None: as is)."""
    saved = parallel_gzip.PARALLEL_GZIP
    parallel_gzip.PARALLEL_GZIP = mode or saved
    try:
        yield
    finally:
        parallel_gzip.PARALLEL_GZIP = saved


def drain(fh: io.RawIOBase, buf: memoryview) -> None:
    while fh.readinto(buf):
        pass


def sides(recipe_data: dict, files: dict[str, Path], work: Path, gz: bool
          ) -> dict[str, Callable[[], object]]:
    """The functions timed for one row, by name (``cp`` and ``dlprep`` always)."""
    recipe = parse_recipe(recipe_data, work / "bench.toml")
    module = builder_module(recipe)
    opts = {p.name: p.default for p in getattr(module, "PARAMS", ())}
    ctx = PrepareContext(recipe=recipe, options=opts, cache=Cache(work / "cache"),
                         name=recipe.name, files=files)
    out = work / "out" / "out.h5"
    copies = [work / "cp" / p.name for p in files.values()]
    buf = memoryview(bytearray(8 << 20))

    def cp() -> None:
        for src, dst in zip(files.values(), copies, strict=True):
            subprocess.run(["cp", str(src), str(dst)], check=True)
        subprocess.run(["sync", *map(str, copies)], check=True)  # fsync of each copy

    def build(mode: str | None) -> Callable[[], None]:
        def run() -> None:
            with gzip_mode(mode), atomic_output(out) as tmp:
                module.build(ctx, tmp)
        return run

    def isal_inflate() -> None:
        for p in files.values():
            with open_compressed(p, "gzip") as fh:
                drain(fh, buf)  # type: ignore[arg-type]

    def isal_inflate_to_disk() -> None:
        for src, dst in zip(files.values(), copies, strict=True):
            with open_compressed(src, "gzip") as fh, open(dst, "wb", buffering=0) as out_fh:
                while n := fh.readinto(buf):  # type: ignore[attr-defined]
                    out_fh.write(buf[:n])
                os.fsync(out_fh.fileno())

    def rapidgzip_inflate() -> None:
        threads = len(os.sched_getaffinity(0))
        for p in files.values():
            with rapidgzip.RapidgzipFile(str(p), parallelization=threads) as fh:
                drain(fh, buf)

    fns: dict[str, Callable[[], object]] = {"cp": cp}
    if gz:
        fns["inflate"] = isal_inflate_to_disk
        fns["inflate, to nowhere"] = isal_inflate
    fns["dlprep"] = build(None)
    if gz and rapidgzip is not None:
        uses = {parallel_gzip.gzip_threads(p.stat().st_size) > 1 for p in files.values()}
        if uses != {False}:
            fns["dlprep, ISA-L only"] = build("off")
        if uses != {True}:
            fns["dlprep, rapidgzip"] = build("on")
        fns["rapidgzip inflate"] = rapidgzip_inflate
    return fns


def settler(work: Path, files: dict[str, Path]) -> Callable[[str], None]:
    """Before every run: delete all sides' outputs, wait for writeback, have inputs cached."""
    def settle(_name: str) -> None:
        for folder in (work / "out", work / "cp"):
            for f in folder.iterdir():
                f.unlink()
        quiesce_disk()
        warm(files.values())
    return settle


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="rounds (default 5)")
    ap.add_argument("--quick", action="store_true", help="random content only (no gzip -6 of "
                                                         "the real-like sets, which takes ~30 s)")
    ap.add_argument("--only", default="", help="rows whose label contains this text")
    ap.add_argument("--data-dir", type=Path, help="keep the generated inputs here and reuse them")
    args = ap.parse_args()
    contents = ["random"] if args.quick else ["random", "real-like"]
    results: list[tuple[str, int, dict[str, Times]]] = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = load_average()
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".convert-bench-") as tmp:
        work = Path(tmp)
        (work / "cp").mkdir()
        (work / "out").mkdir()
        data_dir = args.data_dir or work / "in"
        data_dir.mkdir(parents=True, exist_ok=True)
        for label, recipe, files in inputs(data_dir, contents, reuse=args.data_dir is not None):
            if args.only and args.only not in label:
                continue
            times = rounds(sides(recipe, files, work, "gz" in label),
                           args.repeat, settler(work, files))
            results.append((label, sum(p.stat().st_size for p in files.values()), times))
            if args.data_dir is None:
                for p in files.values():
                    p.unlink()
    report(results, args.repeat, started, load_before)
    return 0


def report(results: list[tuple[str, int, dict[str, Times]]], repeat: int, started: str,
           load_before: str) -> None:
    pg = parallel_gzip
    rule = (f"{pg.PARALLEL_GZIP}: from {pg.PARALLEL_GZIP_MIN_BYTES >> 20} MiB with "
            f"{pg.PARALLEL_GZIP_MIN_CORES}+ cores")
    print(f"convert benchmark: {pg.usable_cores()} usable cores, {started}, load average "
          f"{load_before} before / {load_average()} after; {repeat} interleaved rounds; "
          f"rapidgzip {'installed, parallel inflate ' + rule if rapidgzip else 'not installed'}")
    print("ratio = dlprep time / baseline time of the median runs (best runs; lowest-highest "
          "of the per-round ratios).\nbaseline: `cp` + sync for plain input (target <= 2x); "
          "ISA-L inflating to a file + fsync for gzipped input (target <= 1.3x)")
    print(f"{'input':<27}{'MB':>5}{'cp s':>7}{'infl s':>7}{'dlprep s':>9}  "
          f"{'ratio (best; rounds)':<34}{'target':<7}{'verdict':<8}context (medians)")
    for label, size, t in results:
        gz = "inflate" in t
        r = Ratio(t["inflate" if gz else "cp"], t["dlprep"])
        target = GZ_TARGET if gz else PLAIN_TARGET
        lo, hi = r.spread
        cell = f"{r.median:.2f}x ({r.best:.2f}x; {lo:.2f}-{hi:.2f}x)"
        context = ""
        if gz:
            context = (f"{t['dlprep'].median / t['cp'].median:.2f}x cp, "
                       f"{t['dlprep'].median / t['inflate, to nowhere'].median:.2f}x inflate "
                       f"to nowhere ({t['inflate, to nowhere'].median:.3f} s)")
        infl = f"{t['inflate'].median:>7.3f}" if gz else f"{'':>7}"
        print(f"{label:<27}{size / 1e6:>5.0f}{t['cp'].median:>7.3f}{infl}"
              f"{t['dlprep'].median:>9.3f}  {cell:<34}{'<=' + format(target, 'g') + 'x':<7}"
              f"{'PASS' if r.median <= target else 'MISS':<8}{context}")
    extra = [(label, t) for label, _, t in results
             if any(k.startswith(("dlprep,", "rapidgzip")) for k in t)]
    if extra:
        print("\ngzipped rows, every side: median (best) seconds, and median / ISA-L inflate "
              "to a file:")
        for label, t in extra:
            cells = [f"{k} {v.median:.3f} ({v.best:.3f}) {v.median / t['inflate'].median:.2f}x"
                     for k, v in t.items() if k != "cp"]
            print(f"  {label}: " + "; ".join(cells))


if __name__ == "__main__":
    raise SystemExit(main())
