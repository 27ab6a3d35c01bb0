"""Web pages -> clean text: dlprep's WARC reader + Resiliparse vs warcio + trafilatura.

    python benchmarks/web_bench.py [--mb 200] [--quality-only]

1. Quality on the real pages of tests/data/realdata/warc (HTTP 200 HTML responses), for
   Resiliparse (dlprep's choice), trafilatura and jusText: the share of pages whose main text
   contains the page's title or first heading, the share with navigation/footer lines left
   (lines equal to one of BOILERPLATE, taken from the real pages' menus and footers), and
   milliseconds per page.
2. Throughput: the real WARC files repeated to about ``--mb`` MB (gzip per record), records to
   clean text: dlprep (1 process, then 2 processes over halves of the files) vs warcio +
   trafilatura in one process; documents per second and the ratios.
Reports the load average (2-core machine shared with others: ratios need a quiet machine).
"""

from __future__ import annotations

import argparse
import html as htmllib
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# one process = one core: py3langid's numpy products would otherwise use every core through
# OpenBLAS threads, and "1 process" would not be 1 core (set before numpy is imported)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WARC_DIR = ROOT / "tests" / "data" / "realdata" / "warc"
SAMPLES = ("iana.warc.gz", "example.warc.gz", "example-wget-1-14.warc.gz",
           "example-wpull.warc.gz", "example-iana.org-chunked.warc",
           "CC-MAIN-20250804083340-20250804113340-00340.offset667474763.warc.gz")
BOILERPLATE = {"homepage", "about iana", "contact iana", "contact us", "performance reporting",
               "glossary of terms", "mailing list archive", "terms of use", "privacy policy",
               "twitter logolinkedin logolinkedin logo", "common crawl logo"}
_TAG = re.compile(r"<(title|h1)[^>]*>(.*?)</\1>", re.I | re.S)
OPTS = {"keep_text": False, "language": None, "min_chars": 1, "max_page_bytes": 1 << 24}


def real_pages() -> list[tuple[str, str]]:
    """``(url, decoded html)`` of the HTTP 200 HTML responses in the real samples."""
    from dlprep.formats.warc import read_records
    from dlprep.text.extract import HTML_TYPES, decode_page, parse_http

    out = []
    for name in SAMPLES:
        for rec in read_records(WARC_DIR / name):
            http = parse_http(rec.block, 1 << 24) if rec.type == "response" else None
            if http and http.status == 200 and http.mime in HTML_TYPES and http.body:
                out.append((rec.url, decode_page(http.body, http.charset)[0]))
    return out


def _heading(html: str) -> str:
    found = {m.group(1).lower(): m.group(2) for m in reversed(list(_TAG.finditer(html)))}
    text = found.get("h1") or found.get("title") or ""
    return " ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def _extractors() -> dict:
    from dlprep.text.extract import extract_main_text

    def resiliparse(html: str) -> str:
        return extract_main_text(html)[1]

    def trafilatura(html: str) -> str:
        import trafilatura as t

        return t.extract(html) or ""

    def justext(html: str) -> str:
        import justext as j

        paras = j.justext(html.encode("utf-8"), j.get_stoplist("English"))
        return "\n".join(p.text for p in paras if not p.is_boilerplate)

    return {"resiliparse": resiliparse, "trafilatura": trafilatura, "justext": justext}


def quality() -> None:
    pages = real_pages()
    print(f"quality on {len(pages)} real HTML pages (title/first heading kept; boilerplate "
          f"lines left; ms/page)")
    for name, fn in _extractors().items():
        try:
            t0 = time.perf_counter()
            texts = [fn(h) for _, h in pages]
            ms = (time.perf_counter() - t0) * 1000 / len(pages)
        except ImportError as exc:
            print(f"  {name:<12} not installed ({exc.name})")
            continue
        heading = sum(1 for (_, h), t in zip(pages, texts, strict=True)
                      if _heading(h) and " ".join(_heading(h).split()[:4]) in " ".join(t.split()))
        boiler = sum(1 for t in texts
                     if any(line.strip(" •*-\t").lower() in BOILERPLATE
                            for line in t.splitlines()))
        empty = sum(1 for t in texts if not t.strip())
        print(f"  {name:<12} heading {heading / len(pages):6.1%}   boilerplate "
              f"{boiler / len(pages):6.1%}   empty {empty:3d}   {ms:7.2f} ms/page")


def corpus(mb: float, folder: Path) -> list[Path]:
    """The real samples concatenated and repeated into 4 files of about ``mb`` MB together."""
    blob = b"".join((WARC_DIR / n).read_bytes() for n in SAMPLES if n.endswith(".gz"))
    copies = max(1, int(mb * 2**20 / len(blob) / 4))
    files = []
    for i in range(4):
        path = folder / f"part{i}.warc.gz"
        with open(path, "wb") as f:
            for _ in range(copies):
                f.write(blob)
        files.append(path)
    return files


def dlprep_docs(paths: list[Path]) -> int:
    from collections import Counter

    from dlprep.formats.warc import read_records
    from dlprep.prepare.web import page_of

    n = 0
    skipped: Counter = Counter()
    for path in paths:
        for rec in read_records(path):
            if page_of(rec, OPTS, skipped) is not None:
                n += 1
    return n


def warcio_trafilatura_docs(paths: list[Path]) -> int:
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    n = 0
    for path in paths:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type != "response" or rec.http_headers is None:
                    continue
                if rec.http_headers.get_statuscode() != "200":
                    continue
                ctype = rec.http_headers.get_header("Content-Type") or ""
                if not ctype.startswith("text/html"):
                    continue
                body = rec.content_stream().read()
                if body and trafilatura.extract(body):
                    n += 1
    return n


def _nothing(_: int) -> None:
    return None


def throughput(mb: float, baseline: bool = True) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        files = corpus(mb, Path(tmp))
        size = sum(p.stat().st_size for p in files) / 2**20
        print(f"throughput on {size:.0f} MB of WARC (real samples repeated), load "
              f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        warm = [WARC_DIR / "example-wget-1-14.warc.gz"]  # imports and models loaded first
        dlprep_docs(warm)
        if baseline:
            warcio_trafilatura_docs(warm)
        t0 = time.perf_counter()
        n1 = dlprep_docs(files)
        d1 = time.perf_counter() - t0
        with ProcessPoolExecutor(2, initializer=dlprep_docs, initargs=(warm,)) as pool:
            list(pool.map(_nothing, range(2)))  # both workers started and warmed up
            t0 = time.perf_counter()
            n2 = sum(pool.map(dlprep_docs, [files[:2], files[2:]]))
            d2 = time.perf_counter() - t0
        if not baseline:
            print(f"  dlprep, 1 process {n1 / d1:9.1f} docs/s; 2 processes {n2 / d2:9.1f} "
                  f"docs/s ({(n2 / d2) / (n1 / d1):.2f}x, target >= 1.8x)")
            return
        t0 = time.perf_counter()
        nb = warcio_trafilatura_docs(files)
        db = time.perf_counter() - t0
        print(f"  dlprep, 1 process            {n1 / d1:9.1f} docs/s ({n1} docs, {d1:.1f} s)")
        print(f"  dlprep, 2 processes          {n2 / d2:9.1f} docs/s ({n2} docs, {d2:.1f} s)")
        print(f"  warcio + trafilatura, 1 proc {nb / db:9.1f} docs/s ({nb} docs, {db:.1f} s)")
        print(f"  ratio 1 process: {(n1 / d1) / (nb / db):.1f}x (target >= 5x); "
              f"2 vs 1 process: {(n2 / d2) / (n1 / d1):.2f}x (target >= 1.8x)")


def ranged_fetch() -> None:
    """Bytes downloaded for N records fetched by Range from a loopback data host."""
    import zlib

    sys.path.insert(0, str(ROOT / "tests"))
    from loopback import LoopbackServer

    from dlprep.fetch.options import FetchOptions
    from dlprep.sources.commoncrawl import CdxRow, CommonCrawlClient

    data = (WARC_DIR / "iana.warc.gz").read_bytes()
    rows, pos = [], 0
    while pos < len(data):
        d = zlib.decompressobj(31)
        raw = d.decompress(data[pos:])
        length = len(data) - pos - len(d.unused_data)
        if raw.startswith(b"WARC/") and b"WARC-Type: response" in raw[:400]:
            rows.append(CdxRow("u", "", "f.warc.gz", pos, length, "", "200", "text/html"))
        pos += length
    with LoopbackServer() as srv, tempfile.TemporaryDirectory() as tmp:
        srv.serve("/f.warc.gz", data)
        client = CommonCrawlClient(Path(tmp), FetchOptions(), data_base=srv.base_url)
        for row in rows:
            client.fetch_record(row)
        sent = srv.bytes_sent("/f.warc.gz")
    total = sum(r.length for r in rows)
    print(f"ranged fetch: {len(rows)} records, {total:,} bytes of records, {sent:,} bytes sent "
          f"({sent / total:.3f}x, target <= 1.05x; the file is {len(data):,} bytes), "
          f"one request per record")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mb", type=float, default=200.0, help="corpus size in MB")
    ap.add_argument("--quality-only", action="store_true")
    ap.add_argument("--no-baseline", action="store_true",
                    help="throughput of dlprep only (1 vs 2 processes), no warcio+trafilatura")
    args = ap.parse_args()
    quality()
    if not args.quality_only:
        ranged_fetch()
        throughput(args.mb, baseline=not args.no_baseline)


if __name__ == "__main__":
    main()
