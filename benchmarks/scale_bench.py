"""Sharded preparation (dlprep.scale) on 1 and 2 cores: speed-up, Dask overhead, assembly share.

    python benchmarks/scale_bench.py [--files 12000] [--size 64] [--workload images|wiki]

The workload is CPU-bound and built from the real samples: ``images`` (default) hard-links the
six real photos of tests/data/realdata/images (640x427 to 1411x1411 JPEGs) into an ImageFolder
tree of ``--files`` files and runs ``import-images`` (decode in draft mode + resize to
``--size``); ``wiki`` repeats the real pages of the gensim enwiki excerpt into a multistream dump
+ index of ``--wiki-mb`` MB of wikitext (benchmarks/wiki_bench.py) and runs
``fetch wikipedia --dump --index``. Three runs, each a full preparation into its own cache,
timed from the call to the prepared file:

* in-process: ``--workers 1`` (no Dask import, the shards one after the other);
* Dask, 1 worker: a ``LocalCluster`` of 1 worker process started inside the timed region and
  passed as ``--scheduler`` (the one code path of the cluster runs);
* Dask, 2 workers: ``--workers 2`` (dlprep starts a ``LocalCluster`` of 2 processes).

Also printed: the CPU seconds of each run, all processes (Dask workers included once their
cluster is closed), which the neighbours' load does not change: the Dask overhead in work.
Targets (issue 15): 2 workers >= 1.7x the in-process run; Dask with 1 worker at most 10 %
slower than in-process; the assembly at most 10 % of the total (of the 2-worker run, where it
weighs most). The three outputs must be byte-identical (checked). Prints the load average
(the machine has 2 cores shared with others: ratios need a quiet machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one process = one core
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import h5py  # noqa: E402

from dlprep.cache import Cache  # noqa: E402
from dlprep.fetch.options import FetchOptions  # noqa: E402
from dlprep.prepare.core import prepare  # noqa: E402
from dlprep.recipes import Recipe, find_recipe  # noqa: E402
from dlprep.scale import last_timings  # noqa: E402

LABELS: dict[str, dict] = {"in-process": {}, "dask-1": {"dask_one": True},
                           "dask-2": {"workers": 2}}


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Dask workers once closed)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def image_job(tmp: Path, files: int, size: int):  # type: ignore[no-untyped-def]
    from image_bench import make_tree

    tree = tmp / "tree"
    make_tree(tree, files)
    recipe = Recipe(name="image-folder", title="bench", version="1", kind="image", path=tree,
                    parser="image-folder")
    options = {"source": str(tree), "size": str(size)}
    return recipe, options, f"{files:,} JPEGs -> {size}x{size}"


def wiki_job(tmp: Path, mb: float):  # type: ignore[no-untyped-def]
    from wiki_bench import build_dumps

    d = build_dumps(tmp / "wiki", mb)
    options = {"dump": [str(d["ms"])], "index": [str(d["index"])]}
    what = (f"multistream dump of {d['wikitext_mb']:.0f} MB of wikitext, "
            f"{d['ms'].stat().st_size / 1e6:.0f} MB of bz2, {d['pages']:,} pages")
    return find_recipe("wikipedia"), options, what


def run(recipe: Recipe, options: dict, cache: Path, workers: int = 1,
        dask_one: bool = False) -> tuple[float, dict, Path]:
    c0, t0 = cpu_seconds(), time.perf_counter()
    cluster = None
    scheduler = None
    started = 0.0
    try:
        if dask_one:
            from dlprep.scale.executor import start_local_cluster

            cluster = start_local_cluster(1)  # what --workers N starts, with one worker
            scheduler = cluster.scheduler_address
            started = time.perf_counter() - t0
        out = prepare(recipe, Cache.open(cache), options={**options, "workers": workers},
                      name="bench", fetch=FetchOptions(force=True, offline=True,
                                                       progress=False),
                      scheduler=scheduler)
    finally:
        if cluster is not None:
            cluster.close()
    timing = last_timings()
    timing["startup"] += started  # the LocalCluster this run started itself
    timing["cpu"] = cpu_seconds() - c0
    return time.perf_counter() - t0, timing, out


def arrays(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tobytes() if obj.dtype.kind != "O" else repr(obj[()]).encode()
        f.visititems(visit)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--workload", choices=("images", "wiki"), default="images")
    ap.add_argument("--files", type=int, default=12000, help="JPEG files (images)")
    ap.add_argument("--size", type=int, default=64, help="output side in pixels (images)")
    ap.add_argument("--wiki-mb", type=float, default=150.0, help="MB of wikitext (wiki)")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved rounds (medians)")
    a = ap.parse_args()
    logging.getLogger("dlprep").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as t:
        tmp = Path(t)
        recipe, options, what = image_job(tmp, a.files, a.size) if a.workload == "images" \
            else wiki_job(tmp, a.wiki_mb)
        print(f"{what}; {os.cpu_count()} cores; load {load()}")
        runs: dict[str, list[tuple[float, dict]]] = {k: [] for k in LABELS}
        first: dict[str, dict[str, bytes]] = {}
        for r in range(a.repeat):  # interleaved rounds: a change of load hits every side
            for label, kw in LABELS.items():
                secs, timing, out = run(recipe, options, tmp / f"cache-{label}", **kw)
                runs[label].append((secs, timing))
                if r == 0:
                    first[label] = arrays(out)
                print(f"  {label:10s} {secs:7.2f} s, {timing['cpu']:6.1f} CPU-s  (plan "
                      f"{timing['plan']:.2f}, Dask start "
                      f"{timing['startup']:.2f}, shards {timing['shards']:.2f}, later maps "
                      f"{timing['maps']:.2f}, assembly {timing['assembly']:.2f}; "
                      f"{timing['n_shards']} shards on {timing['executor']}); load {load()}")
                shutil.rmtree(tmp / f"cache-{label}", ignore_errors=True)
        same = first["in-process"] == first["dask-1"] == first["dask-2"]
        med = {k: statistics.median(s for s, _ in v) for k, v in runs.items()}
        t1, d1, d2 = med["in-process"], med["dask-1"], med["dask-2"]
        share = statistics.median(t["assembly"] / s for s, t in runs["dask-2"])
        share1 = statistics.median(t["assembly"] / s for s, t in runs["in-process"])
        ok = [t1 / d2 >= 1.7, d1 / t1 <= 1.10, share <= 0.10, same]
        rounds = f" (medians of {a.repeat} rounds)" if a.repeat > 1 else ""
        print(f"2 workers vs in-process{rounds}: {t1 / d2:.2f}x (target >= 1.7x) "
              f"{'PASS' if ok[0] else 'MISS'}")
        print(f"Dask with 1 worker vs in-process: {100 * (d1 / t1 - 1):+.1f} % (target <= "
              f"+10 %) {'PASS' if ok[1] else 'MISS'}")
        print(f"assembly: {100 * share:.1f} % of the 2-worker total, {100 * share1:.1f} % of "
              f"the in-process total (target <= 10 %) {'PASS' if ok[2] else 'MISS'}")
        cpu = {k: statistics.median(t["cpu"] for _, t in v) for k, v in runs.items()}
        print(f"CPU-s (all processes; independent of the neighbours' load): in-process "
              f"{cpu['in-process']:.1f}, Dask 1 worker {cpu['dask-1']:.1f} "
              f"({100 * (cpu['dask-1'] / cpu['in-process'] - 1):+.1f} %), Dask 2 workers "
              f"{cpu['dask-2']:.1f} ({100 * (cpu['dask-2'] / cpu['in-process'] - 1):+.1f} %)")
        print(f"outputs byte-identical: {'yes' if same else 'NO'}; load {load()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
