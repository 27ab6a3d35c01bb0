"""Wikipedia dump parsing: speed against mwxml+mwparserfromhell and wikiextractor, text
quality against a reference cleaner, peak memory for 1x and 8x the dump, `wiki get` latency.

    python benchmarks/wiki_bench.py [--target-mb 50] [--workers 2] [--out results.json]

The dump: the real pages of the gensim enwiki excerpt (tests' realdata) repeated until the
wikitext reaches ``--target-mb``, written as one bz2 stream (like the excerpt) and as a
multistream dump + index (100 pages per stream, like Wikimedia). Needs the 'bench' extra
(mwparserfromhell, mwxml, wikiextractor); uses ``/proc`` for nothing, ``resource`` for RSS.

Reference cleaner (the quality yardstick, from issue 11): mwparserfromhell with ``<ref>``,
tables, galleries, math and File/Image/Category links removed from the tree, then
``strip_code()``. Per page: word recall = shared word counts / reference word counts,
precision = shared / ours; averaged over the real pages.
"""

from __future__ import annotations

import argparse
import bz2
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dlprep.formats import mediawiki as mw  # noqa: E402
from dlprep.formats.wikitext import clean_wikitext  # noqa: E402

REALDATA = Path(os.environ.get("DLPREP_REALDATA", ROOT / "tests" / "data" / "realdata"))
EXCERPT = REALDATA / "wikipedia" / \
    "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLES = REALDATA / "wikipedia/enwiki-table-markup.xml.bz2"
WORD = re.compile(r"\w+")


def reference_clean(text: str) -> str:
    import mwparserfromhell as mwp

    code = mwp.parse(text)
    drop = []
    for node in code.ifilter_tags(recursive=True):
        tag = str(node.tag).strip().lower()
        if tag in ("ref", "gallery", "math", "table") or (node.wiki_markup or "").startswith("{|"):
            drop.append(node)
    for link in code.ifilter_wikilinks(recursive=True):
        ns = str(link.title).strip().split(":", 1)
        if len(ns) == 2 and ns[0].strip().lower() in ("file", "image", "category"):
            drop.append(link)
    for node in drop:
        try:
            code.remove(node)
        except ValueError:  # inside a node removed already
            pass
    return code.strip_code()


def wikiextractor_clean(page: mw.Page) -> str:
    from wikiextractor.extract import Extractor

    ex = Extractor(page.page_id, page.revision_id, "", page.title, page.text.splitlines(True))
    return "\n".join(ex.clean_text(page.text))


def recall_precision(ours: str, ref: str) -> tuple[float, float]:
    a, b = Counter(WORD.findall(ours)), Counter(WORD.findall(ref))
    shared = sum((a & b).values())
    return shared / max(1, sum(b.values())), shared / max(1, sum(a.values()))


def real_pages() -> list[mw.Page]:
    out = []
    for path in (EXCERPT, TABLES):
        with mw.open_dump(path) as fh:
            for raw in mw.iter_raw_pages(fh, str(path)):
                p = mw.parse_page(raw)
                if p.ns == 0 and p.redirect is None:
                    out.append(p)
    return out


def build_dumps(tmp: Path, target_mb: float, copies: int | None = None) -> dict:
    """The real pages as a multistream dump (100 pages per stream) + index, repeated
    ``copies`` times (default: until ``target_mb`` of wikitext) by repeating the compressed
    page streams; ``bz2.open`` (and so mwxml and wikiextractor) reads it as one stream."""
    data = bz2.decompress(EXCERPT.read_bytes())
    first = data.index(b"<page>")
    raws = mw.split_pages(data)
    text_bytes = sum(len(mw.parse_page(r).text.encode()) for r in raws)
    n = copies or max(1, round(target_mb * 1e6 / text_bytes))
    tmp.mkdir(parents=True, exist_ok=True)
    one, one_idx = tmp / "one.xml.bz2", tmp / "one-index.txt.bz2"
    mw.write_multistream(raws, one, one_idx, header=data[:first], footer=b"")
    blob = one.read_bytes()
    hlen = len(bz2.compress(data[:first]))
    body = blob[hlen:]
    entries = list(mw.read_index(one_idx))
    dump, index = tmp / f"dump{n}.xml.bz2", tmp / f"dump{n}-index.txt.bz2"
    with open(dump, "wb") as fh:
        fh.write(blob[:hlen])
        for _ in range(n):
            fh.write(body)
        fh.write(bz2.compress(b"</mediawiki>\n"))
    lines = [f"{e.offset + k * len(body)}:{e.page_id}:{e.title}\n"
             for k in range(n) for e in entries]
    index.write_bytes(bz2.compress("".join(lines).encode()))
    articles = sum(1 for r in raws if b"<redirect" not in r) * n
    return {"single": dump, "ms": dump, "index": index, "copies": n, "pages": len(raws) * n,
            "articles": articles, "wikitext_mb": text_bytes * n / 1e6,
            "block_kb": len(body) / max(1, len(set(e.offset for e in entries))) / 1024}


def time_baseline(dump: Path, limit_articles: int) -> float:
    """Articles/s of the plain mwxml + mwparserfromhell.strip_code() loop (one process)."""
    import mwparserfromhell as mwp
    import mwxml

    t0 = time.perf_counter()
    n = 0
    with bz2.open(dump) as fh:
        for page in mwxml.Dump.from_file(fh):
            if page.namespace != 0 or page.redirect:
                continue
            for rev in page:
                mwp.parse(rev.text or "").strip_code()
            n += 1
            if n >= limit_articles:
                break
    return n / (time.perf_counter() - t0)


def time_wikiextractor(dump: Path, processes: int, articles: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "wikiextractor.WikiExtractor", str(dump),
                        "--processes", str(processes), "--no-templates", "-q", "-o", out],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return articles / (time.perf_counter() - t0)


def time_ours(part_args: dict, workers: int) -> tuple[float, int]:
    from dlprep.prepare.wiki_pages import Counts, DumpPart, PageOptions, iter_records

    counts = Counts()
    t0 = time.perf_counter()
    n = sum(1 for _ in iter_records([DumpPart(**part_args)], PageOptions(), counts,
                                    workers=workers))
    return n / (time.perf_counter() - t0), n


RSS_SCRIPT = """
import resource, sys
sys.path.insert(0, {root!r})
from pathlib import Path
from dlprep.prepare.wiki_pages import Counts, DumpPart, PageOptions, iter_records
n = sum(len(r.text) > 0 for r in iter_records([DumpPart(Path({dump!r}))], PageOptions(), Counts()))
print(n, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kb(dump: Path) -> int:
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT.format(root=str(ROOT), dump=str(dump))],
                         check=True, capture_output=True, text=True).stdout.split()
    return int(out[1])


def time_get(ms: Path, index: Path, cache_root: Path, workers: int) -> dict:
    """`wiki get` in-process (lookup + page + plain text), per title: cold (its block decoded,
    the title lookup built) and warm (after `wiki index --pages`)."""
    from dlprep.prepare.wiki_access import get_page, warm_cache

    titles = list(dict.fromkeys(e.title for e in mw.read_index(index)))
    out = {"titles": len(titles)}
    for label in ("cold", "warm"):
        if label == "warm":
            t0 = time.perf_counter()
            warm_cache(ms, index, cache_root, workers=workers)
            out["warm_up_s"] = time.perf_counter() - t0
        times = []
        for title in titles:
            if label == "cold":
                for p in (cache_root / "wiki-index").glob("*.pages.sqlite"):
                    p.unlink()
            t0 = time.perf_counter()
            page, _ = get_page(title, ms, index, cache_root, follow_redirects=False)
            if page.redirect is None:
                clean_wikitext(page.text)
            times.append(time.perf_counter() - t0)
        times.sort()
        out[label] = {"median_ms": 1000 * times[len(times) // 2],
                      "p95_ms": 1000 * times[int(0.95 * (len(times) - 1))],
                      "max_ms": 1000 * times[-1]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target-mb", type=float, default=50.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--baseline-articles", type=int, default=200)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res: dict = {"load_before": os.getloadavg(), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        d = build_dumps(tmp, args.target_mb)
        res["dump"] = {k: d[k] for k in ("copies", "pages", "articles", "wikitext_mb",
                                         "block_kb")}
        print(f"dump: {d['copies']} copies, {d['pages']} pages, {d['articles']} articles, "
              f"{d['wikitext_mb']:.1f} MB wikitext", flush=True)
        base = time_baseline(d["single"], args.baseline_articles)
        res["mwparserfromhell_loop_pps"] = base
        print(f"mwxml+mwparserfromhell, 1 process: {base:.1f} articles/s", flush=True)
        we = time_wikiextractor(d["single"], args.workers, d["articles"])
        res["wikiextractor_pps"] = we
        print(f"wikiextractor --processes {args.workers}: {we:.1f} articles/s "
              f"({we / base:.1f}x the loop)", flush=True)
        for label, part in (("index", {"dump": d["ms"], "index": d["index"]}),
                            ("stream", {"dump": d["single"]})):  # same file, with/without index
            for workers in sorted({1, args.workers}):
                pps, n = time_ours(part, workers)
                res[f"dlprep_{label}_w{workers}_pps"] = pps
                print(f"dlprep {label} --workers {workers}: {pps:.1f} articles/s "
                      f"({pps / base:.1f}x the loop, {pps / we:.2f}x wikiextractor); {n} kept",
                      flush=True)
        rss1 = peak_rss_kb(d["single"])
        d8 = build_dumps(tmp / "x8", args.target_mb, copies=d["copies"] * 8)
        rss8 = peak_rss_kb(d8["single"])
        res["peak_rss_mb"] = {"1x": rss1 / 1024, "8x": rss8 / 1024}
        print(f"peak RSS streaming parse+clean: 1x {rss1 / 1024:.0f} MB, 8x {rss8 / 1024:.0f} MB "
              f"({100 * (rss8 - rss1) / rss1:+.1f} %)", flush=True)
        g = res["wiki_get"] = time_get(d["ms"], d["index"], tmp / "cache", args.workers)
        for label in ("cold", "warm"):
            print(f"wiki get ({label}): median {g[label]['median_ms']:.1f} ms, p95 "
                  f"{g[label]['p95_ms']:.1f} ms, max {g[label]['max_ms']:.1f} ms over "
                  f"{g['titles']} titles (blocks of {d['block_kb']:.0f} kB compressed)",
                  flush=True)
        print(f"wiki index --pages (warm-up of the whole dump): {g['warm_up_s']:.1f} s",
              flush=True)
    if not args.skip_quality:
        pages = real_pages()
        ours, wex = [], []
        for p in pages:
            ref = reference_clean(p.text)
            ours.append(recall_precision(clean_wikitext(p.text), ref))
            wex.append(recall_precision(wikiextractor_clean(p), ref))
        for name, vals in (("dlprep", ours), ("wikiextractor", wex)):
            r = sum(v[0] for v in vals) / len(vals)
            pr = sum(v[1] for v in vals) / len(vals)
            res[f"quality_{name}"] = {"recall": r, "precision": pr, "pages": len(vals)}
            print(f"quality {name}: word recall {r:.3f}, precision {pr:.3f} over {len(vals)} "
                  f"real pages", flush=True)
    res["load_after"] = os.getloadavg()
    print(f"load average before {res['load_before'][0]:.2f}, after {res['load_after'][0]:.2f} "
          f"({res['cpus']} CPUs)")
    if args.out:
        args.out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
