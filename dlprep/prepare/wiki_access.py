"""Random access to a multistream dump, and the article link graph.

:class:`TitleIndex` turns a multistream index (``offset:page_id:title`` lines, bz2) into a
small SQLite table in the cache, built once per index file (keyed by its path, size and
mtime); :func:`get_page` then finds a title's block offset with one lookup and decodes only
that bz2 stream. Decoded blocks go to a :class:`PageCache` (zlib pages in SQLite), which
:func:`warm_cache` (``wiki index --pages``) fills for the whole dump on N processes.
:func:`write_links` writes the (source, target) pairs of article-to-article links to
parquet, with redirects resolved.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path

from ..errors import DlprepError, FormatError, MissingDependencyError
from ..formats import mediawiki as mw
from ..formats.wikitext import normalize_title
from ..scale import Executor
from .wiki_pages import Counts, DumpPart, PageOptions, iter_records

log = logging.getLogger("dlprep")


class TitleIndex:
    """Title -> (block offset, page id) for one index file, as an SQLite table."""

    def __init__(self, index: Path, cache_root: Path) -> None:
        self.index = Path(index).resolve()
        st = self.index.stat()
        key = hashlib.sha256(f"{self.index}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
        self.db_path = cache_root / "wiki-index" / f"{key[:20]}.sqlite"
        if not self.db_path.is_file():
            self._build()
        self.db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)

    def _build(self) -> None:
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.db_path.with_name(f".{self.db_path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        db = sqlite3.connect(tmp)
        try:
            db.execute("CREATE TABLE pages (title TEXT PRIMARY KEY, offset INTEGER, "
                       "page_id INTEGER) WITHOUT ROWID")
            batch: list[tuple[str, int, int]] = []
            for e in mw.read_index(self.index):
                batch.append((e.title, e.offset, e.page_id))
                if len(batch) >= 50_000:
                    db.executemany("INSERT OR IGNORE INTO pages VALUES (?, ?, ?)", batch)
                    batch.clear()
            db.executemany("INSERT OR IGNORE INTO pages VALUES (?, ?, ?)", batch)
            db.commit()
        finally:
            db.close()
        os.replace(tmp, self.db_path)

    def lookup(self, title: str) -> tuple[str, int, int] | None:
        """``(title as indexed, offset, page_id)`` of ``title`` (as given, then normalised)."""
        for t in dict.fromkeys((title, normalize_title(title))):
            row = self.db.execute("SELECT title, offset, page_id FROM pages WHERE title = ?",
                                  (t,)).fetchone()
            if row:
                return row[0], int(row[1]), int(row[2])
        return None

    def close(self) -> None:
        self.db.close()


class PageCache:
    """Pages of decoded blocks, zlib-compressed in an SQLite file in the cache (keyed by the
    dump's path, size and mtime): a block is decoded once, by ``wiki get`` (lazily) or for
    the whole dump by ``wiki index --pages`` (the warm cache), and later reads of any page
    of it cost a lookup and a zlib inflate instead of a bz2 decode."""

    def __init__(self, dump: Path, cache_root: Path) -> None:
        self.dump = Path(dump).resolve()
        st = self.dump.stat()
        key = hashlib.sha256(f"{self.dump}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
        self.db_path = cache_root / "wiki-index" / f"{key[:20]}.pages.sqlite"
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.db_path, timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS pages (page_id INTEGER PRIMARY KEY, "
                        "data BLOB)")
        self.db.execute("CREATE TABLE IF NOT EXISTS blocks (offset INTEGER PRIMARY KEY)")

    def get(self, page_id: int) -> mw.Page | None:
        row = self.db.execute("SELECT data FROM pages WHERE page_id = ?", (page_id,)).fetchone()
        return mw.parse_page(zlib.decompress(row[0])) if row else None

    def has_block(self, offset: int) -> bool:
        return self.db.execute("SELECT 1 FROM blocks WHERE offset = ?",
                               (offset,)).fetchone() is not None

    def add_block(self, offset: int, pages: list[tuple[int, bytes]]) -> None:
        """Store one decoded block: ``(page_id, zlib-compressed page XML)`` pairs."""
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO pages VALUES (?, ?)", pages)
            self.db.execute("INSERT OR IGNORE INTO blocks VALUES (?)", (offset,))

    def count(self) -> tuple[int, int]:
        pages = self.db.execute("SELECT COUNT(*) FROM pages").fetchone()[0]
        blocks = self.db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        return int(pages), int(blocks)

    def close(self) -> None:
        self.db.close()


def compressed_block(dump: str, start: int, end: int | None) -> list[tuple[int, bytes]]:
    """The pages of the block at ``start`` as ``(page_id, zlib(page XML))`` (pure)."""
    out = []
    for raw in mw.split_pages(mw.read_block(dump, start, end)):
        m = _PAGE_ID.search(raw)
        if m:
            out.append((int(m.group(1)), zlib.compress(raw, 1)))
    return out


_PAGE_ID = re.compile(rb"<id>\s*(\d+)\s*</id>")


def _compressed_item(args: tuple[str, int, int | None]) -> list[tuple[int, bytes]]:
    return compressed_block(*args)


def warm_cache(dump: Path, index: Path, cache_root: Path, *, workers: int = 1,
               scheduler: str | None = None) -> tuple[int, int]:
    """Build the title lookup and decode every block of ``dump`` into the page cache (blocks
    already cached are skipped; ``workers`` > 1 or ``scheduler``: on Dask); returns (pages,
    blocks) cached."""
    TitleIndex(index, cache_root).close()
    cache = PageCache(dump, cache_root)
    try:
        offsets = sorted({e.offset for e in mw.read_index(index)})
        size = Path(dump).stat().st_size
        todo = [(s, e) for s, e in mw.block_ranges(offsets, size) if not cache.has_block(s)]
        # a block's stream ends where the next starts; the last one may be followed by the
        # closing </mediawiki> stream, which holds no page
        with Executor(workers if len(todo) > 1 else 1, scheduler) as ex:
            results = ex.imap(_compressed_item, ((str(dump), s, e) for s, e in todo),
                              what=f"{Path(dump).name} block")
            for (start, _), pages in zip(todo, results, strict=True):
                cache.add_block(start, pages)
        return cache.count()
    finally:
        cache.close()


def get_page(title: str, dump: Path, index: Path, cache_root: Path,
             follow_redirects: bool = True) -> tuple[mw.Page, str | None]:
    """The page called ``title`` (and the title it was redirected from, if any): from the
    page cache, else by decoding its one bz2 block (whose pages are then cached). Raises
    ``DlprepError`` when the index has no such title or the block lacks it."""
    idx = TitleIndex(index, cache_root)
    cache = PageCache(dump, cache_root)
    try:
        redirected_from = None
        for _ in range(3 if follow_redirects else 1):
            hit = idx.lookup(title)
            if hit is None:
                what = f" ({redirected_from!r} redirects to it)" if redirected_from else ""
                raise DlprepError(f"{index.name}: no page titled {title!r} in the index{what}")
            found, offset, page_id = hit
            page = cache.get(page_id)
            if page is None:
                if cache.has_block(offset):
                    raise FormatError(dump, offset, f"the block the index names for {found!r} "
                                                    f"does not hold page id {page_id}")
                pages = compressed_block(str(dump), offset, None)
                cache.add_block(offset, pages)
                page = cache.get(page_id)
            if page is None:
                raise FormatError(dump, offset, f"the block the index names for {found!r} does "
                                                f"not hold page id {page_id}; does the index "
                                                f"belong to this dump?")
            if page.redirect is None or not follow_redirects:
                return page, redirected_from
            redirected_from = redirected_from or page.title
            title = page.redirect
        return page, redirected_from
    finally:
        idx.close()
        cache.close()


def write_links(parts: Sequence[DumpPart], out: Path, *, workers: int = 1,
                scheduler: str | None = None, namespaces: frozenset[int] = frozenset({0}),
                batch: int = 100_000) -> Counts:
    """Write ``source``, ``target``, ``target_in_dump`` rows (article -> article links,
    targets through one redirect resolved) to the parquet file ``out`` atomically."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError("wiki links needs pyarrow: pip install 'dlprep[wiki]'") \
            from exc
    counts = Counts(collect_redirects=True)
    titles: set[str] = set()
    raw = out.with_name(f".{out.name}.{os.getpid()}.raw.parquet")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    raw_schema = pa.schema([("source", pa.string()), ("target", pa.string())])
    schema = pa.schema([("source", pa.string()), ("target", pa.string()),
                        ("target_in_dump", pa.bool_())])
    try:
        writer = pq.ParquetWriter(raw, raw_schema)
        src: list[str] = []
        dst: list[str] = []
        try:
            opts = PageOptions(namespaces=namespaces, text=False, links=True)
            for rec in iter_records(parts, opts, counts, workers=workers,
                                    scheduler=scheduler):
                title = normalize_title(rec.title)
                titles.add(title)
                for target in rec.links:
                    src.append(title)
                    dst.append(target)
                if len(src) >= batch:
                    writer.write_table(pa.table({"source": src, "target": dst}, raw_schema))
                    src, dst = [], []
            if src:
                writer.write_table(pa.table({"source": src, "target": dst}, raw_schema))
        finally:
            writer.close()
        redirects = counts.redirect_map
        current, seen = None, set()  # a page's links are contiguous: dedupe them per page
        with pq.ParquetWriter(tmp, schema) as final:
            for rb in pq.ParquetFile(raw).iter_batches(batch_size=batch):
                rows_s: list[str] = []
                rows_t: list[str] = []
                for s, t in zip(rb.column(0).to_pylist(), rb.column(1).to_pylist(), strict=True):
                    t = redirects.get(t, t)
                    if s != current:
                        current, seen = s, set()
                    if t == s or t in seen:  # a link to itself (often via a redirect), a repeat
                        continue
                    seen.add(t)
                    rows_s.append(s)
                    rows_t.append(t)
                final.write_table(pa.table({"source": rows_s, "target": rows_t,
                                            "target_in_dump": [t in titles for t in rows_t]},
                                           schema))
        os.replace(tmp, out)
    finally:
        raw.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return counts
