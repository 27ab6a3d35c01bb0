"""Per-core rates behind the projections of docs/SCALING.md (one process, one core).

    python benchmarks/scale_rates.py [--wiki-mb 30] [--warc-mb 40] [--images 1500] [--out r.json]

Every input is made from the real samples in tests/data/realdata, repeated:

* Wikipedia: the real pages of the gensim enwiki excerpt as a multistream dump + index
  (benchmarks/wiki_bench.py ``build_dumps``). Measured: bz2 decompression alone; parse + clean
  (``iter_records``, the builder's reader); the whole ``fetch wikipedia --dump --index``
  preparation (char tokenizer, HDF5 write). Rates per page, per MB of bz2 and per MB of XML.
* WARC: the real WARC samples repeated (benchmarks/web_bench.py ``corpus``); the whole
  ``import-warc`` preparation and the records -> text step alone. WET: the text of those pages
  written as WET ``conversion`` records (what Common Crawl publishes), read back with the same
  WARC reader + language identification (dlprep has no WET import yet: this is its floor).
* JPEG: the real photos hard-linked into an ImageFolder tree (benchmarks/image_bench.py
  ``make_tree``); ``import-images`` to 64x64 with 1 worker.
* HDF5 write: ``ImageTensorWriter`` (contiguous ``images``, train mean/std, CRC, fsync) of
  random uint8 rows; ``cp`` + ``sync`` of the same number of bytes beside it.

Prints a table and the load average before and after (a 2-core machine shared with others).
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one process = one core (py3langid uses numpy)
ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402

MB = 1e6


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def cli(*args: str) -> str:
    """Run ``dlprep`` in this process (no interpreter start-up in the timing); the last line."""
    from contextlib import redirect_stdout

    from dlprep.cli import main

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(list(args))
    if rc != 0:
        raise SystemExit(f"dlprep {' '.join(args)} failed ({rc})")
    return buf.getvalue().strip().splitlines()[-1]


def wiki_rates(tmp: Path, mb: float) -> dict:
    from wiki_bench import build_dumps

    from dlprep.formats import mediawiki as mw
    from dlprep.prepare.wiki_pages import Counts, DumpPart, PageOptions, iter_records

    d = build_dumps(tmp / "wiki", mb)
    dump, index = d["ms"], d["index"]
    bz2_mb = dump.stat().st_size / MB

    def inflate() -> int:
        n = 0
        with bz2.open(dump) as fh:  # reads every stream of a multistream file
            while chunk := fh.read(1 << 20):
                n += len(chunk)
        return n

    t_bz2, xml_bytes = timed(inflate)
    counts = Counts()
    t_parse, kept = timed(lambda: sum(1 for _ in iter_records(
        [DumpPart(dump, index)], PageOptions(), counts, workers=1)))
    with mw.open_dump(dump) as fh:  # pages of every namespace, as in the real dump
        pages = sum(1 for _ in mw.iter_raw_pages(fh, str(dump)))
    cache = tmp / "cache-wiki"
    t_all, _ = timed(lambda: cli("-q", "fetch", "wikipedia", "--cache-dir", str(cache), "--dump",
                                 str(dump), "--index", str(index), "--name", "w",
                                 "--workers", "1"))
    return {"bz2_mb": bz2_mb, "xml_mb": xml_bytes / MB, "pages": pages, "articles": kept,
            "wikitext_mb": d["wikitext_mb"],
            "bz2_s": t_bz2, "parse_s": t_parse, "prepare_s": t_all}


WET_HEAD = ("WARC/1.0\r\nWARC-Type: conversion\r\nWARC-Target-URI: {url}\r\n"
            "WARC-Date: 2025-08-04T08:33:40Z\r\nWARC-Record-ID: <urn:uuid:{n:08d}-0000-0000-0000"
            "-000000000000>\r\nContent-Type: text/plain\r\nContent-Length: {length}\r\n\r\n")


def write_wet(texts: list[tuple[str, str]], path: Path) -> int:
    """``(url, text)`` pairs as a WET file (one gzip member per record); returns the count."""
    import gzip

    with open(path, "wb") as fh:
        for n, (url, text) in enumerate(texts):
            body = text.encode("utf-8")
            rec = WET_HEAD.format(url=url, n=n, length=len(body)).encode() + body + b"\r\n\r\n"
            fh.write(gzip.compress(rec, 6))
    return len(texts)


def warc_rates(tmp: Path, mb: float) -> dict:
    from web_bench import OPTS, corpus

    from dlprep.formats.warc import read_records
    from dlprep.prepare.web import page_of
    from dlprep.text.extract import identify_language

    folder = tmp / "warc"
    folder.mkdir()
    files = corpus(mb, folder)
    size = sum(p.stat().st_size for p in files) / MB
    warm = ROOT / "tests/data/realdata/warc/example-wget-1-14.warc.gz"
    for rec in read_records(warm):  # extractor and language model loaded before timing
        page = page_of(rec, OPTS, Counter())
        if page is not None:
            identify_language(page.text)
    texts: list[tuple[str, str]] = []

    def to_text() -> tuple[int, int]:
        records, skipped = 0, Counter()
        for path in files:
            for rec in read_records(path):
                records += 1
                page = page_of(rec, OPTS, skipped)
                if page is not None:
                    texts.append((page.url, page.text))
        return records, len(texts)

    t_text, (records, docs) = timed(to_text)
    cache = tmp / "cache-warc"
    t_all, _ = timed(lambda: cli("-q", "import-warc", *map(str, files), "--cache-dir", str(cache),
                                 "--name", "w", "--dedupe", "none"))
    wet = folder / "pages.warc.wet.gz"
    write_wet(texts, wet)

    def read_wet() -> int:
        n = 0
        for rec in read_records(wet):
            if rec.type == "conversion":
                identify_language(rec.block.decode("utf-8", "replace"))
                n += 1
        return n

    t_wet, wet_records = timed(read_wet)
    return {"warc_mb": size, "records": records, "docs": docs, "text_s": t_text,
            "prepare_s": t_all, "wet_mb": wet.stat().st_size / MB, "wet_records": wet_records,
            "wet_s": t_wet}


def jpeg_rates(tmp: Path, files: int) -> dict:
    from image_bench import make_tree

    tree = tmp / "tree"
    paths = make_tree(tree, files)
    jpeg_mb = sum(p.stat().st_size for p in paths) / MB
    cache = tmp / "cache-img"
    cli("-q", "import-images", str(tree), "--name", "warm", "--cache-dir", str(cache))
    t_all, _ = timed(lambda: cli("-q", "import-images", str(tree), "--name", "i", "--cache-dir",
                                 str(cache), "--size", "64", "--workers", "1"))
    return {"images": files, "jpeg_mb": jpeg_mb, "prepare_s": t_all}


def hdf5_rates(tmp: Path, mb: int) -> dict:
    from dlprep.store import ImageTensorWriter
    from dlprep.store.atomic import atomic_output

    shape = (64, 64, 3)
    n = int(mb * MB) // int(np.prod(shape))
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (4096, *shape), dtype=np.uint8)
    labels = np.zeros(len(block), np.int64)

    def write(split: str | None) -> None:
        with atomic_output(tmp / "w.h5") as path:
            w = ImageTensorWriter(path, n, shape)
            try:
                done = 0
                while done < n:
                    k = min(len(block), n - done)
                    w.write(block[:k], labels[:k], split=split)
                    done += k
                w.finish(recipe="bench", recipe_version="1", classes=["a"],
                         splits={"train": np.arange(n)})
            finally:
                w.close()

    src = tmp / "src.bin"
    with open(src, "wb") as fh:
        for _ in range(n // len(block)):
            fh.write(block.data)
    subprocess.run(["sync"], check=True)
    t_w, _ = timed(lambda: write(None))
    subprocess.run(["sync"], check=True)
    t_tag, _ = timed(lambda: write("train"))
    subprocess.run(["sync"], check=True)
    copy = tmp / "copy.bin"
    t_cp, _ = timed(lambda: subprocess.run(["sh", "-c", f"cp '{src}' '{copy}' && sync '{copy}'"],
                                           check=True))
    return {"mb": n * int(np.prod(shape)) / MB, "write_s": t_w, "tagged_s": t_tag,
            "cp_mb": src.stat().st_size / MB, "cp_s": t_cp}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--wiki-mb", type=float, default=30.0, help="MB of wikitext")
    ap.add_argument("--warc-mb", type=float, default=40.0, help="MB of WARC (gzip)")
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--hdf5-mb", type=int, default=400)
    ap.add_argument("--only", default="wiki,warc,jpeg,hdf5")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import logging

    logging.getLogger("dlprep").setLevel(logging.ERROR)
    only = set(a.only.split(","))
    res: dict = {"load_before": load(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as t:
        tmp = Path(t)
        if "wiki" in only:
            w = res["wiki"] = wiki_rates(tmp, a.wiki_mb)
            print(f"Wikipedia ({w['bz2_mb']:.1f} MB bz2, {w['xml_mb']:.1f} MB XML, {w['pages']:,}"
                  f" pages, {w['articles']:,} articles; load {load()})")
            for key, what in (("bz2_s", "bz2 decompression alone"),
                              ("parse_s", "parse + clean (iter_records)"),
                              ("prepare_s", "whole preparation (char tokens, HDF5)")):
                s = w[key]
                print(f"  {what:40s} {w['pages'] / s:8.0f} pages/s {w['articles'] / s:7.0f} "
                      f"articles/s {w['bz2_mb'] / s:6.2f} MB bz2/s {w['xml_mb'] / s:6.2f} MB XML/s")
            shutil.rmtree(tmp / "cache-wiki", ignore_errors=True)
        if "warc" in only:
            w = res["warc"] = warc_rates(tmp, a.warc_mb)
            print(f"WARC ({w['warc_mb']:.1f} MB gzip, {w['records']:,} records, {w['docs']:,} "
                  f"HTML pages kept; load {load()})")
            for key, what in (("text_s", "records -> clean text + language"),
                              ("prepare_s", "whole import-warc (char tokens, HDF5)")):
                s = w[key]
                print(f"  {what:40s} {w['records'] / s:8.0f} records/s {w['docs'] / s:7.0f} "
                      f"pages/s {w['warc_mb'] / s:6.2f} MB gz/s")
            print(f"  WET floor (reader + language id)        {w['wet_records'] / w['wet_s']:8.0f}"
                  f" records/s {w['wet_mb'] / w['wet_s']:6.2f} MB gz/s ({w['wet_mb']:.1f} MB)")
        if "jpeg" in only:
            j = res["jpeg"] = jpeg_rates(tmp, a.images)
            print(f"JPEG ({j['images']:,} files, {j['jpeg_mb']:.0f} MB; load {load()})")
            print(f"  import-images 64x64, 1 worker            {j['images'] / j['prepare_s']:8.0f}"
                  f" images/s {j['jpeg_mb'] / j['prepare_s']:6.2f} MB JPEG/s")
        if "hdf5" in only:
            h = res["hdf5"] = hdf5_rates(tmp, a.hdf5_mb)
            print(f"HDF5 write ({h['mb']:.0f} MB; load {load()})")
            print(f"  ImageTensorWriter, stats read back       {h['mb'] / h['write_s']:8.0f} MB/s")
            print(f"  ImageTensorWriter, stats while writing   {h['mb'] / h['tagged_s']:8.0f} MB/s")
            print(f"  cp + sync                                {h['cp_mb'] / h['cp_s']:8.0f} MB/s")
    res["load_after"] = load()
    print(f"load average before {res['load_before']}, after {res['load_after']}")
    if a.out:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
