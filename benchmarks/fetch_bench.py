"""Fetch benchmarks over a loopback HTTP server; every figure is a ratio to a baseline run here.

1. One large generated file (default 200 MB): dlprep ``fetch_file`` (streaming, sha256 + size
   verified, atomic rename) vs a verified download done by hand: ``curl -s -o`` of the same
   URL followed by ``sha256sum`` of the file (DESIGN.md §2, target >= 1.0x its rate); and,
   when curl alone is faster than sha256 on one core (hashlib, 1 MiB updates, in memory),
   dlprep >= 0.9x of that hash rate (a download that verifies as it goes cannot beat it).
   curl alone is shown for context. Without curl, a raw ``requests`` stream is the download.
2. 500 small files, the server adding 20 ms latency per request: ``fetch_many`` (its default
   thread count, 16 for files known to be small, and 8 threads; one session, per-file locks,
   sha256 verified) vs a serial ``requests.get`` loop (run once). Target >= 8x.

The server (tests/loopback.py) runs in its own process, as a real server would, so that its
Python threads do not share the client's GIL. Sides run in ``--repeat`` interleaved rounds,
each after the previous outputs are deleted and writeback has finished; verdicts use the
median run, with the best run and the per-round spread beside it.

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
from timing import Ratio, Times, load_average, quiesce_disk, rounds  # noqa: E402

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


def _settle(*folders: Path) -> Callable[[str], None]:
    """Before every run: delete the previous outputs, wait for writeback (benchmarks/timing.py)."""
    def settle(_name: str) -> None:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
        quiesce_disk()
    return settle


def _sha256_rate(data: bytes) -> Callable[[], None]:
    """hashlib's sha256 over ``data`` in 1 MiB updates on one core, as dlprep's hash thread."""
    view = memoryview(data)

    def run() -> None:
        h = hashlib.sha256()
        for i in range(0, len(view), 1 << 20):
            h.update(view[i:i + (1 << 20)])
    return run


def bench_large_file(base: str, meta: dict, work: Path, repeat: int) -> dict:
    url = base + "large.bin"
    sha, size = meta["large.bin"]
    spec = FileSpec("large.bin", [url], sha256=sha, size=size)
    out = work / "large"
    base_dir = work / "baseline"
    target = base_dir / "large.bin"
    curl = shutil.which("curl")
    sha256sum = shutil.which("sha256sum")

    def ours() -> None:
        fetch_file(spec, out, FetchOptions(progress=False))
        assert (out / "large.bin").stat().st_size == size

    def curl_run() -> None:
        base_dir.mkdir(exist_ok=True)
        subprocess.run([curl, "-s", "-o", str(target), url], check=True)  # type: ignore[list-item]

    def requests_run() -> None:
        base_dir.mkdir(exist_ok=True)
        with requests.get(url, stream=True, timeout=60) as r, open(target, "wb") as fh:
            for chunk in r.iter_content(1 << 20):
                fh.write(chunk)

    def verified() -> None:
        (curl_run if curl else requests_run)()
        if sha256sum:
            got = subprocess.run([sha256sum, str(target)], check=True, capture_output=True,
                                 text=True).stdout.split()[0]
        else:
            got = hashlib.sha256(target.read_bytes()).hexdigest()
        assert got == sha

    openssl = shutil.which("openssl")

    def verified_openssl() -> None:
        (curl_run if curl else requests_run)()
        got = subprocess.run([openssl, "dgst", "-sha256", "-r", str(target)],  # type: ignore[list-item]
                             check=True, capture_output=True, text=True).stdout.split()[0]
        assert got == sha

    with requests.get(url, timeout=60) as r:  # for the hash rate, in memory
        payload = r.content
    fns = {"download": curl_run if curl else requests_run, "verified": verified,
           "dlprep": ours, "sha256": _sha256_rate(payload)}
    if openssl:
        fns["verified, openssl"] = verified_openssl
    t = rounds(fns, repeat, _settle(out, base_dir))
    mb = size / 1e6
    rate = {k: mb / v.median for k, v in t.items()}
    dl = "curl -s -o" if curl else "requests stream (no curl)"
    hs = "sha256sum" if sha256sum else "hashlib"
    ratio = Ratio(t["dlprep"], t["verified"])  # a rate ratio: baseline time / dlprep time
    return {"case": f"1 file, {mb:.0f} MB", "ours": f"{rate['dlprep']:,.0f} MB/s",
            "base": f"{dl} then {hs}: {rate['verified']:,.0f} MB/s",
            "ratio": ratio.median, "best": ratio.best, "rounds": ratio.spread, "target": 1.0,
            "note": (f"context: {dl} alone {rate['download']:,.0f} MB/s "
                     f"(dlprep {rate['dlprep'] / rate['download']:.2f}x)"
                     + (f"; {dl} then openssl dgst -sha256 {rate['verified, openssl']:,.0f} MB/s "
                        f"(dlprep {rate['dlprep'] / rate['verified, openssl']:.2f}x)"
                        if "verified, openssl" in rate else "")
                     + f"; sha256 (hashlib) on one core {rate['sha256']:,.0f} MB/s"),
            "hash_rule": (rate["download"] > rate["sha256"],
                          rate["dlprep"] / rate["sha256"])}


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

    settle = _settle(serial_dir, *(work / f"many-{w}" for w in workers_list))
    t_base = rounds({"serial": serial}, 1, settle)["serial"]  # ~15 s a run: once
    fns = {}
    for workers in workers_list:
        def ours(out: Path = work / f"many-{workers}", workers: int | None = workers) -> None:
            fetch_many(specs, out, FetchOptions(max_workers=workers, progress=False))
        fns[workers] = ours
    times = rounds(fns, repeat, settle)  # type: ignore[arg-type]
    rows = []
    n = len(paths)
    for workers, t_ours in times.items():
        threads = "default threads (16 for small files)" if workers is None \
            else f"{workers} threads"
        ratio = Ratio(t_ours, Times(t_base.runs * len(t_ours.runs)))
        rows.append({"case": f"{n} files, {latency * 1000:.0f} ms, {threads}",
                     "ours": f"{n / t_ours.median:,.0f} files/s",
                     "base": f"serial requests.get: {n / t_base.median:,.0f} files/s",
                     "ratio": ratio.median, "best": ratio.best, "rounds": ratio.spread,
                     "target": 8.0})
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
    load_before = load_average()
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
          f"load average {load_before} before / {load_average()} after, {args.repeat} "
          f"interleaved rounds, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print("ratio = dlprep rate / baseline rate, median runs (best runs; lowest-highest round)")
    header = (f"{'case':<40} {'dlprep':>14}  {'baseline':<40} {'ratio (best; rounds)':<28}"
              f"{'target':>7}  result")
    print(header)
    print("-" * len(header))
    for r in rows:
        ok = r["ratio"] >= r["target"]
        lo, hi = r["rounds"]
        cell = f"{r['ratio']:.2f}x ({r['best']:.2f}x; {lo:.2f}-{hi:.2f}x)"
        print(f"{r['case']:<40} {r['ours']:>14}  {r['base']:<40} {cell:<28}"
              f"{'>=' + format(r['target'], 'g') + 'x':>7}  {'PASS' if ok else 'MISS'}")
        if "hash_rule" in r:
            curl_faster, of_hash = r["hash_rule"]
            verdict = ("PASS" if of_hash >= 0.9 else "MISS") if curl_faster else \
                "n/a: curl is slower than sha256"
            print(f"{'':<40} {r['note']}")
            print(f"{'':<40} dlprep = {of_hash:.2f}x sha256's one-core rate "
                  f"(target >= 0.9x when curl is faster than sha256): {verdict}")
    if not args.skip_convert:
        print("\nIDX/CIFAR -> HDF5 (benchmarks/convert_bench.py):")
        subprocess.run([sys.executable, str(Path(__file__).with_name("convert_bench.py"))],
                       check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
