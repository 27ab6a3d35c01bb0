"""API sources benchmark (issue 13).

Part ``photos``: 500 photo downloads from the loopback server (tests/loopback.py) that adds
``--latency`` (50 ms) to every request, through ``dlprep.fetch.api.download_many`` with a
per-host limit of 4, against a serial loop (one ``requests`` GET after the other, the same
server, the same photos). Target: at least 3.5x the serial loop, and the server's own count of
concurrent requests never above 4.

Part ``posts``: the Stack Exchange Posts.xml rate (added by the Stack Exchange connector; a
separate function, ``bench_posts``).

Run: ``python benchmarks/api_bench.py [--part photos|posts|all] [--photos 500]``. Prints the
figures, PASS/MISS and the machine load; exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

PHOTOS = ROOT / "tests" / "data" / "realdata" / "images"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench_photos(n: int = 500, latency: float = 0.05, limit: int = 4) -> bool:
    """Concurrent (per-host limit ``limit``) vs serial photo downloads; True when it passes."""
    import requests
    from loopback import LoopbackServer

    from dlprep.fetch.api import HostPolicy, download_many
    from dlprep.fetch.options import FetchOptions

    photos = [p.read_bytes() for p in sorted(PHOTOS.glob("*.jpg"))]
    with LoopbackServer() as srv, tempfile.TemporaryDirectory() as tmp:
        items = []
        for i in range(n):
            # distinct bodies (a trailing byte after the JPEG end marker): no dedupe shortcut
            body = photos[i % len(photos)] + i.to_bytes(4, "big")
            srv.serve(f"/p/{i}.jpg", body, content_type="image/jpeg", latency=latency)
            items.append((str(i), srv.url(f"/p/{i}.jpg")))

        session = requests.Session()
        t0 = time.perf_counter()
        for _key, url in items:
            r = session.get(url, timeout=30)
            r.raise_for_status()
            Path(tmp, "serial.jpg").write_bytes(r.content)
        serial = time.perf_counter() - t0
        serial_peak = srv.peak_in_flight

        srv.peak_in_flight = 0
        t0 = time.perf_counter()
        report = download_many(items, Path(tmp) / "photos", options=FetchOptions(),
                               policy=HostPolicy(max_in_flight=limit))
        concurrent = time.perf_counter() - t0
        peak = srv.peak_in_flight
    ratio = serial / concurrent
    ok = ratio >= 3.5 and peak <= limit and len(report.paths) == n
    print(f"photos: {n} downloads, +{latency * 1000:.0f} ms per request, per-host limit {limit}")
    print(f"  serial loop      {serial:7.2f} s  ({n / serial:6.1f} photos/s, server peak "
          f"{serial_peak} concurrent)")
    print(f"  download_many    {concurrent:7.2f} s  ({n / concurrent:6.1f} photos/s, server peak "
          f"{peak} concurrent, {len(report.paths)} stored, skipped {dict(report.skipped)})")
    print(f"  ratio {ratio:.2f}x (target >= 3.5x), peak {peak} (limit {limit}): "
          f"{'PASS' if ok else 'MISS'}")
    return ok


PARTS = {"photos": lambda args: bench_photos(args.photos, args.latency, args.limit)}


def bench_posts(copies: int = 8, rounds: int = 7) -> bool:
    """The Stack Exchange Posts.xml part: benchmarks/stackexchange_bench.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from stackexchange_bench import bench_posts as run

    return run(copies, rounds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", default="all", help="photos, posts or all")
    ap.add_argument("--photos", type=int, default=500)
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--limit", type=int, default=4)
    args, _rest = ap.parse_known_args(argv)
    bench_posts = globals().get("bench_posts")
    parts = dict(PARTS)
    if callable(bench_posts):
        parts.setdefault("posts", lambda a: bench_posts())  # type: ignore[misc]
    wanted = list(parts) if args.part == "all" else [args.part]
    print(f"load average before: {_load()}")
    for name in wanted:
        if name not in parts:
            print(f"part {name!r} is not available here")
            continue
        parts[name](args)
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
