"""Fetch benchmarks over a loopback HTTP server; every figure is a ratio to a baseline run here.

1. One large generated file (default 200 MB): dlprep ``fetch_file`` (streaming, sha256 + size
   verified, atomic rename) vs ``curl -s -o`` of the same URL (no verification). If curl is
   missing, a raw ``requests`` stream to a file is the baseline. Target >= 0.7x curl's rate.
2. 500 small files, the server adding 20 ms latency per request: ``fetch_many`` (its default
   thread count, 16 for files known to be small, and 8 threads; one session, per-file locks,
   sha256 verified) vs a serial ``requests.get`` loop. Target >= 8x.

The server (tests/loopback.py) runs in its own process, as a real server would, so that its
Python threads do not share the client's GIL. Times are the best of ``--repeat`` runs.

Run: ``python benchmarks/fetch_bench.py [--size-mb 200] [--files 500] [--repeat 5]``.
Prints a table with PASS/MISS and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import requests  # noqa: E402
from timing import best_of  # noqa: E402

from dlprep.fetch import FetchOptions, FileSpec, fetch_file, fetch_many  # noqa: E402


def _payloads(size_mb: int, n_small: int) -> dict[str, bytes]:
    rng = random.Random(1)
    files = {"large.bin": random.Random(0).randbytes(size_mb * 10**6)}
    files.update({f"small/{i:04d}.bin": rng.randbytes(rng.randint(2_000, 20_000))
                  for i in range(n_small)})
    return files


def _serve(conn: mp.connection.Connection, size_mb: int, n_small: int, latency: float) -> None:
    """Child process: serve the generated files, send back (port, {path: (sha256, size)})."""
    from loopback import LoopbackServer

    with LoopbackServer() as srv:
        meta = {}
        for path, data in _payloads(size_mb, n_small).items():
            srv.serve(path, data, latency=latency if path.startswith("small/") else 0.0)
            meta[path] = (hashlib.sha256(data).hexdigest(), len(data))
        conn.send((srv.port, meta))
        conn.recv()  # wait for "stop"


def _best(fn: Callable[[], None], repeat: int) -> float:
    """Best wall time of ``repeat`` runs of ``fn()`` (seconds)."""
    return best_of(fn, repeat)[0]


def _best_pair(base: Callable[[], None], ours: Callable[[], None],
               repeat: int) -> tuple[float, float]:
    """Best times of baseline and ours, runs interleaved so that load changes hit both."""
    t_base, t_ours = [], []
    for _ in range(repeat):
        t_base.append(_best(base, 1))
        t_ours.append(_best(ours, 1))
    return min(t_base), min(t_ours)


def bench_large_file(base: str, meta: dict, work: Path, repeat: int) -> dict:
    url = base + "large.bin"
    sha, size = meta["large.bin"]
    spec = FileSpec("large.bin", [url], sha256=sha, size=size)
    out = work / "large"
    curl = shutil.which("curl")
    target = work / "large.baseline"

    def ours() -> None:
        shutil.rmtree(out, ignore_errors=True)
        fetch_file(spec, out, FetchOptions(progress=False))

    def curl_run() -> None:
        subprocess.run([curl, "-s", "-o", str(target), url], check=True)  # type: ignore[list-item]

    def requests_run() -> None:
        with requests.get(url, stream=True, timeout=60) as r, open(target, "wb") as fh:
            for chunk in r.iter_content(1 << 20):
                fh.write(chunk)

    name = "curl -s -o" if curl else "requests stream (no curl)"
    t_base, t_ours = _best_pair(curl_run if curl else requests_run, ours, repeat)
    assert (out / "large.bin").stat().st_size == size == target.stat().st_size
    mb = size / 1e6
    return {"case": f"1 file, {mb:.0f} MB", "ours": f"{mb / t_ours:,.0f} MB/s",
            "base": f"{name}: {mb / t_base:,.0f} MB/s", "ratio": t_base / t_ours, "target": 0.7}


def bench_small_files(base: str, meta: dict, work: Path, latency: float, repeat: int,
                      workers_list: tuple[int | None, ...]) -> list[dict]:
    paths = sorted(p for p in meta if p.startswith("small/"))
    specs = [FileSpec(p.split("/")[1], [base + p], sha256=meta[p][0], size=meta[p][1])
             for p in paths]
    serial_dir = work / "serial"

    def serial() -> None:
        shutil.rmtree(serial_dir, ignore_errors=True)
        serial_dir.mkdir()
        for p in paths:
            r = requests.get(base + p, timeout=30)
            r.raise_for_status()
            (serial_dir / p.split("/")[1]).write_bytes(r.content)

    t_base = _best(serial, 1)  # ~15 s a run; the parallel side gets the best of `repeat`
    rows = []
    for workers in workers_list:
        out = work / f"many-{workers}"

        def ours(out: Path = out, workers: int | None = workers) -> None:
            shutil.rmtree(out, ignore_errors=True)
            fetch_many(specs, out, FetchOptions(max_workers=workers, progress=False))

        t_ours = _best(ours, repeat)
        n = len(paths)
        threads = "default threads (16 for small files)" if workers is None \
            else f"{workers} threads"
        rows.append({"case": f"{n} files, {latency * 1000:.0f} ms, {threads}",
                     "ours": f"{n / t_ours:,.0f} files/s",
                     "base": f"serial requests.get: {n / t_base:,.0f} files/s",
                     "ratio": t_base / t_ours, "target": 8.0})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--files", type=int, default=500)
    ap.add_argument("--latency-ms", type=float, default=20.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--skip-convert", action="store_true",
                    help="skip the IDX/CIFAR -> HDF5 vs cp part (benchmarks/convert_bench.py)")
    args = ap.parse_args()
    os.environ.setdefault("CI", "1")  # no progress bars in the measurement
    latency = args.latency_ms / 1000
    parent, child = mp.Pipe()
    server = mp.get_context("fork").Process(target=_serve, daemon=True,
                                            args=(child, args.size_mb, args.files, latency))
    server.start()
    port, meta = parent.recv()
    base = f"http://127.0.0.1:{port}/"
    try:
        with tempfile.TemporaryDirectory(prefix="fetch-bench-") as tmp:
            work = Path(tmp)
            rows = [bench_large_file(base, meta, work, args.repeat)]
            rows += bench_small_files(base, meta, work, latency, args.repeat, (None, 8))
    finally:
        parent.send("stop")
        server.join(timeout=10)
    print(f"fetch benchmark: loopback HTTP server in its own process, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    header = f"{'case':<40} {'dlprep':>14}  {'baseline':<36} {'ratio':>7}  {'target':>7}  result"
    print(header)
    print("-" * len(header))
    for r in rows:
        result = "PASS" if r["ratio"] >= r["target"] else "MISS"
        target = ">=" + format(r["target"], "g") + "x"
        print(f"{r['case']:<40} {r['ours']:>14}  {r['base']:<36} {r['ratio']:>6.2f}x  "
              f"{target:>7}  {result}")
    if not args.skip_convert:
        print("\nIDX/CIFAR -> HDF5 (benchmarks/convert_bench.py):")
        subprocess.run([sys.executable, str(Path(__file__).with_name("convert_bench.py"))],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
