"""Stack Exchange Posts.xml benchmark (the ``posts`` part of ``benchmarks/api_bench.py``).

Input: the real datascience.meta Posts.xml (tests/data/realdata/stackexchange, 624 rows,
|a|b| tags) repeated with new ids: a base file (``--copies``, default 8: ~8 MB) and one 8x
larger. Measured, in interleaved rounds (median):

* rate: rows/s of dlprep's parser (``iter_posts(posts_chunks(...))``: expat push parsing) as
  ``fetch stackexchange`` reads the file: for the question dataset (the default: ``Post``
  objects for the questions; the other rows dropped at the byte level, unparsed, see
  ``sieve_rows``) and for ``--pairs`` (every row parsed; ``Post`` objects for questions and
  answers), against a plain ``xml.etree.ElementTree.iterparse`` loop over the same file that
  reads five attributes of every row and clears it ("plain"), and one that builds the same
  ``Post`` objects for questions and answers ("same work"). Target: >= 1x plain (the
  default question dataset; ``--pairs`` is printed beside it).
* memory: peak RSS of each, in a fresh subprocess, on the base file and the 8x file. Target:
  dlprep's stays flat (8x file within 10 MB of the base file).
* the same rate and RSS with the file inside a ``.7z`` (libarchive and py7zr decoders).

Run: ``python benchmarks/stackexchange_bench.py [--copies 8] [--rounds 5]`` (or
``python benchmarks/api_bench.py --part posts``). Prints the figures, PASS/MISS and the load.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SAMPLE = ROOT / "tests" / "data" / "realdata" / "stackexchange" / \
    "datascience.meta.stackexchange.com-Posts.xml"
_ID = re.compile(rb'( (?:Id|ParentId|AcceptedAnswerId)=")(\d+)(")')


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_posts(dest: Path, copies: int) -> int:
    """``dest``: the sample's rows ``copies`` times, ids shifted per copy (answers still point
    at their questions); returns the number of rows."""
    lines = SAMPLE.read_bytes().split(b"\n")
    head = [ln for ln in lines[:2]]
    rows = [ln for ln in lines if ln.lstrip().startswith(b"<row ")]
    step = 10 ** len(str(max(int(m.group(2)) for r in rows for m in _ID.finditer(r))))
    with open(dest, "wb") as fh:
        fh.write(b"\n".join(head) + b"\n")
        for k in range(copies):
            def shifted(m: re.Match[bytes], shift: int = k * step) -> bytes:
                return m.group(1) + str(int(m.group(2)) + shift).encode() + m.group(3)

            for r in rows:
                fh.write(_ID.sub(shifted, r) + b"\n")
        fh.write(b"</posts>")
    return len(rows) * copies


def seven_zip(src: Path, dest: Path) -> Path:
    """``dest`` holding ``src`` as ``Posts.xml`` (libarchive when available: py7zr is slow to
    compress)."""
    try:
        import libarchive

        with libarchive.file_writer(str(dest), "7zip") as archive:
            archive.add_file_from_memory("Posts.xml", src.stat().st_size, src.read_bytes())
    except ImportError:
        import py7zr

        with py7zr.SevenZipFile(dest, "w") as z:
            z.write(src, "Posts.xml")
    return dest


# --- the loops measured (module-level: the RSS subprocess imports them) -------------------

def ours(path: str, decoder: str = "auto", pairs: bool = False) -> int:
    """dlprep's reader as the builder runs it: questions only (default) or with answers."""
    from dlprep.formats.stackexchange import ANSWER, QUESTION, ReadReport, iter_posts, posts_chunks

    report = ReadReport()
    types = frozenset({QUESTION, ANSWER} if pairs else {QUESTION})
    for _ in iter_posts(posts_chunks(Path(path), decoder=decoder), path, types=types,
                        report=report):
        pass
    return report.rows


def ours_pairs(path: str, decoder: str = "auto") -> int:
    return ours(path, decoder, pairs=True)


def plain(path: str) -> int:
    import xml.etree.ElementTree as ET

    n = 0
    for _, el in ET.iterparse(path):
        if el.tag == "row":
            a = el.attrib
            a.get("Id"), a.get("PostTypeId"), a.get("Title"), a.get("Body"), a.get("Tags")
            n += 1
            el.clear()
    return n


def same_work(path: str) -> int:
    import xml.etree.ElementTree as ET

    from dlprep.formats.stackexchange import to_post

    n = 0
    for _, el in ET.iterparse(path):
        if el.tag == "row":
            if el.get("PostTypeId") in ("1", "2"):
                to_post(el.attrib)
            n += 1
            el.clear()
    return n


LOOPS = {"dlprep": ours, "dlprep --pairs": ours_pairs, "iterparse plain": plain,
         "iterparse same work": same_work}


def _rss(func: str, path: Path, decoder: str = "auto") -> tuple[int, float]:
    """(rows, peak RSS in MB) of ``func(path)`` in a fresh interpreter: its VmHWM (ru_maxrss
    would carry the parent's peak across fork + exec)."""
    code = (f"import sys, json; sys.path[:0] = [{str(ROOT)!r}, "
            f"{str(ROOT / 'benchmarks')!r}]; import stackexchange_bench as b; "
            f"args = [{str(path)!r}] + ([{decoder!r}] if {func!r}.startswith('ours') else []); "
            f"n = getattr(b, {func!r})(*args); "
            f"hwm = [ln for ln in open('/proc/self/status') if ln.startswith('VmHWM')][0]; "
            f"print(json.dumps([n, int(hwm.split()[1]) / 1024]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    n, mb = json.loads(out.stdout.strip().splitlines()[-1])
    return int(n), float(mb)


def _rates(path: Path, rounds: int, loops: dict) -> dict[str, tuple[float, float]]:
    """Rows/s of each loop: (median over CPU time, median over wall time), the loops run in
    alternating order each round."""
    cpu: dict[str, list[float]] = {k: [] for k in loops}
    wall: dict[str, list[float]] = {k: [] for k in loops}
    rows: dict[str, int] = {}
    for i in range(rounds):
        order = list(loops.items())
        for name, fn in (order if i % 2 == 0 else order[::-1]):
            c0, w0 = time.process_time(), time.perf_counter()
            rows[name] = fn(str(path))
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    if len(set(rows.values())) != 1:
        raise SystemExit(f"the loops disagree on the row count: {rows}")
    n = next(iter(rows.values()))
    return {k: (n / statistics.median(cpu[k]), n / statistics.median(wall[k])) for k in loops}


def bench_posts(copies: int = 8, rounds: int = 7) -> bool:
    """Rate and peak RSS of dlprep's Posts.xml parser vs iterparse; True when it passes."""
    from dlprep.formats.sevenzip import libarchive_available

    with tempfile.TemporaryDirectory() as tmp:
        base, big = Path(tmp, "Posts.xml"), Path(tmp, "Posts-8x.xml")
        n = make_posts(base, copies)
        n8 = make_posts(big, copies * 8)
        print(f"posts: {SAMPLE.name} x{copies} = {n:,} rows, {base.stat().st_size / 1e6:.1f} MB; "
              f"8x: {n8:,} rows, {big.stat().st_size / 1e6:.1f} MB; {rounds} rounds")
        rates = _rates(base, rounds, LOOPS)
        top = rates["iterparse plain"]
        for name, (c, w) in rates.items():
            print(f"  {name:<20} {c:8,.0f} rows/s CPU ({c / top[0]:.2f}x plain), {w:8,.0f} "
                  f"rows/s wall ({w / top[1]:.2f}x)")
        ratio = rates["dlprep"][0] / top[0]
        pairs = rates["dlprep --pairs"][0] / top[0]
        same = rates["dlprep --pairs"][0] / rates["iterparse same work"][0]
        rss = {}
        for func, label in (("ours", "dlprep"), ("ours_pairs", "dlprep --pairs"),
                            ("plain", "iterparse plain"),
                            ("same_work", "iterparse same work")):
            rss[label] = [_rss(func, p)[1] for p in (base, big)]
            print(f"  peak RSS {label:<20} {rss[label][0]:7.1f} MB -> {rss[label][1]:7.1f} MB "
                  f"on the 8x file")
        growth = max(rss[k][1] - rss[k][0] for k in ("dlprep", "dlprep --pairs"))
        decoders = ["py7zr"] + (["libarchive"] if libarchive_available() else [])
        z1, z8 = seven_zip(base, Path(tmp, "a.7z")), seven_zip(big, Path(tmp, "a8.7z"))
        print(f"  .7z: {z1.stat().st_size / 1e6:.2f} MB and {z8.stat().st_size / 1e6:.2f} MB")
        for dec in decoders:
            c, w = _rates(z1, max(1, rounds // 2), {dec: lambda p, d=dec: ours(p, d)})[dec]
            m1, m8 = _rss("ours", z1, dec)[1], _rss("ours", z8, dec)[1]
            print(f"  dlprep from .7z ({dec:<10}) {c:8,.0f} rows/s CPU, {w:8,.0f} wall "
                  f"({w / top[1]:.2f}x plain on the XML); peak RSS {m1:.1f} MB -> {m8:.1f} MB "
                  f"on the 8x archive")
    ok = ratio >= 1.0 and growth <= 10.0
    print(f"  dlprep (question dataset) {ratio:.2f}x plain iterparse (target >= 1x); "
          f"--pairs {pairs:.2f}x plain, {same:.2f}x iterparse doing the same work; RSS growth "
          f"{growth:+.1f} MB on 8x the rows (target flat, <= 10 MB): "
          f"{'PASS' if ok else 'MISS'}")
    return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    print(f"load average before: {_load()}")
    bench_posts(args.copies, args.rounds)
    print(f"load average after: {_load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
