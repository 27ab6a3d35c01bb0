"""OpenStreetMap benchmark on the largest real sample (Andorra, tests/data/realdata/osm).

1. Time to tiles: ``prepare`` of ``osm --pbf example-test.pbf`` (default options: 64 px tiles,
   2 m/px, 4 layers; HDF5 written) against the read floor: a pyosmium pass over the same file
   with the same reader set-up (node locations, area assembly, the same entity and key filters)
   that only iterates. Target: at most 2.5x.
2. Peak RSS (``ru_maxrss`` of the process, and the peak of its anonymous memory sampled from
   /proc) with the on-disk node index (``--node-index disk``) for the file and for a file 8x
   larger: the sample merged with 7 copies shifted east/north (ids offset, so nothing
   collides). Target: within 15 %. ``--rss-mpp`` (default 8 m/px) sets the resolution of this
   run, to keep the 8x output (and the disk it takes) modest; per-tile bookkeeping is ~70 bytes.

Every measurement runs in a fresh subprocess, timed inside it (imports excluded); times are the
best of ``--repeat``. Run: ``python benchmarks/osm_bench.py [--repeat 3] [--work DIR]``.
Prints a table with PASS/MISS and the machine load, and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "tests" / "data" / "realdata" / "osm" / "example-test.pbf"

_SAMPLER = textwrap.dedent("""
    import json, os, resource, sys, threading, time
    peak = {"anon_kb": 0}
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("RssAnon:"):
                        peak["anon_kb"] = max(peak["anon_kb"], int(line.split()[1]))
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
    def report(seconds, **more):
        stop.set()
        print(json.dumps({"seconds": seconds, "maxrss_kb":
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                          "anon_kb": peak["anon_kb"], **more}))
""")

FLOOR = _SAMPLER + textwrap.dedent("""
    import time, tempfile
    import osmium
    from dlprep.formats.osm import location_storage, queue_limits
    from dlprep.formats.osm_layers import load_layers
    path, index = sys.argv[1], sys.argv[2]
    keys = sorted(set(load_layers(None).keys()) | {"landuse"})
    queue_limits()
    with tempfile.TemporaryDirectory() as tmp:
        from pathlib import Path
        t0 = time.perf_counter()
        proc = osmium.FileProcessor(path).with_locations(
            location_storage(Path(path), index, Path(tmp)))
        proc.with_areas(osmium.filter.KeyFilter(*keys))
        proc.with_filter(osmium.filter.EntityFilter(osmium.osm.WAY | osmium.osm.AREA))
        proc.with_filter(osmium.filter.KeyFilter(*keys))
        n = sum(1 for _ in proc)
        report(time.perf_counter() - t0, objects=n)
""")

TILES = _SAMPLER + textwrap.dedent("""
    import time
    import h5py
    from dlprep.cache import Cache
    from dlprep.fetch.options import FetchOptions
    from dlprep.prepare.core import prepare
    from dlprep.recipes import find_recipe
    path, index, cache, mpp = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    t0 = time.perf_counter()
    out = prepare(find_recipe("osm"), Cache.open(cache),
                  options={"pbf": path, "node_index": index, "meters_per_pixel": mpp},
                  fetch=FetchOptions(force=True, progress=False))
    seconds = time.perf_counter() - t0
    with h5py.File(out) as f:
        tiles = int(f["images"].shape[0])
    size = os.path.getsize(out)
    os.unlink(out)
    report(seconds, tiles=tiles, bytes=size)
""")


def run(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def best(code: str, repeat: int, *args: str) -> dict:
    runs = [run(code, *args) for _ in range(max(1, repeat))]
    return min(runs, key=lambda r: r["seconds"])


def make_shifted(src: Path, dst: Path, copies: int = 8) -> Path:
    """``src`` merged with ``copies - 1`` shifted copies (a 4-wide grid of the header box),
    node/way/relation ids offset by 10**10 per copy; nodes, then ways, then relations."""
    import osmium

    if dst.is_file():
        return dst
    box = osmium.io.Reader(str(src), osmium.osm.NOTHING).header().box()
    width = box.top_right.lon - box.bottom_left.lon
    height = box.top_right.lat - box.bottom_left.lat
    off = 10**10
    tmp = dst.with_name(dst.name + ".part.osm.pbf")
    tmp.unlink(missing_ok=True)
    writer = osmium.SimpleWriter(str(tmp))
    try:
        for kind in (osmium.osm.NODE, osmium.osm.WAY, osmium.osm.RELATION):
            for c in range(copies):
                dx, dy, base = (c % 4) * width, (c // 4) * height, c * off
                for o in osmium.FileProcessor(str(src), kind):
                    if kind == osmium.osm.NODE:
                        loc = osmium.osm.Location(o.lon + dx, o.lat + dy)
                        writer.add_node(o.replace(id=o.id + base, location=loc))
                    elif kind == osmium.osm.WAY:
                        writer.add_way(o.replace(id=o.id + base,
                                                 nodes=[n.ref + base for n in o.nodes]))
                    else:
                        writer.add_relation(o.replace(id=o.id + base, members=[
                            (m.type, m.ref + base, m.role) for m in o.members]))
    finally:
        writer.close()
    os.replace(tmp, dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dlprep-osm-bench")
    ap.add_argument("--rss-mpp", type=float, default=8.0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    big = make_shifted(SAMPLE, args.work / "andorra-x8.osm.pbf")
    cache = str(args.work / "cache")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} "
          f"{load[2]:.2f} at start")
    floor = best(FLOOR, args.repeat, str(SAMPLE), "memory")
    tiles = best(TILES, args.repeat, str(SAMPLE), "memory", cache, "2")
    ratio = tiles["seconds"] / floor["seconds"]
    print(f"\n1. time to tiles, {SAMPLE.name} ({SAMPLE.stat().st_size / 1e6:.1f} MB), "
          f"best of {args.repeat}")
    print(f"   read floor (pyosmium, same filters, areas): {floor['seconds']:.2f} s "
          f"({floor['objects']:,} ways/areas)")
    print(f"   dlprep tiles (64 px, 2 m/px, HDF5 written):  {tiles['seconds']:.2f} s "
          f"({tiles['tiles']:,} tiles, {tiles['bytes'] / 1e6:.0f} MB)")
    print(f"   ratio {ratio:.2f}x (target <= 2.5x): {'PASS' if ratio <= 2.5 else 'MISS'}")
    small = run(TILES, str(SAMPLE), "disk", cache, str(args.rss_mpp))
    large = run(TILES, str(big), "disk", cache, str(args.rss_mpp))
    floors = [run(FLOOR, str(p), "disk") for p in (SAMPLE, big)]
    print(f"\n2. peak RSS with the on-disk node index, {args.rss_mpp:g} m/px")
    for name, r, path, fl in (("1x", small, SAMPLE, floors[0]), ("8x", large, big, floors[1])):
        print(f"   {name} {path.stat().st_size / 1e6:5.1f} MB: max RSS "
              f"{r['maxrss_kb'] / 1024:6.1f} MiB, peak anonymous {r['anon_kb'] / 1024:6.1f} "
              f"MiB, {r['tiles']:,} tiles, {r['seconds']:.1f} s; the read floor alone: "
              f"{fl['maxrss_kb'] / 1024:.1f} / {fl['anon_kb'] / 1024:.1f} MiB")
    growth = large["maxrss_kb"] / small["maxrss_kb"] - 1
    anon = large["anon_kb"] / small["anon_kb"] - 1
    print(f"   growth: max RSS {growth:+.1%}, anonymous {anon:+.1%} (target within 15 %): "
          f"{'PASS' if abs(growth) <= 0.15 else 'MISS'}")
    end = os.getloadavg()
    print(f"\nload average at the end: {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")


if __name__ == "__main__":
    main()
