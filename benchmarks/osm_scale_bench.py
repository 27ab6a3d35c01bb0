"""OSM blob-range shards (issue 15): one pass against shards in one process and on
``--workers 2``, on the Andorra sample merged with shifted copies (``osm_bench.make_shifted``).

Each run is a fresh ``python -m dlprep``-equivalent process (imports excluded from the
timing) with its own cache; the rounds are interleaved and medians printed with their range.
Prints the per-core rates of the two sharded stages (node blobs decoded with NumPy; way blobs
read by libosmium into features) for docs/SCALING.md, and the ratios:

- shards in one process / one pass (what sharding costs when nothing runs in parallel);
- one pass / ``--workers 2`` and shards in one process / ``--workers 2`` (the speed-up).

    python benchmarks/osm_scale_bench.py [--copies 16] [--repeat 3] [--format ways]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
SAMPLE = ROOT / "tests" / "data" / "realdata" / "osm" / "example-test.pbf"

DRIVER = """
import json, sys, time
from dlprep.cli import main
from dlprep.scale import last_timings
t = time.perf_counter()
rc = main(sys.argv[1:])
wall = time.perf_counter() - t
assert rc == 0, rc
print(json.dumps({"wall": wall, **last_timings()}))
"""


def run(pbf: Path, cache: Path, fmt: str, mpp: str, *, shards: bool, workers: int) -> dict:
    env = dict(os.environ)
    env["DLPREP_OSM_SHARDS"] = "always" if shards else "never"
    args = ["--cache-dir", str(cache), "fetch", "osm", "--pbf", str(pbf), "--format", fmt,
            "--meters-per-pixel", mpp, "--force", "-q", "--workers", str(workers)]
    proc = subprocess.run([sys.executable, "-c", DRIVER, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"run failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def med(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=16, help="copies of the sample merged")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--format", default="ways", choices=("ways", "tiles"))
    ap.add_argument("--meters-per-pixel", default="8", help="tiles: ground resolution")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "dlprep-osm-bench")
    a = ap.parse_args()
    from osm_bench import make_shifted

    a.work.mkdir(parents=True, exist_ok=True)
    pbf = make_shifted(SAMPLE, a.work / f"andorra-x{a.copies}.osm.pbf", copies=a.copies)
    print(f"input: {pbf.name}, {pbf.stat().st_size / 2**20:.1f} MiB; --format {a.format}; "
          f"load {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores")
    kinds = {"one pass": (False, 1), "shards, 1 process": (True, 1),
             "shards, --workers 2": (True, 2)}
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory(dir=a.work) as tmp:
        for r in range(a.repeat):
            for name, (shards, workers) in kinds.items():
                got = run(pbf, Path(tmp) / f"c{r}{workers}{shards}", a.format,
                          a.meters_per_pixel, shards=shards, workers=workers)
                runs[name].append(got)
                print(f"  round {r + 1} {name}: {got['wall']:.2f} s "
                      f"(shards {got.get('shards', 0):.2f}, later maps {got.get('maps', 0):.2f}, "
                      f"Dask start {got.get('startup', 0):.2f}, assembly "
                      f"{got.get('assembly', 0):.2f})", flush=True)
    wall = {k: [g["wall"] for g in v] for k, v in runs.items()}
    for name in kinds:
        print(f"{name:22s} {med(wall[name])}")
    m = {k: statistics.median(v) for k, v in wall.items()}
    print(f"shards in 1 process / one pass: {m['shards, 1 process'] / m['one pass']:.2f}x "
          f"the time")
    print(f"speed-up of --workers 2: {m['one pass'] / m['shards, --workers 2']:.2f}x one pass, "
          f"{m['shards, 1 process'] / m['shards, --workers 2']:.2f}x shards in 1 process")
    one = runs["shards, 1 process"]
    node_s = statistics.median(g["shards"] for g in one)
    way_s = statistics.median(g["maps"] for g in one)
    mib_s = pbf.stat().st_size / 2**20 / (node_s + way_s)
    print(f"per core (shards in 1 process): node stage {node_s:.2f} s for "
          f"{a.copies * 211_100:,} nodes = {a.copies * 211_100 / node_s / 1e6:.1f} M nodes/s; "
          f"way stage + relation pass {way_s:.2f} s for {a.copies * 10_315:,} ways = "
          f"{a.copies * 10_315 / way_s / 1e3:.0f} k ways/s ({mib_s:.1f} MiB of PBF/s)")

if __name__ == "__main__":
    main()
